"""The main job: every experiment's offline default, one self-contained HTML report.

Each step is a module exposing ``main_job_section(run_dir: Path, seed: int) -> Section``
that runs a reduced, offline configuration into ``run_dir`` and returns the
report section describing it. Steps run in order; one that fails is reported
as failed (with its error) and the job exits non-zero, the others still run.

The job runs through the shared runner (:func:`deltahall.experiments._run.execute`): a folder
that already holds a main-job run (``manifest.json`` or ``main_job.json``) is refused unless
``resume_from_checkpoint="latest"`` (an explicit checkpoint path is refused: the job resumes the
run in ``out_dir``), and one started with another seed is refused with the key named. A resumed
job runs every step again over its own folder (which reuses the work it finished), and the steps
an earlier session finished are reported as *reused*, with the seconds they originally took
labelled as such beside this session's (seconds of a reused step measure only the re-check, not
the work). ``main_job.json`` is rewritten after every step, so a killed job knows which steps it
finished; ``result.json`` is written once the report is.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from deltahall._registry import Registry
from deltahall._validation import BadInput
from deltahall.experiments._run import Experiment, Job, OpenRun, Outcome, RunOptions, execute, free
from deltahall.io import Report, RunDir, Section

logger = logging.getLogger(__name__)

#: Every step: name -> the module holding its ``main_job_section``, in report order (the one
#: registry: an unknown step name is an error listing the known ones).
STEPS: Registry[str] = Registry(
    "main-job step",
    entries={
        "theory": "deltahall.experiments.theory_report",
        "coinflip": "deltahall.experiments.coinflip.report",
        "t2i": "deltahall.experiments.t2i.report",
        "qa": "deltahall.experiments.qa.report",
        "real": "deltahall.experiments.qa.real_report",
        "modes": "deltahall.experiments.modes.report",
    },
)


@dataclass(frozen=True)
class MainJobConfig:
    out_dir: Path = field(
        default=Path("runs/report"),
        metadata=free("run directory for the report and every step's files"),
    )
    seed: int = field(default=0, metadata={"help": "seed passed to every step"})
    only: tuple[str, ...] = field(
        default=(),
        metadata=free("run only these steps (theory coinflip t2i qa real modes); empty = all"),
    )
    progress: bool = field(
        default=True, metadata=free("show a progress bar over the steps on stderr")
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata=free(
            "'latest': continue the main job in --out-dir, reusing the steps it finished (they are "
            "reported as reused, with their original times); unset: refuse a folder that holds one"
        ),
    )

    def __post_init__(self) -> None:
        bad = [s for s in self.only if s not in STEPS]
        if bad:
            raise BadInput(f"`only` must name steps among {list(STEPS.names())}; got {bad}.")
        if self.resume_from_checkpoint not in (None, "latest"):
            raise BadInput(
                "`resume_from_checkpoint` must be 'latest' for the main job (it resumes the run in "
                f"--out-dir); got {self.resume_from_checkpoint!r}."
            )


@dataclass(frozen=True)
class MainJobResult:
    """What the job did.

    Attributes
    ----------
    report_path : Path
    seconds : dict
        Wall seconds of each step in this session (a reused step: only its re-check).
    failed : dict
        ``step -> "Type: message"`` for the steps that failed in this session.
    reused : dict
        ``step -> seconds it originally took`` for the steps an earlier session finished.
    """

    report_path: Path
    seconds: dict[str, float]
    failed: dict[str, str]
    reused: dict[str, float] = field(default_factory=dict)


SUMMARY = "main_job.json"


def _previous(rd: RunDir) -> dict[str, Any] | None:
    """The earlier session's ``main_job.json`` (the runner has accepted the folder), or ``None``."""
    path = rd.path(SUMMARY)
    if not path.is_file():
        return None
    try:
        prev = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(
            f"{os.fspath(path)}: unreadable ({exc}); choose another --out-dir."
        ) from None
    if not isinstance(prev, dict):
        raise BadInput(f"{os.fspath(path)}: not a JSON object; choose another --out-dir.")
    return prev


def _finished_before(prev: dict[str, Any] | None) -> dict[str, float]:
    """``step -> original seconds`` of the steps an earlier session finished without failing."""
    if not prev:
        return {}
    original = {**prev.get("seconds", {}), **prev.get("original_seconds", {})}
    failed = set(prev.get("failed", {}))
    done = prev.get("finished", list(original))
    return {s: float(original[s]) for s in done if s in original and s not in failed}


