"""Micro-batching in steps: requests from concurrent clients are read together, a bounded piece at a time.

Each of ``workers`` worker tasks on the event loop repeatedly plans a *step* and runs it in a thread
of its own (so the event loop stays free). A step takes the waiting requests with the fewest
windows left first, builds the windows they need next (a few texts each, see
:mod:`spanqa.reading.stepwise`), runs at most ``max_batch_windows`` of them through the model in
shared forward passes, and answers the requests whose windows are all read. So:

- a large request is read over many steps, and a small one that arrives meanwhile is answered in
  the next step, not after the large one (shortest remaining work first); a request that has waited
  ``WAIT_PER_WINDOW_S`` for each window it has left goes first whatever arrives, so a steady
  stream of small requests cannot starve a large one (see :func:`_due`);
- a request needing more than ``max_request_windows`` windows gets 413 as soon as its windows are
  counted, and no new request starts while ``max_active_windows`` are held: memory stays bounded
  whatever clients send;
- a request whose caller gave up (timed out) is dropped before the next step, with its windows.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spanqa.interfaces.serve.errors import ApiError
from spanqa.interfaces.serve.settings import ServeSettings, resolve_threads
from spanqa.reading.reader import QARequest, Reader, ReaderResult
from spanqa.reading.stepwise import Reading, WindowLimitExceeded, estimate_windows, read_chunks

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from spanqa.interfaces.serve.metrics import ServeMetrics

__all__ = ["MicroBatcher"]

logger = logging.getLogger(__name__)


WAIT_PER_WINDOW_S = 0.02
"""Seconds of waiting that give a request precedence over newer ones, per window it has left.

