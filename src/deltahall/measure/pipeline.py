"""One measurement: read, embed, measure, select, write.

The run folder's lifecycle (refusing a folder that holds a measurement or an input, redoing one
with ``resume_from_checkpoint="latest"`` and the same settings, the manifest, the atomic
``measure.json``) is the experiments' shared runner; ``deltahall measure`` and
:func:`deltahall.experiments.measure_run.run` drive it with the steps here, in order:
:func:`preflight` (cheap checks: the device, the optional packages, inputs that need an
embedder), :func:`read_inputs` (every input rule, before anything is embedded or written),
:func:`load_embedder_for` and :func:`compute_measurement` (embed, measure, select; nothing
written), then :func:`write_measurement` (the tables and the report; returns ``measure.json``'s
body).

Files written to ``out_dir`` (see ``docs/measure.md``)::

    manifest.json   resolved config, seed, package versions
    measure.json    the measurement (strict JSON): rate, rate_ci, floor, floor_ci, excess_p_value,
                    states, per_prompt, curve, [selection], [baselines], [discovered_states]
    samples.csv     one row per generated sample: id, prompt, p_value, nearest_state, flagged,
                    [kept], log_density_<state>... (samples.parquet with --samples-format parquet)
    report.html     the self-contained HTML report (unless report=False)
    figures/*.png
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from deltahall._validation import check_choice, check_int
from deltahall.io import RunDir
from deltahall.measure.calibration import DetectorSettings, Measurement, measure_embeddings
from deltahall.measure.inputs import (
    PRECOMPUTED,
    Samples,
    embed_samples,
    read_calibration_samples,
    read_generated,
    read_reference,
)
from deltahall.measure.selection import SELECT_MODES, Selection, select_candidates

logger = logging.getLogger(__name__)

__all__ = [
    "OUTPUTS",
    "SAMPLES_FORMATS",
    "MeasureConfig",
    "MeasureInputs",
    "MeasureResult",
    "input_paths",
    "compute_measurement",
    "load_embedder_for",
    "preflight",
    "read_inputs",
    "write_measurement",
    "write_samples_csv",
    "write_samples_parquet",
]

#: Formats of the per-sample table (``--samples-format``).
SAMPLES_FORMATS = ("csv", "parquet")


def _h(text: str) -> dict[str, str]:
    return {"help": text}


def _free(text: str) -> dict[str, str]:
    """``help`` text of a field that may differ when a measurement is redone (the run lifecycle's
    ``metadata={"resume": "free"}``)."""
    return {"help": text, "resume": "free"}


@dataclass(frozen=True)
class MeasureConfig:
    """Everything one measurement needs; :func:`deltahall.experiments.measure_run.run` executes it."""

    reference: Path | None = field(
        default=None,
        metadata=_h(
            "real samples with their states: .npy embeddings (+ --reference-labels), a folder with one image subfolder per state, or JSONL rows {text, state[, prompt]} (with prompt: states scoped to their prompt)"
        ),
    )
    generated: Path | None = field(
        default=None,
        metadata=_h(
            "generated samples: .npy embeddings (+ --generated-prompts), a folder of images (optionally one subfolder per prompt), or JSONL rows {text[, prompt][, id]}"
        ),
    )
    reference_labels: Path | None = field(
        default=None, metadata=_h(".npy state label per reference row (.npy reference only)")
    )
    generated_prompts: Path | None = field(
        default=None, metadata=_h(".npy prompt per generated row (.npy generated only)")
    )
    calibration_samples: Path | None = field(
        default=None,
        metadata=_h(
            "per-prompt states only: JSONL rows {text, state, prompt} of in-state samples to calibrate on (default: the references, leave one out)"
        ),
    )
    embedder: str = field(
        default=PRECOMPUTED,
        metadata=_h(
            "'precomputed' for .npy inputs, or an alias (@minilm, @efficientnet-lite0, @digits-cnn), hub id or model folder"
        ),
    )
    alpha: float = field(
        default=0.1,
        metadata=_h("flag level: a fresh real sample is flagged with probability <= alpha"),
    )
    calibration: Literal["conformal", "percentile", "margin"] = field(
        default="conformal",
        metadata=_h(
            "'conformal' (guaranteed level), 'percentile' (the paper's rule) or 'margin' (blend-aware: also closer to its state than to the others)"
        ),
    )
    states: Literal["labels", "auto"] = field(
        default="labels",
        metadata=_h(
            "'labels' (given) or 'auto' (BIC-chosen Gaussian mixture: an estimate of the latent states)"
        ),
    )
    max_states: int = field(
        default=10, metadata=_h("largest number of states tried by --states auto")
    )
    select: Literal["hcdr", "top-k"] | None = field(
        default=None,
        metadata=_h(
            "HCDR-guided selection: keep per prompt the candidates inside the HCDR ('hcdr') or the K with the highest p-values ('top-k')"
        ),
    )
    select_k: int | None = field(default=None, metadata=_h("K of --select top-k"))
    baselines: bool = field(
        default=False,
        metadata=_h(
            "also flag with EllipticEnvelope, shared-covariance Mahalanobis, kNN radius and LOF at the same alpha"
        ),
    )
    out_dir: Path = field(
        default=Path("runs/measure"),
        metadata=_free(
            "output folder (measure.json, samples.csv, report.html); one that holds a measurement is refused unless --resume-from-checkpoint latest with the same settings"
        ),
    )
    resume_from_checkpoint: Literal["latest"] | None = field(
        default=None,
        metadata=_free(
            "'latest': redo the measurement in --out-dir (same settings required); unset: refuse a folder that holds one"
        ),
    )
    report: bool = field(default=True, metadata=_h("write report.html"))
    samples_format: Literal["csv", "parquet"] = field(
        default="csv",
        metadata=_h(
            "per-sample table: 'csv' (samples.csv) or 'parquet' (samples.parquet, typed columns; needs pip install 'deltahall[parquet]')"
        ),
    )
    fit_fraction: float = field(
        default=0.5,
        metadata=_h(
            "share of each state's reference rows fitting the densities (and choosing their model)"
        ),
    )
    calibration_fraction: float = field(default=0.3, metadata=_h("share calibrating the p-values"))
    test_fraction: float = field(default=0.2, metadata=_h("share held out for the floor"))
    pca_dim: str = field(
        default="auto",
        metadata=_h(
            "principal coordinates per state's density: 'auto' (chosen per state by held-out likelihood on the fit part), 'none' (all) or an integer"
        ),
    )
    n_components: str = field(
        default="auto",
        metadata=_h(
            "Gaussian-mixture components per state: 'auto' (chosen per state) or an integer"
        ),
    )
    covariance_type: Literal["auto", "full", "diag", "tied", "spherical"] = field(
        default="auto",
        metadata=_h("mixture covariance type ('auto': full, diag only where a state is too small)"),
    )
    normalize: bool = field(default=True, metadata=_h("L2-normalise embeddings first"))
    seed: int = field(default=0, metadata=_h("seed of the split and the mixtures"))
    cache_dir: Path | None = field(
        default=None,
        metadata=_h("embedding cache folder (default: deltahall.models.cache_dir()/embeddings)"),
    )
    device: str = field(default="cpu", metadata=_h("device of the embedder"))
    batch_size: int = field(default=64, metadata=_h("embedder batch size"))

    def __post_init__(self) -> None:
        for name in ("reference", "generated"):
            if getattr(self, name) is None:
                raise ValueError(
                    f"`{name}` is required (--{name} PATH: a .npy file, a JSONL file or an image folder)."
                )
        check_choice(self.states, "states", ("labels", "auto"))
        check_int(self.max_states, "max_states", low=2)
        if self.states == "auto" and self.reference_labels is not None:
            raise ValueError(
                "`reference_labels` and `states`='auto' exclude each other: pass labels, or let "
                "--states auto discover the states."
            )
        if self.select is not None:
            check_choice(self.select, "select", SELECT_MODES)
            if self.select == "top-k" and self.select_k is None:
                raise ValueError("`select_k` must be given with `select`='top-k'.")
        if self.select_k is not None:
            check_int(self.select_k, "select_k", low=1)
        check_int(self.batch_size, "batch_size", low=1)
        check_choice(self.samples_format, "samples_format", SAMPLES_FORMATS)
        if self.resume_from_checkpoint not in (None, "latest"):
            raise ValueError(
                f"`resume_from_checkpoint` of a measurement must be 'latest'; got {self.resume_from_checkpoint!r}."
            )
        self.settings()  # validates alpha, calibration, fractions, pca_dim, ...

    def settings(self) -> DetectorSettings:
        return DetectorSettings(
            alpha=self.alpha,
            calibration=self.calibration,
            fit_fraction=self.fit_fraction,
            calibration_fraction=self.calibration_fraction,
            test_fraction=self.test_fraction,
            pca_dim=_auto_int(self.pca_dim, "pca_dim", none_ok=True),
            n_components=_auto_int(self.n_components, "n_components"),
            covariance_type=self.covariance_type,
            normalize=self.normalize,
            seed=self.seed,
        )


def _auto_int(v: Any, name: str, *, none_ok: bool = False) -> Any:
    """``"auto"``, ``None`` (for ``"none"``/``"0"`` when allowed) or a positive int, from a CLI string."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s == "auto":
        return "auto"
    if none_ok and s in ("none", "0"):
        return None
    try:
        k = int(s)
    except ValueError:
        raise ValueError(
            f"`{name}` must be 'auto'{', ' + repr('none') if none_ok else ''} or a positive integer; "
            f"got {v!r}."
        ) from None
    if k < 1:
        raise ValueError(
            f"`{name}` must be 'auto'{', ' + repr('none') if none_ok else ''} or a positive integer; got {v!r}."
        )
    return k


