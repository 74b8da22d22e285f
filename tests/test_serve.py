"""The HTTP API: answers, limits and their JSON errors, micro-batching across concurrent clients."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra (fastapi, uvicorn)")
httpx = pytest.importorskip("httpx", reason="the API tests need httpx")

from fastapi.testclient import TestClient  # noqa: E402
from samples import RAILWAY, RAILWAY_REQUEST  # noqa: E402

from spanqa.core.errors import ConfigError  # noqa: E402
from spanqa.interfaces.serve import ServeSettings, create_app  # noqa: E402
from spanqa.reading.reader import Reader  # noqa: E402

CONTEXT = RAILWAY
OTHER = "Marta Oyelaran founded the Kestrel Bay rowing club in 1962. The club trains on the estuary every morning."
GOOD = RAILWAY_REQUEST



@pytest.fixture(scope="module")
def client(reader):
    with TestClient(create_app(reader)) as c:
        yield c


def check_result(result: dict, texts: list[str], single: bool = True) -> None:
    assert set(result) >= {"id", "question", "answer", "score", "start", "end", "document", "is_impossible", "no_answer_score", "answers"}
    assert 0.0 <= result["score"] <= 1.0
    assert 0.0 <= result["no_answer_score"] <= 1.0
    for span in result["answers"]:
        text = texts[0] if single else texts[span["document"]]
        assert span["document"] is None if single else 0 <= span["document"] < len(texts)
        assert span["text"] == text[span["start"] : span["end"]]
        assert 0.0 <= span["score"] <= 1.0
    if not result["is_impossible"]:
        best = result["answers"][0]
        assert (result["answer"], result["start"], result["end"], result["document"]) == (best["text"], best["start"], best["end"], best["document"])
    scores = [s["score"] for s in result["answers"]]
    assert scores == sorted(scores, reverse=True)
    assert_no_overlaps(result["answers"])


def assert_no_overlaps(answers: list[dict], threshold: float = 0.5) -> None:
    """No two answers of one text share more than ``threshold`` of the shorter one (the default overlap rule)."""
    for i, a in enumerate(answers):
        for b in answers[i + 1 :]:
            if a["document"] == b["document"]:
                shared = min(a["end"], b["end"]) - max(a["start"], b["start"])
                assert shared <= threshold * min(a["end"] - a["start"], b["end"] - b["start"]), (a, b)


def direct_counts(reader: Reader, requests: list[dict]) -> list[int]:
    """How many answers the reader itself gives each request (top_k, less any overlapping ones it drops)."""
    fields = ("question", "context", "documents", "top_k", "max_answer_length")
    return [len(r.answers) for r in reader.answer_batch([{k: q[k] for k in fields if k in q} for q in requests])]


def assert_error(response, status: int, kind: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["type"], str) and isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert set(body["error"]) <= {"type", "message", "details"}
    if kind is not None:
        assert body["error"]["type"] == kind, body
    return body["error"]


def assert_still_serving(client) -> None:
    response = client.post("/answer", json=GOOD)
    assert response.status_code == 200, response.text
    check_result(response.json(), [CONTEXT])


# --------------------------------------------------------------------------- answers


def test_single_answer_matches_the_reader(client, reader):
    response = client.post("/answer", json={**GOOD, "top_k": 3, "id": "q1"})
    assert response.status_code == 200
    result = response.json()
    check_result(result, [CONTEXT])
    assert result["id"] == "q1" and result["question"] == GOOD["question"]
    direct = reader(GOOD["question"], CONTEXT, top_k=3).to_dict()
    assert 1 <= len(result["answers"]) == len(direct["answers"]) <= 3
    assert [(a["start"], a["end"]) for a in result["answers"]] == [(a["start"], a["end"]) for a in direct["answers"]]
    assert result["score"] == pytest.approx(direct["score"], rel=1e-5)


def test_batched_answers_keep_order_and_per_request_settings(client, reader):
    questions = [
        {"question": "When was the railway built?", "context": CONTEXT, "top_k": 1, "id": "a"},
        {"question": "Who founded the club?", "context": OTHER, "top_k": 4, "id": "b"},
        {"question": "How long is the railway?", "context": CONTEXT, "top_k": 2, "max_answer_length": 3, "id": "c"},
        {"question": "Who founded the club?", "documents": [CONTEXT, OTHER], "top_k": 5, "id": "d"},
    ]
    response = client.post("/answer", json={"questions": questions})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["id"] for r in results] == ["a", "b", "c", "d"]
    assert [len(r["answers"]) for r in results] == direct_counts(reader, questions)  # each request's own top_k
    assert all(1 <= len(r["answers"]) <= q["top_k"] for r, q in zip(results, questions))
    check_result(results[0], [CONTEXT])
    check_result(results[1], [OTHER])
    check_result(results[2], [CONTEXT])
    check_result(results[3], [CONTEXT, OTHER], single=False)
    # max_answer_length=3 tokens: no long spans (every word of this text is at most a few word pieces)
    assert all(len(a["text"].split()) <= 3 for a in results[2]["answers"])


def test_documents_return_the_document_index(client):
    documents = [OTHER, CONTEXT, "A short third document about nothing in particular."]
    response = client.post("/answer", json={"question": "When was the railway built?", "documents": documents, "top_k": 10})
    assert response.status_code == 200
    result = response.json()
    check_result(result, documents, single=False)
    assert isinstance(result["document"], int)
    assert {a["document"] for a in result["answers"]} <= {0, 1, 2}


def test_long_context_is_answered(client):
    words = (CONTEXT + " ").split() * 60  # ~2,500 words: many windows
    context = " ".join(words)
    response = client.post("/answer", json={"question": "When was it built?", "context": context, "top_k": 3})
    assert response.status_code == 200
    check_result(response.json(), [context])


def test_unicode_offsets_are_code_points(client):
    context = "Emoji 🚂 first. Zoë Ñúñez built the 🚉 station in 1897 near Åsgård."
    response = client.post("/answer", json={"question": "Who built the station?", "context": context, "top_k": 5})
    assert response.status_code == 200
    check_result(response.json(), [context])


def test_health(client, tiny_bert_dir):
    response = client.get("/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok"
    assert health["model"] == str(tiny_bert_dir)
    assert health["handle_impossible"] is False and health["null_threshold"] == 0.0
    assert health["limits"]["max_context_chars"] >= 120_000  # a 20,000-word document fits
    assert health["batching"]["batches"] >= 0


def test_openapi_documents_the_api(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    post = schema["paths"]["/answer"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert {ref["$ref"].rsplit("/", 1)[-1] for ref in body} == {"QuestionRequest", "BatchRequest"}
    components = schema["components"]["schemas"]
    assert {"QuestionRequest", "BatchRequest", "AnswerResponse", "BatchResponse", "ErrorResponse", "HealthResponse"} <= set(components)
    assert set(components["QuestionRequest"]["properties"]) >= {"question", "context", "documents", "top_k", "max_answer_length", "handle_impossible"}
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(schema))
    assert set(refs) <= set(components), "dangling $ref"
    assert {"200", "400", "413", "422", "504"} <= set(post["responses"])
    assert "/health" in schema["paths"]
    docs = client.get("/docs")  # off unless asked: FastAPI's own page loads its scripts from a CDN (see test_serve_guard.py)
    assert docs.status_code == 404 and "--docs" in docs.json()["error"]["message"]


def test_web_page_is_self_contained(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for element in ('id="context"', 'id="question"', 'id="ask"', 'id="passage"', "<script>"):
        assert element in page
    assert not re.search(r"""(src|href|action)\s*=\s*["']?(https?:)?//""", page), "the page must not load anything from elsewhere"
    assert "fetch(\"answer\"" in page
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "unsafe-inline" not in csp