Shortest-remaining-first alone starved large requests under steady load: with 16 clients posting
small requests, 12 of 1,081 requests (each of a few passages) waited the full 30 s and got 504.
0.02 s is about the time of one MiniLM-L6 window on 2 cores: a request whose wait exceeds what its
remaining windows would take is served ahead of newer small ones."""


@dataclass(eq=False)
class _Job:
    """One HTTP request's questions, waiting for or being read by the model.

    Attributes:
        requests: The questions.
        future: Its caller's answers (done once answered, failed, or given up).
        enqueued: When it arrived (event-loop time).
        estimate: Its windows, guessed from the texts' length until its reading is built.
        reading: Its windows and decoders, once its first step has begun (None for a reader that only answers in one go).
        busy: A worker is running a step with it.
    """

    requests: list[QARequest]
    future: asyncio.Future[list[ReaderResult]]
    enqueued: float
    estimate: int = 1
    reading: Reading | None = None
    busy: bool = False
    gone: threading.Event = field(default_factory=threading.Event)  # the future is done: read from worker threads

    @property
    def remaining(self) -> int:
        return self.estimate if self.reading is None else self.reading.remaining_estimate()

    @property
    def held(self) -> int:
        """Windows this job holds in memory (built, not yet read)."""
        return 0 if self.reading is None else self.reading.unread


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


def reads_in_steps(reader: Any) -> bool:
    """Whether ``reader`` is a :class:`Reader` whose answering the scheduler may do in steps (a subclass
    that answers its own way, or any other reader-like object, answers whole requests instead).

    Args:
        reader: The served reader.
    """
    return isinstance(reader, Reader) and type(reader).answer_batch is Reader.answer_batch and type(reader).rank is Reader.rank


def _worker_readers(reader: Reader, workers: int) -> list[Reader]:
    """One reader per worker, all sharing ``reader``'s model.

    The first worker keeps ``reader``'s tokenizer, the others own a copy: a fast
    tokenizer is not safe to call from two threads at once ("Already borrowed"),
    while a model in inference mode is. Other reader-like objects (test doubles)
    are shared as they are.

    Args:
        reader: The reader to serve.
        workers: How many micro-batch workers run at once.
    """
    readers: list[Reader] = [reader]
    for _ in range(1, workers):
        if not isinstance(reader, Reader):
            readers.append(reader)
            continue
        clone = copy.copy(reader)
        clone.tokenizer = copy.deepcopy(reader.tokenizer)
        readers.append(clone)
    return readers


class MicroBatcher:
    """Collects requests from concurrent clients and reads them together in bounded steps.

    Each of ``settings.workers`` worker tasks waits up to ``max_wait_ms`` after
    a request arrives for more (until ``max_batch_items`` questions), then runs
    steps (see the module docstring) in a thread of its own with ``threads``
    intra-op threads (:func:`resolve_threads`); each request keeps its own
    ``top_k`` / ``max_answer_length`` / ``handle_impossible``, and its answers
    do not depend on the requests read beside it.
    """

    def __init__(self, reader: Reader, settings: ServeSettings, metrics: ServeMetrics | None = None) -> None:
        self.reader = reader
        self.settings = settings
        self.metrics = metrics
        self.max_wait = settings.max_wait_ms / 1000.0
        self.max_items = settings.max_batch_items
        self.workers = settings.workers
        self.threads = resolve_threads(settings)
        self.stepwise = reads_in_steps(reader)
        self._readers = _worker_readers(reader, self.workers)
        self._executor: ThreadPoolExecutor | None = None
        self._jobs: list[_Job] = []
        self._waiting_items = 0
        self._wakeup: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None] | None] = [None] * self.workers
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        self.questions = 0
        self.requests = 0
        self.largest_batch = 0
        self.abandoned = 0
        self.over_window_limit = 0

    @property
    def waiting(self) -> int:
        """Questions not yet answered (waiting, or part-way read)."""
        return self._waiting_items

    @property
    def held_windows(self) -> int:
        """Windows built and not yet read, over every request."""
        return sum(job.held for job in self._jobs)

    @property
    def stats(self) -> dict[str, int | float]:
        return {
            "batches": self.batches,
            "requests": self.requests,
            "questions": self.questions,
            "largest_batch": self.largest_batch,
            "abandoned": self.abandoned,
            "over_window_limit": self.over_window_limit,
            "mean_batch": round(self.questions / self.batches, 3) if self.batches else 0.0,
            "waiting": self._waiting_items,
            "held_windows": self.held_windows,
            "workers": self.workers,
            "threads": self.threads,
        }

    def start(self) -> None:
        """Start the workers on the running event loop (again, if the loop changed)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and all(task is not None and not task.done() for task in self._tasks):
            return
        if self._loop is not loop:  # a new event loop: jobs of the old one cannot be answered any more
            self._jobs.clear()
            self._waiting_items = 0
            self._tasks = [None] * self.workers
            self._wakeup = asyncio.Event()
        self._loop = loop
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            # One thread per worker, so each runs one step at a time off the event loop with its own thread setting.
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
        for job in self._jobs:
            if not job.future.done():
                job.future.set_exception(ApiError(503, "unavailable", "the server is shutting down"))
        self._jobs.clear()
        self._waiting_items = 0
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, requests: list[QARequest], timeout: float) -> list[ReaderResult]:
        """Answer ``requests`` (one HTTP request's questions) within ``timeout`` seconds.

        Raises:
            ApiError: 503 when too many questions wait, 504 after ``timeout``, 413 over ``max_request_windows``.
        """
        self.start()
        assert self._loop is not None and self._wakeup is not None
        if self._waiting_items + len(requests) > self.settings.max_queue_items:
            raise ApiError(503, "overloaded", f"too many questions waiting ({self._waiting_items}); retry shortly")
        job = _Job(requests, self._loop.create_future(), self._loop.time(), self._estimate(requests))
        job.future.add_done_callback(lambda _: job.gone.set())
        self._jobs.append(job)
        self._waiting_items += len(requests)
        self.requests += 1
        self._wakeup.set()
        try:
            return await asyncio.wait_for(job.future, timeout)
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"no answer within {timeout:g} s; try a shorter context or fewer questions") from None
        finally:
            self._wakeup.set()  # a job left: a worker may start another, or drop this one's windows

    def _estimate(self, requests: list[QARequest]) -> int:
        config = getattr(self.reader, "config", None)
        if config is None:
            return len(requests)
        return estimate_windows([text for request in requests for text in request.texts], config.window)

    async def _run(self, reader: Reader) -> None:
        assert self._loop is not None and self._wakeup is not None
        loop, wakeup = self._loop, self._wakeup
        while True:
            try:
                await self._gather(loop, wakeup)
                jobs = self._plan()
                if not jobs:
                    wakeup.clear()
                    await wakeup.wait()
                    continue
                try:
                    await self._process(loop, jobs, reader)
                finally:
                    for job in jobs:
                        job.busy = False
                    self._forget_finished()
                    wakeup.set()  # other workers may be waiting for these jobs or for memory
            except asyncio.CancelledError:
                raise
            except Exception:  # pragma: no cover - keep serving whatever happens
                logger.exception("micro-batch worker error")

    async def _gather(self, loop: asyncio.AbstractEventLoop, wakeup: asyncio.Event) -> None:
        """Wait for a request, then up to ``max_wait`` for more (until ``max_batch_items`` questions wait)."""
        while not self._idle_jobs():
            wakeup.clear()
            await wakeup.wait()
        deadline = min(job.enqueued for job in self._idle_jobs()) + self.max_wait
        while sum(len(job.requests) for job in self._idle_jobs()) < self.max_items and (remaining := deadline - loop.time()) > 0:
            wakeup.clear()
            try:
                await asyncio.wait_for(wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                break

    def _idle_jobs(self) -> list[_Job]:
        return [job for job in self._jobs if not job.busy and not job.future.done()]

    def _plan(self) -> list[_Job]:
        """The jobs of the next step, marked busy: soonest due first (:func:`_due`), up to ``max_batch_windows``
        windows and ``max_batch_items`` questions; a job not yet started only while memory allows."""
        self._forget_finished()
        budget = self.settings.max_batch_windows
        room = self.settings.max_active_windows - self.held_windows
        chosen: list[_Job] = []
        windows = questions = 0
        for job in sorted(self._idle_jobs(), key=_due):
            if chosen and (windows >= budget or questions + len(job.requests) > self.max_items):
                break
            if job.reading is None and self.stepwise:
                if room <= 0 and (chosen or self.held_windows):
                    continue  # memory is full: finish the started jobs first
                job.reading = Reading(self.reader, job.requests, window_limit=self.settings.max_request_windows)
                room -= min(job.remaining, self.settings.max_request_windows)
            chosen.append(job)
            windows += min(job.remaining, budget)
            questions += len(job.requests)
        for job in chosen:
            job.busy = True
        return chosen

    def _forget_finished(self) -> None:
        """Drop jobs that are answered or whose callers gave up (their windows go with them)."""
        kept = []
        for job in self._jobs:
            if not job.future.done() or job.busy:
                kept.append(job)
                continue
            self._waiting_items -= len(job.requests)
            if job.future.cancelled() and job.reading is not None and not job.reading.done:
                self._note_abandoned(len(job.requests))
        self._jobs = kept

    async def _process(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job], reader: Reader) -> None:
        questions = sum(len(job.requests) for job in jobs)
        self.batches += 1
        self.questions += questions
        self.largest_batch = max(self.largest_batch, questions)
        if self.metrics is not None:
            self.metrics.batch_size.observe(questions)
        started = time.perf_counter()
        step = _step if self.stepwise else _whole
        try:
            outcomes = await loop.run_in_executor(self._executor, step, reader, jobs, self.settings.max_batch_windows)
        except Exception as err:  # the model failed: every job of the step fails with it
            outcomes = [(job, err) for job in jobs]
        finally:
            if self.metrics is not None:
                self.metrics.batch_seconds.observe(time.perf_counter() - started)
        for job, outcome in outcomes:
            if isinstance(outcome, WindowLimitExceeded):
                self.over_window_limit += 1
                outcome = _window_limit_error(outcome, self.reader)
            _settle(job, outcome)

    def _note_abandoned(self, questions: int) -> None:
        """Count and log a request dropped part-way because its caller had given up."""
        self.abandoned += 1
        logger.info("dropped a request of %d question(s) part-way: its caller had given up waiting", questions)