@dataclass(frozen=True)
class MeasureResult:
    """What a measurement returns (``summary`` is ``measure.json``'s body)."""

    out_dir: Path
    summary: dict[str, Any]
    measurement: Measurement
    reference: Samples
    generated: Samples
    selection: Selection | None = None
    discovery: Any = None
    baselines: list[dict[str, Any]] | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def input_paths(config: MeasureConfig) -> list[tuple[str, Any]]:
    """``(option, path)`` of every input; the output folder must not hold or be one of them."""
    return [
        ("reference", config.reference),
        ("generated", config.generated),
        ("reference_labels", config.reference_labels),
        ("generated_prompts", config.generated_prompts),
        ("calibration_samples", config.calibration_samples),
    ]


def load_embedder_for(config: MeasureConfig) -> tuple[Any, Path | None]:
    """The embedder (or the string 'precomputed') and the embedding cache folder."""
    if config.embedder == PRECOMPUTED:
        return PRECOMPUTED, None
    from deltahall.models import cache_dir, load_embedder

    emb = load_embedder(config.embedder, device=config.device, batch_size=config.batch_size)
    return emb, Path(
        config.cache_dir
    ) if config.cache_dir is not None else cache_dir() / "embeddings"


#: What a measurement folder holds besides ``manifest.json`` (a folder with any of them holds a
#: measurement, with or without a manifest).
OUTPUTS = (
    "measure.json",
    "samples.csv",
    "samples.parquet",
    "report.html",
    "figures",
)


