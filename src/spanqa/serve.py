"""Serve a :class:`~spanqa.reader.Reader` over HTTP.

``POST /answer`` answers one question (``{"question", "context" | "documents", ...}``)
or several (``{"questions": [...]}``); requests from concurrent clients are
collected for a few milliseconds and answered together with shared forward
passes (micro-batching), in worker threads so the event loop stays free.
With a passage index (``spanqa serve MODEL --index DIR``, ``create_app(reader, index=...)``), a
question sent without a context is answered from the index's best passages, each answer naming
its source document and character offsets in it.
``GET /health`` describes the model, ``GET /metrics`` exposes Prometheus
metrics, ``GET /`` is a small web page, and ``/docs`` / ``/openapi.json``
document the API.

Every error is a JSON body ``{"error": {"type": ..., "message": ...}}`` with a
4xx/5xx status (validation errors add ``"details"``), and the server keeps
serving after it.

Hardening: POST bodies must be ``Content-Type: application/json`` (else 415), so
a web page on another origin cannot send a CORS "simple request" (text/plain,
form data or no type) to a local server; no CORS headers are sent. A body must
arrive within ``body_timeout_s`` (else 408 and the connection is closed), idle
keep-alive connections close after ``keep_alive_timeout_s``, and once every
caller of a micro-batch has given up (``request_timeout_s``) its remaining
forward passes are skipped, so one huge request cannot keep the model busy for
the requests after it.

Settings (:class:`ServeSettings`) come from, in increasing precedence: their
defaults, ``SPANQA_SERVE_<NAME>`` environment variables (``SPANQA_SERVE_MAX_BATCH=64``,
``SPANQA_SERVE_THREADS=auto``) and explicit values (``serve_settings(max_batch=64)``,
the command-line options of ``spanqa serve``). A bad value is a one-line
:class:`~spanqa.errors.ConfigError` naming the setting.

Parallelism: ``workers`` micro-batch workers (default 1) each run one batch at
a time in its own thread with ``threads`` intra-op threads (default: the cores
this process may use, divided among the workers; see :func:`resolve_threads`).

``GET /metrics`` is the Prometheus text format (``text/plain; version=0.0.4``),
from a registry of the app's own (``app.state.metrics.registry``):

* ``spanqa_requests_total{endpoint, method, status}``: HTTP requests by route
  (unknown paths are ``endpoint="other"``) and status code;
* ``spanqa_errors_total{endpoint, type}``: 4xx/5xx responses by error type
  (``validation_error``, ``payload_too_large``, ``timeout``, ``internal_error``, ...);
* ``spanqa_questions_answered_total``: questions answered (each of a batch counts);
* ``spanqa_answer_latency_seconds{status}``: histogram of the time to respond to ``POST /answer``;
* ``spanqa_batch_size``: histogram of questions per micro-batch (one shared model call);
* ``spanqa_batch_duration_seconds``: histogram of the model's time per micro-batch;
* ``spanqa_in_flight_requests``: requests being handled now (``/metrics`` itself not counted);
* ``spanqa_queued_questions``: questions waiting for a worker;
* ``spanqa_server_info{version, model, device, workers, threads}``: always 1.

>>> app = create_app(Reader.from_pretrained("path/to/model"))   # an ASGI app
>>> run_server("path/to/model", port=8000)                      # or load + run uvicorn
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import hashlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .devices import usable_cores
from .errors import ConfigError, DataError, SpanQAError, did_you_mean, first_line
from .index import Hit, Index, index_request, sourced_answers
from .reader import QARequest, Reader, ReaderResult
from .report import REPORT_NAME

if TYPE_CHECKING:
    import numpy as np

    from .features import Features


class MissingDependencyError(SpanQAError, ImportError):
    """Serving needs the ``serve`` extra."""


try:
    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.openapi.utils import get_openapi
    from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
    from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
    from pydantic_settings import BaseSettings, SettingsConfigDict
    from pydantic_settings.exceptions import SettingsError
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.requests import ClientDisconnect
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as _err:  # pragma: no cover - depends on the installed extras
    raise MissingDependencyError(
        f"serving needs fastapi, uvicorn, pydantic-settings and prometheus-client: pip install 'spanqa[serve]' ({_err})"
    ) from _err

__all__ = ["ServeSettings", "serve_settings", "resolve_threads", "usable_cores", "ServeMetrics", "create_app", "run_server", "MicroBatcher",
           "ApiError", "uvicorn_options"]

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
ENV_PREFIX = "SPANQA_SERVE_"

class ServeSettings(BaseSettings):
    """Limits, micro-batching and parallelism of the HTTP server.

    Each field can be set from the environment as ``SPANQA_SERVE_<FIELD>``
    (``SPANQA_SERVE_MAX_BATCH=64``); keyword arguments beat the environment.
    An invalid value raises :class:`~spanqa.errors.ConfigError`.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="forbid", use_attribute_docstrings=True
    )

    max_body_bytes: int = Field(1 * MiB, gt=0)
    """Largest request body in bytes; bigger ones get 413 (checked on Content-Length and on the bytes read)."""
    max_context_chars: int = Field(200_000, gt=0)
    """Longest context or document in characters (a 20,000-word document fits); longer gets 413."""
    max_question_chars: int = Field(2_000, gt=0)
    """Longest question in characters; longer gets 413."""
    max_batch: int = Field(32, gt=0)
    """Most questions in one {"questions": [...]} request; more gets 422."""
    max_documents: int = Field(100, gt=0)
    """Most documents ranked for one question; more gets 422."""
    max_top_k: int = Field(100, gt=0)
    """Largest top_k a request may ask for."""
    max_answer_length: int = Field(512, gt=0)
    """Largest per-request max_answer_length (tokens)."""
    passages: int = Field(10, gt=0)
    """With --index: retrieved passages the model reads per question without a context (a request's `passages`: up to max_documents)."""
    request_timeout_s: float = Field(30.0, gt=0, allow_inf_nan=False)
    """Seconds a request may wait for its answers (queue + model); then 504, and work nobody waits for any more is dropped."""
    body_timeout_s: float = Field(20.0, gt=0, allow_inf_nan=False)
    """Seconds a client may take to send a request body after its headers; then 408 and the connection is closed."""
    keep_alive_timeout_s: float = Field(5.0, gt=0, allow_inf_nan=False)
    """Seconds an idle keep-alive connection stays open after a response (uvicorn's timeout_keep_alive)."""
    max_wait_ms: float = Field(5.0, ge=0, allow_inf_nan=False)
    """Milliseconds the batcher waits for more requests after the first one arrives."""
    max_batch_items: int = Field(32, gt=0)
    """Most questions answered in one micro-batch (a bigger single request runs alone)."""
    max_queue_items: int = Field(4096, gt=0)
    """Most questions waiting for the model; beyond it requests get 503 at once."""
    workers: int = Field(1, gt=0)
    """Micro-batches run at once, each in its own thread (1: one batch at a time on all the threads)."""
    threads: int | None = Field(None, gt=0)
    """Intra-op CPU threads per worker (torch.set_num_threads); default (auto): the usable cores divided among the workers."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as err:
            raise ConfigError(_settings_error(err, explicit=set(values))) from None
        except SettingsError as err:  # pragma: no cover - only complex fields are parsed by pydantic-settings itself
            raise ConfigError(first_line(err)) from None

    @field_validator("*", mode="before")  # every setting is a number
    @classmethod
    def _no_bools(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("a boolean is not a number")
        return value

    @field_validator("threads", mode="before")
    @classmethod
    def _auto_threads(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("", "auto"):
            return None
        return value


# What each setting must be, for error messages: every plain int setting is declared with gt=0.
_REQUIREMENTS = {
    **{name: "a positive integer" for name, info in ServeSettings.model_fields.items() if info.annotation is int},
    "threads": "a positive integer or 'auto'",
    **{name: "a finite number of seconds > 0" for name in ("request_timeout_s", "body_timeout_s", "keep_alive_timeout_s")},
    "max_wait_ms": "a finite number of milliseconds >= 0",
}


def _settings_error(err: ValidationError, explicit: set[str]) -> str:
    """One line naming each bad setting: the variable ``SPANQA_SERVE_X`` if it came from the environment."""
    problems = []
    for item in err.errors(include_url=False):
        loc = item.get("loc") or ("?",)
        field = str(loc[0])
        value = item.get("input")
        if item.get("type") == "extra_forbidden":
            problems.append(f"{field}: unknown setting{did_you_mean(field, ServeSettings.model_fields)}")
            continue
        where = field if field in explicit else f"{ENV_PREFIX}{field.upper()}"
        requirement = _REQUIREMENTS.get(field)
        if requirement:
            problems.append(f"{where}: must be {requirement}, got {value!r}")
        else:  # pragma: no cover - every field has a requirement
            problems.append(f"{where}: {item.get('msg', 'invalid value')}, got {value!r}")
    return "; ".join(problems) or "invalid serve settings"


def serve_settings(**overrides: Any) -> ServeSettings:
    """Settings from the defaults, ``SPANQA_SERVE_*`` environment variables and ``overrides``, in increasing precedence.

    ``None`` overrides are ignored (an unset command-line option). Raises
    :class:`~spanqa.errors.ConfigError` for an invalid value, an unknown
    setting, or an unknown ``SPANQA_SERVE_*`` variable (a misspelt one would
    otherwise be ignored silently).
    """
    fields = ServeSettings.model_fields
    values = {name: value for name, value in overrides.items() if value is not None}
    for name in values:
        if name not in fields:
            raise ConfigError(f"{name}: unknown serve setting{did_you_mean(name, fields)}")
    known = {ENV_PREFIX + name.upper() for name in fields}
    for key in os.environ:
        if key.upper().startswith(ENV_PREFIX) and key.upper() not in known:
            raise ConfigError(f"{key}: unknown setting{did_you_mean(key.upper(), sorted(known))}; the settings are {', '.join(sorted(known))}")
    return ServeSettings(**values)


def resolve_threads(settings: ServeSettings) -> int:
    """Intra-op threads per worker: ``settings.threads``, or by default the usable cores divided among the workers.

    The default never exceeds torch's own setting (``torch.get_num_threads()``),
    so ``OMP_NUM_THREADS`` or an earlier ``torch.set_num_threads`` still caps it.

    Why one worker on all cores by default: requests are already micro-batched,
    and one forward pass over a batch of 2B windows on all cores keeps the
    matrix multiplications larger (better vectorised, the weights read once)
    than two passes of B windows on half the cores each; while a batch runs,
    new requests queue up and become the next, bigger batch. A lone request
    also gets its answer soonest with every core on it. More workers pay off
    mainly on many-core machines, where a small model's pass cannot use all
    cores and the single-threaded tokenising and decoding of one batch can
    overlap another's forward pass: set ``workers`` (e.g. 2-4, cores/workers
    threads each) and measure with ``bench/load_serve.py``.
    """
    if settings.threads is not None:
        return settings.threads
    share = max(1, usable_cores() // settings.workers)
    try:
        import torch

        return max(1, min(share, torch.get_num_threads()))
    except ImportError:  # pragma: no cover - torch is a dependency
        return share


# --------------------------------------------------------------------------- API schema


class QuestionRequest(BaseModel):
    """One question over a ``context``, or over ``documents`` ranked together (give exactly one of them);
    on a server started with ``--index``, a question with neither is answered from the index's passages."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"question": "When was the railway built?", "context": "The railway was built in 1897 to carry slate.", "top_k": 3},
                {"question": "Who founded the society?", "documents": ["First text ...", "Second text ..."]},
                {"question": "How do I reset the router?", "top_k": 3, "passages": 10},
            ]
        },
    )

    question: str = Field(description="The question; must not be empty.")
    context: str | None = Field(None, description="The text to answer from (any length up to the server's limit).")
    documents: list[str] | None = Field(None, description="Several texts; answers are ranked across them and carry a `document` index.")
    top_k: int = Field(1, ge=1, description="How many ranked answers to return in `answers`.")
    max_answer_length: int | None = Field(None, ge=1, description="Longest answer in tokens (default: the model's setting).")
    handle_impossible: bool | None = Field(None, description="Allow 'no answer' (default: the model's `version_2` setting).")
    score_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Drop answers scoring below this; none left means 'no answer' (default: the model's)."
    )
    id: str | None = Field(None, description="Echoed back in the result.")
    passages: int | None = Field(
        None, ge=1, description="Without context or documents, on a server with an index: how many retrieved passages to read (default: the server's)."
    )


