"""What a run shows: spanqa's own lines by default, the libraries' notes only when asked for.

transformers and huggingface_hub report what is their business, not the user's: each model
load draws a "Loading weights" bar and logs a ``LOAD REPORT`` table (a fresh QA head is
"MISSING", a base encoder's pooler "UNEXPECTED"), each save draws "Writing model shards" bars,
and the Trainer warns about file systems. Inside :func:`quiet_libraries` that goes unless
:func:`set_verbose` asked for it (the CLI's ``--verbose``); spanqa says in its own words what
matters (:mod:`spanqa.runtime.models` reports a new head in one sentence). Everything is put
back on leaving, so settings a program made itself (``transformers.logging.set_verbosity_info()``)
hold outside spanqa's calls, and ``TRANSFORMERS_VERBOSITY`` / ``HF_HUB_DISABLE_PROGRESS_BARS``
are never overridden. Download bars (huggingface_hub's) stay: a download takes time the user
should see.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["set_verbose", "is_verbose", "quiet_libraries", "details_hidden", "strip_escapes"]

_settings = {"verbose": False}

_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

_LIBRARY_LOGGERS = ("transformers", "huggingface_hub")
"""The libraries' root loggers (each has its own handler and level)."""


def set_verbose(verbose: bool) -> None:
    """Show (True) or hide (False, the default) the libraries' notes, load reports and bars in spanqa's calls."""
    _settings["verbose"] = bool(verbose)


def is_verbose() -> bool:
    """Whether the libraries' notes are shown (see :func:`set_verbose`)."""
    return _settings["verbose"]


def strip_escapes(text: str) -> str:
    """``text`` without terminal escape sequences (colours, bold)."""
    return _ESCAPES.sub("", text)


class _PlainWhenRedirected(logging.Filter):
    """Drops the colour codes transformers writes into its messages when stderr is not a terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "\x1b[" in record.msg and not _is_terminal(sys.stderr):
            record.msg = strip_escapes(record.msg)
        return True


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Within: transformers' and huggingface_hub's warnings and transformers' bars hidden (unless verbose);
    whatever they still log carries no escape codes when stderr is not a terminal. All restored on leaving."""
    plain = _PlainWhenRedirected()
    loggers = [logging.getLogger(name) for name in ("transformers.modeling_utils", "transformers.utils.loading_report")]
    for each in loggers:
        each.addFilter(plain)
    try:
        if is_verbose():
            yield
        else:
            with _library_levels(logging.ERROR), _no_transformers_bars():
                yield
    finally:
        for each in loggers:
            each.removeFilter(plain)


@contextmanager
def details_hidden(*names: str) -> Iterator[None]:
    """Within: the INFO lines of the loggers ``names`` (a step's details: caches read, temporary
    indexes built, each setting saved) hidden unless verbose; their warnings still show.

    Only loggers whose level nobody set (``NOTSET``) are raised, to WARNING, and set back on leaving.
    """
    if is_verbose():
        yield
        return
    raised = [each for each in map(logging.getLogger, names) if each.level == logging.NOTSET and each.getEffectiveLevel() < logging.WARNING]
    for each in raised:
        each.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for each in raised:
            each.setLevel(logging.NOTSET)


@contextmanager
def _library_levels(level: int) -> Iterator[None]:
    """The libraries' loggers at ``level`` at least, unless the environment sets transformers' verbosity."""
    if os.environ.get("TRANSFORMERS_VERBOSITY"):
        yield
        return
    raised = [(each, each.level) for each in map(logging.getLogger, _LIBRARY_LOGGERS) if each.getEffectiveLevel() < level]
    for each, _ in raised:
        each.setLevel(level)
    try:
        yield
    finally:
        for each, before in raised:
            each.setLevel(before)


@contextmanager
def _no_transformers_bars() -> Iterator[None]:
    """transformers' own bars ("Loading weights", "Writing model shards") off; huggingface_hub's download bars as they were."""
    from huggingface_hub import utils as hub
    from transformers.utils import logging as transformers_logging

    if not transformers_logging.is_progress_bar_enabled():
        yield
        return
    hub_bars = not hub.are_progress_bars_disabled()
    transformers_logging.disable_progress_bar()  # turns huggingface_hub's off too
    if hub_bars:
        hub.enable_progress_bars()
    try:
        yield
    finally:
        transformers_logging.enable_progress_bar()  # and huggingface_hub's
        if not hub_bars:
            hub.disable_progress_bars()