def _plan(config: MeasureConfig, ref: Samples, gen: Samples, cal: Samples | None) -> Any:
    """Every size and state rule, checked before anything is embedded."""
    from deltahall.measure.calibration import plan_global, plan_scoped

    s = config.settings()
    if ref.prompts is not None:
        if config.states == "auto":
            raise ValueError(
                "`states`='auto' needs global states; the reference rows carry a 'prompt' (per-prompt states)."
            )
        if ref.labels is None:
            raise ValueError("per-prompt reference rows need a 'state'.")
        if config.select is not None or config.baselines:
            raise ValueError(
                "`select` and `baselines` apply to global states; the reference has per-prompt states."
            )
        return plan_scoped(
            [str(v) for v in ref.labels.tolist()],
            list(ref.prompts),
            list(gen.prompts or []),
            calibration_states=None if cal is None else [str(v) for v in cal.labels.tolist()],  # type: ignore[union-attr]
            calibration_prompts=None if cal is None else cal.prompts,
            alpha=s.alpha,
            calibration=s.calibration,
        )
    if cal is not None:
        raise ValueError(
            "`calibration_samples` applies to per-prompt states (reference rows with a 'prompt')."
        )
    if config.states == "auto":
        return None
    if ref.labels is None:
        raise ValueError("`reference_labels` is required unless `states`='auto'.")
    return plan_global(ref.labels, len(ref.ids), s)


