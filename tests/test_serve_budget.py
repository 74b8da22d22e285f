"""Bounded work in the server: window budgets per request (413), questions x passages counted before
retrieval, requests read in steps so a small one is answered between a large one's steps, memory
held bounded by ``max_active_windows``, and answers that do not depend on their neighbours."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra (fastapi, uvicorn)")
httpx = pytest.importorskip("httpx", reason="the API tests need httpx")

from fastapi.testclient import TestClient  # noqa: E402
from samples import RAILWAY, RAILWAY_REQUEST  # noqa: E402

from spanqa.interfaces.serve import ServeSettings, create_app  # noqa: E402
from spanqa.reading.index import build_index  # noqa: E402
from spanqa.reading.options import AnswerOptions  # noqa: E402
from spanqa.reading.reader import QARequest, Reader  # noqa: E402
from spanqa.stages.data import QAExample  # noqa: E402

pytestmark = pytest.mark.usefixtures("clean_serve_environment")

# Distinct sentences (no repeated windows, so no tied candidates whose order numeric noise could swap).
LONG = RAILWAY + " " + " ".join(f"Note {i}: depot {i} was painted green in {1700 + i} by crew {i % 7}." for i in range(400))


class SlowBackend:
    """A reader's backend that sleeps before each forward pass and records the windows of each pass."""

    def __init__(self, backend, delay: float) -> None:
        self.backend, self.delay, self.passes = backend, delay, []

    def __call__(self, batch):
        self.passes.append(len(batch["input_ids"]))
        time.sleep(self.delay)
        return self.backend(batch)

    def __getattr__(self, name: str):
        return getattr(self.backend, name)


def slow(reader: Reader, delay: float, batch_size: int = 4) -> tuple[Reader, SlowBackend]:
    backend = SlowBackend(reader.backend, delay)
    return Reader(None, reader.tokenizer, reader.config, batch_size=batch_size, backend=backend), backend


def windows_of(reader: Reader, text: str, question: str = "When was it built?") -> int:
    return len(reader.features([QAExample(id="x", question=question, context=text)]))


