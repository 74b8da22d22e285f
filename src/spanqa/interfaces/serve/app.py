"""The ASGI app: :func:`create_app` puts together the middleware, the error handlers and the routes.

Each part is a small function of its own: :func:`_add_error_handlers` (every error a JSON body),
:func:`_add_answer_route` (``POST /answer``), :func:`_add_status_routes` (``GET /health``,
``GET /metrics``), :func:`_add_page_routes` (``GET /``, ``GET /report``), :func:`_openapi`
(``/openapi.json``) and the metrics middleware (:class:`~.metrics.MetricsMiddleware`); the host,
API-key and request-count guards and the headers on every response come from :mod:`.access`,
``/docs`` from :mod:`.docs`.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from spanqa.core.errors import SpanQAError
from spanqa.core.version import __version__
from spanqa.interfaces.serve.access import AccessOptions, add_access_guards, secure_every_response
from spanqa.interfaces.serve.batching import MicroBatcher
from spanqa.interfaces.serve.docs import add_docs_routes
from spanqa.interfaces.serve.errors import ApiError, error_response, error_type, note_error, validation_details
from spanqa.interfaces.serve.metrics import METRICS_CONTENT_TYPE, MetricsMiddleware, ServeMetrics
from spanqa.interfaces.serve.page import REPORT_HEADERS, is_report, load_page, page_headers, read_report, report_file
from spanqa.interfaces.serve.requests import IndexQuestion, parse_json, parse_payload, read_body, require_json
from spanqa.interfaces.serve.retrieval import result_dict, retrieve
from spanqa.interfaces.serve.schema import (
    ANSWER_REQUEST_BODY,
    ERROR_RESPONSES,
    AnswerResponse,
    BatchRequest,
    BatchResponse,
    HealthResponse,
    QuestionRequest,
)
from spanqa.interfaces.serve.settings import ServeSettings
from spanqa.reading.index import Hit, Index
from spanqa.reading.reader import QARequest, Reader

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Served:
    """What one app answers with, shared by its routes.

    Attributes:
        reader: The QA model.
        settings: Limits, batching and parallelism.
        batcher: The micro-batcher that runs ``reader``.
        metrics: The app's Prometheus metrics.
        index: The passage index for questions without a context (None: none).
        name: The model's name in ``/health`` and the metrics.
    """

    reader: Reader
    settings: ServeSettings
    batcher: MicroBatcher
    metrics: ServeMetrics
    index: Index | None
    name: str | None


def create_app(reader: Reader, settings: ServeSettings | None = None, *, model_name: str | None = None, index: Index | None = None,
               access: AccessOptions | None = None) -> FastAPI:
    """An ASGI app answering with ``reader``.

    ``app.state.batcher`` holds micro-batching counters, ``app.state.metrics`` the
    Prometheus metrics (served at ``GET /metrics``).

    Args:
        reader: The QA model.
        settings: Limits, batching and parallelism; default: :class:`ServeSettings` from the environment.
        model_name: The model's name in ``/health`` and the metrics (default: the model's own).
        index: A passage index: questions sent without a context or documents are answered from its
            best ``passages`` passages, each answer naming its source document and offsets in it.
        access: Allowed ``Host`` names, API key and ``/docs`` (default: any host, no key, no docs;
            :func:`~.server.run_server` allows only local names when bound to loopback).

    Raises:
        ConfigError: ``access.docs`` without the fastapi-offline package.
    """
    settings = settings or ServeSettings()
    access = access or AccessOptions()
    metrics = ServeMetrics(settings.max_batch_items)
    batcher = MicroBatcher(reader, settings, metrics)
    served = _Served(reader, settings, batcher, metrics, index, model_name or _model_name(reader))
    _describe_server(served)
    app = FastAPI(
        title="spanqa",
        version=__version__,
        description="Extractive question answering: the answer is a span of the text you send.",
        lifespan=_lifespan(batcher),
        dependencies=[Depends(require_json)],
        docs_url=None,  # FastAPI's pages load scripts from a CDN: see docs.py
        redoc_url=None,
    )
    app.state.reader = reader
    app.state.settings = settings
    app.state.batcher = batcher
    app.state.metrics = metrics
    app.state.index = index
    _add_error_handlers(app)
    _add_answer_route(app, served)
    _add_status_routes(app, served)
    _add_page_routes(app, served.name)
    add_docs_routes(app, access.docs)
    app.openapi = functools.partial(_openapi, app)  # type: ignore[method-assign]
    endpoints = frozenset(path for route in app.routes if isinstance(path := getattr(route, "path", None), str))
    add_access_guards(app, access, settings.max_requests)  # inside the metrics: refusals are counted
    app.add_middleware(MetricsMiddleware, metrics=metrics, endpoints=endpoints)
    secure_every_response(app)
    return app


def _model_name(reader: Reader) -> str | None:
    config = getattr(getattr(reader, "model", None), "config", None)
    name = getattr(config, "name_or_path", None) or getattr(config, "_name_or_path", None)
    return str(name) if name else None


def _describe_server(served: _Served) -> None:
    """The metrics that describe the server: ``spanqa_server_info`` and the queue gauge."""
    batcher = served.batcher
    served.metrics.queued.set_function(lambda: batcher.waiting)
    served.metrics.info.info({
        "version": __version__,
        "model": served.name or "",
        "device": str(getattr(served.reader, "device", "cpu")),
        "workers": str(batcher.workers),
        "threads": str(batcher.threads),
    })


def _lifespan(batcher: MicroBatcher) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: the micro-batch workers run while the app does."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    return lifespan


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": {"type", "message"}}``: the API's own, validation, HTTP (404, 405) and unexpected ones."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        note_error(request, exc.type)
        return error_response(exc.status, exc.type, exc.message, exc.details, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = validation_details(exc.errors())
        note_error(request, "validation_error")
        return error_response(422, "validation_error", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = error_type(exc.status_code)
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        note_error(request, kind)
        return error_response(exc.status_code, kind, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.error("error answering %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "the server failed to answer this request; see its log")


def _add_answer_route(app: FastAPI, served: _Served) -> None:
    """``POST /answer``: parse, retrieve passages for index questions, answer in a micro-batch, render."""
    settings, search_lock = served.settings, threading.Lock()

    @app.post(
        "/answer",
        response_model=AnswerResponse | BatchResponse,
        responses=copy.deepcopy(ERROR_RESPONSES),
        openapi_extra={"requestBody": copy.deepcopy(ANSWER_REQUEST_BODY)},
        summary="Answer one question, or a batch of questions",
    )
    async def answer(request: Request) -> Response:
        """Send `{"question", "context"}` (or `"documents"` to rank answers across several texts), or
        `{"questions": [...]}` for several at once. Answers are spans of the given text with their
        character offsets and probabilities. On a server started with `--index`, a question without
        context or documents is answered from the best `passages` passages of the index; each answer
        then also gives its `passage`, `source`, `doc_id` and `document_start`/`document_end`."""
        body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
        items, batched = parse_payload(parse_json(body), settings, served.index)
        try:
            requests, hits = await _reader_requests(items, served, search_lock)
            # Index questions join the same micro-batches as the others: one path for batching, timeouts and metrics.
            results = await served.batcher.submit(requests, settings.request_timeout_s)
        except SpanQAError as err:
            raise ApiError(422, "validation_error", str(err)) from None
        served.metrics.questions.inc(len(results))
        answered = [result_dict(result, found) for result, found in zip(results, hits)]
        if batched:
            return JSONResponse({"results": answered})
        return JSONResponse(answered[0])


async def _reader_requests(
    items: list[QARequest | IndexQuestion], served: _Served, search_lock: threading.Lock
) -> tuple[list[QARequest], list[list[Hit] | None]]:
    """The reader's requests for the parsed questions, with the passages retrieved for index questions.

    Retrieval runs in a worker thread (within the request timeout); without index questions there is
    nothing to retrieve and no thread hop.

    Args:
        items: The parsed questions.
        served: The app's parts (its index and settings).
        search_lock: Serialises the index's searches.
    """
    if not any(isinstance(item, IndexQuestion) for item in items):
        return retrieve(items, None, search_lock)
    timeout = served.settings.request_timeout_s
    try:
        return await asyncio.wait_for(asyncio.to_thread(retrieve, items, served.index, search_lock), timeout)
    except asyncio.TimeoutError:
        raise ApiError(504, "timeout", f"no passages retrieved within {timeout:g} s") from None


def _add_status_routes(app: FastAPI, served: _Served) -> None:
    """``GET /health`` (the model, limits and batching counters) and ``GET /metrics`` (Prometheus)."""
    index = served.index
    index_info = None if index is None else {
        "passages": len(index.passages),
        "documents": len({passage.doc_id for passage in index.passages}),
        "retrieval": index.default_method,
        "embedding_model": index.manifest.get("embedding_model"),
        "passages_per_question": served.settings.passages,
    }
    report_path = report_file(served.name)

    @app.get("/health", response_model=HealthResponse, summary="Model and server status")
    async def health() -> dict[str, Any]:
        config = served.reader.config
        return {
            "status": "ok",
            "model": served.name,
            "handle_impossible": bool(config.handle_impossible),
            "version_2": bool(config.handle_impossible),  # the old name, kept for clients of 0.1
            "null_threshold": float(config.null_threshold),
            "device": str(getattr(served.reader, "device", "cpu")),
            "max_length": int(config.max_length),
            "limits": served.settings.model_dump(exclude={"workers", "threads"}),
            "batching": served.batcher.stats,
            "index": index_info,
            "report": is_report(report_path),
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
        return Response(served.metrics.exposition(), media_type=METRICS_CONTENT_TYPE, headers={"Cache-Control": "no-store"})


def _add_page_routes(app: FastAPI, name: str | None) -> None:
    """``GET /``: the question-answering page; ``GET /report``: the model folder's ``spanqa report``."""
    page, csp = load_page()
    report_path = report_file(name)  # resolved now: never re-read relative to a later working directory

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def web_page() -> HTMLResponse:  # not `index`: that name is the passage index
        return HTMLResponse(page, headers=page_headers(csp))

    @app.get("/report", response_class=HTMLResponse, include_in_schema=False)
    def report_page() -> HTMLResponse:
        """The model folder's ``spanqa report`` (read on each request: a new report shows without a restart).

        Only a file ``spanqa report`` wrote (its generator marker) is served, never other HTML of the folder.
        """
        text = read_report(report_path)
        if text is None:
            raise ApiError(404, "not_found", "this model has no report; write one with `spanqa report MODEL_FOLDER`")
        return HTMLResponse(text, headers=REPORT_HEADERS)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """``/openapi.json``: FastAPI's schema with both request bodies of ``POST /answer`` (it reads the raw body itself)."""
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
