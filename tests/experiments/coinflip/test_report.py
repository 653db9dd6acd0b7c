"""The coin-flip report says no more than the run shows (issue 8 item 6).

A reduced sweep's correlations are a table without verdict words; the verdict is quoted from
the paper-scale sweep in docs/coinflip.md, whose numbers and command are checked against that file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deltahall.experiments.coinflip import report as R
from deltahall.experiments.coinflip.config import CoinFlipConfig
from deltahall.io import RunDir, Section

DOCS = Path(__file__).resolve().parents[3] / "docs" / "coinflip.md"
VERDICT_WORDS = (
    "significant",
    "contrary",
    "negative correlation",
    "positive correlation",
    "no correlation",
)


@pytest.fixture(scope="module")
def docs() -> str:
    if not DOCS.is_file():
        pytest.skip(f"{DOCS} is not in this checkout")
    return DOCS.read_text(encoding="utf-8")


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("**", ""))


def test_quoted_paper_scale_numbers_are_those_of_the_docs(docs: str) -> None:
    lines = {_squash(line).strip() for line in docs.splitlines()}
    for row in R.PAPER_SCALE_CORRELATIONS:
        md = "| " + " | ".join(row.values()) + " |"
        assert md in lines, f"docs/coinflip.md has no row {md!r}"
    flat = _squash(docs)
    assert f"Command: `{R.FULL_SWEEP_COMMAND}`" in flat
    ours = _squash(R.PAPER_SCALE_VERDICT) + " " + _note_text()
    for quoted in (
        "30 runs",
        "1060 s wall",
        "P moves by ~0.01",
        "|r| ≤ 0.27",
        "Pearson −0.896, p = 1e-4",
        "lands on or next to the mode of the Poisson-binomial",
        "5 rounds × 20 epochs",
        "9,999 within-round shuffles",
    ):
        assert quoted in flat, f"docs/coinflip.md does not say {quoted!r}"
        assert quoted in ours, f"the report does not quote {quoted!r}"
    assert (R.PAPER_SCALE["m"], R.PAPER_SCALE["epochs"], R.PAPER_SCALE["rounds"]) == (20000, 20, 5)
    assert "--ms 20000" in R.FULL_SWEEP_COMMAND and "--epochs 20" in R.FULL_SWEEP_COMMAND
    assert "--rounds 5" in R.FULL_SWEEP_COMMAND


def _note_text() -> str:
    sec = Section("x")
    R._correlation_part(sec, [], paper_scale=False)
    return _squash(" ".join(sec.parts))


def _runs(m: int, epochs: int, rounds: int) -> list[dict]:
    return [
        {"config": CoinFlipConfig(n=n, m=m, epochs=epochs, objective=o), "history": [{}] * epochs}
        for o in ("mse", "ce")
        for n in (2, 5)
        for _ in range(rounds)
    ]


def test_paper_scale_needs_m_epochs_and_rounds() -> None:
    assert R.at_paper_scale(_runs(20000, 20, 5))
    assert R.at_paper_scale(_runs(40000, 25, 6))
    assert not R.at_paper_scale(_runs(2000, 20, 5))
    assert not R.at_paper_scale(_runs(20000, 6, 5))
    assert not R.at_paper_scale(_runs(20000, 20, 2))
    assert not R.at_paper_scale(_runs(20000, 20, 5)[:-1])  # one group one round short
    assert not R.at_paper_scale([])


def _pooled(pearson: float, p: float) -> dict:
    return {
        "objective": "mse",
        "n": 5,
        "m": 2000,
        "probability": "cp_est",
        "from_epoch": 1,
        "rounds": 2,
        "points": 12,
        "pearson": pearson,
        "pearson_p": p,
        "spearman": pearson,
        "spearman_p": p,
        "prob_min": 0.39,
        "prob_max": 0.41,
    }


def test_reduced_size_is_a_table_without_verdict_words() -> None:
    sec = Section("coin")
    R._correlation_part(
        sec,
        [_pooled(-0.9, 0.001), _pooled(0.8, 0.002), _pooled(float("nan"), float("nan"))],
        paper_scale=False,
    )
    html = " ".join(sec.parts)
    own = html.split("Paper-scale sweep, quoted")[0]
    assert not [w for w in VERDICT_WORDS if w in own.lower()]
    assert "<th>reading</th>" not in html
    assert html.count("<table>") == 2 and "-0.9" in own
    assert R.FULL_SWEEP_COMMAND in html and "docs/coinflip.md" in html
    assert "−0.890 (1e-4)" in html and "not computed by this run" in html


def test_paper_scale_reads_each_row_in_a_column() -> None:
    sec = Section("coin")
    R._correlation_part(
        sec,
        [_pooled(-0.9, 0.001), _pooled(0.1, 0.4), _pooled(float("nan"), float("nan"))],
        paper_scale=True,
    )
    html = " ".join(sec.parts)
    assert html.count("<table>") == 1 and "<th>reading</th>" in html
    assert "negative (both p &lt; 0.05)" in html and "no significant correlation" in html
    assert "undefined: P constant within every round" in html
    assert "docs/coinflip.md" not in html and "contrary" not in html


def test_reduced_sweep_section_end_to_end(tmp_path: Path) -> None:
    from deltahall.experiments.coinflip.sweep import SweepConfig, run_sweep

    base = CoinFlipConfig(m=120, epochs=2, batch_size=32, n_layers=1, d_model=8, n_heads=2, d_ff=16)
    from deltahall.experiments._run import RunOptions

    cfg = SweepConfig(
        ns=(2,),
        ms=(120,),
        rounds=2,
        objectives=("mse",),
        workers=0,
        n_permutations=9,
        base=base,
        run=RunOptions(out_dir=tmp_path / "s", progress=False),
    )
    run_sweep(cfg)
    html = " ".join(R.section_from_sweep(RunDir(cfg.out_dir), n_permutations=9).parts)
    own = html.split("Paper-scale sweep, quoted")[0]
    assert not [w for w in VERDICT_WORDS if w in own.lower()]
    assert "−0.890 (1e-4)" in html and html.count("data:image/png;base64") == 2
    assert (cfg.out_dir / "figures" / "figure3_mse_M120.png").is_file()


def test_wide_tables_and_commands_scroll_inside_the_page() -> None:
    from deltahall.io import Report

    css = re.search(r"<style>(.*?)</style>", Report("t").render(), re.S)
    assert css is not None
    rules = dict(re.findall(r"(?:^|})\s*([a-z]+)\{([^}]*)\}", css.group(1)))
    assert {"display:block", "overflow-x:auto", "max-width:100%"} <= set(rules["table"].split(";"))
    assert "overflow-x:auto" in rules["pre"]
