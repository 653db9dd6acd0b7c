"""LoRA fine-tuning: answer-only labels, per-epoch adapters, loss CSVs, exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("peft")

from deltahall.experiments.qa.config import QAConfig  # noqa: E402
from deltahall.experiments.qa.dataset import validate  # noqa: E402
from deltahall.experiments.qa.finetune import IGNORE_INDEX, collate, encode_pair, finetune  # noqa: E402
from deltahall.io.rundir import read_csv  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
PAIRS = [p for r in validate(FIXTURES / "open_qa_small.jsonl") for p in r.pairs()]


def test_labels_cover_only_the_answer(tiny_model) -> None:  # noqa: ANN001
    _, tok = tiny_model
    q, a = PAIRS[0]
    ex = encode_pair(tok, q, a, max_length=512)
    n_prompt = sum(1 for x in ex["labels"] if x == IGNORE_INDEX)
    prompt_ids = tok(
        f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False
    )["input_ids"]
    assert ex["input_ids"][:n_prompt] == prompt_ids
    answer_ids = ex["labels"][n_prompt:]
    assert answer_ids == ex["input_ids"][n_prompt:]
    assert tok.decode(answer_ids) == f"{a}<|im_end|>\n"
    short = encode_pair(tok, q, a, max_length=10)
    assert len(short["input_ids"]) == 10 and all(x == IGNORE_INDEX for x in short["labels"])


def test_collate_pads_right_with_ignored_labels(tiny_model) -> None:  # noqa: ANN001
    _, tok = tiny_model
    exs = [encode_pair(tok, q, a, 512) for q, a in PAIRS[:3]]
    b = collate(exs, tok.pad_token_id)
    n = max(len(e["input_ids"]) for e in exs)
    assert b["input_ids"].shape == (3, n)
    for i, e in enumerate(exs):
        k = len(e["input_ids"])
        assert b["attention_mask"][i, :k].all() and not b["attention_mask"][i, k:].any()
        assert (b["labels"][i, k:] == IGNORE_INDEX).all()


def _cfg(tmp: Path, **kw) -> QAConfig:  # noqa: ANN003
    return QAConfig.tiny(out_dir=tmp, epochs=(1, 2), batch_size=4, max_length=64, **kw)


def _train(tiny_model_dir: Path, out: Path, cfg: QAConfig):  # noqa: ANN202
    from deltahall.experiments._run import RunOptions, make_accelerator
    from deltahall.experiments.qa.modeling import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(str(tiny_model_dir), device="cpu")
    return finetune(
        cfg,
        model,
        tok,
        PAIRS,
        out,
        seed=5,
        model_id="tiny",
        accelerator=make_accelerator(RunOptions(device="cpu")),
    )


def test_finetune_writes_adapters_and_losses_and_resumes_exactly(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file

    import deltahall.experiments.qa.finetune as ft

    full = tmp_path / "full"
    _, res = _train(tiny_model_dir, full, _cfg(tmp_path))
    for e in (1, 2):
        assert (full / f"epoch-{e}" / "adapter_model.safetensors").is_file()
        assert (full / f"epoch-{e}" / "adapter_config.json").is_file()
    steps = read_csv(full / "loss_steps.csv")
    epochs = read_csv(full / "loss_epochs.csv")
    assert len(steps) == 2 * 4 and [int(r["epoch"]) for r in epochs] == [1, 2]  # 16 pairs / batch 4
    assert float(epochs[1]["loss"]) < float(epochs[0]["loss"])
    assert res.epoch_losses[2] == pytest.approx(float(epochs[1]["loss"]))
    assert (
        not list(full.rglob("*.bin"))
        and not list(full.rglob("*.pt"))
        and not list(full.rglob("*.pkl"))
    )

    # Interrupt a second run right after epoch 1's checkpoint, then resume it.
    part = tmp_path / "part"
    real_save = ft.save_checkpoint

    def save_then_stop(root, step, **kw):  # noqa: ANN001, ANN003, ANN202
        real_save(root, step, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(ft, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_model_dir, part, _cfg(tmp_path))
    monkeypatch.setattr(ft, "save_checkpoint", real_save)
    assert not (part / "epoch-2").exists()
    with pytest.raises(ValueError, match="already holds fine-tuning checkpoints"):
        _train(tiny_model_dir, part, _cfg(tmp_path))
    with pytest.raises(ValueError, match="made with other settings"):
        _train(
            tiny_model_dir,
            part,
            _cfg(tmp_path, resume_from_checkpoint="latest", learning_rate=1e-3),
        )
    _train(tiny_model_dir, part, _cfg(tmp_path, resume_from_checkpoint="latest"))
    assert read_csv(part / "loss_steps.csv") == steps
    a = load_file(str(full / "epoch-2" / "adapter_model.safetensors"))
    b = load_file(str(part / "epoch-2" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
