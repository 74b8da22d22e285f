"""Exceptions for mistakes a user can fix.

Anything raised as a :class:`SpanQAError` is reported by the CLI as one line
(``error: ...``) with exit status 1, never as a traceback, so messages must say
what was wrong, where, and what was expected.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["SpanQAError", "DataError", "ConfigError", "ModelError", "OutputError", "did_you_mean", "near_path", "first_line"]


class SpanQAError(Exception):
    """A user-facing error: bad input, bad option, or an unusable model."""


class DataError(SpanQAError, ValueError):
    """A data file cannot be read or fails validation."""


class ConfigError(SpanQAError, ValueError):
    """An option or configuration value is invalid."""


class OutputError(SpanQAError):
    """An output cannot be written (full disk, read-only folder, a file where a folder should be, ...)
    or would replace finished work."""


class ModelError(SpanQAError):
    """A model or tokenizer cannot be used for extractive QA."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean ...?)' hint for a misspelt name, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def near_path(path: str | Path, folders_only: bool = False) -> str:
    """' (did you mean ./x?)' when an entry beside ``path`` is named almost like it, else ''.

    Args:
        path: A path that does not exist.
        folders_only: Consider folders only (model names), not files.
    """
    path = Path(path)
    parent = path.parent
    try:
        entries = [p for p in parent.iterdir() if not p.name.startswith(".") and (p.is_dir() or not folders_only)]
    except OSError:
        return ""
    by_name = {p.name: p.name for p in entries} | {p.stem: p.name for p in entries if p.is_file()}  # 'dev' finds dev.json
    close = difflib.get_close_matches(path.name, list(by_name), n=1, cutoff=0.8)
    return f" (did you mean {parent / by_name[close[0]]}?)" if close else ""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (libraries raise pages), or its type's name when it has none.

    Args:
        err: The exception.
    """
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