class BatchRequest(BaseModel):
    """Several questions answered in one call; results come back in the same order."""

    model_config = ConfigDict(extra="forbid", strict=True)

    questions: list[QuestionRequest] = Field(description="The questions, each with its own context or documents and settings.")


class AnswerSpan(BaseModel):
    text: str = Field(description="`text == context[start:end]` (or `documents[document][start:end]`).")
    start: int = Field(description="Character offset (Unicode code points) where the answer starts.")
    end: int = Field(description="Character offset just past the answer.")
    score: float = Field(description="Probability in [0, 1] over all candidates and 'no answer'.")
    document: int | None = Field(None, description="Index of the document holding the answer (null for a single context).")
    # Only in answers from the server's index (a question without context or documents):
    # there the "documents" are the retrieved passages, so `text == passage[start:end]`.
    passage: str | None = Field(None, description="Index answers only: the retrieved passage holding the answer; `text == passage[start:end]`.")
    source: str | None = Field(None, description="Index answers only: the file the answer's document came from.")
    doc_id: str | None = Field(None, description="Index answers only: the id of the answer's document (a file path, `FILE#ROW` or an id column).")
    document_start: int | None = Field(None, description="Index answers only: character offset of the answer in its source document.")
    document_end: int | None = Field(None, description="Index answers only: offset just past the answer in its source document.")


