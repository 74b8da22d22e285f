"""Micro-batching: requests from concurrent clients are collected for a few milliseconds and answered together.

Each of ``workers`` worker tasks on the event loop takes the waiting jobs and answers them with
shared forward passes in a thread of its own (so the event loop stays free), with ``threads``
intra-op threads; work nobody waits for any more is dropped (see :mod:`.cancellation`).
"""

from __future__ import annotations

import asyncio
import collections
import copy
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spanqa.interfaces.serve.cancellation import Abandoned, StoppableReader, abandoned_event, answer_batch
from spanqa.interfaces.serve.errors import ApiError
from spanqa.interfaces.serve.settings import ServeSettings, resolve_threads
from spanqa.reading.reader import QARequest, Reader, ReaderResult

if TYPE_CHECKING:
    from spanqa.interfaces.serve.metrics import ServeMetrics

__all__ = ["MicroBatcher"]

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    requests: list[QARequest]
    future: asyncio.Future[list[ReaderResult]]
    enqueued: float


def _set_worker_threads(threads: int) -> None:
    """Executor thread initializer: this thread's intra-op threads.

    With OpenMP (torch's CPU builds) the setting belongs to the calling thread,
    so it is made here, in the worker thread. ``get_num_threads`` first runs
    torch's once-per-thread initialisation, which would otherwise later reset
    the thread to the process-wide value (that another app's workers may have changed).
    """
    try:
        import torch

        torch.get_num_threads()
        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def _worker_readers(reader: Reader, workers: int) -> list[Reader]:
    """One reader per worker, all sharing ``reader``'s model.

    A plain :class:`Reader` becomes a :class:`StoppableReader` for each worker,
    so abandoned micro-batches stop between forward passes; a subclass of Reader
    is used as it is (its own behaviour kept; it stops between jobs only). The
    first worker keeps ``reader``'s tokenizer, the others own a copy: a fast
    tokenizer is not safe to call from two threads at once ("Already borrowed"),
    while a model in inference mode is. Other reader-like objects (test doubles)
    are shared as they are.

    Args:
        reader: The reader to serve.
        workers: How many micro-batch workers run at once.
    """
    readers: list[Reader] = []
    for i in range(workers):
        if not isinstance(reader, Reader):
            readers.append(reader)
            continue
        tokenizer = reader.tokenizer if i == 0 else copy.deepcopy(reader.tokenizer)
        if type(reader) is Reader:
            readers.append(StoppableReader(None, tokenizer, reader.config, batch_size=reader.batch_size, backend=reader.backend))
        elif i == 0:
            readers.append(reader)
        else:
            clone = copy.copy(reader)
            clone.tokenizer = tokenizer
            readers.append(clone)
    return readers


