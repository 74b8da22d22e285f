"""Serve a :class:`~spanqa.reader.Reader` over HTTP.

``POST /answer`` answers one question (``{"question", "context" | "documents", ...}``)
or several (``{"questions": [...]}``); requests from concurrent clients are
collected for a few milliseconds and answered together with shared forward
passes (micro-batching), in a worker thread so the event loop stays free.
``GET /health`` describes the model, ``GET /`` is a small web page, and
``/docs`` / ``/openapi.json`` document the API.

Every error is a JSON body ``{"error": {"type": ..., "message": ...}}`` with a
4xx/5xx status (validation errors add ``"details"``), and the server keeps
serving after it.

>>> app = create_app(Reader.from_pretrained("path/to/model"))   # an ASGI app
>>> run_server("path/to/model", port=8000)                      # or load + run uvicorn
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from .errors import ConfigError, DataError, SpanQAError
from .reader import QARequest, Reader, ReaderResult


class MissingDependencyError(SpanQAError, ImportError):
    """Serving needs the ``serve`` extra."""


try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.openapi.utils import get_openapi
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from pydantic import BaseModel, ConfigDict, Field, ValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.requests import ClientDisconnect
except ImportError as _err:  # pragma: no cover - depends on the installed extras
    raise MissingDependencyError(f"serving needs fastapi and uvicorn: pip install 'spanqa[serve]' ({_err})") from _err

__all__ = ["ServeSettings", "create_app", "run_server", "MicroBatcher", "ApiError"]

logger = logging.getLogger(__name__)

MiB = 1024 * 1024


@dataclass(frozen=True)
class ServeSettings:
    """Limits and micro-batching settings of the HTTP server."""

    max_body_bytes: int = 1 * MiB
    """Largest request body; bigger ones get 413 (checked on Content-Length and on the bytes read)."""
    max_context_chars: int = 200_000
    """Longest context or document in characters (a 20,000-word document fits); longer gets 413."""
    max_batch: int = 32
    """Most questions in one ``{"questions": [...]}`` request; more gets 422."""
    max_documents: int = 100
    """Most documents ranked for one question."""
    max_top_k: int = 100
    """Largest ``top_k`` a request may ask for."""
    max_answer_length: int = 512
    """Largest per-request ``max_answer_length`` (tokens)."""
    request_timeout_s: float = 30.0
    """Time a request may wait for its answers (queue + model); then 504."""
    max_wait_ms: float = 5.0
    """How long the batcher waits for more requests after the first one arrives."""
    max_batch_items: int = 32
    """Most questions answered in one micro-batch (a bigger single request runs alone)."""
    max_queue_items: int = 4096
    """Most questions waiting for the model; beyond it requests get 503 at once."""

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_context_chars", "max_batch", "max_documents", "max_top_k", "max_answer_length",
                     "max_batch_items", "max_queue_items"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ServeSettings.{name} must be a positive integer, got {value!r}")
        if not self.request_timeout_s > 0:
            raise ConfigError(f"ServeSettings.request_timeout_s must be > 0, got {self.request_timeout_s!r}")
        if not self.max_wait_ms >= 0:
            raise ConfigError(f"ServeSettings.max_wait_ms must be >= 0, got {self.max_wait_ms!r}")


# --------------------------------------------------------------------------- API schema


class QuestionRequest(BaseModel):
    """One question over a ``context``, or over ``documents`` ranked together (give exactly one of them)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"question": "When was the railway built?", "context": "The railway was built in 1897 to carry slate.", "top_k": 3},
                {"question": "Who founded the society?", "documents": ["First text ...", "Second text ..."]},
            ]
        },
    )

    question: str = Field(description="The question; must not be empty.")
    context: str | None = Field(None, description="The text to answer from (any length up to the server's limit).")
    documents: list[str] | None = Field(None, description="Several texts; answers are ranked across them and carry a `document` index.")
    top_k: int = Field(1, ge=1, description="How many ranked answers to return in `answers`.")
    max_answer_length: int | None = Field(None, ge=1, description="Longest answer in tokens (default: the model's setting).")
    handle_impossible: bool | None = Field(None, description="Allow 'no answer' (default: the model's `version_2` setting).")
    id: str | None = Field(None, description="Echoed back in the result.")


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


class AnswerResponse(BaseModel):
    id: str | None
    question: str
    answer: str = Field(description="The best answer, or '' when the model decides the text does not answer the question.")
    score: float
    start: int | None
    end: int | None
    document: int | None
    is_impossible: bool
    no_answer_score: float
    answers: list[AnswerSpan] = Field(description="The `top_k` best spans, best first.")


