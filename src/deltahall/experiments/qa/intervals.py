"""Table 1 and Figure 4 with 95 % intervals and paired tests, from the answer files of ``qa run``.

The paper reports one number per model, seed and epoch, without an interval. Here every
number is a mean over TruthfulQA questions with a percentile-bootstrap interval (questions
resampled), and every fine-tuned epoch is compared with the original model on the same
questions by a paired sign-flip permutation test (:mod:`deltahall.stats`). Both scorings of
the same generations are reported: **answer-only** (``answer``, our headline) and the
**authors'** (``full_text``: the whole decoded output, prompt included).

Seeds are pooled per question: a question's score at an epoch is the mean over the seeds
that reached that epoch, so the pooled interval resamples questions, not (question, seed)
pairs. Several run directories (e.g. one per seed, run side by side) can be pooled; a
(model, seed, epoch) present twice, or runs that asked other questions, are refused.

:func:`run` writes the tables into a new folder as a run of the shared runner
(:data:`EXPERIMENT`, ``qa-intervals``): a manifest naming the input folders, refusal of a folder
that holds a run or lies inside an input, ``result.json`` last (see ``docs/runs.md``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from deltahall._validation import BadInput, check_int
from deltahall.experiments._run import (
    RESUME_FREE,
    Experiment,
    OpenRun,
    Outcome,
    Pending,
    RunOptions,
    execute,
)
from deltahall.stats import bootstrap_mean_ci, paired_permutation_test

__all__ = [
    "EXPERIMENT",
    "SCORINGS",
    "IntervalsConfig",
    "interval_tables",
    "load_item_scores",
    "markdown",
    "run",
]

#: (name, the answer-row field scored).
SCORINGS = (("answer-only", "answer"), ("authors' (prompt included)", "full_text"))
METRICS = ("incorrect", "gap")
_FILE = re.compile(r"answers/(?P<model>[^/]+)/seed-(?P<seed>\d+)/epoch-(?P<epoch>\d+)\.jsonl$")

Key = tuple[str, int, int]  # (model, seed, epoch)


def load_item_scores(
    run_dirs: Sequence[str | os.PathLike[str]],
) -> tuple[dict[Key, dict[str, Any]], list[str]]:
    """Per-question scores of every answer file under ``run_dirs``.

    Returns
    -------
    scores : dict
        ``(model, seed, epoch) -> {scoring: {"incorrect": array (n,), "correct": ..., "gap": ...}}``.
    questions : list of str
        The questions, in file order (the same in every file).

    Raises
    ------
    FileNotFoundError
        A run directory without answer files.
    ValueError
        The same (model, seed, epoch) in two runs, or files that asked other questions.
    """
    from deltahall.experiments.qa.generate import load_answers
    from deltahall.experiments.qa.scoring import item_scores

    out: dict[Key, dict[str, Any]] = {}
    questions: list[str] | None = None
    for d in run_dirs:
        root = Path(d)
        files = sorted(root.glob("answers/*/seed-*/epoch-*.jsonl"))
        if not files:
            raise FileNotFoundError(
                f"`run_dirs`: {root} holds no answers/*/seed-*/epoch-*.jsonl files."
            )
        for f in files:
            m = _FILE.search(f.relative_to(root).as_posix())
            if m is None:  # pragma: no cover - the glob matches the pattern
                continue
            key = (m["model"], int(m["seed"]), int(m["epoch"]))
            if key in out:
                raise ValueError(
                    f"`run_dirs`: model {key[0]} seed {key[1]} epoch {key[2]} appears twice ({f})."
                )
            rows = load_answers(f)
            qs = [r["question"] for r in rows]
            if questions is None:
                questions = qs
            elif qs != questions:
                raise ValueError(
                    f"`run_dirs`: {f} asked other questions than the first answer file; "
                    "only runs on one TruthfulQA subset pool."
                )
            entry: dict[str, Any] = {"_rows": rows}
            for name, answer_field in SCORINGS:
                s = item_scores(rows, answer_field)
                inc = np.array([x["incorrect"] for x in s], dtype=np.float64)
                cor = np.array([x["correct"] for x in s], dtype=np.float64)
                entry[name] = {"incorrect": inc, "correct": cor, "gap": inc - cor}
            out[key] = entry
    return out, list(questions or [])


def _pooled(
    scores: Mapping[Key, Any],
    model: str,
    epoch: int,
    seeds: Sequence[int],
    scoring: str,
    metric: str,
) -> npt.NDArray[np.float64]:
    return np.mean([scores[(model, s, epoch)][scoring][metric] for s in seeds], axis=0)


def interval_tables(
    run_dirs: Sequence[str | os.PathLike[str]],
    *,
    n_boot: int = 2000,
    n_perm: int = 9999,
    rng: int = 0,
) -> dict[str, list[dict[str, Any]]]:
    """Table 1 (means with 95 % bootstrap intervals) and paired tests against the original model.

    Returns
    -------
    dict with
        ``"table1"``: rows ``model, scoring, epoch, seed`` (an int, or ``"pooled"``), ``n_seeds``,
        ``n`` questions, and for ``incorrect`` / ``gap`` the mean and ``_low`` / ``_high``;
        ``"paired"``: rows ``model, scoring, epoch, seed``, and per metric the mean difference
        (epoch minus original) with its interval and two-sided p-value;
        ``"length_control"``: see :func:`length_control`.
    """
    scores, _ = load_item_scores(run_dirs)
    g = np.random.default_rng(rng)
    table: list[dict[str, Any]] = []
    paired: list[dict[str, Any]] = []
    for model in sorted({k[0] for k in scores}):
        seeds_all = sorted({k[1] for k in scores if k[0] == model})
        epochs = sorted({k[2] for k in scores if k[0] == model})
        for scoring, _ in SCORINGS:
            for epoch in epochs:
                have = [s for s in seeds_all if (model, s, epoch) in scores]
                groups: list[tuple[Any, list[int]]] = [(s, [s]) for s in have]
                if len(have) > 1:
                    groups.append(("pooled", have))
                for label, seeds in groups:
                    row: dict[str, Any] = {
                        "model": model,
                        "scoring": scoring,
                        "epoch": epoch,
                        "seed": label,
                        "n_seeds": len(seeds),
                    }
                    for metric in METRICS:
                        x = _pooled(scores, model, epoch, seeds, scoring, metric)
                        ci = bootstrap_mean_ci(x, rng=g, n_resamples=n_boot)
                        row.update(
                            {
                                "n": ci.n,
                                metric: ci.mean,
                                f"{metric}_low": ci.low,
                                f"{metric}_high": ci.high,
                            }
                        )
                    table.append(row)
                    both = [s for s in seeds if (model, s, 0) in scores]
                    if epoch == 0 or both != seeds:
                        continue
                    prow: dict[str, Any] = {
                        "model": model,
                        "scoring": scoring,
                        "epoch": epoch,
                        "seed": label,
                        "n_seeds": len(seeds),
                    }
                    for metric in METRICS:
                        t = paired_permutation_test(
                            _pooled(scores, model, epoch, seeds, scoring, metric),
                            _pooled(scores, model, 0, seeds, scoring, metric),
                            rng=g,
                            n_resamples=n_perm,
                            n_boot=n_boot,
                        )
                        prow.update(
                            {
                                "n": t.n,
                                f"{metric}_diff": t.mean_diff,
                                f"{metric}_diff_low": t.low,
                                f"{metric}_diff_high": t.high,
                                f"{metric}_p": t.p_value,
                            }
                        )
                    paired.append(prow)
    return {
        "table1": table,
        "paired": paired,
        "length_control": length_control(scores, rng=g, n_boot=n_boot, n_perm=n_perm),
    }


def length_control(
    scores: Mapping[Key, Any], *, rng: Any, n_boot: int = 2000, n_perm: int = 9999
) -> list[dict[str, Any]]:
    """The original model's answer cut to the fine-tuned answer's length, on the same question.

    difflib's ratio rewards length agreement: TruthfulQA's references are short, so a model
    that learns to answer briefly scores higher against *every* reference. Cutting each original
    answer to the word count of the fine-tuned answer to the same question (same seed) removes
    that part; the rows compare the fine-tuned answers with these cuts (answer-only scoring):
    ``cut_incorrect`` (mean [CI]) and the paired differences fine-tuned minus cut for the
    resemblance to incorrect answers and for the gap.
    """
    from deltahall.experiments.qa.scoring import resemblance

    out: list[dict[str, Any]] = []
    for (model, seed, epoch), entry in sorted(scores.items()):
        if epoch == 0 or (model, seed, 0) not in scores:
            continue
        rows, orig = entry["_rows"], scores[(model, seed, 0)]["_rows"]
        cut = [
            " ".join(o["answer"].split()[: max(1, len(r["answer"].split()))])
            for o, r in zip(orig, rows, strict=True)
        ]
        cut_inc = np.array(
            [resemblance(c, r["incorrect_answers"]) for c, r in zip(cut, rows, strict=True)]
        )
        cut_cor = np.array(
            [resemblance(c, r["correct_answers"]) for c, r in zip(cut, rows, strict=True)]
        )
        ft = entry["answer-only"]
        ci = bootstrap_mean_ci(cut_inc, rng=rng, n_resamples=n_boot)
        t_inc = paired_permutation_test(
            ft["incorrect"], cut_inc, rng=rng, n_resamples=n_perm, n_boot=n_boot
        )
        t_gap = paired_permutation_test(
            ft["gap"], cut_inc - cut_cor, rng=rng, n_resamples=n_perm, n_boot=n_boot
        )
        out.append(
            {
                "model": model,
                "seed": seed,
                "epoch": epoch,
                "n": ci.n,
                "words_original": float(np.mean([len(o["answer"].split()) for o in orig])),
                "words_finetuned": float(np.mean([len(r["answer"].split()) for r in rows])),
                "cut_incorrect": ci.mean,
                "cut_incorrect_low": ci.low,
                "cut_incorrect_high": ci.high,
                "cut_gap": float(np.mean(cut_inc - cut_cor)),
                "incorrect_diff": t_inc.mean_diff,
                "incorrect_diff_low": t_inc.low,
                "incorrect_diff_high": t_inc.high,
                "incorrect_p": t_inc.p_value,
                "gap_diff": t_gap.mean_diff,
                "gap_diff_low": t_gap.low,
                "gap_diff_high": t_gap.high,
                "gap_p": t_gap.p_value,
            }
        )
    return out


def _ci(row: Mapping[str, Any], key: str, signed: bool = False) -> str:
    f = "{:+.4f}" if signed else "{:.4f}"
    return f"{f.format(row[key])} [{f.format(row[key + '_low'])}, {f.format(row[key + '_high'])}]"


def markdown(tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """The two tables as Markdown (means [95 % bootstrap CI]; differences with p-values)."""
    lines = [
        "Table 1: resemblance to TruthfulQA's incorrect answers, mean over questions [95 % bootstrap CI].",
        "",
        "| model | scoring | epoch | seed | n | → incorrect | gap (incorrect − correct) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in tables["table1"]:
        ep = "original" if int(r["epoch"]) == 0 else str(r["epoch"])
        lines.append(
            f"| {r['model']} | {r['scoring']} | {ep} | {r['seed']} | {r['n']} | {_ci(r, 'incorrect')} | "
            f"{_ci(r, 'gap', True)} |"
        )
    lines += [
        "",
        "Paired sign-flip permutation tests, epoch minus original on the same questions "
        "(mean difference [95 % bootstrap CI], two-sided p):",
        "",
        "| model | scoring | epoch | seed | n | Δ → incorrect | p | Δ gap | p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in tables["paired"]:
        lines.append(
            f"| {r['model']} | {r['scoring']} | {r['epoch']} | {r['seed']} | {r['n']} | "
            f"{_ci(r, 'incorrect_diff', True)} | {r['incorrect_p']:.3f} | {_ci(r, 'gap_diff', True)} | "
            f"{r['gap_p']:.3f} |"
        )
    if tables.get("length_control"):
        lines += [
            "",
            "Length control (answer-only): each original answer cut to the fine-tuned answer's word count "
            "on the same question; fine-tuned minus cut (mean difference [95 % CI], p):",
            "",
            "| model | seed | epoch | words original → fine-tuned | cut → incorrect | Δ → incorrect | p | "
            "Δ gap | p |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in tables["length_control"]:
            lines.append(
                f"| {r['model']} | {r['seed']} | {r['epoch']} | {r['words_original']:.1f} → "
                f"{r['words_finetuned']:.1f} | {_ci(r, 'cut_incorrect')} | {_ci(r, 'incorrect_diff', True)} | "
                f"{r['incorrect_p']:.3f} | {_ci(r, 'gap_diff', True)} | {r['gap_p']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def headline_rows(table: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Per (model, scoring, epoch): the pooled row where seeds pool, else the one seed's row."""
    best: dict[tuple[str, str, int], Mapping[str, Any]] = {}
    for r in table:
        key = (r["model"], r["scoring"], int(r["epoch"]))
        if key not in best or r["seed"] == "pooled":
            best[key] = r
    return list(best.values())