# --------------------------------------------------------------------------- errors


SMALL = ServeSettings(max_body_bytes=4000, max_context_chars=1000, max_batch=3, max_top_k=10, max_documents=3)


@pytest.fixture(scope="module")
def small_client(reader):
    with TestClient(create_app(reader, SMALL)) as c:
        yield c


BAD_JSON_BODIES = [
    pytest.param(b"{", "invalid_json", id="truncated"),
    pytest.param(b"{'question': 'x'}", "invalid_json", id="single-quotes"),
    pytest.param(b"", "invalid_json", id="empty-body"),
    pytest.param(b"[" * 1900 + b"]" * 1900, "invalid_json", id="nested-too-deep"),
    pytest.param(b'{"question": "caf\xe9", "context": "x"}', "invalid_encoding", id="latin-1"),
    pytest.param(b"\xff\xfe{\x00}\x00", "invalid_encoding", id="utf-16"),
]


@pytest.mark.parametrize("body, kind", BAD_JSON_BODIES)
def test_malformed_bodies_are_400(small_client, body, kind):
    response = small_client.post("/answer", content=body, headers={"content-type": "application/json"})
    assert_error(response, 400, kind)
    assert_still_serving(small_client)


INVALID = [
    pytest.param({"context": CONTEXT}, id="no-question"),
    pytest.param({"question": "Who?"}, id="no-context"),
    pytest.param({"question": "Who?", "context": CONTEXT, "documents": [CONTEXT]}, id="context-and-documents"),
    pytest.param({"question": "", "context": CONTEXT}, id="empty-question"),
    pytest.param({"question": "   ", "context": CONTEXT}, id="blank-question"),
    pytest.param({"question": "Who?", "context": " "}, id="blank-context"),
    pytest.param({"question": "Who?", "documents": []}, id="no-documents"),
    pytest.param({"question": "Who?", "documents": [CONTEXT, ""]}, id="empty-document"),
    pytest.param({"question": 3, "context": CONTEXT}, id="question-not-string"),
    pytest.param({"question": "Who?", "context": ["a", "list"]}, id="context-not-string"),
    pytest.param({"question": "Who?", "context": CONTEXT, "top_k": "3"}, id="top_k-string"),
    pytest.param({"question": "Who?", "context": CONTEXT, "top_k": 0}, id="top_k-zero"),
    pytest.param({"question": "Who?", "context": CONTEXT, "top_k": 11}, id="top_k-over-limit"),
    pytest.param({"question": "Who?", "context": CONTEXT, "top_k": True}, id="top_k-bool"),
    pytest.param({"question": "Who?", "context": CONTEXT, "max_answer_length": -1}, id="max_answer_length-negative"),
    pytest.param({"question": "Who?", "context": CONTEXT, "max_answer_length": 100_000}, id="max_answer_length-huge"),
    pytest.param({"question": "Who?", "context": CONTEXT, "handle_impossible": "yes"}, id="handle_impossible-string"),
    pytest.param({"question": "Who?", "contexts": CONTEXT}, id="misspelt-field"),
    pytest.param({"question": "Who?", "documents": ["a", "b", "c", "d"]}, id="too-many-documents"),
    pytest.param({"questions": []}, id="empty-batch"),
    pytest.param({"questions": "not a list"}, id="batch-not-list"),
    pytest.param({"questions": [GOOD, {"question": "", "context": CONTEXT}]}, id="batch-item-empty-question"),
    pytest.param([GOOD], id="top-level-list"),
    pytest.param("just a string", id="top-level-string"),
]


