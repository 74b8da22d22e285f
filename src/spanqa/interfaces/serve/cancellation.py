"""Dropping work nobody waits for: a micro-batch stops between forward passes once all its callers have given up.

The worker thread answering a micro-batch holds the batch's stop signal (a thread-safe
:class:`threading.Event`, set on the event loop when every caller's future is done) in a
thread-local, and :class:`StoppableReader` checks it before each forward pass, raising
:class:`Abandoned`. So one huge request whose caller timed out cannot keep the model busy for
the requests queued behind it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from spanqa.reading.reader import QARequest, Reader, ReaderResult

if TYPE_CHECKING:
    import numpy as np

    from spanqa.stages.features import Features

__all__ = ["Abandoned", "StoppableReader", "answer_batch", "abandoned_event"]


class Abandoned(Exception):
    """Raised in a worker thread between forward passes once nobody waits for the micro-batch's answers."""


# The stop signal of the micro-batch that the current worker thread runs (set by answer_batch).
_batch_state = threading.local()


def _stop_if_abandoned() -> None:
    """Raise :class:`Abandoned` if this thread's micro-batch has been given up by all its callers."""
    abandoned: threading.Event | None = getattr(_batch_state, "abandoned", None)
    if abandoned is not None and abandoned.is_set():
        raise Abandoned


class StoppableReader(Reader):
    """A worker's reader that stops between forward passes when its micro-batch is no longer wanted.

    The check sits in :meth:`logits`, the one loop over the model (``batch_size``
    windows per pass), so a request with thousands of windows stops within one
    pass of its caller's timeout instead of keeping the worker, and every request
    queued behind it, busy to the end.
    """

    def logits(self, features: Features, batch_size: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        _stop_if_abandoned()
        for batch in super().logits(features, batch_size):
            yield batch
            _stop_if_abandoned()  # before the next pass: the caller's deadline may have passed during this one


def answer_batch(reader: Reader, requests: list[QARequest], abandoned: threading.Event) -> list[ReaderResult]:
    """``reader.answer_batch(requests)`` in a worker thread, stopped early once ``abandoned`` is set.

    Args:
        reader: The worker's reader; a :class:`StoppableReader` raises :class:`Abandoned`
            between forward passes once ``abandoned`` is set, other readers run to the end.
        requests: The questions to answer.
        abandoned: Set (on the event loop) when every caller has stopped waiting; see :func:`abandoned_event`.
    """
    _batch_state.abandoned = abandoned
    try:
        return reader.answer_batch(requests)
    finally:
        _batch_state.abandoned = None


def abandoned_event(futures: Sequence[asyncio.Future[Any]]) -> threading.Event:
    """An event that is set once every future is done: answered, or given up (timed out, cancelled).

    A thread-safe event rather than the futures themselves, because the worker
    thread reads it while the event loop settles the futures.

    Args:
        futures: The callers' futures of the jobs answered by one run of the model.
    """
    event = threading.Event()

    def check(_: asyncio.Future[Any]) -> None:
        if all(future.done() for future in futures):
            event.set()

    for future in futures:
        future.add_done_callback(check)
    return event
