"""Table 1 and Figure 4 of Section 7.2 from per-(model, seed, epoch) score rows.

A *score row* is one evaluated model state: ``model``, ``seed``, ``epoch``
(``0`` = the original model), ``train_loss`` (mean loss of that epoch, empty for
the original) and the columns of :func:`deltahall.experiments.qa.scoring.score_record`.
``scores.csv`` holds them all; the tables below are views of it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deltahall.io.rundir import RunDir, read_csv, read_run_json

logger = logging.getLogger(__name__)

SCORE_COLUMNS = (
    "model",
    "seed",
    "epoch",
    "train_loss",
    "n",
    "resemblance_incorrect",
    "resemblance_correct",
    "gap",
    "resemblance_incorrect_with_prompt",
    "resemblance_correct_with_prompt",
    "gap_with_prompt",
    "answers_file",
)
_NUMERIC = {"seed": int, "epoch": int, "n": int}

#: (metric column, title) of every table written to ``table1.md``.
TABLES = (
    (
        "resemblance_incorrect",
        "Resemblance to TruthfulQA's incorrect answers — answer only (our default)",
    ),
    (
        "resemblance_incorrect_with_prompt",
        "Resemblance to incorrect answers — prompt included (the authors' scoring)",
    ),
    ("resemblance_correct", "Resemblance to TruthfulQA's correct answers — answer only"),
    ("gap", "Incorrect minus correct resemblance — answer only"),
    ("gap_with_prompt", "Incorrect minus correct resemblance — prompt included"),
)


def epoch_label(epoch: int) -> str:
    """``"Original"`` for epoch 0, else the epoch number."""
    return "Original" if int(epoch) == 0 else str(int(epoch))


def _f(v: Any) -> float:
    if v is None or v == "":
        return float("nan")
    return float(v)


def table1(
    rows: Sequence[Mapping[str, Any]], metric: str = "resemblance_incorrect"
) -> tuple[list[str], list[dict[str, Any]]]:
    """Table 1's layout: one row per epoch (``Original`` first), one column per model × seed."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    seeds = sorted({int(r["seed"]) for r in rows})
    epochs = sorted({int(r["epoch"]) for r in rows})
    columns = ["epochs"] + [f"{m} seed {s}" for m in models for s in seeds]
    index = {(r["model"], int(r["seed"]), int(r["epoch"])): _f(r[metric]) for r in rows}
    out = []
    for e in epochs:
        row: dict[str, Any] = {"epochs": epoch_label(e)}
        for m in models:
            for s in seeds:
                row[f"{m} seed {s}"] = index.get((m, s, e), float("nan"))
        out.append(row)
    return columns, out