@pytest.mark.parametrize("payload", INVALID)
def test_invalid_requests_are_422(small_client, payload):
    error = assert_error(small_client.post("/answer", json=payload), 422)
    assert error["type"] in {"validation_error", "too_many_documents"}
    assert_still_serving(small_client)


def test_json_null_is_422(small_client):
    assert_error(small_client.post("/answer", content=b"null", headers={"content-type": "application/json"}), 422, "validation_error")


def test_validation_errors_name_the_field(small_client):
    error = assert_error(small_client.post("/answer", json={"questions": [GOOD, {"question": "Who?", "context": CONTEXT, "top_k": "x"}]}), 422)
    assert "questions[1].top_k" in error["message"]
    assert error["details"][0]["loc"] == ["questions", 1, "top_k"]
    error = assert_error(small_client.post("/answer", json={"questions": [GOOD, {"question": " ", "context": CONTEXT}]}), 422)
    assert error["message"] == "questions[1]: empty question"


def test_lone_surrogate_is_422(small_client):
    body = b'{"question": "Who\\ud800?", "context": "Some text here."}'
    assert_error(small_client.post("/answer", content=body, headers={"content-type": "application/json"}), 422, "validation_error")
    assert_still_serving(small_client)


def test_too_many_questions_is_422(small_client):
    error = assert_error(small_client.post("/answer", json={"questions": [GOOD] * 4}), 422, "too_many_questions")
    assert "limit is 3" in error["message"]
    assert small_client.post("/answer", json={"questions": [GOOD] * 3}).status_code == 200


def test_body_over_the_limit_is_413(small_client):
    payload = {"question": "Who?", "context": "word " * 1000}  # > 4000 bytes
    error = assert_error(small_client.post("/answer", json=payload), 413, "payload_too_large")
    assert "4000" in error["message"]
    assert_still_serving(small_client)