class AnswerResponse(BaseModel):
    id: str | None
    question: str
    answer: str = Field(description="The best answer, or '' when the model decides the text does not answer the question.")
    score: float
    start: int | None
    end: int | None
    document: int | None
    is_impossible: bool
    no_answer_score: float = Field(description="Probability that the text holds no answer (calibrated when the model is).")
    no_answer_threshold: float = Field(
        description="'No answer' is decided when no_answer_score exceeds this (1: not allowed for this request)."
    )
    answers: list[AnswerSpan] = Field(description="The `top_k` best spans, best first.")
    source: str | None = Field(None, description="Index answers only: the best answer's source file (null for 'no answer').")
    doc_id: str | None = Field(None, description="Index answers only: the best answer's document id.")
    document_start: int | None = Field(None, description="Index answers only: the best answer's character offset in its source document.")
    document_end: int | None = Field(None, description="Index answers only: the offset just past the best answer in its source document.")


class BatchResponse(BaseModel):
    results: list[AnswerResponse]


class IndexHealth(BaseModel):
    passages: int = Field(description="Passages in the index.")
    documents: int = Field(description="Documents the passages come from.")
    retrieval: str = Field(description="How passages are retrieved: `bm25`, or `fused` (BM25 and embeddings).")
    embedding_model: str | None = Field(description="The sentence-embedding model of a fused index.")
    passages_per_question: int = Field(description="Retrieved passages the model reads per question unless a request asks for another number.")


class HealthResponse(BaseModel):
    status: str
    model: str | None
    version_2: bool
    null_threshold: float
    device: str
    max_length: int
    limits: dict[str, int | float]
    batching: dict[str, int | float]
    index: IndexHealth | None = Field(None, description="The passage index questions without a context are answered from (null: none).")
    report: bool = Field(False, description="Whether the model folder has a `spanqa report`, shown at `GET /report`.")


class ErrorDetail(BaseModel):
    type: str = Field(description="A stable machine-readable error kind, e.g. `invalid_json`, `validation_error`, `payload_too_large`.")
    message: str = Field(description="What was wrong, for people.")
    details: list[dict[str, Any]] | None = Field(None, description="Per-field problems (validation errors only).")