def preflight(config: MeasureConfig) -> None:
    """The checks before the output folder is looked at or any input read: the parquet extra,
    inputs that need an embedder, the embedder's device.

    Raises
    ------
    ValueError
        An image folder or JSONL input with ``embedder='precomputed'``, or a bad device.
    deltahall._validation.MissingExtraError
        ``samples_format='parquet'`` without pyarrow.
    """
    if config.reference is None or config.generated is None:  # refused by MeasureConfig already
        raise ValueError("`reference` and `generated` are required.")
    if config.samples_format == "parquet":
        _pyarrow()  # a missing extra is refused before anything is read or written
    if config.embedder == PRECOMPUTED:
        for name, path in (("reference", config.reference), ("generated", config.generated)):
            path = Path(path)
            if path.is_dir() or path.suffix.lower() in (".jsonl", ".ndjson"):
                raise ValueError(
                    f"`{name}` {os.fspath(path)!r} needs an embedder; pass `--embedder` (e.g. @minilm, "
                    "@digits-cnn or a model folder) or give .npy embeddings."
                )
    else:  # the device is checked before any input is read (torch is needed only with an embedder)
        from deltahall.models.base import check_device

        check_device(config.device)


@dataclass(frozen=True)
class MeasureInputs:
    """The inputs of a measurement, read and checked (:func:`read_inputs`), not yet embedded."""

    reference: Samples
    generated: Samples
    calibration: Samples | None
    plan: Any


def read_inputs(config: MeasureConfig) -> MeasureInputs:
    """Read every input and check every rule (files, keys, states, sizes for α, prompts without
    states) before anything is embedded or written.

    Raises
    ------
    ValueError
        Bad inputs.
    FileNotFoundError
        A missing input.
    """
    if config.reference is None or config.generated is None:  # refused by MeasureConfig already
        raise ValueError("`reference` and `generated` are required.")
    ref_path, gen_path = Path(config.reference), Path(config.generated)
    auto = config.states == "auto"
    ref = read_reference(ref_path, labels=config.reference_labels, require_labels=not auto)
    gen = read_generated(gen_path, prompts=config.generated_prompts)
    cal = (
        read_calibration_samples(config.calibration_samples)
        if config.calibration_samples is not None
        else None
    )
    return MeasureInputs(
        reference=ref, generated=gen, calibration=cal, plan=_plan(config, ref, gen, cal)
    )