def test_body_over_the_limit_without_content_length_is_413(small_client):
    """A chunked body has no Content-Length: the bytes actually read are counted."""
    payload = json.dumps({"question": "Who?", "context": "word " * 1000}).encode()

    def chunks():
        for i in range(0, len(payload), 512):
            yield payload[i : i + 512]

    response = small_client.post("/answer", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_error(response, 413, "payload_too_large")
    assert_still_serving(small_client)


def test_lying_content_length_is_400(small_client):
    response = small_client.post("/answer", content=json.dumps(GOOD).encode(), headers={"content-length": "abc", "content-type": "application/json"})
    assert_error(response, 400, "bad_request")
    assert_still_serving(small_client)


def test_context_over_the_limit_is_413(small_client):
    error = assert_error(small_client.post("/answer", json={"question": "Who?", "context": "x" * 1001}), 413, "context_too_long")
    assert "1001" in error["message"] and "1000" in error["message"]
    error = assert_error(small_client.post("/answer", json={"question": "Who?", "documents": ["ok text", "y" * 1001]}), 413, "context_too_long")
    assert "documents[1]" in error["message"]
    assert small_client.post("/answer", json={"question": "Who?", "context": "x " * 500}).status_code == 200


def test_unknown_paths_and_methods_have_the_error_shape(small_client):
    assert_error(small_client.get("/nope"), 404, "not_found")
    error = assert_error(small_client.get("/answer"), 405, "method_not_allowed")
    assert "GET" in error["message"]
    assert_still_serving(small_client)


class StubReader:
    """Forwards to a real Reader, optionally slowly or failing."""

    def __init__(self, reader: Reader, delay: float = 0.0, fail: bool = False) -> None:
        self.reader, self.delay, self.fail = reader, delay, fail
        self.model, self.config, self.device = reader.model, reader.config, reader.device
        self.calls: list[int] = []

    def answer_batch(self, requests):
        self.calls.append(len(requests))
        if self.fail:
            raise RuntimeError("boom")
        time.sleep(self.delay)
        return self.reader.answer_batch(requests)


def test_timeout_is_504_and_the_server_recovers(reader):
    stub = StubReader(reader, delay=0.8)
    with TestClient(create_app(stub, ServeSettings(request_timeout_s=0.2))) as client:
        started = time.perf_counter()
        error = assert_error(client.post("/answer", json=GOOD), 504, "timeout")
        assert time.perf_counter() - started < 0.7
        assert "0.2 s" in error["message"]
        stub.delay = 0.0
        time.sleep(0.8)  # the model finishes the abandoned batch
        assert_still_serving(client)


def test_requests_that_timed_out_while_queued_are_skipped(reader):
    stub = StubReader(reader, delay=0.5)
    app = create_app(stub, ServeSettings(request_timeout_s=0.3, max_batch_items=1))
    with TestClient(app) as client:
        threads = [threading.Thread(target=client.post, args=("/answer",), kwargs={"json": GOOD}) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stub.delay = 0.0
        time.sleep(0.6)
        assert_still_serving(client)
    assert len(stub.calls) < 4  # queued requests whose clients gave up never reached the model


def test_full_queue_is_503(reader):
    with TestClient(create_app(reader, ServeSettings(max_queue_items=2))) as client:
        assert_error(client.post("/answer", json={"questions": [GOOD] * 3}), 503, "overloaded")
        assert_still_serving(client)


def test_model_failure_is_500_json_and_the_server_recovers(reader):
    stub = StubReader(reader, fail=True)
    with TestClient(create_app(stub), raise_server_exceptions=False) as client:
        error = assert_error(client.post("/answer", json=GOOD), 500, "internal_error")
        assert "boom" not in error["message"]
        stub.fail = False
        assert_still_serving(client)


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="max_batch"):
        ServeSettings(max_batch=0)
    with pytest.raises(ConfigError, match="request_timeout_s"):
        ServeSettings(request_timeout_s=0)


# --------------------------------------------------------------------------- concurrency


async def _post_many(app, payloads):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
        return await asyncio.gather(*(client.post("/answer", json=p) for p in payloads))


def test_concurrent_requests_are_micro_batched(reader):
    app = create_app(reader, ServeSettings(max_wait_ms=20, max_batch_items=16))
    contexts = [CONTEXT, OTHER, CONTEXT + " " + OTHER]
    payloads = [
        {"question": f"Question number {i}: who built it?", "context": contexts[i % 3], "top_k": 1 + i % 4, "id": str(i)}
        for i in range(40)
    ]
    responses = asyncio.run(_post_many(app, payloads))
    assert [r.status_code for r in responses] == [200] * len(payloads)
    expected_counts = dict(zip((p["id"] for p in payloads), direct_counts(reader, payloads)))
    for payload, response in zip(payloads, responses, strict=True):
        result = response.json()
        assert result["id"] == payload["id"]
        assert len(result["answers"]) == expected_counts[payload["id"]]  # each request's own top_k inside a shared batch
        check_result(result, [payload["context"]])
    batcher = app.state.batcher
    assert batcher.requests == len(payloads) and batcher.questions == len(payloads)
    assert batcher.batches < len(payloads) / 2
    assert 1 < batcher.largest_batch <= 16


def test_concurrent_threads_with_test_client(reader):
    app = create_app(reader, ServeSettings(max_wait_ms=20))
    results: list[int] = []
    with TestClient(app) as client:
        def worker(i: int) -> None:
            payload = {"questions": [{"question": f"Who? {i}", "context": OTHER, "top_k": 2}]} if i % 2 else {**GOOD, "top_k": 2}
            results.append(client.post("/answer", json=payload).status_code)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200] * 16
        assert app.state.batcher.batches < 16
        assert client.get("/health").json()["batching"]["requests"] == 16


