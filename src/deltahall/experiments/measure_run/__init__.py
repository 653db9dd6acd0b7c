"""``deltahall measure`` as an experiment of the shared runner: ``run(MeasureConfig) -> MeasureResult``.

The instrument (:mod:`deltahall.measure`, a lower layer) computes and writes a measurement; this
package gives it the run lifecycle every experiment has (:func:`deltahall.experiments._run.execute`):

- the embedder's device and optional packages are checked first (:func:`~deltahall.measure.pipeline.preflight`);
- an output folder that holds a measurement (``manifest.json`` or any of
  :data:`~deltahall.measure.pipeline.OUTPUTS`) is refused unless
  ``resume_from_checkpoint="latest"`` with the same settings (each changed key named,
  ``alpha: 0.1 -> 0.2``), which redoes it; an output folder that is, lies inside or holds an
  input is refused;
- the inputs are read and checked, embedded and measured before anything is written (a
  measurement refused there changes nothing);
- then ``manifest.json`` (with the embedder's fingerprint), ``samples.csv`` and the report, and
  last ``measure.json``, atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deltahall.experiments._run import (
    Experiment,
    Job,
    OpenRun,
    Outcome,
    Pending,
    RunOptions,
    execute,
)
from deltahall.measure.pipeline import (
    OUTPUTS,
    MeasureConfig,
    MeasureResult,
    compute_measurement,
    input_paths,
    load_embedder_for,
    preflight,
    read_inputs,
    write_measurement,
)

__all__ = ["EXPERIMENT", "job", "run"]


def job(config: MeasureConfig) -> Job:
    """The runner's config of a measurement: its settings and the run options they imply."""
    if not isinstance(config, MeasureConfig):
        raise TypeError(f"`config` must be a MeasureConfig; got {type(config).__name__}.")
    return Job(
        settings=config,
        run=RunOptions(
            out_dir=config.out_dir,
            resume_from_checkpoint=config.resume_from_checkpoint,
            progress=False,
        ),
    )


def run(config: MeasureConfig) -> MeasureResult:
    """Measure the generated set's δ-hallucination rate into ``config.out_dir``.

    Raises
    ------
    ValueError
        Bad inputs, an output folder that holds a measurement (without
        ``resume_from_checkpoint="latest"``, or with other settings) or an input; before any write.
    FileNotFoundError
        A missing input.
    """
    result: MeasureResult = execute(EXPERIMENT, job(config))
    return result


@dataclass(frozen=True)
class _Computed:
    embedder: Any
    result: MeasureResult


def _prepare(j: Job, pending: Pending) -> _Computed:
    config: MeasureConfig = j.settings
    inputs = read_inputs(config)
    emb = load_embedder_for(config)
    return _Computed(
        embedder=emb[0],
        result=compute_measurement(config, inputs, embedder=emb, out_dir=pending.decision.out_dir),
    )


def _body(j: Job, opened: OpenRun) -> Outcome:
    computed: _Computed = opened.prepared
    summary = write_measurement(j.settings, computed.result, opened.rd)
    return Outcome(result=summary, value=computed.result)


#: A measurement as the shared runner executes it; ``measure.json`` is its result file.
EXPERIMENT = Experiment(
    name="measure",
    body=_body,
    preflight=lambda j: preflight(j.settings),
    inputs=lambda j: input_paths(j.settings),
    outputs=OUTPUTS,
    prepare=_prepare,
    manifest_extra=lambda j, pending, computed: {
        "embedder_fingerprint": getattr(computed.embedder, "fingerprint", None)
    },
    result_name="measure.json",
    what="measurement",
)
