"""Shared fixtures of the QA tests: fixture paths and one tiny model built per session."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TRUTHFULQA_SMALL = FIXTURES / "truthfulqa_small.csv"
OPEN_QA_SMALL = FIXTURES / "open_qa_small.jsonl"


@pytest.fixture(autouse=True)
def _one_torch_thread():  # type: ignore[no-untyped-def]
    """Tiny models run faster on one thread on a shared 2-core machine; restored after each test."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2 model + tokenizer trained on the fixture texts."""
    pytest.importorskip("transformers")
    from deltahall.experiments.qa.dataset import validate
    from deltahall.experiments.qa.tiny import build_tiny_model
    from deltahall.experiments.qa.truthfulqa import load_truthfulqa

    rows = validate(OPEN_QA_SMALL)
    items = load_truthfulqa(TRUTHFULQA_SMALL)
    texts = [t for r in rows for t in (r.question, *r.answers)]
    texts += [t for it in items for t in (it.question, *it.correct_answers, *it.incorrect_answers)]
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", texts, seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    from deltahall.experiments.qa.modeling import load_model_and_tokenizer

    return load_model_and_tokenizer(str(tiny_model_dir), device="cpu")