#: Table 1 of the paper (resemblance to incorrect answers, the authors' scoring), per seed.
PAPER_TABLE1: dict[str, dict[int, tuple[float, ...]]] = {
    "Qwen1.5-1.8B-Chat": {
        0: (0.1975,),
        2: (0.2338, 0.2431),
        3: (0.2338, 0.2486),
        4: (0.2450, 0.2539),
    },
    "Qwen2.5-7B-Instruct": {
        0: (0.1868,),
        2: (0.2043, 0.1997),
        3: (0.2123, 0.2028),
        4: (0.2173, 0.2099),
    },
}


@dataclass(frozen=True)
class IntervalsConfig:
    """``qa intervals``: the interval tables of one or more ``qa run`` folders, in a new folder.

    Parameters
    ----------
    run_dirs : tuple of path
        The ``qa run`` folders (finished or partial) whose answer files are pooled; stored as
        absolute paths, so the manifest says which folders were read.
    n_boot : int
        Bootstrap resamples per interval.
    n_perm : int
        Random sign flips per paired test.
    seed : int
        Seed of the one generator of every resample.
    run : RunOptions
        ``out_dir``: the new folder (not inside, around or equal to a run folder).
    """

    run_dirs: tuple[Path, ...] = ()
    n_boot: int = 2000
    n_perm: int = 9999
    seed: int = 0
    run: RunOptions = field(default_factory=RunOptions, metadata=RESUME_FREE)

    def __post_init__(self) -> None:
        if isinstance(self.run_dirs, (str, os.PathLike)) or not self.run_dirs:
            raise BadInput(
                f"`run_dirs` must name one or more `qa run` folders; got {self.run_dirs!r}."
            )
        dirs = tuple(Path(os.path.abspath(d)) for d in self.run_dirs)
        object.__setattr__(self, "run_dirs", dirs)
        check_int(self.n_boot, "n_boot", low=1)
        check_int(self.n_perm, "n_perm", low=1)
        check_int(self.seed, "seed", low=0)
        if not isinstance(self.run, RunOptions):
            raise TypeError(f"`run` must be a RunOptions; got {type(self.run).__name__}.")


