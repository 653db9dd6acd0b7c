"""Figures 2 and 8 of the paper, regenerated from :mod:`deltahall.theory`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from deltahall._validation import check_delta
from deltahall.plotting import pyplot
from deltahall.theory.mixtures import GaussianState, LatentMixture

__all__ = ["figure_2", "figure_8", "save_theory_figures"]


def _segments(mask: np.ndarray, x: np.ndarray) -> list[tuple[float, float]]:
    """Contiguous runs of True in ``mask`` as (start, end) x-intervals."""
    out, start = [], None
    for xi, m in zip(x, mask, strict=True):
        if m and start is None:
            start = xi
        if not m and start is not None:
            out.append((start, xi))
            start = None
    if start is not None:
        out.append((start, x[-1]))
    return out


def figure_8(*, delta_hdr: float = 0.10, delta_hcdr: float = 0.05) -> tuple[Any, dict[str, float]]:
    r"""Figure 8: the HDR of a two-normal mixture vs the HCDR (Appendix A, Definition 6.2).

    .. math:: \text{HDR} = \{a : f(a) > δ\},\qquad \text{HCDR} = \bigcup_i \{a : f(a \mid Z_i) > δ_1\}.

    Panel (b) uses ``δ_1 = 0.2 > δ``: then the HDR is not inside the HCDR.

    Parameters
    ----------
    delta_hdr : float in (0, 1]
        δ of the HDR.
    delta_hcdr : float in (0, 1]
        δ_1 of the HCDR in panel (a).

    Returns
    -------
    fig : matplotlib Figure
    info : dict
        ``hdr_mass_a/b`` and ``hcdr_mass_a/b``: masses of both regions (grid integration).

    Raises
    ------
    ValueError
        δ outside (0, 1].
    """
    check_delta(delta_hdr, "delta_hdr")
    check_delta(delta_hcdr, "delta_hcdr")
    plt = pyplot()
    mix = LatentMixture(
        [0.6, 0.4], [GaussianState([-2.0], [[1.0]]), GaussianState([2.0], [[1.44]])]
    )
    x = np.linspace(-6, 6, 4001)
    f = mix.pdf(x)
    comp = mix.component_pdf(x)
    dx = x[1] - x[0]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    info: dict[str, float] = {}
    for ax, d1, tag in ((axes[0], delta_hcdr, "a"), (axes[1], 0.2, "b")):
        hdr = f > delta_hdr
        hcdr = comp.max(axis=1) > d1
        for lo, hi in _segments(hcdr, x):
            ax.axvspan(lo, hi, color="tab:green", alpha=0.18, lw=0)
        ax.fill_between(
            x,
            0,
            f,
            where=hdr,
            color="tab:blue",
            alpha=0.45,
            lw=0,
            label=f"HDR  f(a) > δ = {delta_hdr:g}",
        )
        ax.plot(x, f, color="k", lw=1.6, label="marginal f(a)")
        for i, ls in enumerate(("--", ":")):
            ax.plot(x, comp[:, i], ls, color="tab:gray", lw=1.2, label=f"f(a | Z_{i + 1})")
        ax.axhline(delta_hdr, color="tab:blue", lw=0.8)
        ax.axhline(d1, color="tab:green", lw=0.8)
        ax.plot(
            [], [], color="tab:green", alpha=0.4, lw=6, label=f"HCDR  max_i f(a|Z_i) > δ₁ = {d1:g}"
        )
        ax.set_title(
            f"({tag}) δ = {delta_hdr:g}, δ₁ = {d1:g}; HDR ⊂ HCDR: {bool(np.all(~hdr | hcdr))}"
        )
        ax.set_xlabel("a")
        info[f"hdr_mass_{tag}"] = float(np.sum(f[hdr]) * dx)
        info[f"hcdr_mass_{tag}"] = float(np.sum(f[hcdr]) * dx)
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle("Figure 8: HDR vs HCDR for a mixture of two normals (0.6 N(-2,1) + 0.4 N(2,1.2²))")
    fig.tight_layout()
    return fig, info


def figure_2(delta: float = 0.02) -> tuple[Any, dict[str, float]]:
    """Figure 2 (key insight): the quadratic-loss optimum between 'cat' and 'dog' vs a cat-like output.

    Two latent states in a 2-d feature space; the mean (Lemma B.1) sits between
    them with a low density under both, while an output inside the cat mode has a
    high ``max_i f(a | Z_i)``.

    Parameters
    ----------
    delta : float in (0, 1]
        The tolerance drawn as a line.

    Returns
    -------
    fig : matplotlib Figure
    info : dict
        Both states' densities at the optimum and at the cat-like output, and whether the
        optimum δ-hallucinates.

    Raises
    ------
    ValueError
        δ outside (0, 1].
    """
    check_delta(delta)
    plt = pyplot()
    cat = GaussianState([-2.0, 0.0], [[0.6, 0.2], [0.2, 0.5]])
    dog = GaussianState([2.0, 0.3], [[0.7, -0.2], [-0.2, 0.6]])
    mix = LatentMixture([0.5, 0.5], [cat, dog])
    optimum = mix.mean()
    catlike = np.array([-1.6, 0.2])
    pts = np.stack([optimum, catlike])
    dens = mix.component_pdf(pts)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1.4, 1]})
    g = np.linspace(-4.5, 4.5, 241)
    xx, yy = np.meshgrid(g, np.linspace(-3, 3, 161))
    grid = np.column_stack([xx.ravel(), yy.ravel()])
    for st, cmap, name in ((cat, "Oranges", "cat"), (dog, "Blues", "dog")):
        z = np.exp(st.logpdf(grid)).reshape(xx.shape)
        ax.contour(xx, yy, z, levels=6, cmap=cmap)
        ax.annotate(name, st.loc, ha="center", va="center", fontsize=12, weight="bold")
    ax.plot(*optimum, "kX", ms=10, label="optimal estimate E[A(X)]")
    ax.plot(*catlike, "k*", ms=12, label="an output in the cat mode")
    ax.set_title("latent states Z ∈ {cat, dog}")
    ax.legend(fontsize=8, loc="lower left")
    labels = ["E[A(X)]", "cat-like"]
    width = 0.35
    idx = np.arange(2)
    bx.bar(idx - width / 2, dens[:, 0], width, color="tab:orange", label="f(a | cat)")
    bx.bar(idx + width / 2, dens[:, 1], width, color="tab:blue", label="f(a | dog)")
    bx.axhline(delta, color="r", lw=1, ls="--", label=f"δ = {delta:g}")
    bx.set_xticks(idx, labels)
    bx.set_ylabel("conditional density")
    bx.set_title("score max_i f(a | Z_i)")
    bx.legend(fontsize=8)
    fig.suptitle("Figure 2: aligning with one plausible state beats averaging across states")
    fig.tight_layout()
    info = {
        "optimum_f_cat": float(dens[0, 0]),
        "optimum_f_dog": float(dens[0, 1]),
        "catlike_f_cat": float(dens[1, 0]),
        "catlike_f_dog": float(dens[1, 1]),
        "optimum_hallucinates": bool(dens[0].max() <= delta),
        "delta": delta,
    }
    return fig, info


def save_theory_figures(run_dir: Any) -> dict[str, Any]:
    """Write ``figures/figure_8.{png,svg}`` and ``figures/figure_2.{png,svg}`` into ``run_dir``.

    Parameters
    ----------
    run_dir : path or RunDir
        Created if missing.

    Returns
    -------
    dict
        Per figure: ``paths`` written and the numbers its builder returned.

    Raises
    ------
    OSError
        The folder cannot be written.
    """
    from deltahall.io import RunDir

    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    plt = pyplot()
    out: dict[str, Any] = {}
    for name, make in (("figure_8", figure_8), ("figure_2", figure_2)):
        fig, info = make()
        paths = rd.save_figure(fig, name)
        plt.close(fig)
        out[name] = {
            "paths": [str(Path(p)) for p in paths],
            **{k: v for k, v in info.items() if not (isinstance(v, float) and math.isnan(v))},
        }
    return out