def run(config: MainJobConfig) -> MainJobResult:
    """Run the selected steps and write ``<out_dir>/report.html``.

    Raises
    ------
    ValueError
        If ``out_dir`` is an existing file; holds a main-job run and ``resume_from_checkpoint``
        is not ``"latest"``; holds another kind of run; or was started with another seed.
    """
    if not isinstance(config, MainJobConfig):
        raise TypeError(f"`config` must be a MainJobConfig; got {type(config).__name__}.")
    job = Job(
        settings=config,
        run=RunOptions(
            out_dir=config.out_dir,
            resume_from_checkpoint=config.resume_from_checkpoint,
            progress=config.progress,
        ),
    )
    result: MainJobResult = execute(EXPERIMENT, job)
    return result


def _body(job: Job, opened: OpenRun) -> Outcome:
    config: MainJobConfig = job.settings
    rd = opened.rd
    before = _finished_before(_previous(rd) if opened.resumed else None)
    if before:
        logger.info(
            "main job: reusing the steps an earlier session finished: %s", ", ".join(before)
        )
    report = Report("deltahall: δ-hallucination, reproduced offline")
    intro = report.section("About this report")
    intro.text(
        "Generated by `deltahall report`. Every number and figure below was computed by this run "
        "on this machine; the experiments run at reduced, offline scale (tiny models, bundled data). "
        "Paper-scale commands are in the README."
    )
    seconds: dict[str, float] = {}
    failed: dict[str, str] = {}
    reused: dict[str, float] = {}
    finished = [
        s for s in before if s not in {n for n in STEPS if not config.only or n in config.only}
    ]
    steps = [(n, m) for n, m in STEPS.items() if not config.only or n in config.only]
    bar = tqdm(steps, desc="main job", unit="step", disable=not config.progress)
    for name, module in bar:
        bar.set_postfix_str(name)
        t0 = time.perf_counter()
        logger.info(
            "main job: step %s%s",
            name,
            " (finished by an earlier session: reusing)" if name in before else "",
        )
        try:
            mod = importlib.import_module(module)
            section: Section = mod.main_job_section(rd.root / name, seed=config.seed)
        except Exception as exc:  # a failed step is reported, not hidden
            failed[name] = f"{type(exc).__name__}: {exc}"
            section = Section(f"{name}: FAILED")
            section.note(f"This step failed: {type(exc).__name__}: {exc}")
            section.code(traceback.format_exc())
            logger.error("main job: step %s failed: %s", name, exc)
        seconds[name] = time.perf_counter() - t0
        if name not in failed:
            finished.append(name)
            if name in before:
                reused[name] = before[name]
        report.add(section)
        _write_summary(rd, seconds, failed, reused, finished, before)
    timing = report.section("Timing")
    if reused:
        timing.note(
            "Reused steps ("
            + ", ".join(reused)
            + ") were finished by an earlier session of this main job; "
            "this session only re-checked their files. Their 'seconds' are this session's; "
            "'original seconds' is what the step took when it ran."
        )
    timing.table(
        [_timing_row(k, v, failed, reused) for k, v in seconds.items()],
        ["step", "status", "seconds", "original seconds"],
    )
    path = report.write(rd.path("report.html"))
    _write_summary(rd, seconds, failed, reused, finished, before, report=path)
    return Outcome(
        result={
            "report": os.fspath(path),
            "seconds": seconds,
            "failed": failed,
            "reused": reused,
            "finished": finished,
        },
        value=MainJobResult(report_path=path, seconds=seconds, failed=failed, reused=reused),
    )


#: The main job as the shared runner executes it (each step's folder is a run of its own).
EXPERIMENT = Experiment(name="main-job", body=_body, outputs=(SUMMARY,), what="main-job run")


def _timing_row(
    step: str, secs: float, failed: dict[str, str], reused: dict[str, float]
) -> dict[str, Any]:
    status = "failed" if step in failed else ("reused" if step in reused else "ran")
    return {
        "step": step,
        "status": status,
        "seconds": secs,
        "original seconds": reused.get(step, secs if status == "ran" else ""),
    }


def _write_summary(
    rd: RunDir,
    seconds: dict[str, float],
    failed: dict[str, str],
    reused: dict[str, float],
    finished: list[str],
    before: dict[str, float],
    *,
    report: Path | None = None,
) -> None:
    # original_seconds: what each finished step took when it really ran (carried across sessions).
    original = {s: before.get(s, seconds.get(s, 0.0)) for s in finished}
    rd.write_json(
        SUMMARY,
        {
            "seconds": seconds,
            "failed": failed,
            "reused": sorted(reused),
            "finished": finished,
            "original_seconds": original,
            "report": str(report) if report else None,
        },
    )
