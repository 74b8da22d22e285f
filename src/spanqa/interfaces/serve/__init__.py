"""Serve a :class:`~spanqa.reading.reader.Reader` over HTTP.

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
keep-alive connections close after ``keep_alive_timeout_s``. Work is bounded:
a request needing more than ``max_request_windows`` model windows gets 413 (an
index request's questions x passages are counted before retrieval), requests
are read in steps of at most ``max_batch_windows`` windows, the smallest
remaining work first, so a small request is answered between the steps of a
large one; no new request starts while ``max_active_windows`` windows are held,
and a request whose caller gave up (``request_timeout_s``) is dropped before the
next step.

Settings (:class:`ServeSettings`) come from, in increasing precedence: their
defaults, ``SPANQA_SERVE_<NAME>`` environment variables (``SPANQA_SERVE_MAX_BATCH=64``,
``SPANQA_SERVE_THREADS=auto``) and explicit values (``serve_settings(max_batch=64)``,
the command-line options of ``spanqa serve``). A bad value is a one-line
:class:`~spanqa.core.errors.ConfigError` naming the setting.

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

The modules: ``settings`` (:class:`ServeSettings`), ``schema`` (the request and response
models), ``errors`` (:class:`ApiError`, the error bodies), ``requests`` (a body into
:class:`~spanqa.reading.reader.QARequest` / :class:`IndexQuestion`, with the limits),
``retrieval`` (questions answered from the index), ``batching`` (:class:`MicroBatcher`: requests
read in bounded steps, small ones first, with window budgets), ``metrics``, ``page`` (the web
page), ``app`` (:func:`create_app`) and ``server`` (:func:`run_server`).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from spanqa.interfaces.serve.extras import MissingDependencyError

if TYPE_CHECKING:
    from spanqa.interfaces.serve.app import create_app
    from spanqa.interfaces.serve.batching import MicroBatcher
    from spanqa.interfaces.serve.errors import ApiError
    from spanqa.interfaces.serve.metrics import ServeMetrics
    from spanqa.interfaces.serve.server import run_server, uvicorn_options
    from spanqa.interfaces.serve.settings import ENV_PREFIX, ServeSettings, resolve_threads, serve_settings, usable_cores

__all__ = ["ServeSettings", "serve_settings", "resolve_threads", "usable_cores", "ServeMetrics", "create_app", "run_server", "MicroBatcher",
           "ApiError", "uvicorn_options", "ENV_PREFIX", "MissingDependencyError"]

# Each public name and the module of this package that defines it. They load on first use, so the
# command line can read the settings (settings.py: pydantic only) without importing the web stack.
_EXPORTS = {
    "ServeSettings": "settings",
    "serve_settings": "settings",
    "resolve_threads": "settings",
    "usable_cores": "settings",
    "ENV_PREFIX": "settings",
    "ServeMetrics": "metrics",
    "create_app": "app",
    "run_server": "server",
    "uvicorn_options": "server",
    "MicroBatcher": "batching",
    "ApiError": "errors",
}


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (PEP 562).

    Raises:
        MissingDependencyError: the ``serve`` extra (fastapi, pydantic-settings, ...) is not installed.
    """
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(import_module(f"{__name__}.{module}"), name)
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] == "spanqa":
            raise
        raise MissingDependencyError.of(err) from err
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