_FILES = ("table1_ci.csv", "paired_ci.csv", "length_control.csv", "table1_ci.md")


def _prepare(config: IntervalsConfig, pending: Pending) -> dict[str, Any]:
    """Every table, computed before the folder is accepted (bad inputs leave it untouched)."""
    return interval_tables(
        config.run_dirs, n_boot=config.n_boot, n_perm=config.n_perm, rng=config.seed
    )


def _inputs(config: IntervalsConfig, pending: Pending, tables: Any) -> dict[str, Any]:
    from deltahall.experiments.qa.results import read_manifest

    return {
        "inputs": [
            {
                "run_dir": os.fspath(d),
                "experiment": read_manifest(d).get("experiment"),
                "answer_files": len(list(d.glob("answers/*/seed-*/epoch-*.jsonl"))),
            }
            for d in config.run_dirs
        ]
    }


def _body(config: IntervalsConfig, opened: OpenRun) -> Outcome:
    from deltahall.plotting import pyplot
    from deltahall.plotting.qa import figure4_ci

    tables = opened.prepared
    rd = opened.rd
    fig = figure4_ci(headline_rows(tables["table1"]), paper=PAPER_TABLE1)
    files = {
        "table1_ci": rd.write_csv("table1_ci.csv", tables["table1"]),
        "paired_ci": rd.write_csv("paired_ci.csv", tables["paired"]),
        "length_control": rd.write_csv("length_control.csv", tables["length_control"]),
        "table1_ci_md": rd.write_text("table1_ci.md", markdown(tables)),
        "figure4_ci": rd.save_figure(fig, "figure4_ci")[0],
    }
    pyplot().close(fig)
    result = {
        "run_dirs": [os.fspath(d) for d in config.run_dirs],
        "rows": {k: len(v) for k, v in tables.items()},
        "files": {k: p.relative_to(rd.root).as_posix() for k, p in files.items()},
    }
    return Outcome(result=result, value=files)


