"""Fixtures: a private embedding/model cache, a synthetic labelled reference, the CLI with `measure`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DELTAHALL_CACHE", str(tmp_path_factory.getbasetemp() / "deltahall_cache"))


MEANS = np.array([[6.0, 0, 0, 0], [0, 6.0, 0, 0], [0, 0, 6.0, 0]])


def draw(
    rng: np.random.Generator, n: int, states: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 3, n) if states is None else states
    return MEANS[y] + rng.normal(size=(len(y), 4)), y


def blends(rng: np.random.Generator, n: int) -> np.ndarray:
    a = rng.integers(0, 3, n)
    b = (a + rng.integers(1, 3, n)) % 3
    return 0.5 * (MEANS[a] + MEANS[b]) + 0.5 * rng.normal(size=(n, 4))


@pytest.fixture()
def npy_inputs(tmp_path: Path) -> dict[str, Path]:
    """Reference (3 states x 150), generated: 60 real-like ('good') + 40 blends ('bad')."""
    rng = np.random.default_rng(0)
    X, y = draw(rng, 450, np.repeat(np.arange(3), 150))
    G = np.vstack([draw(rng, 60)[0], blends(rng, 40)])
    paths = {k: tmp_path / f"{k}.npy" for k in ("ref", "labels", "gen", "prompts")}
    np.save(paths["ref"], X.astype(np.float32))
    np.save(paths["labels"], np.array(["a", "b", "c"])[y])
    np.save(paths["gen"], G.astype(np.float32))
    np.save(paths["prompts"], np.array(["good"] * 60 + ["bad"] * 40))
    return paths


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch):
    """``deltahall.cli.main.main`` with the `measure` sub-command registered."""
    import deltahall.cli.main as M

    if "measure" not in {n for n, _, _ in M._SUBCOMMANDS}:
        monkeypatch.setattr(
            M, "_SUBCOMMANDS", (*M._SUBCOMMANDS, ("measure", "deltahall.cli.measure", "measure"))
        )
    return M.main
