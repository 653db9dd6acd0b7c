"""Batched seeded generation, prompts, answer files (tiny offline model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from deltahall.experiments.qa.generate import (  # noqa: E402
    SamplingParams,
    answer_rows,
    batch_seed,
    build_prompt,
    generate_answers,
    load_answers,
    save_answers,
)
from deltahall.experiments.qa.truthfulqa import load_truthfulqa  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
QUESTIONS = [it.question for it in load_truthfulqa(FIXTURES / "truthfulqa_small.csv")]
SAMPLING = SamplingParams(max_new_tokens=12)


def test_same_seed_same_answers_other_seed_differs(tiny_model) -> None:  # noqa: ANN001
    model, tok = tiny_model
    a = generate_answers(model, tok, QUESTIONS, seed=3, sampling=SAMPLING, batch_size=4)
    b = generate_answers(model, tok, QUESTIONS, seed=3, sampling=SAMPLING, batch_size=4)
    c = generate_answers(model, tok, QUESTIONS, seed=4, sampling=SAMPLING, batch_size=4)
    assert a == b
    assert [g["answer"] for g in a] != [g["answer"] for g in c]
    assert len(a) == len(QUESTIONS)
    assert tok.padding_side == "right" or tok.padding_side == "left"  # restored, whatever it was


def test_generation_leaves_global_rng_alone(tiny_model) -> None:  # noqa: ANN001
    import torch

    model, tok = tiny_model
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    generate_answers(model, tok, QUESTIONS[:2], seed=0, sampling=SAMPLING, batch_size=2)
    assert torch.equal(torch.rand(3), expected)


def test_batches_are_real_batches(tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    model, tok = tiny_model
    calls = []
    orig = model.generate

    def spy(**kw):  # noqa: ANN003, ANN202
        calls.append(kw["input_ids"].shape[0])
        # Left padding: every row's last prompt token is real (attention 1).
        assert bool(kw["attention_mask"][:, -1].all())
        return orig(**kw)

    monkeypatch.setattr(model, "generate", spy)
    generate_answers(model, tok, QUESTIONS, seed=0, sampling=SAMPLING, batch_size=4)
    assert calls == [4, 4, 2]


def test_chat_and_raw_prompts(tiny_model) -> None:  # noqa: ANN001
    model, tok = tiny_model
    q = QUESTIONS[0]
    chat = build_prompt(tok, q, "chat")
    assert chat == f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
    assert build_prompt(tok, q, "raw") == q
    assert build_prompt(tok, q, "chat", system_prompt="Be brief.").startswith(
        "<|im_start|>system\nBe brief."
    )
    raw = generate_answers(model, tok, [q], seed=0, sampling=SAMPLING, prompt_format="raw")
    # The authors' scoring text (outputs[0] decoded whole) starts with the question itself.
    assert raw[0]["full_text"].startswith(q)
    assert raw[0]["full_text"].endswith(raw[0]["answer"])
    with pytest.raises(ValueError, match="`prompt_format` must be 'chat' or 'raw'"):
        build_prompt(tok, q, "plain")  # type: ignore[arg-type]


def test_chat_format_needs_a_template(tiny_model) -> None:  # noqa: ANN001
    _, tok = tiny_model
    saved = tok.chat_template
    tok.chat_template = None
    try:
        with pytest.raises(ValueError, match="needs a tokenizer with a chat template"):
            build_prompt(tok, "q?", "chat")
    finally:
        tok.chat_template = saved


def test_answer_file_round_trip(tmp_path: Path) -> None:
    items = load_truthfulqa(FIXTURES / "truthfulqa_small.csv", limit=2)
    gens = [
        {"prompt": "p", "answer": "a1", "full_text": "q a1"},
        {"prompt": "p", "answer": "a2", "full_text": "q a2"},
    ]
    rows = answer_rows(items, gens, {"model": "m", "seed": 1, "epoch": 0})
    path = save_answers(tmp_path / "a.jsonl", rows)
    back = load_answers(path)
    assert back == json.loads(json.dumps(rows))
    assert back[1]["incorrect_answers"] == list(items[1].incorrect_answers)
    with pytest.raises(ValueError, match="must match `items` in length"):
        answer_rows(items, gens[:1], {})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n')
    with pytest.raises(ValueError, match=r"line 1: missing key\(s\)"):
        load_answers(bad)


def test_batch_seed_is_stable() -> None:
    assert batch_seed(1, 0) == batch_seed(1, 0)
    assert batch_seed(1, 0) != batch_seed(1, 1) != batch_seed(2, 0)
    assert 0 <= batch_seed(7, 3) < 2**63