def error_of(response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["type"] == kind, body
    return body["error"]["message"]


def test_a_request_over_its_window_budget_is_413_naming_the_limit(reader):
    windows = windows_of(reader, LONG)
    assert windows > 8
    with TestClient(create_app(reader, ServeSettings(max_request_windows=8))) as client:
        message = error_of(client.post("/answer", json={"question": "When was it built?", "context": LONG}), 413, "too_many_windows")
        assert "max_request_windows=8" in message
        # Several documents count together, and so do a batch's questions.
        documents = {"question": "When?", "documents": [RAILWAY * 4] * 5}
        assert client.post("/answer", json=documents).status_code == 413
        batch = {"questions": [{"question": "When?", "context": RAILWAY}] * 9}
        assert client.post("/answer", json=batch).status_code == 413
        assert client.post("/answer", json=RAILWAY_REQUEST).status_code == 200  # and the server goes on
        assert client.get("/health").json()["batching"]["over_window_limit"] == 3


def test_questions_times_passages_over_the_budget_are_413_before_retrieval(reader, tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text(RAILWAY, encoding="utf-8")
    index = build_index([tmp_path / "docs"], tmp_path / "index", max_words=100)
    searched = []
    monkeypatch.setattr(type(index), "search", lambda self, *args, **kwargs: searched.append(args) or [])
    app = create_app(reader, ServeSettings(max_request_windows=50), index=index)
    with TestClient(app) as client:
        body = {"questions": [{"question": f"Question {i}?", "passages": 10} for i in range(6)]}
        message = error_of(client.post("/answer", json=body), 413, "too_many_windows")
        assert "60 passages" in message and "max_request_windows=50" in message
    assert searched == []  # refused before any retrieval work


async def _small_during_large(app, large: dict, small: dict) -> tuple[float, float, int, int]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
        started = time.perf_counter()

        async def timed(payload: dict, delay: float) -> tuple[float, int]:
            await asyncio.sleep(delay)
            response = await client.post("/answer", json=payload)
            return time.perf_counter() - started, response.status_code

        (large_done, large_status), (small_done, small_status) = await asyncio.gather(timed(large, 0.0), timed(small, 0.3))
    return large_done, small_done, large_status, small_status


def test_a_small_request_is_answered_between_the_steps_of_a_large_one(reader):
    """Before: the large request held the worker to its end and the small one waited behind it."""
    slow_reader, backend = slow(reader, delay=0.05, batch_size=4)
    windows = windows_of(slow_reader, LONG)
    assert windows >= 40  # >= 10 passes of 4 windows: >= 0.5 s of model time
    app = create_app(slow_reader, ServeSettings(max_batch_windows=4, max_request_windows=1000))
    large = {"question": "When was it built?", "context": LONG}
    large_done, small_done, large_status, small_status = asyncio.run(_small_during_large(app, large, RAILWAY_REQUEST))
    assert (large_status, small_status) == (200, 200)
    assert small_done < large_done - 0.2, (small_done, large_done)
    assert max(backend.passes) <= 4  # no pass over the step's windows
    assert app.state.batcher.batches >= windows // 4


async def _large_among_small_ones(app, large: dict, small: dict, clients: int, give_up_s: float) -> tuple[float, int, int]:
    """Post ``large`` while ``clients`` others post ``small`` in a loop until it is answered (or ``give_up_s``):
    when it was answered, its status, and how many small requests were answered meanwhile."""
    transport = httpx.ASGITransport(app=app)
    answered = asyncio.Event()
    small_answers = 0
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
        started = time.perf_counter()

        async def keep_posting() -> None:
            nonlocal small_answers
            while not answered.is_set() and time.perf_counter() - started < give_up_s:
                small_answers += (await client.post("/answer", json=small)).status_code == 200

        async def post_large() -> tuple[float, int]:
            await asyncio.sleep(0.1)  # the small ones first: the queue is never empty when it arrives
            response = await client.post("/answer", json=large)
            answered.set()
            return time.perf_counter() - started, response.status_code

        (done, status), *_ = await asyncio.gather(post_large(), *(keep_posting() for _ in range(clients)))
    return done, status, small_answers


def test_a_steady_stream_of_small_requests_cannot_starve_a_larger_one(reader):
    """Before: fewest windows first, always; under 16 load_serve clients 12 of 1,081 requests waited 30 s (504)."""
    slow_reader, _ = slow(reader, delay=0.03, batch_size=4)
    medium = RAILWAY + " " + " ".join(f"Note {i}: depot {i} was painted green in {1700 + i} by crew {i % 7}." for i in range(60))
    assert windows_of(slow_reader, medium) >= 8
    app = create_app(slow_reader, ServeSettings(max_batch_windows=4, max_request_windows=1000, max_wait_ms=0))
    done, status, small_answers = asyncio.run(
        _large_among_small_ones(app, {"question": "When was it built?", "context": medium}, RAILWAY_REQUEST, clients=16, give_up_s=8.0)
    )
    assert status == 200
    assert small_answers >= 1  # the small ones were answered meanwhile too
    assert done < 4.0, done  # answered while they still came (before: after 8 s, when they stopped)


def test_the_answers_of_a_request_read_in_steps_are_those_read_at_once(reader):
    slow_reader, _ = slow(reader, delay=0.0, batch_size=4)
    payload = {"question": "When was it built?", "context": LONG, "top_k": 3}
    with TestClient(create_app(slow_reader, ServeSettings(max_batch_windows=3, max_request_windows=1000))) as client:
        served = client.post("/answer", json=payload).json()
    direct = reader.answer_batch([QARequest(payload["question"], LONG, options=AnswerOptions(top_k=3))])[0].to_dict()
    assert [(a["text"], a["start"]) for a in served["answers"]] == [(a["text"], a["start"]) for a in direct["answers"]]
    assert [a["score"] for a in served["answers"]] == pytest.approx([a["score"] for a in direct["answers"]], abs=1e-5)


def test_an_answer_does_not_depend_on_the_requests_read_beside_it(reader):
    """Before: a neighbour's top_k widened the shared n-best list, and with it every request's probabilities."""
    alone = reader.answer_batch([QARequest(RAILWAY_REQUEST["question"], RAILWAY)])[0]
    neighbour = QARequest("Which village?", RAILWAY, options=AnswerOptions(top_k=50))
    together = reader.answer_batch([QARequest(RAILWAY_REQUEST["question"], RAILWAY), neighbour])[0]
    assert together.to_dict() == alone.to_dict()


def test_windows_held_stay_under_the_memory_budget(reader):
    """Several large requests at once: no new one starts while max_active_windows are held."""
    slow_reader, _ = slow(reader, delay=0.01, batch_size=4)
    per_request = windows_of(slow_reader, LONG)
    limit = per_request + 5  # room for one large request at a time
    app = create_app(slow_reader, ServeSettings(max_batch_windows=4, max_request_windows=1000, max_active_windows=limit))
    batcher = app.state.batcher
    held: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            held.append(batcher.held_windows)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        statuses = asyncio.run(_post_all(app, [{"question": f"When {i}?", "context": LONG} for i in range(4)]))
    finally:
        stop.set()
        sampler.join()
    assert statuses == [200] * 4
    assert max(held) > 0 and max(held) <= limit, max(held)


async def _post_all(app, payloads: list[dict]) -> list[int]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=120) as client:
        responses = await asyncio.gather(*(client.post("/answer", json=p) for p in payloads))
    return [r.status_code for r in responses]


def test_the_window_settings_are_documented_in_the_health_limits(reader):
    with TestClient(create_app(reader)) as client:
        limits = client.get("/health").json()["limits"]
    assert {"max_request_windows", "max_batch_windows", "max_active_windows"} <= set(limits)