def compute_measurement(
    config: MeasureConfig,
    inputs: MeasureInputs,
    *,
    embedder: tuple[Any, Path | None],
    out_dir: Path,
) -> MeasureResult:
    """Embed, measure and select; writes nothing, so a measurement refused here (embeddings of
    different dimensions, a state too small for α) leaves the output folder as it was.

    ``embedder`` is :func:`load_embedder_for`'s ``(embedder, cache folder)``; ``out_dir`` is
    recorded in the result. :func:`write_measurement` writes it.
    """
    t0 = time.perf_counter()
    ref, gen, cal, plan = inputs.reference, inputs.generated, inputs.calibration, inputs.plan
    auto = config.states == "auto"
    emb, cache = embedder
    for smp in (ref, gen) + ((cal,) if cal is not None else ()):
        embed_samples(smp, emb, cache)
    t_embed = time.perf_counter() - t0
    if gen.embeddings.shape[1] != ref.embeddings.shape[1]:
        raise ValueError(
            f"`generated` embeddings must have the reference's dimension {ref.embeddings.shape[1]}; got "
            f"{gen.embeddings.shape[1]} (were both embedded with the same embedder?)."
        )
    discovery = None
    labels = ref.labels
    t1 = time.perf_counter()
    if ref.prompts is not None:
        from deltahall.measure.calibration import measure_references

        m = measure_references(
            ref.embeddings,
            [str(v) for v in labels.tolist()],  # type: ignore[union-attr]
            list(ref.prompts),
            gen.embeddings,
            list(gen.prompts or []),
            settings=config.settings(),
            calibration_E=None if cal is None else cal.embeddings,
            plan=plan,
        )
    else:
        if auto:
            from deltahall.detectors.states import discover_states

            discovery = discover_states(
                np.asarray(ref.embeddings, dtype=np.float64),
                config.max_states,
                normalize=config.normalize,
                random_state=config.seed,
            )
            labels = np.asarray([f"state-{k}" for k in discovery.labels])
            logger.warning(
                "--states auto: %d states discovered by BIC (sizes %s); they are an estimate of the paper's "
                "latent variable, and the rate is relative to them.",
                discovery.n_states,
                discovery.sizes,
            )
        if labels is None:  # refused by _plan; kept for type narrowing
            raise ValueError("`reference_labels` is required unless `states`='auto'.")
        m = measure_embeddings(
            ref.embeddings, labels, gen.embeddings, prompts=gen.prompts, settings=config.settings()
        )
    t_measure = time.perf_counter() - t1
    selection = None
    if config.select is not None:
        selection = select_candidates(
            m.gen_p,
            m.prompts,
            m.gen_nearest,
            m.gen_flagged,
            states=m.states,
            reference_sizes=m.state_sizes["total"],
            mode=config.select,
            k=config.select_k,
            alpha=config.alpha,
            typicality=m.gen_typicality,
        )
    baselines = None
    if config.baselines:
        from deltahall.measure.compare import baselines_on_measurement

        baselines = baselines_on_measurement(m, ref.embeddings, gen.embeddings, labels)
    summary = _summary(config, m, ref, gen, selection, discovery, baselines)
    return MeasureResult(
        out_dir=out_dir,
        summary=summary,
        measurement=m,
        reference=ref,
        generated=gen,
        selection=selection,
        discovery=discovery,
        baselines=baselines,
        seconds={"load_and_embed": t_embed, "measure": t_measure},
    )


def write_measurement(config: MeasureConfig, result: MeasureResult, rd: RunDir) -> dict[str, Any]:
    """Write ``samples.csv`` (or ``.parquet``) and the report (or remove an earlier one) into
    ``rd``; returns ``measure.json``'s body (:attr:`MeasureResult.summary` with its timings),
    which the caller (the shared runner) writes atomically last."""
    t2 = time.perf_counter()
    out = rd.root
    m, gen, selection = result.measurement, result.generated, result.selection
    if not config.report:  # a redo without the report must not leave the old one beside new numbers
        import shutil

        for stale in ("report.html", "figures"):
            target = out / stale
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    if config.samples_format == "parquet":
        write_samples_parquet(rd.path("samples.parquet"), m, gen, selection)
    else:
        write_samples_csv(rd.path("samples.csv"), m, gen, selection)
    seconds = result.seconds
    seconds["write_samples"] = time.perf_counter() - t2
    if config.report:
        from deltahall.measure.report import write_report

        t3 = time.perf_counter()
        write_report(result, rd)
        seconds["report"] = time.perf_counter() - t3
    seconds["total"] = sum(seconds.values())
    result.summary["seconds"] = seconds
    return result.summary


