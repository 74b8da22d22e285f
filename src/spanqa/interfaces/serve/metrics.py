"""The server's Prometheus metrics (served at ``GET /metrics``) and the middleware that counts requests."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spanqa.interfaces.serve.errors import error_type

__all__ = ["ServeMetrics", "MetricsMiddleware", "LATENCY_BUCKETS", "METRICS_CONTENT_TYPE"]

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


class MetricsMiddleware:
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
                kind = kind or error_type(status)
                self.metrics.errors.labels(endpoint=endpoint, type=kind).inc()
            if endpoint == "/answer" and method == "POST":
                self.metrics.latency.labels(status=str(status)).observe(time.perf_counter() - started)
