"""The chat-template prompt path of the SmolLM2 run, on the tiny model: SmolLM2's own template
(it writes a default system message), answer-only labels, answer vs full text, the seeded
TruthfulQA subset and the ``cpu-smollm2`` preset."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("peft")

from deltahall.experiments.qa.config import PRESETS, QAConfig  # noqa: E402
from deltahall.experiments.qa.finetune import IGNORE_INDEX, encode_pair  # noqa: E402
from deltahall.experiments.qa.generate import SamplingParams, build_prompt, generate_answers  # noqa: E402
from deltahall.experiments.qa.truthfulqa import load_truthfulqa, subset_indices  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
TQ = FIXTURES / "truthfulqa_small.csv"

#: SmolLM2-135M-Instruct's chat template, as its GGUF carries it (ChatML + a default system message).
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


@pytest.fixture()
def smol_tok(tiny_model):  # type: ignore[no-untyped-def]
    model, tok = tiny_model
    saved = tok.chat_template
    tok.chat_template = SMOLLM2_TEMPLATE
    try:
        yield model, tok
    finally:
        tok.chat_template = saved


def test_prompt_carries_the_default_system_message(smol_tok) -> None:  # type: ignore[no-untyped-def]
    _, tok = smol_tok
    q = "What happens if you crack your knuckles?"
    assert (
        build_prompt(tok, q, "chat")
        == f"{SYSTEM}<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
    )
    own = build_prompt(tok, q, "chat", system_prompt="Be brief.")
    assert own.startswith("<|im_start|>system\nBe brief.<|im_end|>") and "SmolLM" not in own


def test_labels_cover_the_answer_and_its_end_of_turn_only(smol_tok) -> None:  # type: ignore[no-untyped-def]
    _, tok = smol_tok
    enc = encode_pair(tok, "Why is the sky blue?", "Rayleigh scattering.", 256)
    answer_ids = [t for t in enc["labels"] if t != IGNORE_INDEX]
    assert tok.decode(answer_ids) == "Rayleigh scattering.<|im_end|>\n"
    n_prompt = enc["labels"].index(answer_ids[0])
    assert tok.decode(enc["input_ids"][:n_prompt]) == build_prompt(
        tok, "Why is the sky blue?", "chat"
    )


def test_generation_scores_the_answer_and_keeps_the_templated_text(smol_tok) -> None:  # type: ignore[no-untyped-def]
    model, tok = smol_tok
    qs = [it.question for it in load_truthfulqa(TQ)][:3]
    gens = generate_answers(
        model, tok, qs, seed=1, sampling=SamplingParams(max_new_tokens=8), batch_size=3
    )
    for q, g in zip(qs, gens, strict=True):
        assert g["prompt"].startswith(SYSTEM) and q in g["prompt"]
        # special tokens are skipped on decoding: the role words stay in full_text, not in the answer
        assert g["full_text"].startswith("system\nYou are a helpful AI assistant named SmolLM")
        assert "SmolLM" not in g["answer"] and g["full_text"].endswith(g["answer"])


def test_the_truthfulqa_subset_is_seeded_and_in_file_order() -> None:
    items = load_truthfulqa(TQ)
    sub = load_truthfulqa(TQ, 4, subset_seed=0)
    idx = subset_indices(len(items), 4, 0)
    assert [it.question for it in sub] == [items[i].question for i in idx] and idx == sorted(idx)
    assert [it.question for it in load_truthfulqa(TQ, 4)] == [it.question for it in items[:4]]
    assert subset_indices(len(items), 4, 1) != idx or len(items) <= 4
    with pytest.raises(ValueError, match=r"`size` must be in \[1, 5\]"):
        subset_indices(5, 6, 0)
    with pytest.raises(ValueError, match="`truthfulqa_subset_seed` needs `truthfulqa_limit`"):
        QAConfig(truthfulqa_subset_seed=0)


def test_the_cpu_smollm2_preset_is_the_paper_pipeline_on_cpu() -> None:
    c = PRESETS["cpu-smollm2"]
    paper = QAConfig.paper()
    assert c.models == ("@smollm2-135m-instruct",) and c.prompt_format == "chat"
    assert (c.epochs, c.seeds, c.temperature, c.top_p, c.max_new_tokens) == (
        (2, 3, 4),
        (1, 2),
        0.7,
        0.9,
        80,
    )
    assert (c.lora_r, c.lora_alpha, c.target_modules, c.warmup_ratio) == (
        paper.lora_r,
        paper.lora_alpha,
        paper.target_modules,
        paper.warmup_ratio,
    )
    assert (c.truthfulqa_limit, c.truthfulqa_subset_seed, c.max_train_examples) == (48, 0, 16)
    assert c.device == "cpu" and c.run.threads == 1
