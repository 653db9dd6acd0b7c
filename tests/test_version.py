"""The version lives in one place: ``deltahall.__version__``; pyproject reads it from there."""

from __future__ import annotations

import re
import sys
from importlib.metadata import version
from pathlib import Path

import deltahall

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_pyproject_takes_the_version_from_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"], "a second version number in pyproject.toml"
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "deltahall.__version__"}


def test_the_package_states_its_version_once() -> None:
    hits = [
        p
        for p in (ROOT / "src" / "deltahall").rglob("*.py")
        if re.search(r"^__version__\s*=", p.read_text(encoding="utf-8"), flags=re.M)
    ]
    assert hits == [ROOT / "src" / "deltahall" / "__init__.py"]
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+|\.dev\d+)?", deltahall.__version__)


def test_installed_metadata_agrees() -> None:
    assert version("deltahall") == deltahall.__version__


def test_the_changelog_has_an_unreleased_section() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in text
