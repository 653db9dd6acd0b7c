"""The QA section of the HTML report (``deltahall report``), from the tiny run or any finished run."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from deltahall.io import Section

logger = logging.getLogger(__name__)

#: Environment variable naming a TruthfulQA CSV for the offline report (else the stand-in is used).
TRUTHFULQA_ENV = "DELTAHALL_TRUTHFULQA"

PLUMBING_NOTE = (
    "These numbers come from a tiny random Qwen2 model (2 layers, hidden size 64, a BPE tokenizer "
    "trained on the spot) fine-tuned for a few steps. They check that the pipeline runs end to end "
    "— fine-tuning, per-epoch adapters, seeded batched generation, scoring, tables, figures — and are "
    "NOT findings about language models. The paper-scale command is in docs/qa.md."
)


def _truthfulqa_source() -> str:
    path = os.environ.get(TRUTHFULQA_ENV)
    if path:
        if not Path(path).is_file():
            raise FileNotFoundError(f"${TRUTHFULQA_ENV} names a missing file: {path}")
        return path
    return "@standin"


def section_from_run(run_dir: str | os.PathLike[str]) -> Section:
    """A report section built from a finished QA run directory (tiny or paper scale).

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` has no ``scores.csv``.
    """
    from deltahall.experiments.qa.results import read_manifest, read_result, read_scores, table1

    root = Path(run_dir)
    rows = read_scores(root)
    result, manifest = read_result(root), read_manifest(root)
    plumbing = bool(result.get("plumbing", manifest.get("plumbing", False)))
    cfg = manifest.get("config", {})
    sec = Section(
        "Open-ended QA (Section 7.2, Table 1, Figure 4)" + (" — plumbing run" if plumbing else "")
    )
    if plumbing:
        sec.note(PLUMBING_NOTE)
    sec.text(
        f"Models: {', '.join(dict.fromkeys(r['model'] for r in rows))}; seeds "
        f"{sorted({r['seed'] for r in rows})}; TruthfulQA source: {cfg.get('truthfulqa', '?')} "
        f"({result.get('n_questions', '?')} questions); {result.get('n_train_pairs', '?')} training pairs; "
        f"prompt format {cfg.get('prompt_format', '?')}. Resemblance = difflib ratio of the lower-cased "
        "answer with each lower-cased TruthfulQA incorrect answer, max over those answers, mean over "
        "questions. Both scorings below use the same generations."
    )
    for metric, caption in (
        (
            "resemblance_incorrect",
            "Resemblance to incorrect answers, answer only (default scoring).",
        ),
        (
            "resemblance_incorrect_with_prompt",
            "Same generations, whole decoded output incl. the prompt (authors' scoring).",
        ),
        ("gap", "Incorrect minus correct resemblance, answer only."),
        ("train_loss", "Mean fine-tuning loss of the epoch (answer tokens)."),
    ):
        src = [r for r in rows if metric != "train_loss" or r["epoch"] > 0]
        cols, trs = table1(src, metric)
        sec.table(trs, cols, caption=caption, float_format="{:.4f}")
    for name, caption in (
        (
            "figure4.png",
            "Figure 4 layout: mean over seeds against epochs; band = min-max over seeds.",
        ),
        ("loss.png", "Fine-tuning loss per epoch."),
    ):
        p = root / "figures" / name
        if p.is_file():
            sec.figure(p, caption + (" Tiny model: plumbing only." if plumbing else ""))
    return sec


def main_job_section(run_dir: Path, seed: int) -> Section:
    """Run the tiny offline QA pipeline into ``run_dir`` and return its report section.

    Uses ``$DELTAHALL_TRUTHFULQA`` (a TruthfulQA CSV) when set, else deltahall's
    stand-in questions. Also reports the model-free measurement of how much
    restating the question inflates the authors' score, on the same questions.
    """
    from deltahall.experiments.qa.config import QAConfig
    from deltahall.experiments.qa.pipeline import run
    from deltahall.experiments.qa.scoring import reference_baselines
    from deltahall.experiments.qa.truthfulqa import load_truthfulqa

    source = _truthfulqa_source()
    # The step's folder is the main job's scratch space, rebuilt on every report run (seconds):
    # a rerun must not reuse a previous run's checkpoints with a changed dataset or TruthfulQA source.
    shutil.rmtree(Path(run_dir), ignore_errors=True)
    cfg = QAConfig.tiny(out_dir=Path(run_dir), seeds=(int(seed),), truthfulqa=source)
    res = run(cfg)
    sec = section_from_run(res.run_dir)
    items = load_truthfulqa(source)
    base = reference_baselines(items)
    where = (
        (
            "deltahall's 16-question stand-in for TruthfulQA (set $DELTAHALL_TRUTHFULQA to a TruthfulQA.csv "
            "for the real questions)"
        )
        if source == "@standin"
        else f"all {len(items)} questions of {source}"
    )
    sec.text(
        "Model-free check of the authors' scoring, on "
        + where
        + ": reference texts scored against the "
        "incorrect and correct answers. 'question + best answer' is what a perfectly truthful model would "
        "score when the question text is part of the scored output, as in the authors' script."
    )
    sec.table(
        base,
        ["text", "n", "resemblance_incorrect", "resemblance_correct", "gap"],
        float_format="{:.4f}",
    )
    sec.text(f"Pipeline wall time: {res.seconds:.1f} s.")
    return sec