def _due(job: _Job) -> tuple[float, float]:
    """Scheduling order: when the job is due, its arrival plus ``WAIT_PER_WINDOW_S`` per window left.

    Among requests that arrive together the one with fewest windows left goes first (shortest
    remaining work, the best mean latency); an older one goes ahead of a newer one once it has waited
    longer than the difference in their windows' worth of time (no starvation).
    """
    return job.enqueued + WAIT_PER_WINDOW_S * job.remaining, job.enqueued


def _step(reader: Reader, jobs: list[_Job], budget: int) -> list[tuple[_Job, Any]]:
    """One step, in a worker thread: build what ``jobs`` need next, read up to ``budget`` of their
    windows in shared passes, and answer those whose windows are all read.

    Args:
        reader: The worker's reader (its own tokenizer, the shared model).
        jobs: The step's jobs, each with its reading, soonest due first.
        budget: Most windows read in this step.
    """
    outcomes: list[tuple[_Job, Any]] = []
    chunks = []
    reading_jobs = []
    left = budget
    for job in jobs:
        if job.gone.is_set():
            continue  # its caller gave up while the step was planned
        reading = job.reading
        assert reading is not None
        reading.use(reader)
        try:
            # A few texts per step, and no reading until all are built: the window count (and a 413) comes
            # early, and a small request arriving meanwhile waits for one batch of texts, not a whole request.
            if not reading.built:
                reading.build()
        except Exception as err:  # over the window limit, or a text the tokenizer refuses: this job only
            outcomes.append((job, err))
            continue
        taken = reading.take(left) if reading.built and left > 0 else []
        left -= sum(len(chunk.rows) for chunk in taken)
        chunks.extend(taken)
        reading_jobs.append(job)
    read_chunks(reader, chunks)
    for job in reading_jobs:
        if job.reading is not None and job.reading.done:
            try:
                outcomes.append((job, job.reading.results()))
            except Exception as err:
                outcomes.append((job, err))
    return outcomes