#: ``qa intervals`` as a run of the shared runner: a new folder from other runs' files.
EXPERIMENT = Experiment(
    name="qa-intervals",
    body=_body,
    inputs=lambda config: [("run_dir", d) for d in config.run_dirs],
    outputs=_FILES,
    prepare=_prepare,
    manifest_extra=_inputs,
    what="table of intervals",
)


def run(config: IntervalsConfig) -> dict[str, Path]:
    """Write ``table1_ci.csv``, ``paired_ci.csv``, ``length_control.csv``, ``table1_ci.md`` and
    ``figures/figure4_ci.png|svg`` into ``config.run.out_dir`` through the shared runner.

    The folder gets a ``manifest.json`` (the config, versions, and each input folder) and a
    ``result.json`` (written last). A folder that holds such a run is refused unless
    ``resume_from_checkpoint="latest"`` with the same settings, which recomputes every table
    from the input runs as they are now. Returns the paths written, by name.

    Raises
    ------
    ValueError
        ``out_dir`` holds a run (or another experiment's), is or lies inside one of
        ``run_dirs``, or holds one; the answer files cannot be pooled (see
        :func:`load_item_scores`).
    FileNotFoundError
        A run folder holds no answer files.
    """
    files: dict[str, Path] = execute(EXPERIMENT, config)
    return files
