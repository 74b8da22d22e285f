"""What the README's first command installs: every command of its table but Ray's and Haystack's; hints spelled as the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

ROOT = Path(__file__).resolve().parents[1]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_serve_and_export_need_no_extra():
    """Before: `spanqa serve` and `spanqa export --onnx` failed after the README's install, asking for extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _names(project["dependencies"])
    assert {"fastapi", "uvicorn", "pydantic-settings", "prometheus-client", "fastapi-offline", "onnx", "onnxruntime"} <= core
    extras = project["optional-dependencies"]
    assert not ({"ray", "haystack-ai"} & core) and _names(extras["ray"]) == {"ray"} and _names(extras["haystack"]) == {"haystack-ai"}


def test_every_install_hint_is_spelled_as_the_readme_spells_it():
    readme = (ROOT / "README.md").read_text()
    hints = set()
    for path in (ROOT / "src" / "spanqa").rglob("*.py"):
        hints |= set(re.findall(r"pip install [\"']?spanqa\[\w+\][\"']?", path.read_text()))
    assert hints, "no install hints found"
    for hint in hints:
        assert hint in readme, f"{hint!r} is not how the README spells it"


def test_the_default_outputs_are_ignored_by_git():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "spanqa-model/" in ignored and "spanqa-eval/" in ignored