class MicroBatcher:
    """Collects requests from concurrent clients and answers them together.

    Each of ``settings.workers`` worker tasks takes the first waiting job,
    waits up to ``max_wait_ms`` for more (until ``max_batch_items``
    questions), and runs ``reader.answer_batch`` on all of them in a thread of
    its own with ``threads`` intra-op threads (:func:`resolve_threads`); each
    request keeps its own ``top_k`` / ``max_answer_length`` / ``handle_impossible``.

    Work nobody waits for is dropped: jobs whose callers timed out while queued
    are skipped, and a running micro-batch stops between forward passes once all
    its callers have given up (``abandoned`` in :attr:`stats`).
    """

    def __init__(self, reader: Reader, settings: ServeSettings, metrics: ServeMetrics | None = None) -> None:
        self.reader = reader
        self.settings = settings
        self.metrics = metrics
        self.max_wait = settings.max_wait_ms / 1000.0
        self.max_items = settings.max_batch_items
        self.workers = settings.workers
        self.threads = resolve_threads(settings)
        self._readers = _worker_readers(reader, self.workers)
        self._executor: ThreadPoolExecutor | None = None
        self._pending: collections.deque[_Job] = collections.deque()
        self._pending_items = 0
        self._wakeup: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None] | None] = [None] * self.workers
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        self.questions = 0
        self.requests = 0
        self.largest_batch = 0
        self.abandoned = 0

    @property
    def waiting(self) -> int:
        """Questions waiting for a worker."""
        return self._pending_items

    @property
    def stats(self) -> dict[str, int | float]:
        return {
            "batches": self.batches,
            "requests": self.requests,
            "questions": self.questions,
            "largest_batch": self.largest_batch,
            "abandoned": self.abandoned,
            "mean_batch": round(self.questions / self.batches, 3) if self.batches else 0.0,
            "waiting": self._pending_items,
            "workers": self.workers,
            "threads": self.threads,
        }

    def start(self) -> None:
        """Start the workers on the running event loop (again, if the loop changed)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and all(task is not None and not task.done() for task in self._tasks):
            return
        if self._loop is not loop:  # a new event loop: jobs of the old one cannot be answered any more
            self._pending.clear()
            self._pending_items = 0
            self._tasks = [None] * self.workers
            self._wakeup = asyncio.Event()
        self._loop = loop
        if self._executor is None:
            # One thread per worker, so each runs one batch at a time off the event loop with its own thread setting.
            self._executor = ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="spanqa-reader", initializer=_set_worker_threads, initargs=(self.threads,)
            )
        for i, task in enumerate(self._tasks):
            if task is None or task.done():
                self._tasks[i] = loop.create_task(self._run(self._readers[i]), name=f"spanqa-microbatcher-{i}")

    async def stop(self) -> None:
        tasks, self._tasks = [t for t in self._tasks if t is not None and not t.done()], [None] * self.workers
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(ApiError(503, "unavailable", "the server is shutting down"))
        self._pending_items = 0
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, requests: list[QARequest], timeout: float) -> list[ReaderResult]:
        self.start()
        assert self._loop is not None and self._wakeup is not None
        if self._pending_items + len(requests) > self.settings.max_queue_items:
            raise ApiError(503, "overloaded", f"too many questions waiting ({self._pending_items}); retry shortly")
        job = _Job(requests, self._loop.create_future(), self._loop.time())
        self._pending.append(job)
        self._pending_items += len(requests)
        self.requests += 1
        self._wakeup.set()
        try:
            return await asyncio.wait_for(job.future, timeout)
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"no answer within {timeout:g} s; try a shorter context or fewer questions") from None

    async def _run(self, reader: Reader) -> None:
        assert self._loop is not None and self._wakeup is not None
        loop, wakeup = self._loop, self._wakeup
        while True:
            try:
                while not self._pending:
                    wakeup.clear()
                    await wakeup.wait()
                deadline = self._pending[0].enqueued + self.max_wait
                while self._pending and self._pending_items < self.max_items and (remaining := deadline - loop.time()) > 0:
                    wakeup.clear()
                    try:
                        await asyncio.wait_for(wakeup.wait(), remaining)
                    except asyncio.TimeoutError:
                        break
                jobs: list[_Job] = []
                count = 0
                while self._pending and (not jobs or count + len(self._pending[0].requests) <= self.max_items):
                    job = self._pending.popleft()
                    self._pending_items -= len(job.requests)
                    if job.future.done():  # timed out while waiting
                        continue
                    jobs.append(job)
                    count += len(job.requests)
                if jobs:
                    await self._process(loop, jobs, reader)
            except asyncio.CancelledError:
                raise
            except Exception:  # pragma: no cover - keep serving whatever happens
                logger.exception("micro-batch worker error")

    async def _process(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job], reader: Reader) -> None:
        executor = self._executor
        flat = [r for job in jobs for r in job.requests]
        self.batches += 1
        self.questions += len(flat)
        self.largest_batch = max(self.largest_batch, len(flat))
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(flat))
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(executor, answer_batch, reader, flat, _abandoned(jobs))
        except Abandoned:
            self._note_abandoned(len(flat))
            return
        except Exception as err:
            if len(jobs) == 1:
                _settle(jobs[0], error=err)
                return
            # Answer each request on its own, so one bad request cannot fail its neighbours.
            for job in jobs:
                if job.future.done():
                    continue
                try:
                    _settle(job, await loop.run_in_executor(executor, answer_batch, reader, job.requests, _abandoned([job])))
                except Abandoned:
                    self._note_abandoned(len(job.requests))
                except Exception as job_err:
                    _settle(job, error=job_err)
            return
        finally:
            if self.metrics is not None:
                self.metrics.batch_seconds.observe(time.perf_counter() - started)
        lo = 0
        for job in jobs:
            _settle(job, results[lo : lo + len(job.requests)])
            lo += len(job.requests)

    def _note_abandoned(self, questions: int) -> None:
        """Count and log a micro-batch stopped because every caller had given up."""
        self.abandoned += 1
        logger.info("stopped a micro-batch of %d question(s) early: every caller had given up waiting", questions)


def _abandoned(jobs: Sequence[_Job]) -> threading.Event:
    """Set once every job's caller has its answer or has given up: the stop signal of their micro-batch."""
    return abandoned_event([job.future for job in jobs])


def _settle(job: _Job, results: list[ReaderResult] | None = None, error: BaseException | None = None) -> None:
    if job.future.done():
        return
    if error is not None:
        job.future.set_exception(error)
    else:
        job.future.set_result(results or [])