def _summary(
    config: MeasureConfig,
    m: Measurement,
    ref: Samples,
    gen: Samples,
    selection: Selection | None,
    discovery: Any,
    baselines: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    s = m.summary()
    s["embedder"] = config.embedder
    s["reference"] = str(config.reference)
    s["generated"] = str(config.generated)
    s["curve"] = m.curve
    s["states_source"] = config.states
    if discovery is not None:
        s["discovered_states"] = {
            "n_states": discovery.n_states,
            "sizes": discovery.sizes,
            "bic": {str(k): v for k, v in discovery.bic.items()},
            "one_state_preferred": discovery.one_state_preferred,
            "representatives": [
                [_describe(ref, i) for i in reps] for reps in discovery.representatives
            ],
            "note": "states estimated by a BIC-chosen Gaussian mixture: an estimate of the paper's latent "
            "variable; the rate is relative to these states.",
        }
    if selection is not None:
        s["selection"] = selection.summary()
    if baselines is not None:
        s["baselines"] = baselines
    return s


def _describe(samples: Samples, i: int) -> str:
    if samples.texts is not None:
        t = samples.texts[i]
        return t if len(t) <= 120 else t[:117] + "..."
    return samples.ids[i]


#: Rows formatted and encoded at a time by :func:`write_samples_csv` (bounds its memory).
_CSV_CHUNK = 1 << 16
#: Characters that make a CSV field need quotes: ``csv.QUOTE_MINIMAL``'s, plus ``\r`` (which
#: ``csv.writer`` with ``"\n"`` rows leaves bare, and ``csv.reader`` then splits the row at).
_CSV_SPECIAL = (",", '"', "\r", "\n")
_BOOL_TEXT = np.array(["False", "True"], dtype=object)


def samples_columns(m: Measurement, gen: Samples, selection: Selection | None) -> dict[str, Any]:
    """The per-sample table, column by column: name -> list of str, float64, bool or int codes.

    ``nearest_state`` is given as ``(codes, names)``: the state index of each row and the state
    names, so a writer formats each name once.
    """
    cols: dict[str, Any] = {
        "id": gen.ids,
        "prompt": m.prompts,
        "p_value": np.asarray(m.gen_p, dtype=np.float64),
        "nearest_state": (np.asarray(m.gen_nearest), list(m.states)),
        "flagged": np.asarray(m.gen_flagged, dtype=bool),
    }
    if selection is not None:
        cols["kept"] = np.asarray(selection.kept, dtype=bool)
    cols["typicality"] = np.asarray(m.gen_typicality, dtype=np.float64)
    if (
        m.scope == "per-prompt"
    ):  # per-prompt states: the score of the nearest of the sample's own prompt's states
        cols["similarity_nearest"] = np.asarray(
            m.gen_scores[np.arange(m.gen_scores.shape[0]), m.gen_nearest], dtype=np.float64
        )
    else:
        for j, st in enumerate(m.states):
            cols[f"log_density_{st}"] = np.asarray(m.gen_scores[:, j], dtype=np.float64)
    if gen.texts is not None:
        cols["text"] = gen.texts
    return cols


def _csv_field(s: str) -> str:
    return '"' + s.replace('"', '""') + '"' if any(c in s for c in _CSV_SPECIAL) else s


def _csv_strings(values: list[str]) -> list[str]:
    """Strings as ``csv.writer`` writes them (quoted only where needed), scanning the column once."""
    joined = "\x00".join(values)
    if not any(c in joined for c in _CSV_SPECIAL):
        return values
    return [_csv_field(v) for v in values]


def format_floats(x: npt.NDArray[np.float64], *, few_distinct: bool = False) -> list[str]:
    """``repr`` of every float (the shortest string that reads back to the same float).

    With ``few_distinct`` (e.g. conformal p-values, at most ``m + 1`` values), each distinct
    value is formatted once and the strings are gathered by index (values told apart by their
    bits, so ``-0.0`` stays ``-0.0``).
    """
    a = np.ascontiguousarray(x, dtype=np.float64).ravel()
    if few_distinct and a.size > 64:
        u, inv = np.unique(a.view(np.int64), return_inverse=True)
        if u.size * 4 < a.size:
            out = np.asarray(list(map(float.__repr__, u.view(np.float64).tolist())), dtype=object)
            return list(out[inv.ravel()].tolist())
    return list(map(float.__repr__, a.tolist()))


def _csv_column(name: str, col: Any, lo: int, hi: int) -> list[str]:
    if isinstance(col, tuple):  # (codes, names): a categorical column
        codes, names = col
        return list(
            np.asarray(_csv_strings(list(names)) or [""], dtype=object)[codes[lo:hi]].tolist()
        )
    if isinstance(col, np.ndarray) and col.dtype == bool:
        # Gathered from Python strings: np.where(col, "True", "False") made numpy strings,
        # 20x slower to build at 1,000,000 rows (0.32 s) and slower to join.
        return list(_BOOL_TEXT[col[lo:hi].view(np.uint8)].tolist())
    if isinstance(col, np.ndarray):
        return format_floats(col[lo:hi], few_distinct=name == "p_value")
    return _csv_strings([str(v) for v in col[lo:hi]])


def write_samples_csv(
    path: Path, m: Measurement, gen: Samples, selection: Selection | None
) -> None:
    """One row per generated sample (written atomically), formatted column by column.

    Each column of a block of :data:`_CSV_CHUNK` rows is formatted once (floats with ``repr``,
    so they read back exactly; strings quoted as ``csv.writer`` quotes them), the rows are
    joined, and the block is encoded; the file is what ``csv.writer(lineterminator="\\n")`` writes,
    except that a field holding ``\\r`` is quoted too (so ``csv.reader`` reads it back whole).
    """
    from deltahall.io import atomic_write_bytes

    cols = samples_columns(m, gen, selection)
    n = len(gen.ids)

    def blocks() -> Iterator[bytes]:
        # Written block by block: the whole file in memory (114 MB at 1,000,000 rows) made
        # the writer the command's peak of memory.
        yield (",".join(_csv_strings(list(cols))) + "\n").encode("utf-8")
        for lo in range(0, n, _CSV_CHUNK):
            hi = min(n, lo + _CSV_CHUNK)
            block = [_csv_column(k, v, lo, hi) for k, v in cols.items()]
            yield ("\n".join(map(",".join, zip(*block, strict=True))) + "\n").encode("utf-8")

    atomic_write_bytes(path, blocks())


def _pyarrow() -> Any:
    """``pyarrow`` (and ``pyarrow.parquet``), or a one-line error naming the extra."""
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ImportError(
            "`samples_format`='parquet' needs pyarrow: pip install 'deltahall[parquet]'."
        ) from None
    return pa


def write_samples_parquet(
    path: Path, m: Measurement, gen: Samples, selection: Selection | None
) -> None:
    """The per-sample table of :func:`write_samples_csv` as Parquet (typed columns; written atomically).

    ``p_value`` and the score columns are float64, ``flagged``/``kept`` boolean, ``nearest_state``
    a dictionary-encoded string.
    """
    from deltahall.io import atomic_write_bytes

    pa = _pyarrow()
    arrays = {}
    for k, v in samples_columns(m, gen, selection).items():
        if isinstance(v, tuple):
            codes, names = v
            arrays[k] = pa.DictionaryArray.from_arrays(
                pa.array(np.asarray(codes, dtype=np.int32)), pa.array(list(names), pa.string())
            )
        elif isinstance(v, np.ndarray):
            arrays[k] = pa.array(v)
        else:
            arrays[k] = pa.array(list(v), pa.string())
    sink = pa.BufferOutputStream()
    # Dictionary pages only where values repeat (prompts, state names): tried on every
    # column, Arrow builds and then drops a dictionary of 1,000,000 distinct floats (0.65 s
    # against 0.23 s for the whole table at 1,000,000 rows).
    repeats = [k for k in ("prompt", "nearest_state") if k in arrays]
    pa.parquet.write_table(pa.table(arrays), sink, use_dictionary=repeats)
    atomic_write_bytes(path, memoryview(sink.getvalue()))