class BatchResponse(BaseModel):
    results: list[AnswerResponse]


class HealthResponse(BaseModel):
    status: str
    model: str | None
    version_2: bool
    null_threshold: float
    device: str
    max_length: int
    limits: dict[str, int | float]
    batching: dict[str, int | float]


class ErrorDetail(BaseModel):
    type: str = Field(description="A stable machine-readable error kind, e.g. `invalid_json`, `validation_error`, `payload_too_large`.")
    message: str = Field(description="What was wrong, for people.")
    details: list[dict[str, Any]] | None = Field(None, description="Per-field problems (validation errors only).")


class ErrorResponse(BaseModel):
    error: ErrorDetail


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An error answered as ``{"error": {"type", "message"}}`` with ``status``."""

    def __init__(self, status: int, type: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.details = details


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


class MicroBatcher:
    """Collects requests from concurrent clients and answers them together.

    One worker task takes the first waiting job, waits up to ``max_wait_ms``
    for more (until ``max_batch_items`` questions), and runs
    ``reader.answer_batch`` on all of them in a single worker thread; each
    request keeps its own ``top_k`` / ``max_answer_length`` / ``handle_impossible``.
    """

    def __init__(self, reader: Reader, settings: ServeSettings) -> None:
        self.reader = reader
        self.settings = settings
        self.max_wait = settings.max_wait_ms / 1000.0
        self.max_items = settings.max_batch_items
        self._executor: ThreadPoolExecutor | None = None
        self._pending: collections.deque[_Job] = collections.deque()
        self._pending_items = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        self.questions = 0
        self.requests = 0
        self.largest_batch = 0

    @property
    def stats(self) -> dict[str, int | float]:
        return {
            "batches": self.batches,
            "requests": self.requests,
            "questions": self.questions,
            "largest_batch": self.largest_batch,
            "mean_batch": round(self.questions / self.batches, 3) if self.batches else 0.0,
            "waiting": self._pending_items,
        }

    def start(self) -> None:
        """Start the worker on the running event loop (again, if the loop changed)."""
        loop = asyncio.get_running_loop()
        if self._task is not None and self._loop is loop and not self._task.done():
            return
        if self._loop is not loop:  # a new event loop: jobs of the old one cannot be answered any more
            self._pending.clear()
            self._pending_items = 0
        self._loop = loop
        self._wakeup = asyncio.Event()
        if self._executor is None:
            # One thread: the model runs one batch at a time, off the event loop.
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spanqa-reader")
        self._task = loop.create_task(self._run(), name="spanqa-microbatcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
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

    async def _run(self) -> None:
        assert self._loop is not None and self._wakeup is not None
        loop, wakeup = self._loop, self._wakeup
        while True:
            try:
                while not self._pending:
                    wakeup.clear()
                    await wakeup.wait()
                deadline = self._pending[0].enqueued + self.max_wait
                while self._pending_items < self.max_items and (remaining := deadline - loop.time()) > 0:
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
                    await self._process(loop, jobs)
            except asyncio.CancelledError:
                raise
            except Exception:  # pragma: no cover - keep serving whatever happens
                logger.exception("micro-batch worker error")

    async def _process(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        executor = self._executor
        flat = [r for job in jobs for r in job.requests]
        self.batches += 1
        self.questions += len(flat)
        self.largest_batch = max(self.largest_batch, len(flat))
        try:
            results = await loop.run_in_executor(executor, self.reader.answer_batch, flat)
        except Exception as err:
            if len(jobs) == 1:
                _settle(jobs[0], error=err)
                return
            # Answer each request on its own, so one bad request cannot fail its neighbours.
            for job in jobs:
                if job.future.done():
                    continue
                try:
                    _settle(job, await loop.run_in_executor(executor, self.reader.answer_batch, job.requests))
                except Exception as job_err:
                    _settle(job, error=job_err)
            return
        lo = 0
        for job in jobs:
            _settle(job, results[lo : lo + len(job.requests)])
            lo += len(job.requests)


def _settle(job: _Job, results: list[ReaderResult] | None = None, error: BaseException | None = None) -> None:
    if job.future.done():
        return
    if error is not None:
        job.future.set_exception(error)
    else:
        job.future.set_result(results or [])


# --------------------------------------------------------------------------- request parsing


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", f"invalid Content-Length header {declared!r}") from None
        if size > limit:
            raise ApiError(413, "payload_too_large", f"request body is {size} bytes; the limit is {limit} bytes")
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
    except RecursionError:
        raise ApiError(400, "invalid_json", "request body is nested too deeply") from None


def _check_text(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(422, "validation_error", f"{where}: contains an unpaired surrogate escape (e.g. \\ud800); send valid Unicode text") from None


def _to_request(item: QuestionRequest, where: str, settings: ServeSettings) -> QARequest:
    prefix = f"{where}: " if where else ""
    if item.top_k > settings.max_top_k:
        raise ApiError(422, "validation_error", f"{prefix}top_k is {item.top_k}; the limit is {settings.max_top_k}")
    if item.max_answer_length is not None and item.max_answer_length > settings.max_answer_length:
        raise ApiError(422, "validation_error",
                       f"{prefix}max_answer_length is {item.max_answer_length}; the limit is {settings.max_answer_length} tokens")
    if item.documents is not None and len(item.documents) > settings.max_documents:
        raise ApiError(422, "too_many_documents", f"{prefix}{len(item.documents)} documents; the limit is {settings.max_documents}")
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
    try:
        return QARequest(
            question=item.question,
            context=item.context,
            documents=item.documents,
            top_k=item.top_k,
            max_answer_length=item.max_answer_length,
            handle_impossible=item.handle_impossible,
            id=item.id,
        )
    except DataError as err:
        raise ApiError(422, "validation_error", f"{prefix}{err}") from None


def parse_payload(data: Any, settings: ServeSettings) -> tuple[list[QARequest], bool]:
    """The requests in a decoded JSON body, and whether it was a batch; raises :class:`ApiError`."""
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
        return [_to_request(item, f"questions[{i}]", settings) for i, item in enumerate(batch.questions)], True
    try:
        single = QuestionRequest.model_validate(data)
    except ValidationError as err:
        message, details = _validation_details(err.errors(include_url=False, include_input=False))
        raise ApiError(422, "validation_error", message, details) from None
    return [_to_request(single, "", settings)], False


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


# --------------------------------------------------------------------------- the app


def _model_name(reader: Reader) -> str | None:
    config = getattr(getattr(reader, "model", None), "config", None)
    name = getattr(config, "name_or_path", None) or getattr(config, "_name_or_path", None)
    return str(name) if name else None


def create_app(reader: Reader, settings: ServeSettings | None = None, *, model_name: str | None = None) -> FastAPI:
    """An ASGI app answering with ``reader``; ``app.state.batcher`` holds micro-batching counters."""
    from . import __version__

    settings = settings or ServeSettings()
    batcher = MicroBatcher(reader, settings)
    page, csp = _load_page()
    name = model_name or _model_name(reader)

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
    )
    app.state.reader = reader
    app.state.settings = settings
    app.state.batcher = batcher

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.type, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = _validation_details(exc.errors())
        return error_response(422, "validation_error", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = _STATUS_TYPES.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal_error")
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, kind, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.error("error answering %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "the server failed to answer this request; see its log")

    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorResponse, "description": "Malformed JSON or non-UTF-8 body"},
        413: {"model": ErrorResponse, "description": "Body or a context over the size limit"},
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
        character offsets and probabilities."""
        body = await _read_body(request, settings.max_body_bytes)
        requests, batched = parse_payload(_parse_json(body), settings)
        try:
            results = await batcher.submit(requests, settings.request_timeout_s)
        except SpanQAError as err:
            raise ApiError(422, "validation_error", str(err)) from None
        if batched:
            return JSONResponse({"results": [r.to_dict() for r in results]})
        return JSONResponse(results[0].to_dict())

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
            "limits": {k: v for k, v in asdict(settings).items()},
            "batching": batcher.stats,
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(
            page,
            headers={
                "Content-Security-Policy": csp,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-cache",
            },
        )

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
    return app


def run_server(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServeSettings | None = None,
    device: str | None = None,
    *,
    log_level: str = "info",
) -> None:
    """Load ``model`` (safetensors only, no remote code) and serve it with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError as err:  # pragma: no cover - depends on the installed extras
        raise MissingDependencyError(f"serving needs uvicorn: pip install 'spanqa[serve]' ({err})") from err
    settings = settings or ServeSettings()
    started = time.perf_counter()
    reader = Reader.from_pretrained(model, device=device)
    logger.info("loaded %s on %s in %.1f s", model, reader.device, time.perf_counter() - started)
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving on %s: the API has no authentication; put it behind a proxy you trust", host)
    app = create_app(reader, settings, model_name=str(model))
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=5, server_header=False)
