"""The one registry (issue 13 item 2) and the one resolver: preset < config file < command line.

Every kind of named thing (experiment presets, model and data aliases, built models, embedders,
main-job steps) is a :class:`deltahall._registry.Registry`, and an unknown name is an error that
lists the known ones; every experiment command line resolves its config through
:func:`deltahall.cli.config_args.config_from_args` and refuses unknown config-file keys.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from deltahall._registry import Registry, UnknownName
from deltahall._validation import BadInput

# --------------------------------------------------------------------------- Registry itself


def test_register_as_call_and_decorator_keeps_order() -> None:
    reg: Registry[Any] = Registry("preset", owner="toy")
    assert reg.register("a", 1) == 1

    @reg.register("b")
    def b() -> int:
        return 2

    assert reg.names() == ("a", "b") and list(reg) == ["a", "b"] and len(reg) == 2
    assert reg.get("b") is b and reg["a"] == 1 and reg.first == "a"
    assert dict(reg.items()) == {"a": 1, "b": b}
    assert "a" in reg and "c" not in reg and 3 not in reg


def test_unknown_name_lists_the_known_ones() -> None:
    reg = Registry("preset", owner="qa", entries={"paper": 1, "tiny": 2, "cpu-smollm2": 3})
    msg = r"^unknown preset 'cpu' for qa; known presets: paper, tiny, cpu-smollm2\.$"
    with pytest.raises(UnknownName, match=msg):
        reg.get("cpu")
    with pytest.raises(KeyError, match=msg):  # a mapping's error too
        reg["cpu"]
    with pytest.raises(BadInput, match=msg):  # the command line's "bad input" (exit 2)
        reg.get("cpu")
    assert reg.get("cpu", None) is None and reg.get("cpu", 7) == 7


def test_duplicate_and_empty_names_are_refused() -> None:
    reg = Registry("embedder alias", plural="aliases", entries={"@minilm": 1})
    with pytest.raises(BadInput, match=r"embedder alias '@minilm' is registered already"):
        reg.register("@minilm", 2)
    with pytest.raises(BadInput, match=r"embedder alias '@minilm' is registered already"):
        reg.register("@minilm")(lambda: 3)
    for bad in ("", "  ", None, 3):
        with pytest.raises(BadInput, match=r"name must be a non-empty string"):
            reg.register(bad, 1)  # type: ignore[arg-type]
    with pytest.raises(BadInput, match=r"registered already"):
        Registry("step", entries=[("a", 1), ("a", 2)])
    assert reg.get("@minilm") == 1


def test_setitem_only_replaces_an_existing_entry() -> None:
    reg = Registry("step", entries={"theory": "m"})
    reg["theory"] = "n"
    assert reg.get("theory") == "n"
    with pytest.raises(UnknownName, match=r"unknown step 'qa'; known steps: theory\."):
        reg["qa"] = "x"


def test_empty_registry_says_so() -> None:
    reg: Registry[int] = Registry("preset", owner="toy")
    with pytest.raises(UnknownName, match=r"known presets: none\."):
        reg.get("x")
    with pytest.raises(BadInput, match=r"no presets for toy are registered"):
        _ = reg.first


# --------------------------------------------------------------------------- every kind


def _kinds() -> dict[str, tuple[Registry[Any], str]]:
    from deltahall.experiments.coinflip.config import PRESETS as COINFLIP
    from deltahall.experiments.main_job import STEPS
    from deltahall.experiments.modes.config import PRESETS as MODES
    from deltahall.experiments.qa.arms import PRESETS as ARMS
    from deltahall.experiments.qa.config import PRESETS as QA
    from deltahall.experiments.t2i.config import PRESETS as T2I
    from deltahall.models.embedders import EMBEDDERS
    from deltahall.models.registry import ALIASES, BUILT_MODELS, DATA_ALIASES

    return {
        "coinflip presets": (COINFLIP, "paper"),
        "t2i presets": (T2I, "digits"),
        "qa presets": (QA, "paper"),
        "qa arms presets": (ARMS, "cpu-real"),
        "modes presets": (MODES, "tiny"),
        "model aliases": (ALIASES, "@minilm"),
        "built models": (BUILT_MODELS, "@tiny"),
        "data aliases": (DATA_ALIASES, "@standin"),
        "embedders": (EMBEDDERS, "@minilm"),
        "main-job steps": (STEPS, "theory"),
    }


@pytest.mark.parametrize("kind", list(_kinds()))
def test_every_kind_is_a_registry_whose_unknown_names_list_the_known_ones(kind: str) -> None:
    reg, first = _kinds()[kind]
    assert isinstance(reg, Registry) and reg.first == first and len(reg.names()) >= 1
    with pytest.raises(UnknownName) as info:
        reg.get("@no-such-name")
    msg = str(info.value)
    assert "'@no-such-name'" in msg and all(name in msg for name in reg.names()), msg
    with pytest.raises(BadInput, match="registered already"):
        reg.register(first, None)


def test_the_known_names() -> None:
    k = _kinds()
    assert k["qa presets"][0].names() == ("paper", "tiny", "cpu-smollm2")
    assert k["qa arms presets"][0].names() == ("cpu-real", "cpu-smollm2", "tiny")
    assert k["t2i presets"][0].names() == ("digits", "afhq-sd15")
    assert k["modes presets"][0].names() == ("tiny", "cpu")
    assert k["embedders"][0].names() == ("@minilm", "@efficientnet-lite0", "@digits-cnn")
    assert set(k["data aliases"][0].names()) == {"@standin", "@open-qa", "@sklearn-digits"}
    assert k["main-job steps"][0].names() == ("theory", "coinflip", "t2i", "qa", "real", "modes")


@pytest.mark.parametrize("kind", ["coinflip", "t2i", "qa", "qa arms", "modes"])
def test_presets_are_complete_configs_and_the_first_is_the_field_defaults(kind: str) -> None:
    reg, _ = _kinds()[f"{kind} presets"]
    configs = [reg.get(n) for n in reg.names()]
    cls = type(configs[0])
    assert configs[0] == cls() and all(type(c) is cls for c in configs)
    assert cls.PRESETS is reg
    for c in configs:  # JSON round trip: every preset is plain values
        assert cls.from_dict(json.loads(json.dumps(c.to_dict()))) == c
        # coinflip run has no default folder: --out-dir is required (the sweep names each run's)
        assert (c.run.out_dir is not None) == (kind != "coinflip")
    with pytest.raises(UnknownName, match=rf"unknown preset 'nope' for {kind}"):
        cls.from_preset("nope")


def test_unknown_model_and_data_aliases_in_configs_list_the_known_ones() -> None:
    from deltahall.experiments.qa.arms import ArmsConfig
    from deltahall.experiments.qa.config import QAConfig

    with pytest.raises(UnknownName, match=r"unknown model alias '@gema' for `model`.*@gemma3-270m"):
        ArmsConfig.tiny(model="@gema")
    with pytest.raises(UnknownName, match=r"unknown model alias '@tinyy' for `models`.*@tiny"):
        QAConfig.tiny(models=("@tinyy",))
    with pytest.raises(
        BadInput, match=r"'@minilm' is a text-embedder; `models` takes causal-lm aliases"
    ):
        QAConfig.tiny(models=("@minilm",))
    with pytest.raises(UnknownName, match=r"unknown data alias '@standim'.*@standin"):
        QAConfig.tiny(truthfulqa="@standim")
    with pytest.raises(BadInput, match=r"`truthfulqa` cannot use the data alias '@sklearn-digits'"):
        ArmsConfig.tiny(truthfulqa="@sklearn-digits")


def test_resolve_model_names_built_and_unknown_aliases() -> None:
    from deltahall.models import resolve_model

    with pytest.raises(BadInput, match=r"'@tiny' is built offline by the experiment"):
        resolve_model("@tiny")
    with pytest.raises(UnknownName, match=r"unknown model alias '@nope'; known aliases: @minilm"):
        resolve_model("@nope")


def test_load_embedder_unknown_alias_lists_the_embedders() -> None:
    from deltahall.models import load_embedder

    with pytest.raises(
        UnknownName, match=r"unknown embedder alias '@clip'; known aliases: @minilm, @eff"
    ):
        load_embedder("@clip")
    with pytest.raises(ValueError, match=r"not an embedder; embedders: @minilm"):
        load_embedder("@gemma3-270m")


def test_main_job_only_lists_the_steps() -> None:
    from deltahall.experiments.main_job import MainJobConfig

    with pytest.raises(BadInput, match=r"`only` must name steps among \['theory', 'coinflip'"):
        MainJobConfig(only=("theroy",))


# --------------------------------------------------------------------------- the resolver


def _parser(command: str) -> argparse.ArgumentParser:
    from deltahall.cli.main import build_parser

    return build_parser(only=command)


#: (command prefix, a field, its value in preset B, a value for the file, a value for the
#: command line, preset A (the default) and preset B, how to resolve the parsed arguments).
def _resolve_run(args: argparse.Namespace) -> Any:
    from deltahall.cli.config_args import config_from_args

    cls = {
        "coinflip": "deltahall.experiments.coinflip.config:CoinFlipConfig",
        "t2i": "deltahall.experiments.t2i.config:T2IConfig",
        "qa": "deltahall.experiments.qa.config:QAConfig",
        "modes": "deltahall.experiments.modes.config:ModesConfig",
        "report": "deltahall.experiments.main_job:MainJobConfig",
    }[args.command]
    import importlib

    mod, name = cls.split(":")
    return config_from_args(
        getattr(importlib.import_module(mod), name), args, config_file=args.config
    )


def _resolve_arms(args: argparse.Namespace) -> Any:
    from deltahall.cli.qa_arms import resolve_config

    return resolve_config(args)


def _resolve_modes(args: argparse.Namespace) -> Any:
    from deltahall.cli.modes import build_config

    return build_config(args)


def _resolve_sweep(args: argparse.Namespace) -> Any:
    from deltahall.cli.coinflip import _sweep_config

    return _sweep_config(args)


CLIS: dict[str, dict[str, Any]] = {
    "coinflip run": dict(
        argv=["coinflip", "run", "--out-dir", "o"],
        field="epochs",
        file=7,
        cli=9,
        resolve=_resolve_run,
        presets=None,
    ),
    "t2i run": dict(
        argv=["t2i", "run"],
        field="train_steps",
        file=600,
        cli=900,
        resolve=_resolve_run,
        presets=("digits", "afhq-sd15"),
    ),
    "qa run": dict(
        argv=["qa", "run"],
        field="max_new_tokens",
        file=11,
        cli=13,
        resolve=_resolve_run,
        presets=("paper", "tiny"),
    ),
    "qa arms": dict(
        argv=["qa", "arms"],
        field="max_new_tokens",
        file=11,
        cli=13,
        resolve=_resolve_arms,
        presets=("cpu-real", "tiny"),
    ),
    "modes run": dict(
        argv=["modes", "run"],
        field="width",
        file=48,
        cli=40,
        resolve=_resolve_modes,
        presets=("tiny", "cpu"),
    ),
    "coinflip sweep": dict(
        argv=["coinflip", "sweep"],
        field="rounds",
        file=3,
        cli=4,
        resolve=_resolve_sweep,
        presets=None,
    ),
    "report": dict(
        argv=["report"], field="seed", file=3, cli=4, resolve=_resolve_run, presets=None
    ),
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _write(path: Path, values: dict[str, Any]) -> str:
    path.write_text(json.dumps(values), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("cli", list(CLIS))
def test_resolver_order_is_preset_then_file_then_command_line(cli: str, tmp_path: Path) -> None:
    spec = CLIS[cli]
    p, argv, field, resolve = _parser(spec["argv"][0]), spec["argv"], spec["field"], spec["resolve"]
    base = resolve(p.parse_args(argv))
    default = getattr(base, field)
    assert default not in (spec["file"], spec["cli"])
    f = _write(tmp_path / "c.json", {field: spec["file"]})
    assert getattr(resolve(p.parse_args([*argv, "--config", f])), field) == spec["file"]
    both = p.parse_args([*argv, "--config", f, _flag(field), str(spec["cli"])])
    assert getattr(resolve(both), field) == spec["cli"]
    assert (
        getattr(resolve(p.parse_args([*argv, _flag(field), str(spec["cli"])])), field)
        == spec["cli"]
    )
    if spec["presets"] is None:
        return
    first, other = spec["presets"]
    cls = type(base)
    assert base == cls.PRESETS.get(first) or base.run.out_dir == Path("o")
    chosen = resolve(p.parse_args([*argv, "--preset", other]))
    want = cls.PRESETS.get(other)
    assert chosen == want  # the preset alone: exactly the registered config
    # the preset named in the file is used when the command line names none; the command line wins
    f2 = _write(tmp_path / "p.json", {"preset": other, field: spec["file"]})
    from_file = resolve(p.parse_args([*argv, "--config", f2]))
    assert from_file == want.replace(**{field: spec["file"]})
    over = resolve(p.parse_args([*argv, "--config", f2, "--preset", first]))
    assert over == cls.PRESETS.get(first).replace(**{field: spec["file"]})
    # run options: the preset's, then the file's [run] table, then the command line
    f3 = _write(tmp_path / "r.json", {"run": {"out_dir": str(tmp_path / "from-file")}})
    r = resolve(p.parse_args([*argv, "--preset", other, "--config", f3]))
    assert r.run.out_dir == tmp_path / "from-file" and r.run.threads == want.run.threads
    r = resolve(p.parse_args([*argv, "--preset", other, "--config", f3, "--out-dir", "cli"]))
    assert r.run.out_dir == Path("cli")


def test_report_only_is_resolved_like_every_field(tmp_path: Path) -> None:
    # `deltahall report --only`: the default (every step) < the config file < the command line,
    # and an unknown step, from either, is refused naming the known ones.
    p = _parser("report")
    assert _resolve_run(p.parse_args(["report"])).only == ()
    f = _write(tmp_path / "c.json", {"only": ["theory", "coinflip"]})
    assert _resolve_run(p.parse_args(["report", "--config", f])).only == ("theory", "coinflip")
    both = p.parse_args(["report", "--config", f, "--only", "modes"])
    assert _resolve_run(both).only == ("modes",)
    known = r"among \['theory', 'coinflip', 't2i', 'qa', 'real', 'modes'\]; got \['nope'\]"
    bad = _write(tmp_path / "b.json", {"only": ["theory", "nope"]})
    with pytest.raises(BadInput, match=known):
        _resolve_run(p.parse_args(["report", "--config", bad]))
    with pytest.raises(BadInput, match=known):
        _resolve_run(p.parse_args(["report", "--config", f, "--only", "nope"]))
    # the command line's valid value wins over the file's bad one
    assert _resolve_run(p.parse_args(["report", "--config", bad, "--only", "qa"])).only == ("qa",)


@pytest.mark.parametrize("cli", list(CLIS))
def test_every_cli_refuses_unknown_config_keys(cli: str, tmp_path: Path) -> None:
    spec = CLIS[cli]
    p, argv, resolve = _parser(spec["argv"][0]), spec["argv"], spec["resolve"]
    f = _write(tmp_path / "c.json", {"learning_ratez": 1})
    with pytest.raises(ValueError, match=r"unknown key.*learning_ratez"):
        resolve(p.parse_args([*argv, "--config", f]))
    if cli != "report":
        f = _write(tmp_path / "r.json", {"run": {"threadz": 1}})
        with pytest.raises(ValueError, match=r"unknown keys \['threadz'\]"):
            resolve(p.parse_args([*argv, "--config", f]))


@pytest.mark.parametrize("cli", [c for c in CLIS if CLIS[c]["presets"]])
def test_unknown_presets_list_the_known_ones(
    cli: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = CLIS[cli]
    p, argv, resolve = _parser(spec["argv"][0]), spec["argv"], spec["resolve"]
    with pytest.raises(SystemExit):
        p.parse_args([*argv, "--preset", "nope"])
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err and all(n in err for n in spec["presets"]), err
    f = _write(tmp_path / "c.json", {"preset": "nope"})
    with pytest.raises(UnknownName, match=rf"unknown preset 'nope'.*{spec['presets'][0]}"):
        resolve(p.parse_args([*argv, "--config", f]))