class ErrorResponse(BaseModel):
    error: ErrorDetail


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An error answered as ``{"error": {"type", "message"}}`` with ``status`` (and extra response ``headers``)."""

    def __init__(self, status: int, type: str, message: str, details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.details = details
        self.headers = headers


_STATUS_TYPES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
    503: "unavailable",
    504: "timeout",
}


def error_response(status: int, type: str, message: str, details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    error: dict[str, Any] = {"type": type, "message": message}
    if details is not None:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _loc(parts: Sequence[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def _validation_details(errors: Sequence[Mapping[str, Any]], prefix: Sequence[Any] = ()) -> tuple[str, list[dict[str, Any]]]:
    details = []
    for err in errors:
        loc = [*prefix, *(p for p in err.get("loc", ()) if p != "body")]
        details.append({"loc": loc, "msg": err.get("msg", ""), "type": err.get("type", "")})
    message = "; ".join(f"{_loc(d['loc'])}: {d['msg']}" for d in details[:5])
    if len(details) > 5:
        message += f"; and {len(details) - 5} more"
    return message or "invalid request", details


# --------------------------------------------------------------------------- micro-batching


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


class _Abandoned(Exception):
    """Raised in a worker thread between forward passes once nobody waits for the micro-batch's answers."""


# The stop signal of the micro-batch that the current worker thread runs (set by _answer_batch).
_batch_state = threading.local()


def _stop_if_abandoned() -> None:
    """Raise :class:`_Abandoned` if this thread's micro-batch has been given up by all its callers."""
    abandoned: threading.Event | None = getattr(_batch_state, "abandoned", None)
    if abandoned is not None and abandoned.is_set():
        raise _Abandoned


class _StoppableReader(Reader):
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


def _answer_batch(reader: Reader, requests: list[QARequest], abandoned: threading.Event) -> list[ReaderResult]:
    """``reader.answer_batch(requests)`` in a worker thread, stopped early once ``abandoned`` is set.

    Args:
        reader: The worker's reader; a :class:`_StoppableReader` raises :class:`_Abandoned`
            between forward passes once ``abandoned`` is set, other readers run to the end.
        requests: The questions to answer.
        abandoned: Set (on the event loop) when every caller has stopped waiting; see :func:`_abandoned_event`.
    """
    _batch_state.abandoned = abandoned
    try:
        return reader.answer_batch(requests)
    finally:
        _batch_state.abandoned = None


def _abandoned_event(jobs: Sequence[_Job]) -> threading.Event:
    """An event that is set once every job's future is done: answered, or given up (timed out, cancelled).

    A thread-safe event rather than the futures themselves, because the worker
    thread reads it while the event loop settles the futures.

    Args:
        jobs: The jobs answered by one run of the model.
    """
    event = threading.Event()

    def check(_: asyncio.Future[list[ReaderResult]]) -> None:
        if all(job.future.done() for job in jobs):
            event.set()

    for job in jobs:
        job.future.add_done_callback(check)
    return event


