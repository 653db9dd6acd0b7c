"""The reference for ``bench_measure.py``: ``deltahall measure``'s statistics in plain numpy/scikit-learn.

What a careful user would write by hand for the same measurement on ``.npy`` inputs
(global states, default settings, ``--report false``), with nothing from deltahall:

- the seeded stratified split of each state's reference rows into fit / calibration / test
  parts (50 / 30 / 20);
- the density of each state chosen by held-out likelihood on its fit rows: L2 normalisation,
  centring, one global scale, a pooled PCA rotation (at most 64 directions); per state a
  Gaussian (Ledoit-Wolf) or a 2-component mixture (``GaussianMixture``) on the first
  ``k`` in {2, 4, 8, 16, 32, 64} principal coordinates times an isotropic Gaussian on the rest;
- split-conformal p-values (scores within ``1e-9`` relative of a calibration score count as
  ties), ``p = max_i p_i``, flags at α; the typicality (the p-value with its ties broken by
  the score: the calibration CDF interpolated between neighbours, an exponential tail below
  the lowest score) and the nearest state (largest per-state typicality, ties broken by the
  score above the state's calibration median);
- the rate and the floor with Wilson 95% intervals (``scipy.stats.binomtest``), the pooled
  Fisher test and the mixture-matched excess test (posterior predictive: proportions from the
  unflagged generated rows by nearest state, each state's floor by true state, 20,000 seeded
  Jeffreys Beta draws), the rate-vs-α curve, per-prompt rates with their intervals and the
  p-value of each prompt's mean embedding;
- ``samples.csv`` (``id, prompt, p_value, nearest_state, flagged, typicality,
  log_density_<state>...``, floats written with ``repr``) and ``measure.json``.

Same seeds and the same rules as the instrument, so the rate, the floor and every p-value
agree with ``deltahall measure`` (``bench_measure.py`` checks the rate, the floor and both
excess p-values). The small-state
fallbacks of the instrument (shrunk models, diagonal covariances) are left out: the
benchmark's states are large.

    python benchmarks/minimal_measure.py REF.npy LABELS.npy GEN.npy PROMPTS.npy OUT_DIR
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular
from scipy.sparse import csr_matrix
from scipy.stats import binom, binomtest, fisher_exact
from sklearn.covariance import ledoit_wolf
from sklearn.mixture import GaussianMixture

ALPHA, SEED, CHUNK, DRAWS, TIE = 0.1, 0, 65536, 20_000, 1e-9
FRACTIONS = (0.5, 0.3, 0.2)
LOG_2PI = math.log(2 * math.pi)


def wilson(k: int, n: int) -> list[float]:
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return [0.0 if k == 0 else max(0.0, ci.low), 1.0 if k == n else min(1.0, ci.high)]


def split(y: np.ndarray) -> list[np.ndarray]:
    rng = np.random.default_rng([SEED, 7])
    parts: list[list[np.ndarray]] = [[], [], []]
    for s in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == s))
        n_cal, n_test = (int(math.floor(f * idx.size)) for f in FRACTIONS[1:])
        n_fit = idx.size - n_cal - n_test
        for part, rows in zip(
            parts, (idx[:n_fit], idx[n_fit : n_fit + n_cal], idx[n_fit + n_cal :]), strict=True
        ):
            part.append(rows)
    return [np.sort(np.concatenate(p)) for p in parts]


class Model:
    """A Gaussian or a mixture on the first ``k`` coordinates, isotropic on the other ``d - k``."""

    def __init__(
        self, c: np.ndarray, total: np.ndarray, k: int, comps: int, d: int, seed: int
    ) -> None:
        x = c[:, :k]
        self.k, self.d, self.gmm = k, d, None
        if comps == 1:
            self.mu = x.mean(axis=0)
            cov = ledoit_wolf(x - self.mu, assume_centered=True)[0] + 1e-4 * np.eye(k)
            self.prec = solve_triangular(np.linalg.cholesky(cov), np.eye(k), lower=True).T
            self.const = -0.5 * k * LOG_2PI + np.log(np.diag(self.prec)).sum()
        else:
            self.gmm = GaussianMixture(
                comps,
                covariance_type="full",
                reg_covar=1e-4,
                random_state=seed,
                max_iter=100,
                init_params="k-means++",
            ).fit(x)
        rest = d - k
        self.sigma2 = (
            max(float(np.mean(np.maximum(total - (x * x).sum(1), 0.0)) / rest), 1e-6)
            if rest
            else 1.0
        )

    def logpdf(self, c: np.ndarray, total: np.ndarray | None = None) -> np.ndarray:
        x = c[:, : self.k]
        if self.gmm is not None:
            out = self.gmm.score_samples(x)
        else:
            y = (x - self.mu) @ self.prec
            out = self.const - 0.5 * (y * y).sum(1)
        if total is not None and self.d > self.k:
            resid = np.maximum(total - (x * x).sum(1), 0.0)
            out = (
                out
                - 0.5 * resid / self.sigma2
                - 0.5 * (self.d - self.k) * (LOG_2PI + math.log(self.sigma2))
            )
        return out


def fit(X: np.ndarray, y: np.ndarray, n_states: int) -> tuple[dict[str, Any], list[Model]]:
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    mean = U.mean(axis=0)
    Uc = U - mean
    scale = math.sqrt(float(np.mean((Uc * Uc).sum(1))) / X.shape[1]) or 1.0
    Uc /= scale
    D = min(X.shape[1], X.shape[0] - 1, 64)
    W = np.linalg.svd(Uc, full_matrices=False)[2][:D]
    c, total = Uc @ W.T, (Uc * Uc).sum(1)
    ks = sorted({min(k, D) for k in (2, 4, 8, 16, 32, 64)} | ({D} if D <= 64 else set()))
    rng = np.random.default_rng([SEED, 11])
    models = []
    for i in range(n_states):
        rows = np.flatnonzero(y == i)
        ci, ti = c[rows], total[rows]
        seed = int(rng.integers(2**31 - 1))
        perm = rng.permutation(rows.size)
        hold, train = perm[: max(1, rows.size // 4)][:1000], perm[max(1, rows.size // 4) :][:2000]
        best = (-np.inf, (ks[0], 1))
        for k in ks:
            for comps in (1, 2):
                if train.size < comps * (k + 2):
                    continue
                try:
                    ll = float(
                        np.mean(
                            Model(ci[train], ti[train], k, comps, X.shape[1], seed).logpdf(
                                ci[hold], ti[hold]
                            )
                        )
                    )
                except (ValueError, np.linalg.LinAlgError):
                    continue
                if math.isfinite(ll) and ll > best[0]:
                    best = (ll, (k, comps))
        models.append(Model(ci, ti, *best[1], X.shape[1], seed))
    return {"mean": mean, "W": W, "scale": scale, "kmax": max(m.k for m in models)}, models


def score(A: np.ndarray, tr: dict[str, Any], models: list[Model]) -> np.ndarray:
    out = np.empty((A.shape[0], len(models)))
    W = tr["W"][: tr["kmax"]]
    for s in range(0, A.shape[0], CHUNK):
        B = np.asarray(A[s : s + CHUNK], dtype=np.float64)
        B /= np.linalg.norm(B, axis=1, keepdims=True)
        c = (B @ W.T - tr["mean"] @ W.T) / tr["scale"]
        for i, m in enumerate(models):
            out[s : s + B.shape[0], i] = m.logpdf(c)
    return out


def p_and_typicality(S: np.ndarray, cal: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-state conformal p-values and their tie-broken version (one ``searchsorted`` each)."""
    P, T = np.empty(S.shape), np.empty(S.shape)
    for i, c in enumerate(cal):
        s, m = S[:, i], c.size
        j = np.searchsorted(c, s + TIE * np.maximum(np.abs(s), 1.0), side="right")
        P[:, i] = (1.0 + j) / (m + 1.0)
        lo, hi = c[np.clip(j - 1, 0, m - 1)], c[np.clip(j, 0, m - 1)]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.clip(np.nan_to_num(np.where(hi > lo, (s - lo) / (hi - lo), 0.0)), 0.0, 1.0)
        with np.errstate(over="ignore"):
            tail = np.exp(-(c[0] - s) / c.std()) / (m + 1.0)
        T[:, i] = np.minimum(
            np.where(j == 0, tail, (j + np.where(j < m, frac, 0.0)) / (m + 1.0)), 1.0
        )
    return P, T


