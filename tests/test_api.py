"""The public API: names, typing marker, and a light import."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import spanqa


def test_every_public_name_resolves():
    for name in spanqa.__all__:
        assert getattr(spanqa, name) is not None, name


def test_package_is_typed_and_ships_sample_data():
    root = resources.files("spanqa")
    assert (root / "py.typed").is_file()
    assert (root / "sample_data" / "train.json").is_file() and (root / "sample_data" / "dev.json").is_file()
    assert (root / "static" / "index.html").is_file()


def test_import_does_not_load_transformers_or_torch():
    """`spanqa --help` and `python -m spanqa` start fast; heavy libraries load when a command needs them."""
    code = "import sys, spanqa, spanqa.interfaces.cli; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
