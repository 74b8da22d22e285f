"""The server's Prometheus metrics, its settings from the environment, and its workers and threads."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra (fastapi, uvicorn)")
httpx = pytest.importorskip("httpx", reason="the API tests need httpx")
pytest.importorskip("prometheus_client", reason="serving needs the 'serve' extra (prometheus-client)")
pytest.importorskip("pydantic_settings", reason="serving needs the 'serve' extra (pydantic-settings)")

import torch  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from samples import RAILWAY, RAILWAY_REQUEST  # noqa: E402

from spanqa.core.errors import ConfigError, SpanQAError  # noqa: E402
from spanqa.interfaces import serve  # noqa: E402
from spanqa.interfaces.serve import ServeSettings, create_app, resolve_threads, serve_settings  # noqa: E402
from spanqa.interfaces.serve import settings as settings_module  # noqa: E402
from spanqa.reading.reader import Reader  # noqa: E402
from spanqa.runtime.options import LoadOptions  # noqa: E402

CONTEXT = RAILWAY
GOOD = RAILWAY_REQUEST
# Threads for test apps: torch's current setting, so building apps never changes it for the other tests.
SAME_THREADS = torch.get_num_threads()

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]



pytestmark = pytest.mark.usefixtures("clean_serve_environment")


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def scrape(client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class StubReader:
    """Forwards to a real Reader, optionally slowly or failing."""

    def __init__(self, reader: Reader, delay: float = 0.0, fail: bool = False) -> None:
        self.reader, self.delay, self.fail = reader, delay, fail
        self.model, self.config, self.device = reader.model, reader.config, reader.device

    def answer_batch(self, requests):
        if self.fail:
            raise RuntimeError("boom")
        time.sleep(self.delay)
        return self.reader.answer_batch(requests)


# --------------------------------------------------------------------------- /metrics


def test_metrics_count_requests_questions_latency_and_batches(reader):
    app = create_app(reader, ServeSettings(threads=SAME_THREADS))
    with TestClient(app) as client:
        before = scrape(client)
        assert value(before, "spanqa_requests_total", endpoint="/answer", method="POST", status="200") == 0
        for _ in range(3):
            assert client.post("/answer", json=GOOD).status_code == 200
        assert client.post("/answer", json={"questions": [GOOD, GOOD]}).status_code == 200
        assert client.get("/health").status_code == 200
        samples = scrape(client)
    assert value(samples, "spanqa_requests_total", endpoint="/answer", method="POST", status="200") == 4
    assert value(samples, "spanqa_requests_total", endpoint="/health", method="GET", status="200") == 1
    assert value(samples, "spanqa_requests_total", endpoint="/metrics", method="GET", status="200") == 1  # the first scrape
    assert value(samples, "spanqa_questions_answered_total") == 5
    assert value(samples, "spanqa_answer_latency_seconds_count", status="200") == 4
    assert value(samples, "spanqa_answer_latency_seconds_bucket", status="200", le="+Inf") == 4
    assert 0 < value(samples, "spanqa_answer_latency_seconds_sum", status="200") < 60
    batcher = app.state.batcher
    assert value(samples, "spanqa_batch_size_count") == batcher.batches >= 1
    assert value(samples, "spanqa_batch_size_sum") == batcher.questions == 5
    assert value(samples, "spanqa_batch_duration_seconds_count") == batcher.batches
    assert value(samples, "spanqa_in_flight_requests") == 0
    assert value(samples, "spanqa_queued_questions") == 0
    assert not any(name == "spanqa_errors_total" for name, _ in samples)
    info = [dict(labels) for name, labels in samples if name == "spanqa_server_info"]
    assert len(info) == 1 and info[0]["workers"] == "1" and info[0]["threads"] == str(SAME_THREADS)


def test_histogram_buckets_cover_the_latency_and_batch_ranges(reader):
    app = create_app(reader, ServeSettings(threads=SAME_THREADS, max_batch_items=48))
    with TestClient(app) as client:
        client.post("/answer", json=GOOD)
        samples = scrape(client)
    latency = {dict(labels)["le"] for name, labels in samples if name == "spanqa_answer_latency_seconds_bucket"}
    assert {"0.01", "0.1", "1.0", "10.0", "30.0", "+Inf"} <= latency
    sizes = {dict(labels)["le"] for name, labels in samples if name == "spanqa_batch_size_bucket"}
    assert sizes == {"1.0", "2.0", "4.0", "8.0", "16.0", "32.0", "48.0", "+Inf"}  # powers of 2 up to max_batch_items


def test_errors_are_counted_by_type(reader):
    with TestClient(create_app(reader, ServeSettings(threads=SAME_THREADS, max_batch=2))) as client:
        assert client.post("/answer", json={"question": "", "context": CONTEXT}).status_code == 422
        assert client.post("/answer", json={"questions": [GOOD] * 3}).status_code == 422
        assert client.post("/answer", content=b"{", headers={"content-type": "application/json"}).status_code == 400
        assert client.get("/no/such/page").status_code == 404
        assert client.get("/answer").status_code == 405
        assert client.post("/answer", json=GOOD).status_code == 200
        samples = scrape(client)
    assert value(samples, "spanqa_requests_total", endpoint="/answer", method="POST", status="422") == 2
    assert value(samples, "spanqa_requests_total", endpoint="/answer", method="POST", status="400") == 1
    assert value(samples, "spanqa_requests_total", endpoint="other", method="GET", status="404") == 1  # unknown paths share a label
    assert value(samples, "spanqa_requests_total", endpoint="/answer", method="GET", status="405") == 1
    assert value(samples, "spanqa_errors_total", endpoint="/answer", type="validation_error") == 1
    assert value(samples, "spanqa_errors_total", endpoint="/answer", type="too_many_questions") == 1
    assert value(samples, "spanqa_errors_total", endpoint="/answer", type="invalid_json") == 1
    assert value(samples, "spanqa_errors_total", endpoint="other", type="not_found") == 1
    assert value(samples, "spanqa_errors_total", endpoint="/answer", type="method_not_allowed") == 1
    assert value(samples, "spanqa_questions_answered_total") == 1  # only the one answered
    assert value(samples, "spanqa_answer_latency_seconds_count", status="200") == 1
    assert value(samples, "spanqa_answer_latency_seconds_count", status="422") == 2


def test_model_failure_is_counted_as_internal_error(reader):
    stub = StubReader(reader, fail=True)
    with TestClient(create_app(stub, ServeSettings(threads=SAME_THREADS)), raise_server_exceptions=False) as client:
        assert client.post("/answer", json=GOOD).status_code == 500
        stub.fail = False
        assert client.post("/answer", json=GOOD).status_code == 200
        samples = scrape(client)
    assert value(samples, "spanqa_requests_total", endpoint="/answer", method="POST", status="500") == 1
    assert value(samples, "spanqa_errors_total", endpoint="/answer", type="internal_error") == 1
    assert value(samples, "spanqa_questions_answered_total") == 1


def test_timeout_is_counted(reader):
    stub = StubReader(reader, delay=0.6)
    with TestClient(create_app(stub, ServeSettings(threads=SAME_THREADS, request_timeout_s=0.1))) as client:
        assert client.post("/answer", json=GOOD).status_code == 504
        samples = scrape(client)
        time.sleep(0.6)  # let the abandoned batch finish before the app stops
    assert value(samples, "spanqa_errors_total", endpoint="/answer", type="timeout") == 1
    assert value(samples, "spanqa_answer_latency_seconds_count", status="504") == 1


def test_in_flight_gauge(reader):
    stub = StubReader(reader, delay=0.8)
    with TestClient(create_app(stub, ServeSettings(threads=SAME_THREADS))) as client:
        thread = threading.Thread(target=client.post, args=("/answer",), kwargs={"json": GOOD})
        thread.start()
        deadline = time.monotonic() + 5
        seen = 0.0
        while time.monotonic() < deadline and not seen:
            seen = value(scrape(client), "spanqa_in_flight_requests")
            time.sleep(0.02)
        thread.join()
        assert seen == 1  # the /answer request, not the scrape itself
        assert value(scrape(client), "spanqa_in_flight_requests") == 0


def test_each_app_has_its_own_registry(reader):
    first, second = create_app(reader, ServeSettings(threads=SAME_THREADS)), create_app(reader, ServeSettings(threads=SAME_THREADS))
    assert first.state.metrics.registry is not second.state.metrics.registry
    with TestClient(first) as a, TestClient(second) as b:
        for _ in range(2):
            assert a.post("/answer", json=GOOD).status_code == 200
        assert b.post("/answer", json=GOOD).status_code == 200
        assert value(scrape(a), "spanqa_questions_answered_total") == 2
        assert value(scrape(b), "spanqa_questions_answered_total") == 1


def test_metrics_in_the_openapi_schema(reader):
    with TestClient(create_app(reader, ServeSettings(threads=SAME_THREADS))) as client:
        schema = client.get("/openapi.json").json()
    assert "text/plain" in schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]


async def _post_many(app, payloads):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
        responses = await asyncio.gather(*(client.post("/answer", json=p) for p in payloads))
        metrics = await client.get("/metrics")
        return responses, metrics


def test_batch_size_histogram_under_concurrency(reader):
    app = create_app(reader, ServeSettings(threads=SAME_THREADS, max_wait_ms=20, max_batch_items=16))
    payloads = [{"question": f"Question {i}: when was it built?", "context": CONTEXT, "id": str(i)} for i in range(30)]
    responses, metrics = asyncio.run(_post_many(app, payloads))
    assert [r.status_code for r in responses] == [200] * 30
    samples = parse(metrics.text)
    batcher = app.state.batcher
    assert value(samples, "spanqa_batch_size_count") == batcher.batches < 30
    assert value(samples, "spanqa_batch_size_sum") == 30
    assert value(samples, "spanqa_batch_size_bucket", le="1.0") < batcher.batches  # some batches held several requests
    assert value(samples, "spanqa_questions_answered_total") == 30


# --------------------------------------------------------------------------- workers and threads


def test_two_workers_answer_correctly(reader):
    app = create_app(reader, ServeSettings(workers=2, threads=SAME_THREADS, max_wait_ms=5, max_batch_items=4))
    batcher = app.state.batcher
    assert batcher.workers == 2 and len(batcher._readers) == 2
    assert batcher._readers[1].tokenizer is not reader.tokenizer and batcher._readers[1].backend is reader.backend
    payloads = [{"question": "When was the railway built?", "context": CONTEXT, "top_k": 1 + i % 3, "id": str(i)} for i in range(24)]
    responses, _ = asyncio.run(_post_many(app, payloads))
    expected = reader.answer_batch([(GOOD["question"], CONTEXT)])[0].to_dict()
    for payload, response in zip(payloads, responses):
        assert response.status_code == 200
        result = response.json()
        direct = reader.answer_batch([{"question": payload["question"], "context": CONTEXT, "top_k": payload["top_k"]}])[0]
        assert result["id"] == payload["id"] and len(result["answers"]) == len(direct.answers) <= payload["top_k"]
        assert (result["answer"], result["start"], result["end"]) == (expected["answer"], expected["start"], expected["end"])
    assert batcher.batches >= 6  # at most 4 questions per micro-batch
    with TestClient(app) as client:
        health = client.get("/health").json()
    assert health["batching"]["workers"] == 2 and health["batching"]["threads"] == SAME_THREADS
    assert "workers" not in health["limits"] and "threads" not in health["limits"]


def test_worker_threads_get_the_thread_setting(reader):
    class ThreadProbe(StubReader):
        seen: list[int] = []

        def answer_batch(self, requests):
            self.seen.append(torch.get_num_threads())
            return super().answer_batch(requests)

    other = 1 if SAME_THREADS > 1 else 2
    probe = ThreadProbe(reader)
    try:
        with TestClient(create_app(probe, ServeSettings(threads=other))) as client:
            assert client.post("/answer", json=GOOD).status_code == 200
            assert client.post("/answer", json=GOOD).status_code == 200
        assert probe.seen == [other, other]  # in the worker thread
        if "parallel backend: OpenMP" in torch.__config__.parallel_info():  # OpenMP keeps the setting per thread
            assert torch.get_num_threads() == SAME_THREADS  # this thread keeps its own
    finally:
        torch.set_num_threads(SAME_THREADS)  # the default for threads started later, as before


def test_default_threads_come_from_the_usable_cores(monkeypatch):
    monkeypatch.setattr(settings_module, "usable_cores", lambda: 8)  # what resolve_threads reads
    monkeypatch.setattr(torch, "get_num_threads", lambda: 64)
    assert resolve_threads(ServeSettings()) == 8  # one worker on every core
    assert resolve_threads(ServeSettings(workers=2)) == 4
    assert resolve_threads(ServeSettings(workers=16)) == 1
    assert resolve_threads(ServeSettings(threads=3)) == 3
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # OMP_NUM_THREADS or torch.set_num_threads(2) earlier
    assert resolve_threads(ServeSettings()) == 2


def test_usable_cores_follow_the_affinity_mask(monkeypatch):
    import os

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert serve.usable_cores() == 3


# --------------------------------------------------------------------------- settings from the environment


def test_environment_sets_the_settings(monkeypatch):
    monkeypatch.setenv("SPANQA_SERVE_MAX_BATCH", "64")
    monkeypatch.setenv("SPANQA_SERVE_REQUEST_TIMEOUT_S", "2.5")
    monkeypatch.setenv("SPANQA_SERVE_WORKERS", "2")
    monkeypatch.setenv("SPANQA_SERVE_THREADS", "auto")
    settings = serve_settings()
    assert (settings.max_batch, settings.request_timeout_s, settings.workers, settings.threads) == (64, 2.5, 2, None)
    assert settings.max_documents == 100  # the others keep their defaults
    assert ServeSettings().max_batch == 64  # the class reads the environment too


def test_overrides_beat_the_environment(monkeypatch):
    monkeypatch.setenv("SPANQA_SERVE_MAX_BATCH", "64")
    monkeypatch.setenv("SPANQA_SERVE_THREADS", "3")
    settings = serve_settings(max_batch=8, max_wait_ms=None, threads=None)
    assert settings.max_batch == 8
    assert settings.max_wait_ms == 5.0  # None: not given, the default stays
    assert settings.threads == 3  # None: not given, the environment stays


def test_defaults_without_environment():
    settings = serve_settings()
    assert settings == ServeSettings()
    assert (settings.max_batch, settings.max_body_bytes, settings.workers, settings.threads) == (32, 1024 * 1024, 1, None)


@pytest.mark.parametrize("raw", ["abc", "0", "-3", "1.5", ""])
def test_invalid_environment_value_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv("SPANQA_SERVE_MAX_BATCH", raw)
    if raw == "":  # an empty variable counts as unset
        assert serve_settings().max_batch == 32
        return
    with pytest.raises(ConfigError, match=r"^SPANQA_SERVE_MAX_BATCH: must be a positive integer, got ") as info:
        serve_settings()
    assert "\n" not in str(info.value) and isinstance(info.value, SpanQAError)


@pytest.mark.parametrize(
    "name, raw",
    [("REQUEST_TIMEOUT_S", "0"), ("REQUEST_TIMEOUT_S", "nan"), ("MAX_WAIT_MS", "-1"), ("MAX_WAIT_MS", "inf"), ("THREADS", "0"), ("WORKERS", "many")],
)
def test_invalid_environment_values(monkeypatch, name, raw):
    monkeypatch.setenv(f"SPANQA_SERVE_{name}", raw)
    with pytest.raises(ConfigError, match=rf"^SPANQA_SERVE_{name}: must be "):
        serve_settings()


def test_invalid_override_names_the_setting(monkeypatch):
    monkeypatch.setenv("SPANQA_SERVE_MAX_BATCH", "64")
    with pytest.raises(ConfigError, match=r"^max_batch: must be a positive integer, got 0$"):
        serve_settings(max_batch=0)
    with pytest.raises(ConfigError, match="max_batch"):
        ServeSettings(max_batch=True)
    with pytest.raises(ConfigError, match=r"threads: must be a positive integer or 'auto'"):
        serve_settings(threads=-1)


def test_unknown_settings_are_errors(monkeypatch):
    with pytest.raises(ConfigError, match=r"max_bach: unknown serve setting \(did you mean 'max_batch'\?\)"):
        serve_settings(max_bach=3)
    with pytest.raises(ConfigError, match="unknown setting"):
        ServeSettings(max_bach=3)
    monkeypatch.setenv("SPANQA_SERVE_MAX_BATCHES", "3")
    with pytest.raises(ConfigError, match=r"SPANQA_SERVE_MAX_BATCHES: unknown setting \(did you mean 'SPANQA_SERVE_MAX_BATCH'\?\)"):
        serve_settings()


def test_settings_are_frozen_and_described():
    settings = ServeSettings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.max_batch = 3
    for name, field in ServeSettings.model_fields.items():
        assert field.description, f"{name} has no help text"


# --------------------------------------------------------------------------- settings on the command line


@pytest.fixture
def cli_serve(monkeypatch, fresh_cli_logging):
    """Run ``spanqa serve ARGS``, recording what would be served instead of serving it."""
    from typer.testing import CliRunner

    from spanqa.interfaces.cli import app

    calls: list[dict] = []
    monkeypatch.setattr(serve, "run_server", lambda model, **kwargs: calls.append({"model": model, **kwargs}))

    def run(*args: str, columns: int | None = None):
        env = {"COLUMNS": str(columns), "TERMINAL_WIDTH": str(columns)} if columns else None
        return CliRunner().invoke(app, ["serve", *args], env=env), calls

    return run


def test_serve_help_lists_every_setting_within_80_columns(cli_serve):
    result, _ = cli_serve("--help", columns=80)
    assert result.exit_code == 0, result.output
    for name in ServeSettings.model_fields:
        assert f"--{name.replace('_', '-')}" in result.output, name
    for option in ("--device", "--backend", "--dtype", "--batch-size", "--index"):
        assert option in result.output
    assert "SPANQA_SERVE_" in result.output  # the epilog names the environment variables
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_serve_options_become_settings_and_load_options(cli_serve):
    result, calls = cli_serve("my-model", "--max-batch", "7", "--threads", "auto", "--request-timeout-s", "2.5",
                              "--device", "cpu", "--dtype", "fp32", "--batch-size", "8", "--backend", "torch")
    assert result.exit_code == 0, result.output
    (call,) = calls
    settings = call["settings"]
    assert (settings.max_batch, settings.threads, settings.request_timeout_s, settings.max_documents) == (7, None, 2.5, 100)
    assert call["load"] == LoadOptions(device="cpu", backend="torch", dtype="fp32", batch_size=8)


def test_an_explicit_option_beats_the_environment(cli_serve, monkeypatch):
    monkeypatch.setenv("SPANQA_SERVE_MAX_BATCH", "64")
    monkeypatch.setenv("SPANQA_SERVE_WORKERS", "2")
    result, calls = cli_serve("my-model", "--max-batch", "8")
    assert result.exit_code == 0, result.output
    settings = calls[-1]["settings"]
    assert (settings.max_batch, settings.workers) == (8, 2)  # the option, and the environment where no option was given


@pytest.mark.parametrize(
    "args, named",
    [
        (["--max-batch", "0"], "max_batch: must be a positive integer, got '0'"),
        (["--request-timeout-s", "soon"], "request_timeout_s: must be a finite number of seconds > 0"),
        (["--threads", "-1"], "threads: must be a positive integer or 'auto'"),
        (["--dtype", "fp17"], "unknown dtype 'fp17'"),
        (["--backend", "tensorflow"], "unknown backend 'tensorflow'"),
    ],
)
def test_a_bad_serve_option_is_one_error_line(cli_serve, args, named):
    result, calls = cli_serve("my-model", *args)
    assert result.exit_code == 1 and calls == []
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], result.stderr


def test_a_bad_environment_value_is_one_error_line_naming_the_variable(cli_serve, monkeypatch):
    monkeypatch.setenv("SPANQA_SERVE_MAX_BATCH", "many")
    result, calls = cli_serve("my-model")
    assert result.exit_code == 1 and calls == []
    assert result.stderr.strip().splitlines() == ["error: SPANQA_SERVE_MAX_BATCH: must be a positive integer, got 'many'"]


def test_list_settings_names_options_and_variables(cli_serve):
    result, calls = cli_serve("--list-settings")
    assert result.exit_code == 0 and calls == []
    assert "--max-batch / SPANQA_SERVE_MAX_BATCH (default 32)" in result.output
    assert "--threads / SPANQA_SERVE_THREADS (default auto)" in result.output


# --------------------------------------------------------------------------- run_server


def test_run_server_passes_backend_and_settings(monkeypatch, reader):
    uvicorn = pytest.importorskip("uvicorn")
    loads: list[LoadOptions | None] = []
    served: list = []

    def fake_load(name, load=None):
        loads.append(load)
        return reader

    monkeypatch.setattr(Reader, "from_pretrained", staticmethod(fake_load))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append((app, kwargs)))
    monkeypatch.setenv("SPANQA_SERVE_MAX_BATCH", "7")
    monkeypatch.setenv("SPANQA_SERVE_THREADS", str(SAME_THREADS))
    serve.run_server("some-model", port=8123, load=LoadOptions(device="cpu"))
    assert loads[-1] == LoadOptions(device="cpu")  # passed whole to Reader.from_pretrained
    app, kwargs = served[-1]
    assert kwargs["port"] == 8123
    assert app.state.settings.max_batch == 7  # no settings given: from the environment
    serve.run_server("some-model", settings=ServeSettings(max_batch=3, threads=SAME_THREADS), load=LoadOptions(backend="onnx", dtype="fp32"))
    assert loads[-1] == LoadOptions(backend="onnx", dtype="fp32")
    assert served[-1][0].state.settings.max_batch == 3