def _whole(reader: Any, jobs: list[_Job], budget: int) -> list[tuple[_Job, Any]]:
    """One step for a reader that answers whole requests only: every job answered in one call
    (each on its own if that fails, so one bad request cannot fail its neighbours).

    Args:
        reader: A reader-like object with ``answer_batch``.
        jobs: The step's jobs.
        budget: Unused (the reader reads each request whole).
    """
    live = [job for job in jobs if not job.gone.is_set()]
    if not live:
        return []
    try:
        results = reader.answer_batch([request for job in live for request in job.requests])
    except Exception as err:
        if len(live) == 1:
            return [(live[0], err)]
        return [outcome for job in live for outcome in _whole(reader, [job], budget)]
    outcomes: list[tuple[_Job, Any]] = []
    lo = 0
    for job in live:
        outcomes.append((job, results[lo : lo + len(job.requests)]))
        lo += len(job.requests)
    return outcomes


def _window_limit_error(err: WindowLimitExceeded, reader: Any) -> ApiError:
    length = getattr(getattr(reader, "config", None), "max_length", None)
    unit = f"windows of {length} tokens" if length else "windows"
    return ApiError(
        413,
        "too_many_windows",
        f"this request needs more than {err.limit} model {unit} (question and text together); the limit is "
        f"max_request_windows={err.limit}: send shorter texts, fewer documents or fewer questions",
    )


def _settle(job: _Job, outcome: Any) -> None:
    if job.future.done():
        return
    if isinstance(outcome, BaseException):
        job.future.set_exception(outcome)
    else:
        job.future.set_result(outcome)