def test_the_event_loop_stays_free_while_the_model_runs(reader):
    stub = StubReader(reader, delay=0.6)
    app = create_app(stub)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answer = asyncio.create_task(client.post("/answer", json=GOOD))
            await asyncio.sleep(0.1)
            started = time.perf_counter()
            health = await client.get("/health")
            waited = time.perf_counter() - started
            return (await answer), health, waited

    answer, health, waited = asyncio.run(scenario())
    assert answer.status_code == 200 and health.status_code == 200
    assert waited < 0.3


# --------------------------------------------------------------------------- run_server and a real socket


def test_run_server_loads_the_model_and_runs_uvicorn(monkeypatch, tiny_bert_dir):
    import uvicorn

    from spanqa.interfaces.serve import run_server
    from spanqa.runtime.options import LoadOptions

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    settings = ServeSettings(max_batch=2)
    run_server(str(tiny_bert_dir), host="127.0.0.1", port=8123, settings=settings, load=LoadOptions(device="cpu"))
    (app, kwargs), = calls
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 8123
    assert app.state.settings is settings
    with TestClient(app, base_url="http://localhost") as client:  # bound to loopback: local Host names only
        assert client.get("/health").json()["model"] == str(tiny_bert_dir)
        assert_error(client.post("/answer", json={"questions": [GOOD] * 3}), 422, "too_many_questions")


def test_run_server_refuses_pickled_weights(monkeypatch, tiny_bert_dir, tmp_path):
    """Only safetensors weights are loaded: a folder with just pytorch_model.bin is refused."""
    import shutil

    import torch
    import uvicorn
    from safetensors.torch import load_file

    from spanqa.core.errors import ModelError
    from spanqa.interfaces.serve import run_server

    for path in tiny_bert_dir.iterdir():
        if path.suffix != ".safetensors":
            shutil.copy(path, tmp_path / path.name)
    torch.save(load_file(tiny_bert_dir / "model.safetensors"), tmp_path / "pytorch_model.bin")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: pytest.fail("must not serve"))
    with pytest.raises(ModelError, match="safetensors"):
        run_server(str(tmp_path))


def test_limits_over_a_real_socket(reader):
    """uvicorn on loopback: oversized bodies (declared or chunked) get 413 and the connection keeps working."""
    import socket

    import uvicorn

    app = create_app(reader, ServeSettings(max_body_bytes=10_000))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        big = json.dumps({"question": "Who?", "context": "word " * 100_000}).encode()  # 500 kB
        with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
            assert_error(client.post("/answer", content=big, headers={"content-type": "application/json"}), 413, "payload_too_large")
            assert client.post("/answer", json=GOOD).status_code == 200
            chunks = (big[i : i + 4096] for i in range(0, len(big), 4096))
            assert_error(client.post("/answer", content=chunks, headers={"content-type": "application/json"}), 413, "payload_too_large")
            assert client.post("/answer", json=GOOD).status_code == 200
            assert_error(client.post("/answer", content=b"\xc3\x28", headers={"content-type": "application/json"}), 400, "invalid_encoding")
            assert client.get("/health").status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
