"""Long runs (excluded by default; ``pytest -m slow``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deltahall.experiments.t2i import run


def _cfg(**kw):
    """A T2IConfig whose run options (out_dir, device, progress, ...) go into its RunOptions."""
    import dataclasses as _dc

    from deltahall.experiments._run import RunOptions as _RO
    from deltahall.experiments.t2i import T2IConfig as _C

    names = {f.name for f in _dc.fields(_RO)}
    run = {k: kw.pop(k) for k in list(kw) if k in names}
    return _C(run=_RO(**run), **kw)


@pytest.mark.slow
def test_full_digits_preset_learns_and_keeps_hallucinating(tmp_path: Path) -> None:
    # wall time is measured by `deltahall t2i run --preset digits` and reported in docs/t2i.md, not asserted here
    res = run(_cfg(out_dir=tmp_path / "run", progress=False))
    trained = [s for s in res.steps if s > 0]
    first = [r for r in res.metrics if r["step"] == trained[0]]
    last = [r for r in res.metrics if r["step"] == trained[-1]]
    assert last[0]["loss"] < first[0]["loss"]  # the loss falls
    for prompt in ("a handwritten digit zero", "a handwritten digit one"):
        r0 = next(r for r in res.metrics if r["step"] == 0 and r["prompt"] == prompt)
        r1 = next(r for r in last if r["prompt"] == prompt)
        assert r1["rate"] < r0["rate"]  # the model learned the class
    assert all(r["rate"] > 0 for r in last)  # ... and still hallucinates


@pytest.mark.slow
def test_main_job_section(tmp_path: Path) -> None:
    from deltahall.experiments.t2i.report import main_job_section

    sec = main_job_section(tmp_path / "t2i", seed=0)
    assert "Figure 5 claim" in "".join(sec.parts)