def _worker_readers(reader: Reader, workers: int) -> list[Reader]:
    """One reader per worker, all sharing ``reader``'s model.

    A plain :class:`Reader` becomes a :class:`_StoppableReader` for each worker,
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
            readers.append(_StoppableReader(None, tokenizer, reader.config, batch_size=reader.batch_size, backend=reader.backend))
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
            results = await loop.run_in_executor(executor, _answer_batch, reader, flat, _abandoned_event(jobs))
        except _Abandoned:
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
                    _settle(job, await loop.run_in_executor(executor, _answer_batch, reader, job.requests, _abandoned_event([job])))
                except _Abandoned:
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


def _settle(job: _Job, results: list[ReaderResult] | None = None, error: BaseException | None = None) -> None:
    if job.future.done():
        return
    if error is not None:
        job.future.set_exception(error)
    else:
        job.future.set_result(results or [])


# --------------------------------------------------------------------------- request parsing


async def _require_json(request: Request) -> None:
    """Refuse a POST body that is not declared ``application/json`` with 415 (parameters such as ``; charset=utf-8`` are fine).

    Why: a web page on another origin can POST without a CORS preflight only as
    ``text/plain``, a form type or with no Content-Type at all (a "simple
    request"); refusing those keeps any web page from making a server on
    localhost run the model. An app-wide dependency, so every POST endpoint has it.

    Args:
        request: The incoming request.
    """
    if request.method != "POST":
        return
    declared = request.headers.get("content-type")
    media_type = (declared or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        got = f"got {declared!r}" if declared else "the request has no Content-Type header"
        raise ApiError(415, "unsupported_media_type", f"POST {request.url.path} takes Content-Type: application/json; {got}")


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refused with 413 over ``limit`` bytes and with 408 when it takes over ``timeout`` seconds.

    uvicorn waits for a body as long as the client keeps the connection open, so
    without the deadline a client that sends headers and then stalls or
    trickles the body would hold a connection and a request task forever.

    Args:
        request: The incoming request.
        limit: Most bytes accepted: checked on Content-Length, then on the bytes read (chunked bodies have no length).
        timeout: Seconds the whole body may take to arrive after the headers.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", f"invalid Content-Length header {declared!r}") from None
        if size > limit:
            raise ApiError(413, "payload_too_large", f"request body is {size} bytes; the limit is {limit} bytes")
    try:
        return await asyncio.wait_for(_read_chunks(request, limit), timeout)
    except asyncio.TimeoutError:
        # Close the connection: the rest of the body may still come, and a stalled client should not keep it.
        raise ApiError(408, "body_timeout", f"the request body did not arrive within {timeout:g} s",
                       headers={"Connection": "close"}) from None


async def _read_chunks(request: Request, limit: int) -> bytes:
    """The body as it streams in, refused with 413 as soon as it passes ``limit`` bytes.

    Args:
        request: The incoming request.
        limit: Most bytes accepted.
    """
    chunks: list[bytes] = []
    read = 0
    try:
        async for chunk in request.stream():
            read += len(chunk)
            if read > limit:
                raise ApiError(413, "payload_too_large", f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "bad_request", "the client disconnected before sending the whole body") from None
    return b"".join(chunks)


def _parse_json(body: bytes) -> Any:
    """The decoded JSON body; malformed, non-UTF-8, too deeply nested JSON and over-long integers are 400.

    Args:
        body: The raw request body.
    """
    if not body.strip():
        raise ApiError(400, "invalid_json", "empty request body; expected a JSON object")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ApiError(400, "invalid_encoding", f"request body is not valid UTF-8 (bad byte at offset {err.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None
    except ValueError:  # not a JSONDecodeError (caught above): an integer over Python's digit limit
        raise ApiError(400, "invalid_json", f"request body has an integer with more than {sys.get_int_max_str_digits()} digits") from None
    except RecursionError:  # json's parser recurses once per nested list or object
        raise ApiError(400, "invalid_json", "request body is nested too deeply") from None


def _check_text(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(422, "validation_error", f"{where}: contains an unpaired surrogate escape (e.g. \\ud800); send valid Unicode text") from None


def _number(value: int) -> str:
    """``value`` for an error message; a huge one (JSON allows thousands of digits) by its length only."""
    text = str(value)
    return text if len(text) <= 20 else f"a {len(text.lstrip('-'))}-digit number"


@dataclass(frozen=True)
class IndexQuestion:
    """A question to answer from the server's index: its passages are retrieved (off the event loop)
    before it joins a micro-batch as a :class:`~spanqa.reader.QARequest` over them.

    Attributes:
        question: The question.
        passages: How many retrieved passages the reader reads.
        options: The request's other :class:`~spanqa.reader.QARequest` fields (``top_k``, ``id``, ...).
    """

    question: str
    passages: int
    options: dict[str, Any]


def _to_request(item: QuestionRequest, where: str, settings: ServeSettings, index: Index | None = None) -> QARequest | IndexQuestion:
    """The reader's request for one validated question, or an :class:`IndexQuestion` when it has no text of its own.

    Args:
        item: The question as sent.
        where: Its place in the body for error messages (``questions[2]``; ``""`` for a single question).
        settings: The limits.
        index: The server's passage index, if it has one.
    """
    prefix = f"{where}: " if where else ""
    from_index = item.context is None and item.documents is None
    if from_index and index is None:
        raise ApiError(422, "validation_error",
                       f"{prefix}give a context (or documents) to answer from; this server has no document index "
                       "(start it with `spanqa serve MODEL --index INDEX` to answer questions without a context)")
    if item.passages is not None and not from_index:
        raise ApiError(422, "validation_error", f"{prefix}passages is for questions answered from the index; drop it or drop context/documents")
    if item.passages is not None and item.passages > settings.max_documents:
        raise ApiError(422, "validation_error", f"{prefix}passages is {_number(item.passages)}; the limit is {settings.max_documents}")
    if item.top_k > settings.max_top_k:
        raise ApiError(422, "validation_error", f"{prefix}top_k is {_number(item.top_k)}; the limit is {settings.max_top_k}")
    if item.max_answer_length is not None and item.max_answer_length > settings.max_answer_length:
        raise ApiError(422, "validation_error",
                       f"{prefix}max_answer_length is {_number(item.max_answer_length)}; the limit is {settings.max_answer_length} tokens")
    if item.documents is not None and len(item.documents) > settings.max_documents:
        raise ApiError(422, "too_many_documents", f"{prefix}{len(item.documents)} documents; the limit is {settings.max_documents}")
    if len(item.question) > settings.max_question_chars:
        raise ApiError(413, "question_too_long",
                       f"{prefix}question has {len(item.question)} characters; the limit is {settings.max_question_chars}")
    texts = [("context", item.context)] if item.context is not None else [(f"documents[{i}]", d) for i, d in enumerate(item.documents or [])]
    for name, text in texts:
        if text is not None and len(text) > settings.max_context_chars:
            raise ApiError(413, "context_too_long",
                           f"{prefix}{name} has {len(text)} characters; the limit is {settings.max_context_chars}")
    _check_text(item.question, f"{prefix}question")
    for name, text in texts:
        if text is not None:
            _check_text(text, f"{prefix}{name}")
    if item.id is not None:
        _check_text(item.id, f"{prefix}id")
    if from_index:
        if not item.question.strip():  # what QARequest would say, before any retrieval work
            raise ApiError(422, "validation_error", f"{prefix}empty question")
        options = {"top_k": item.top_k, "max_answer_length": item.max_answer_length, "handle_impossible": item.handle_impossible,
                   "id": item.id, "score_threshold": item.score_threshold}
        return IndexQuestion(item.question, item.passages or settings.passages, options)
    try:
        return QARequest(
            question=item.question,
            context=item.context,
            documents=item.documents,
            top_k=item.top_k,
            max_answer_length=item.max_answer_length,
            handle_impossible=item.handle_impossible,
            id=item.id,
            score_threshold=item.score_threshold,
        )
    except DataError as err:
        raise ApiError(422, "validation_error", f"{prefix}{err}") from None


def parse_payload(data: Any, settings: ServeSettings, index: Index | None = None) -> tuple[list[QARequest | IndexQuestion], bool]:
    """The requests in a decoded JSON body, and whether it was a batch; raises :class:`ApiError`.

    Args:
        data: The decoded JSON body.
        settings: The limits.
        index: The server's passage index: questions without context or documents become :class:`IndexQuestion`
            (without an index they are refused with 422).
    """
    if not isinstance(data, dict):
        raise ApiError(422, "validation_error", f"expected a JSON object, got {type(data).__name__ if data is not None else 'null'}")
    if "questions" in data:
        questions = data["questions"]
        if isinstance(questions, list):
            if not questions:
                raise ApiError(422, "validation_error", "questions is empty")
            if len(questions) > settings.max_batch:
                raise ApiError(422, "too_many_questions", f"{len(questions)} questions in one request; the limit is {settings.max_batch}")
        try:
            batch = BatchRequest.model_validate(data)
        except ValidationError as err:
            message, details = _validation_details(err.errors(include_url=False, include_input=False))
            raise ApiError(422, "validation_error", message, details) from None
        return [_to_request(item, f"questions[{i}]", settings, index) for i, item in enumerate(batch.questions)], True
    try:
        single = QuestionRequest.model_validate(data)
    except ValidationError as err:
        message, details = _validation_details(err.errors(include_url=False, include_input=False))
        raise ApiError(422, "validation_error", message, details) from None
    return [_to_request(single, "", settings, index)], False


def _retrieve(items: Sequence[QARequest | IndexQuestion], index: Index | None, lock: threading.Lock) -> tuple[list[QARequest], list[list[Hit] | None]]:
    """The reader's requests for ``items``, with the passages retrieved for each index question (None for the others).

    Called in a worker thread when there is something to retrieve: scoring every passage (and, for a fused
    index, encoding the question) would otherwise stall the event loop.

    Args:
        items: The parsed questions.
        index: The server's passage index (needed only when ``items`` hold an :class:`IndexQuestion`).
        lock: Serialises searches: the embedding model's fast tokenizer cannot be called from two threads at once.
    """
    requests: list[QARequest] = []
    hits: list[list[Hit] | None] = []
    for item in items:
        if isinstance(item, QARequest):
            requests.append(item)
            hits.append(None)
            continue
        assert index is not None  # parse_payload makes an IndexQuestion only for a server with an index
        with lock:
            request, found = index_request(index, item.question, passages=item.passages, **item.options)
        requests.append(request)
        hits.append(found)
    return requests, hits


def _result_dict(result: ReaderResult, hits: Sequence[Hit] | None) -> dict[str, Any]:
    """A result as JSON; an answer from the index also names its passage, source document and offsets in it.

    Args:
        result: The reader's result.
        hits: The passages it read, in its request's order; None for a question with its own context or
            documents, whose result keeps exactly the fields it always had.
    """
    out = result.to_dict()
    if hits is None:
        return out
    located = sourced_answers(result, hits)
    for span, answer in zip(out["answers"], located):
        span.update(passage=answer.passage.text, source=answer.source, doc_id=answer.doc_id, document_start=answer.start, document_end=answer.end)
    best = located[0] if result.answer is not None and located else None
    out.update(
        source=best.source if best else None,
        doc_id=best.doc_id if best else None,
        document_start=best.start if best else None,
        document_end=best.end if best else None,
    )
    return out


# --------------------------------------------------------------------------- the web page


def _load_page() -> tuple[str, str]:
    """The page and a Content-Security-Policy allowing only its own inline script and style."""
    html = (resources.files("spanqa") / "static" / "index.html").read_text(encoding="utf-8")

    def hashes(tag: str) -> str:
        found = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(body.encode('utf-8')).digest()).decode()}'" for body in found)

    scripts, styles = hashes("script") or "'none'", hashes("style") or "'none'"
    csp = (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; connect-src 'self'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html, csp


# --------------------------------------------------------------------------- metrics

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _size_buckets(largest: int) -> tuple[float, ...]:
    """1, 2, 4, ... up to ``largest`` (and ``largest`` itself)."""
    buckets = []
    size = 1
    while size < largest:
        buckets.append(float(size))
        size *= 2
    buckets.append(float(largest))
    return tuple(buckets)


class ServeMetrics:
    """The Prometheus metrics of one app, in a registry of their own (so several apps in one process never collide)."""

    def __init__(self, max_batch_items: int = 32, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter("spanqa_requests", "HTTP requests by endpoint, method and status code.", ["endpoint", "method", "status"], registry=reg)
        self.errors = Counter("spanqa_errors", "Error responses (status 4xx and 5xx) by endpoint and error type.", ["endpoint", "type"], registry=reg)
        self.questions = Counter("spanqa_questions_answered", "Questions answered; each question of a batch request counts.", registry=reg)
        self.latency = Histogram(
            "spanqa_answer_latency_seconds", "Seconds from the arrival of a POST /answer request to its response, by status code.",
            ["status"], buckets=LATENCY_BUCKETS, registry=reg,
        )
        self.batch_size = Histogram(
            "spanqa_batch_size", "Questions per micro-batch (answered with shared forward passes).", buckets=_size_buckets(max_batch_items), registry=reg
        )
        self.batch_seconds = Histogram("spanqa_batch_duration_seconds", "Seconds the model took per micro-batch.", buckets=LATENCY_BUCKETS, registry=reg)
        self.in_flight = Gauge("spanqa_in_flight_requests", "HTTP requests being handled now (not counting /metrics).", registry=reg)
        self.queued = Gauge("spanqa_queued_questions", "Questions waiting for a micro-batch worker.", registry=reg)
        self.info = Info("spanqa_server", "The served model and how it runs.", registry=reg)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format (version 0.0.4)."""
        return generate_latest(self.registry)


class _MetricsMiddleware:
    """Counts every HTTP request by endpoint and status; times ``POST /answer``; tracks requests in flight."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, endpoints: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in self.endpoints else "other"  # unknown paths share one label: bounded cardinality
        tracked = endpoint != "/metrics"
        status = 500  # what the client gets when the app raises before answering
        scope.setdefault("state", {})  # shared with the requests of the exception handlers, which note the error type

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        started = time.perf_counter()
        if tracked:
            self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            if tracked:
                self.metrics.in_flight.dec()
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(endpoint=endpoint, method=method, status=str(status)).inc()
            if status >= 400:
                state = scope.get("state") or {}
                kind = state.get("spanqa_error_type") if isinstance(state, dict) else None
                kind = kind or _STATUS_TYPES.get(status, "bad_request" if status < 500 else "internal_error")
                self.metrics.errors.labels(endpoint=endpoint, type=kind).inc()
            if endpoint == "/answer" and method == "POST":
                self.metrics.latency.labels(status=str(status)).observe(time.perf_counter() - started)


def _note_error(request: Request, kind: str) -> None:
    """Tell the metrics middleware which kind of error this response is."""
    request.state.spanqa_error_type = kind


# --------------------------------------------------------------------------- the app


def _model_name(reader: Reader) -> str | None:
    config = getattr(getattr(reader, "model", None), "config", None)
    name = getattr(config, "name_or_path", None) or getattr(config, "_name_or_path", None)
    return str(name) if name else None


def create_app(reader: Reader, settings: ServeSettings | None = None, *, model_name: str | None = None, index: Index | None = None) -> FastAPI:
    """An ASGI app answering with ``reader``.

    ``app.state.batcher`` holds micro-batching counters, ``app.state.metrics`` the
    Prometheus metrics (served at ``GET /metrics``).

    Args:
        reader: The QA model.
        settings: Limits, batching and parallelism; default: :class:`ServeSettings` from the environment.
        model_name: The model's name in ``/health`` and the metrics (default: the model's own).
        index: A passage index: questions sent without a context or documents are answered from its
            best ``passages`` passages, each answer naming its source document and offsets in it.
    """
    from . import __version__

    settings = settings or ServeSettings()
    search_lock = threading.Lock()
    metrics = ServeMetrics(settings.max_batch_items)
    batcher = MicroBatcher(reader, settings, metrics)
    metrics.queued.set_function(lambda: batcher.waiting)
    page, csp = _load_page()
    name = model_name or _model_name(reader)
    metrics.info.info({
        "version": __version__,
        "model": name or "",
        "device": str(getattr(reader, "device", "cpu")),
        "workers": str(batcher.workers),
        "threads": str(batcher.threads),
    })

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="spanqa",
        version=__version__,
        description="Extractive question answering: the answer is a span of the text you send.",
        lifespan=lifespan,
        dependencies=[Depends(_require_json)],
    )
    app.state.reader = reader
    app.state.settings = settings
    app.state.batcher = batcher
    app.state.metrics = metrics
    app.state.index = index
    index_info = None if index is None else {
        "passages": len(index.passages),
        "documents": len({passage.doc_id for passage in index.passages}),
        "retrieval": index.default_method,
        "embedding_model": index.manifest.get("embedding_model"),
        "passages_per_question": settings.passages,
    }

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        _note_error(request, exc.type)
        return error_response(exc.status, exc.type, exc.message, exc.details, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = _validation_details(exc.errors())
        _note_error(request, "validation_error")
        return error_response(422, "validation_error", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = _STATUS_TYPES.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal_error")
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        _note_error(request, kind)
        return error_response(exc.status_code, kind, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.error("error answering %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "the server failed to answer this request; see its log")

    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorResponse, "description": "Malformed JSON or non-UTF-8 body"},
        408: {"model": ErrorResponse, "description": "The body did not arrive within the body timeout"},
        413: {"model": ErrorResponse, "description": "Body, a question or a context over the size limit"},
        415: {"model": ErrorResponse, "description": "Content-Type is not application/json"},
        422: {"model": ErrorResponse, "description": "Missing fields, wrong types, empty question, too many questions"},
        503: {"model": ErrorResponse, "description": "Too many questions waiting"},
        504: {"model": ErrorResponse, "description": "No answer within the request timeout"},
    }
    request_body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [{"$ref": "#/components/schemas/QuestionRequest"}, {"$ref": "#/components/schemas/BatchRequest"}]}
            }
        },
    }

    @app.post(
        "/answer",
        response_model=AnswerResponse | BatchResponse,
        responses=errors,
        openapi_extra={"requestBody": request_body},
        summary="Answer one question, or a batch of questions",
    )
    async def answer(request: Request) -> Response:
        """Send `{"question", "context"}` (or `"documents"` to rank answers across several texts), or
        `{"questions": [...]}` for several at once. Answers are spans of the given text with their
        character offsets and probabilities. On a server started with `--index`, a question without
        context or documents is answered from the best `passages` passages of the index; each answer
        then also gives its `passage`, `source`, `doc_id` and `document_start`/`document_end`."""
        body = await _read_body(request, settings.max_body_bytes, settings.body_timeout_s)
        items, batched = parse_payload(_parse_json(body), settings, index)
        try:
            if any(isinstance(item, IndexQuestion) for item in items):
                try:
                    requests, hits = await asyncio.wait_for(asyncio.to_thread(_retrieve, items, index, search_lock), settings.request_timeout_s)
                except asyncio.TimeoutError:
                    raise ApiError(504, "timeout", f"no passages retrieved within {settings.request_timeout_s:g} s") from None
            else:
                requests, hits = _retrieve(items, None, search_lock)  # nothing to retrieve: no thread hop
            # Index questions join the same micro-batches as the others: one path for batching, timeouts and metrics.
            results = await batcher.submit(requests, settings.request_timeout_s)
        except SpanQAError as err:
            raise ApiError(422, "validation_error", str(err)) from None
        metrics.questions.inc(len(results))
        answered = [_result_dict(result, found) for result, found in zip(results, hits)]
        if batched:
            return JSONResponse({"results": answered})
        return JSONResponse(answered[0])

    report_path = Path(name) / REPORT_NAME if name else None  # the model folder's `spanqa report`, if it has one

    @app.get("/health", response_model=HealthResponse, summary="Model and server status")
    async def health() -> dict[str, Any]:
        config = reader.config
        return {
            "status": "ok",
            "model": name,
            "version_2": bool(config.version_2),
            "null_threshold": float(config.null_threshold),
            "device": str(getattr(reader, "device", "cpu")),
            "max_length": int(config.max_length),
            "limits": settings.model_dump(exclude={"workers", "threads"}),
            "batching": batcher.stats,
            "index": index_info,
            "report": report_path is not None and report_path.is_file(),
        }

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        summary="Prometheus metrics",
        responses={200: {"content": {"text/plain": {}}, "description": "The Prometheus text format, version 0.0.4"}},
    )
    async def prometheus_metrics() -> Response:
        """Request and error counters, questions answered, /answer latency and micro-batch size histograms,
        requests in flight and questions queued, in the Prometheus text exposition format."""
        return Response(metrics.exposition(), media_type=METRICS_CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def web_page() -> HTMLResponse:  # not `index`: that name is the passage index
        return HTMLResponse(
            page,
            headers={
                "Content-Security-Policy": csp,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-cache",
            },
        )

    @app.get("/report", response_class=HTMLResponse, include_in_schema=False)
    def report_page() -> HTMLResponse:
        """The model folder's ``spanqa report`` (read on each request: a new report shows without a restart)."""
        try:
            text = report_path.read_text(encoding="utf-8") if report_path is not None else None
        except OSError:  # missing, a folder, unreadable
            text = None
        if text is None:
            raise ApiError(404, "not_found", "this model has no report; write one with `spanqa report MODEL_FOLDER`")
        # The report has no script; its figures are data URIs and its style is inline.
        report_csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        return HTMLResponse(text, headers={"Content-Security-Policy": report_csp, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (QuestionRequest, BatchRequest):
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for def_name, definition in model_schema.pop("$defs", {}).items():
                components.setdefault(def_name, definition)
            components[model.__name__] = model_schema
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    endpoints = frozenset(path for route in app.routes if isinstance(path := getattr(route, "path", None), str))
    app.add_middleware(_MetricsMiddleware, metrics=metrics, endpoints=endpoints)
    return app


def uvicorn_options(settings: ServeSettings) -> dict[str, Any]:
    """The uvicorn options (for ``uvicorn.run`` or ``uvicorn.Config``) that apply ``settings`` to connections.

    Args:
        settings: The server settings; ``keep_alive_timeout_s`` closes idle keep-alive connections.
    """
    return {"timeout_keep_alive": settings.keep_alive_timeout_s, "server_header": False}


def run_server(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServeSettings | None = None,
    device: str | None = None,
    *,
    backend: str = "auto",
    log_level: str = "info",
    index: str | os.PathLike[str] | Index | None = None,
) -> None:
    """Load ``model`` (safetensors or ONNX only, no remote code) and serve it with uvicorn until interrupted.

    Args:
        model: Model folder, alias or hub id.
        host: Address to listen on.
        port: Port.
        settings: Limits, batching and parallelism; default: :func:`serve_settings` (the environment).
        device: ``cpu``, ``cuda``, ...; default: the reader's choice.
        backend: ``auto``, ``torch`` or ``onnx``, passed to :meth:`Reader.from_pretrained`.
        log_level: uvicorn's log level.
        index: A ``spanqa index`` folder (or a loaded :class:`~spanqa.index.Index`) to answer questions
            sent without a context from.

    Raises:
        DataError: ``index`` is not a readable index folder (found before the model loads).
    """
    try:
        import uvicorn
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise MissingDependencyError(f"serving needs uvicorn: pip install 'spanqa[serve]' ({err})") from err
    settings = settings or serve_settings()
    if index is not None:
        index = Index.open(index)  # before the model: a wrong folder fails in a moment, not after a model load
        logger.info("index %s: %d passages of %d documents", index.folder, len(index.passages), index.manifest.get("documents", 0))
    started = time.perf_counter()
    options: dict[str, Any] = {} if backend == "auto" else {"backend": backend}  # "auto" is the reader's default
    reader = Reader.from_pretrained(model, device=device, **options)
    logger.info("loaded %s on %s in %.1f s", model, reader.device, time.perf_counter() - started)
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving on %s: the API has no authentication; put it behind a proxy you trust", host)
    if index is not None and index.default_method != "bm25":
        index.search("warm-up", 1)  # loads the index's embedding model now rather than in the first request's time
    app = create_app(reader, settings, model_name=str(model), index=index)
    batcher = app.state.batcher
    logger.info("%d micro-batch worker(s), %d intra-op thread(s) each (%d usable cores)", batcher.workers, batcher.threads, usable_cores())
    uvicorn.run(app, host=host, port=port, log_level=log_level, **uvicorn_options(settings))
