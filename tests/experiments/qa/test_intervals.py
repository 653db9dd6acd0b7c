"""Table 1 / Figure 4 with intervals from answer files: pooling over seeds, paired tests, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deltahall.experiments.qa.generate import save_answers
from deltahall.experiments.qa.intervals import interval_tables, markdown
from deltahall.experiments.qa.scoring import resemblance

QUESTIONS = [f"Question number {i}?" for i in range(6)]
INCORRECT = [
    ["the moon is cheese", "cheese"],
    ["cats rule"],
    ["water is dry"],
    ["birds are drones"],
    ["the earth is flat"],
    ["vaccines cause magnets"],
]
CORRECT = [
    ["the moon is rock"],
    ["nobody rules"],
    ["water is wet"],
    ["birds are animals"],
    ["the earth is round"],
    ["vaccines are safe"],
]


def _write(root: Path, seed: int, epoch: int, answers: list[str]) -> None:
    rows = [
        {
            "question": q,
            "answer": a,
            "full_text": f"{q} {a}",
            "incorrect_answers": inc,
            "correct_answers": cor,
            "prompt": q,
        }
        for q, a, inc, cor in zip(QUESTIONS, answers, INCORRECT, CORRECT, strict=True)
    ]
    save_answers(root / f"answers/m/seed-{seed}/epoch-{epoch}.jsonl", rows)


@pytest.fixture()
def runs(tmp_path: Path) -> list[Path]:
    one, two = tmp_path / "s1", tmp_path / "s2"
    _write(one, 1, 0, ["rock"] * 6)
    _write(one, 1, 2, [inc[0] for inc in INCORRECT])  # fine-tuned: says the incorrect answer
    _write(two, 2, 0, ["rock"] * 6)
    _write(two, 2, 2, [cor[0] for cor in CORRECT])
    return [one, two]


def test_means_pool_over_seeds_per_question_and_tests_pair_with_the_original(
    runs: list[Path],
) -> None:
    t = interval_tables(runs, n_boot=200, n_perm=999)
    rows = {(r["scoring"], r["epoch"], r["seed"]): r for r in t["table1"]}
    inc1 = np.array([resemblance(i[0], i) for i in INCORRECT])
    inc2 = np.array([resemblance(c[0], i) for c, i in zip(CORRECT, INCORRECT, strict=True)])
    assert rows[("answer-only", 2, 1)]["incorrect"] == pytest.approx(inc1.mean())
    assert rows[("answer-only", 2, "pooled")]["incorrect"] == pytest.approx(
        ((inc1 + inc2) / 2).mean()
    )
    assert (
        rows[("answer-only", 2, "pooled")]["n"] == 6
        and rows[("answer-only", 2, "pooled")]["n_seeds"] == 2
    )
    for r in t["table1"]:
        assert r["incorrect_low"] <= r["incorrect"] <= r["incorrect_high"]
    p = {(r["scoring"], r["epoch"], r["seed"]): r for r in t["paired"]}
    orig = np.array([resemblance("rock", i) for i in INCORRECT])
    assert p[("answer-only", 2, 1)]["incorrect_diff"] == pytest.approx((inc1 - orig).mean())
    assert p[("answer-only", 2, 1)]["incorrect_p"] == pytest.approx(
        2 / 64
    )  # all 6 differences positive: exact
    assert {k[0] for k in p} == {"answer-only", "authors' (prompt included)"}
    assert "| m | answer-only | original | pooled | 6 |" in markdown(t)
    lc = {(r["seed"], r["epoch"]): r for r in t["length_control"]}
    assert set(lc) == {(1, 2), (2, 2)}
    assert lc[(1, 2)]["cut_incorrect"] == pytest.approx(orig.mean())  # "rock" is already one word
    assert lc[(1, 2)]["incorrect_diff"] == pytest.approx((inc1 - orig).mean())
    assert lc[(1, 2)]["words_original"] == 1.0 and "Length control" in markdown(t)


def test_a_seed_epoch_twice_or_other_questions_are_refused(
    runs: list[Path], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="model m seed 1 epoch 0 appears twice"):
        interval_tables([runs[0], runs[0]])
    other = tmp_path / "other"
    _write(other, 3, 0, ["x"] * 6)
    f = other / "answers/m/seed-3/epoch-0.jsonl"
    f.write_text(f.read_text().replace("Question number 0?", "Another question?"))
    with pytest.raises(ValueError, match="asked other questions"):
        interval_tables([runs[0], other])
    with pytest.raises(FileNotFoundError, match="holds no answers"):
        interval_tables([tmp_path / "nothing"])


def test_the_cli_writes_tables_and_the_figure(
    runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from deltahall.cli.main import main

    out = tmp_path / "ci"
    assert (
        main(
            [
                "qa",
                "intervals",
                "--run-dir",
                *map(str, runs),
                "--out-dir",
                str(out),
                "--n-boot",
                "100",
                "--n-perm",
                "99",
            ]
        )
        == 0
    )
    assert "Paired sign-flip permutation tests" in capsys.readouterr().out
    for name in (
        "table1_ci.csv",
        "paired_ci.csv",
        "table1_ci.md",
        "figures/figure4_ci.png",
        "figures/figure4_ci.svg",
    ):
        assert (out / name).is_file(), name