def nearest(T: np.ndarray, S: np.ndarray, med: np.ndarray) -> np.ndarray:
    z = np.where(T >= T.max(1, keepdims=True), S - med, -np.inf)
    return np.where(np.isnan(z), -np.inf, z).argmax(1)


def mixture_excess(k: int, n: int, inside: np.ndarray, kf: np.ndarray, nf: np.ndarray) -> float:
    """Pr[K >= k], K ~ Binomial(n, sum_i w_i F_i), F_i ~ Beta(kf_i + 1/2, nf_i - kf_i + 1/2)."""
    if k == 0:
        return 1.0
    keep = nf > 0
    u, kf, nf = inside[keep].astype(float), kf[keep].astype(float), nf[keep].astype(float)
    w = u / (1.0 - (kf + 0.5) / (nf + 1.0)) if u.sum() else nf
    F = np.random.default_rng([SEED, 23]).beta(kf + 0.5, nf - kf + 0.5, size=(DRAWS, kf.size))
    return float(min(1.0, np.mean(binom.sf(k - 1, n, np.clip(F @ (w / w.sum()), 0.0, 1.0)))))


def main(ref_path: str, labels_path: str, gen_path: str, prompts_path: str, out_dir: str) -> None:
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    X, labels = np.load(ref_path), np.load(labels_path)
    G, prompts = np.load(gen_path, mmap_mode="r"), np.load(prompts_path)
    classes, y = np.unique(labels, return_inverse=True)
    states = [str(c) for c in classes]
    fit_rows, cal_rows, test_rows = split(y)
    tr, models = fit(np.asarray(X[fit_rows], dtype=np.float64), y[fit_rows], len(states))
    S_cal, y_cal = score(X[cal_rows], tr, models), y[cal_rows]
    cal = [np.sort(S_cal[y_cal == i, i]) for i in range(len(states))]
    med = np.array([np.median(c) for c in cal])
    thr = [
        c[int(math.floor(ALPHA * (c.size + 1) + 1e-12)) - 1] for c in cal
    ]  # the rule's score thresholds
    S_test = score(X[test_rows], tr, models)
    P_test = p_and_typicality(S_test, cal)[0]
    p_test = P_test.max(1)
    flag_test = p_test <= ALPHA
    S_gen = score(G, tr, models)
    P_gen, T_gen = p_and_typicality(S_gen, cal)
    p_gen, typ_gen = P_gen.max(1), T_gen.max(1)
    flag_gen, near_gen = p_gen <= ALPHA, nearest(T_gen, S_gen, med)
    t_stats = time.perf_counter()
    k, n, kf, nf = int(flag_gen.sum()), flag_gen.size, int(flag_test.sum()), flag_test.size
    ns = len(states)
    y_test = y[test_rows]
    mixture = mixture_excess(
        k,
        n,
        np.bincount(near_gen[~flag_gen], minlength=ns),
        np.bincount(y_test[flag_test], minlength=ns),
        np.bincount(y_test, minlength=ns),
    )
    names, codes = np.unique(prompts, return_inverse=True)
    codes = codes.ravel()
    n_p = np.bincount(codes, minlength=names.size)
    k_p = np.bincount(codes[flag_gen], minlength=names.size)
    sums = np.zeros((names.size, G.shape[1]))
    for s in range(0, G.shape[0], CHUNK):
        c = codes[s : s + CHUNK]
        sums += csr_matrix(
            (np.ones(c.size), (c, np.arange(c.size))), shape=(names.size, c.size)
        ) @ np.asarray(G[s : s + CHUNK], dtype=np.float64)
    p_mean = p_and_typicality(score(sums / n_p[:, None], tr, models), cal)[0].max(1)
    alphas = np.round(np.arange(0.01, 0.51, 0.01), 2)
    summary = {
        "rate": k / n,
        "rate_ci": wilson(k, n),
        "floor": kf / nf,
        "floor_ci": wilson(kf, nf),
        "excess_p_value": mixture,
        "excess_p_value_pooled": float(
            fisher_exact([[k, n - k], [kf, nf - kf]], alternative="greater")[1]
        ),
        "thresholds": [float(t) for t in thr],
        "curve": {
            "alphas": alphas.tolist(),
            "rate": (np.searchsorted(np.sort(p_gen), alphas, side="right") / n).tolist(),
            "floor": (np.searchsorted(np.sort(p_test), alphas, side="right") / nf).tolist(),
        },
        "per_prompt": [
            {
                "prompt": str(nm),
                "n": int(n_p[j]),
                "n_flagged": int(k_p[j]),
                "rate": k_p[j] / n_p[j],
                "rate_ci": wilson(int(k_p[j]), int(n_p[j])),
                "mean_embedding_inside": bool(p_mean[j] > ALPHA),
                "mean_embedding_p_value": float(p_mean[j]),
            }
            for j, nm in enumerate(names)
        ],
    }
    t_write = time.perf_counter()
    state_names = np.array(states, dtype=object)
    with open(out / "samples.csv", "w", encoding="utf-8") as fh:
        fh.write(
            ",".join(
                [
                    "id",
                    "prompt",
                    "p_value",
                    "nearest_state",
                    "flagged",
                    "typicality",
                    *[f"log_density_{s}" for s in states],
                ]
            )
            + "\n"
        )
        for s in range(0, n, CHUNK):
            e = min(n, s + CHUNK)
            cols = [
                list(map(str, range(s, e))),
                prompts[s:e].tolist(),
                list(map(repr, p_gen[s:e].tolist())),
                state_names[near_gen[s:e]].tolist(),
                ["True" if f else "False" for f in flag_gen[s:e].tolist()],
                list(map(repr, typ_gen[s:e].tolist())),
                *[list(map(repr, S_gen[s:e, i].tolist())) for i in range(len(states))],
            ]
            fh.write("\n".join(map(",".join, zip(*cols, strict=True))) + "\n")
    t_end = time.perf_counter()
    summary["seconds"] = {
        "until_stats": t_stats - t0,
        "stats": t_write - t_stats,
        "write_samples": t_end - t_write,
        "total": t_end - t0,
    }
    (out / "measure.json").write_text(json.dumps(summary), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:6])