def summary_over_seeds(rows: Sequence[Mapping[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Mean, min, max and standard deviation over seeds per model × epoch (Figure 4's points)."""
    groups: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        v = _f(r[metric])
        if not math.isnan(v):
            groups.setdefault((r["model"], int(r["epoch"])), []).append(v)
    out = []
    for (m, e), vs in groups.items():
        mean = sum(vs) / len(vs)
        sd = math.sqrt(sum((v - mean) ** 2 for v in vs) / (len(vs) - 1)) if len(vs) > 1 else 0.0
        out.append(
            {
                "model": m,
                "epoch": e,
                "mean": mean,
                "min": min(vs),
                "max": max(vs),
                "sd": sd,
                "n_seeds": len(vs),
            }
        )
    return sorted(out, key=lambda d: (d["model"], d["epoch"]))


def markdown_table(
    columns: Sequence[str], rows: Sequence[Mapping[str, Any]], fmt: str = "{:.4f}"
) -> str:
    """A GitHub Markdown table; NaN cells show as ``–`` (as the paper's missing seeds)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else fmt.format(v)
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def tables_markdown(rows: Sequence[Mapping[str, Any]], *, plumbing: bool = False) -> str:
    """Every table of :data:`TABLES` plus the training loss, as one Markdown document."""
    parts = ["# Section 7.2 — Table 1 layout\n"]
    if plumbing:
        parts.append(
            "> Tiny offline model: these numbers check the plumbing; they are **not** findings.\n"
        )
    for metric, title in TABLES:
        cols, trs = table1(rows, metric)
        parts.append(f"## {title}\n\n" + markdown_table(cols, trs))
    cols, trs = table1([r for r in rows if int(r["epoch"]) > 0], "train_loss")
    if trs:
        parts.append("## Mean fine-tuning loss of the epoch\n\n" + markdown_table(cols, trs))
    return "\n".join(parts)


def write_results(
    run_dir: str | os.PathLike[str] | RunDir,
    rows: Sequence[Mapping[str, Any]],
    *,
    headline: str = "resemblance_incorrect",
    plumbing: bool = False,
) -> dict[str, Path]:
    """Write ``scores.csv``, ``table1.csv`` (``headline`` metric), ``table1_<metric>.csv`` per table,
    ``table1.md``, ``figure4_summary.csv`` and the figures; returns the paths by name.

    Every table and figure is computed before the first file is written (each atomically),
    through ``run_dir`` when it is a :class:`~deltahall.io.rundir.RunDir` (as ``qa table``
    gives it), else a new one.
    """
    from deltahall.plotting import pyplot
    from deltahall.plotting.qa import figure4, loss_figure

    root = run_dir.root if isinstance(run_dir, RunDir) else Path(run_dir)
    extra_cols = [k for r in rows for k in r if k not in SCORE_COLUMNS]
    csvs: dict[str, tuple[str, Any, Any]] = {
        "scores": ("scores.csv", rows, [*SCORE_COLUMNS, *dict.fromkeys(extra_cols)])
    }
    cols, trs = table1(rows, headline)
    csvs["table1"] = ("table1.csv", trs, cols)
    for metric, _ in TABLES:
        cols, trs = table1(rows, metric)
        csvs[f"table1_{metric}"] = (f"table1_{metric}.csv", trs, cols)
    md = tables_markdown(rows, plumbing=plumbing)
    summary = []
    for metric in ("resemblance_incorrect", "resemblance_incorrect_with_prompt"):
        summary += [{"metric": metric, **s} for s in summary_over_seeds(rows, metric)]
    plt = pyplot()
    figures = [("figure4", "figure4", figure4(summary, plumbing=plumbing))]
    loss_rows = read_loss_rows(root)
    if loss_rows:
        figures.append(("loss_figure", "loss", loss_figure(loss_rows, plumbing=plumbing)))
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(root)
    paths = {key: rd.write_csv(name, trs, cols) for key, (name, trs, cols) in csvs.items()}
    paths["table1_md"] = rd.write_text("table1.md", md)
    paths["summary"] = rd.write_csv("figure4_summary.csv", summary)
    for key, name, fig in figures:
        paths[key] = rd.save_figure(fig, name)[0]
        plt.close(fig)
    return paths


def model_slug(model_id: str) -> str:
    """A folder name for a model id (``Qwen/Qwen2.5-7B-Instruct`` -> ``Qwen__Qwen2.5-7B-Instruct``)."""
    slug = model_id.replace("\\", "/").strip("@/").replace("/", "__")
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in slug) or "model"


def rescore_run(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Recompute every score row of a run from its saved answer files alone (no model needed).

    Reads ``answers/<model>/seed-<s>/epoch-<e>.jsonl`` and the fine-tuning losses.

    Raises
    ------
    FileNotFoundError
        If the run directory holds no answer files.
    """
    from deltahall.experiments.qa.generate import load_answers
    from deltahall.experiments.qa.scoring import score_record

    root = Path(run_dir)
    files = sorted(root.glob("answers/*/seed-*/epoch-*.jsonl"))
    if not files:
        raise FileNotFoundError(f"`run_dir` holds no answers/*/seed-*/epoch-*.jsonl files: {root}")
    losses = {(r["model"], r["seed"], r["epoch"]): r["loss"] for r in read_loss_rows(root)}
    out = []
    for f in files:
        answers = load_answers(f)
        first = answers[0]
        model, seed, epoch = first["model"], int(first["seed"]), int(first["epoch"])
        loss = (
            losses.get((model_slug(model), seed, epoch), float("nan"))
            if epoch > 0
            else float("nan")
        )
        out.append(
            {
                "model": model,
                "seed": seed,
                "epoch": epoch,
                "train_loss": loss,
                **score_record(answers),
                "answers_file": f.relative_to(root).as_posix(),
            }
        )
    models = list(dict.fromkeys(r["model"] for r in out))
    return sorted(out, key=lambda r: (models.index(r["model"]), r["seed"], r["epoch"]))


def read_loss_rows(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Per-epoch losses of every fine-tuning under ``run_dir/train/<model>/seed-<s>/``."""
    out: list[dict[str, Any]] = []
    for f in sorted(Path(run_dir).glob("train/*/seed-*/loss_epochs.csv")):
        model = f.parent.parent.name
        seed = int(f.parent.name.split("-", 1)[1])
        out += [
            {"model": model, "seed": seed, "epoch": int(r["epoch"]), "loss": float(r["loss"])}
            for r in read_csv(f)
        ]
    return out


def read_manifest(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``manifest.json`` of a QA run; ``{}`` when there is none (a folder of scores only)."""
    out: dict[str, Any] = read_run_json(run_dir, "manifest.json", missing_ok=True)
    return out


def read_result(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``result.json`` of a QA run; ``{}`` before the run finished."""
    out: dict[str, Any] = read_run_json(run_dir, "result.json", missing_ok=True)
    return out


def read_scores(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read ``scores.csv`` back with numbers as numbers.

    Raises
    ------
    FileNotFoundError
        If the run directory has no ``scores.csv``.
    """
    p = Path(run_dir) / "scores.csv"
    if not p.is_file():
        raise FileNotFoundError(f"`run_dir` has no scores.csv (is it a finished QA run?): {p}")
    rows: list[dict[str, Any]] = []
    for r in read_csv(p):
        d: dict[str, Any] = {}
        for k, v in r.items():
            if k in _NUMERIC:
                d[k] = _NUMERIC[k](v)
            elif k in ("model", "answers_file"):
                d[k] = v
            else:
                d[k] = _f(v)
        rows.append(d)
    return rows
