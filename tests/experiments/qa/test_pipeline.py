"""The whole Section 7.2 pipeline on the tiny offline model: files, determinism, rescoring, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("peft")

from deltahall.experiments.qa.config import TINY_MODEL, QAConfig  # noqa: E402
from deltahall.experiments.qa.pipeline import run  # noqa: E402
from deltahall.experiments.qa.results import read_scores, rescore_run  # noqa: E402
from deltahall.io.rundir import read_csv  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
DATA = str(FIXTURES / "open_qa_small.jsonl")
TQ = str(FIXTURES / "truthfulqa_small.csv")


def _cfg(out: Path, **kw) -> QAConfig:  # noqa: ANN003
    base = dict(
        out_dir=out,
        data=DATA,
        truthfulqa=TQ,
        epochs=(1, 2),
        seeds=(7,),
        batch_size=4,
        max_length=64,
        max_new_tokens=12,
        gen_batch_size=4,
        max_train_examples=None,
    )
    base.update(kw)
    return QAConfig.tiny(**base)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    out = tmp_path_factory.mktemp("qa") / "run"
    return run(_cfg(out))


def test_pipeline_writes_every_file(tiny_run) -> None:  # noqa: ANN001
    root = tiny_run.run_dir
    expected = [
        "manifest.json",
        "result.json",
        "scores.csv",
        "table1.csv",
        "table1.md",
        "figure4_summary.csv",
        "table1_resemblance_incorrect.csv",
        "table1_resemblance_incorrect_with_prompt.csv",
        "table1_resemblance_correct.csv",
        "table1_gap.csv",
        "table1_gap_with_prompt.csv",
        "figures/figure4.png",
        "figures/figure4.svg",
        "figures/loss.png",
        "tiny-model/config.json",
        "tiny-model/model.safetensors",
        "tiny-model/tokenizer.json",
        "train/tiny/seed-7/epoch-1/adapter_model.safetensors",
        "train/tiny/seed-7/epoch-2/adapter_model.safetensors",
        "train/tiny/seed-7/loss_steps.csv",
        "train/tiny/seed-7/loss_epochs.csv",
        "answers/tiny/seed-7/epoch-0.jsonl",
        "answers/tiny/seed-7/epoch-1.jsonl",
        "answers/tiny/seed-7/epoch-2.jsonl",
    ]
    missing = [p for p in expected if not (root / p).is_file()]
    assert not missing
    assert not list(root.rglob("*.pkl")) and not list(root.rglob("*.bin"))
    scores = tiny_run.scores
    assert [(r["model"], r["seed"], r["epoch"]) for r in scores] == [
        (TINY_MODEL, 7, e) for e in (0, 1, 2)
    ]
    for r in scores:
        assert 0.0 <= r["resemblance_incorrect"] <= 1.0 and r["n"] == 10
    # Table 1 layout: Original row first, one column per model x seed.
    table = read_csv(root / "table1.csv")
    assert [r["epochs"] for r in table] == ["Original", "1", "2"]
    assert list(table[0]) == ["epochs", f"{TINY_MODEL} seed 7"]
    md = (root / "table1.md").read_text()
    assert "not** findings" in md and "prompt included" in md
    assert json.loads((root / "result.json").read_text())["plumbing"] is True
    # Training losses recorded beside the scores.
    losses = read_csv(root / "train/tiny/seed-7/loss_epochs.csv")
    assert scores[2]["train_loss"] == pytest.approx(float(losses[1]["loss"]))


def test_scores_recompute_from_answer_files(tiny_run) -> None:  # noqa: ANN001
    saved = read_scores(tiny_run.run_dir)
    again = rescore_run(tiny_run.run_dir)
    assert len(saved) == len(again) == 3
    for a, b in zip(saved, again, strict=True):
        for k in (
            "resemblance_incorrect",
            "resemblance_incorrect_with_prompt",
            "resemblance_correct",
            "gap",
        ):
            assert a[k] == pytest.approx(b[k], abs=1e-15)
        assert a["train_loss"] == pytest.approx(b["train_loss"], nan_ok=True)


def test_same_seed_gives_identical_answers_on_cpu(tiny_run, tmp_path: Path) -> None:  # noqa: ANN001
    second = run(_cfg(tmp_path / "again"))
    for e in (0, 1, 2):
        a = (tiny_run.run_dir / f"answers/tiny/seed-7/epoch-{e}.jsonl").read_text()
        b = (second.run_dir / f"answers/tiny/seed-7/epoch-{e}.jsonl").read_text()
        assert a == b


def test_resume_reuses_finished_work_and_refuses_other_settings(tiny_run, tmp_path: Path) -> None:  # noqa: ANN001
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run.run_dir, copy)
    again = run(_cfg(copy, resume_from_checkpoint="latest"))
    assert [r["resemblance_incorrect"] for r in again.scores] == [
        r["resemblance_incorrect"] for r in tiny_run.scores
    ]
    before = {q: q.read_bytes() for q in copy.rglob("*") if q.is_file()}
    with pytest.raises(ValueError, match=r"settings differ in 1 key: temperature: 0.7 -> 0.5"):
        run(_cfg(copy, resume_from_checkpoint="latest", temperature=0.5))
    with pytest.raises(ValueError, match="already holds a run"):
        run(_cfg(copy, learning_rate=1e-3))
    assert {q: q.read_bytes() for q in copy.rglob("*") if q.is_file()} == before  # the manifest too


def test_section_from_run_is_labelled_plumbing(tiny_run) -> None:  # noqa: ANN001
    from deltahall.experiments.qa.report import section_from_run

    sec = section_from_run(tiny_run.run_dir)
    html = "".join(sec.parts)
    assert "plumbing" in sec.title and "NOT findings" in html
    assert html.count("<table>") == 4 and "data:image/png;base64" in html
    with pytest.raises(FileNotFoundError, match="no scores.csv"):
        section_from_run(tiny_run.run_dir / "answers")


def test_cli_score_table_and_errors(tiny_run, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    from deltahall.cli.main import main

    ans = tiny_run.run_dir / "answers/tiny/seed-7/epoch-2.jsonl"
    assert main(["qa", "score", "--answers", str(ans), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)[0]
    assert rec["resemblance_incorrect"] == pytest.approx(
        tiny_run.scores[2]["resemblance_incorrect"]
    )
    assert main(["qa", "table", "--run-dir", str(tiny_run.run_dir)]) == 0
    assert "| Original |" in capsys.readouterr().out
    assert main(["qa", "validate", "--data", str(FIXTURES / "bad_one_answer.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "deltahall qa: error:" in err and "`answers` must hold exactly 2 answers; got 1" in err
    assert (
        main(
            [
                "qa",
                "run",
                "--preset",
                "tiny",
                "--truthfulqa",
                str(FIXTURES / "truthfulqa_missing_column.csv"),
                "--data",
                DATA,
                "--out-dir",
                str(tiny_run.run_dir.parent / "bad"),
            ]
        )
        == 2
    )
    assert "missing ['Incorrect Answers']" in capsys.readouterr().err
    assert main(["qa", "run", "--preset", "tiny", "--epochs", "0"]) == 2
    assert "`epochs` must be >= 1; got 0" in capsys.readouterr().err


def test_cli_run_tiny_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from deltahall.cli.main import main

    out = tmp_path / "cli"
    rc = main(
        [
            "qa",
            "run",
            "--preset",
            "tiny",
            "--data",
            DATA,
            "--truthfulqa",
            TQ,
            "--out-dir",
            str(out),
            "--epochs",
            "1",
            "--max-train-examples",
            "8",
            "--max-new-tokens",
            "6",
            "--prompt-format",
            "raw",
            "--score-includes-prompt",
            "true",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "NOT findings" in text and "resemblance_incorrect_with_prompt" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["prompt_format"] == "raw" and manifest["config"]["models"] == [
        TINY_MODEL
    ]
    assert read_csv(out / "table1.csv")[0]["epochs"] == "Original"
    first = json.loads((out / "answers/tiny/seed-0/epoch-0.jsonl").read_text().splitlines()[0])
    assert first["full_text"].startswith(first["question"])


@pytest.mark.slow
def test_main_job_section(tmp_path: Path) -> None:
    from deltahall.experiments.qa.report import main_job_section

    sec = main_job_section(tmp_path, seed=0)
    html = "".join(sec.parts)
    assert "NOT findings" in html and "question + best answer" in html
