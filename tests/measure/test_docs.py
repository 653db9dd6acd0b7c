"""Every `deltahall measure` command in docs/measure.md parses and builds a valid MeasureConfig."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "measure.md"


def _commands() -> list[list[str]]:
    text = DOC.read_text(encoding="utf-8").replace("\\\n", " ")
    return [
        shlex.split(line.strip())[1:]
        for line in text.splitlines()
        if line.strip().startswith("deltahall measure ")
    ]


@pytest.mark.skipif(not DOC.is_file(), reason="docs not shipped with this install")
def test_documented_commands_parse(cli) -> None:
    import deltahall.cli.main as M
    from deltahall.cli.config_args import config_from_args
    from deltahall.measure.pipeline import MeasureConfig

    cmds = _commands()
    assert len(cmds) >= 4
    for argv in cmds:
        args = M.build_parser(only="measure").parse_args(argv)
        cfg = config_from_args(MeasureConfig, args, config_file=args.config)
        assert cfg.reference is not None and cfg.generated is not None
