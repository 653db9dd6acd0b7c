"""QAConfig checks, presets and the documented paper-scale command."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from deltahall.experiments.qa.config import PAPER_MODELS, TINY_MODEL, QAConfig


def test_paper_defaults_match_section_7_2() -> None:
    cfg = QAConfig.paper()
    assert cfg.models == PAPER_MODELS
    assert cfg.epochs == (2, 3, 4) and cfg.max_epoch == 4
    assert len(cfg.seeds) == 2
    assert (cfg.temperature, cfg.top_p, cfg.max_new_tokens) == (0.7, 0.9, 80)
    assert cfg.prompt_format == "chat" and cfg.score_includes_prompt is False
    assert cfg.trust_remote_code is False


def test_tiny_preset() -> None:
    cfg = QAConfig.tiny(out_dir="x")
    assert cfg.models == (TINY_MODEL,) and cfg.device == "cpu" and cfg.out_dir == Path("x")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": ()}, "`epochs` must list at least one epoch"),
        ({"epochs": (2, 2)}, "`epochs` must not repeat"),
        ({"epochs": (0, 2)}, "`epochs` must be >= 1; got 0"),
        ({"seeds": (1, 1)}, "`seeds` must not repeat"),
        ({"models": ()}, "`models` must name at least one model"),
        ({"top_p": 1.5}, r"`top_p` must be in \(0, 1\]; got 1.5"),
        ({"temperature": 0.0}, r"`temperature` must be in \(0, inf\)"),
        ({"lora_r": 0}, "`lora_r` must be >= 1; got 0"),
        ({"prompt_format": "plain"}, "prompt_format"),
        ({"device": "tpu"}, "`device` must be"),
        ({"batch_size": 2.5}, "`batch_size` must be an integer"),
        ({"truthfulqa_limit": 0}, "`truthfulqa_limit` must be >= 1"),
    ],
)
def test_post_init_rejects(changes: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        QAConfig.paper(**changes)


def test_training_fingerprint_tracks_training_settings() -> None:
    a = QAConfig().training_fingerprint("m", 1)
    assert a == QAConfig(temperature=0.5).training_fingerprint("m", 1)  # sampling does not matter
    assert a != QAConfig(learning_rate=2e-4).training_fingerprint("m", 1)
    assert a != QAConfig(epochs=(2, 3, 5)).training_fingerprint("m", 1)


def test_documented_run_commands_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `qa run` command in docs/qa.md builds a config (without running it)."""
    from deltahall.cli.main import main

    doc = (Path(__file__).resolve().parents[3] / "docs" / "qa.md").read_text(encoding="utf-8")
    # the command after its launcher or environment prefix (`accelerate launch -m deltahall`, `nice ... deltahall`)
    lines = [
        ln.split("-m deltahall", 1)[-1].strip()
        if "-m deltahall" in ln
        else ln.split("deltahall ", 1)[-1]
        for ln in doc.splitlines()
        if "qa run --preset" in ln and not ln.startswith(("`", "|"))
    ]
    assert len(lines) >= 4
    seen = []

    def fake_run(cfg):  # noqa: ANN001, ANN202
        seen.append(cfg)
        raise KeyboardInterrupt

    monkeypatch.setattr("deltahall.experiments.qa.pipeline.run", fake_run)
    for line in lines:
        assert main(shlex.split(line)) == 130, line
    paper = [c for c in seen if c.models == PAPER_MODELS]
    assert paper and all(c.epochs == (2, 3, 4) and c.seeds == (1, 2) for c in paper)
    assert any(str(c.truthfulqa) == "hub" for c in paper) and any(
        c.prompt_format == "raw" for c in paper
    )
    assert any(c.models == (TINY_MODEL,) for c in seen)
