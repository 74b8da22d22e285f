"""Hardening of the HTTP server: abandoned work stops, question length cap, JSON-only POST bodies,
body and keep-alive deadlines on a real socket, and numbers or nesting that Python's json refuses."""

from __future__ import annotations

import select
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra (fastapi, uvicorn)")
pytest.importorskip("httpx", reason="the API tests need httpx")
uvicorn = pytest.importorskip("uvicorn", reason="serving needs the 'serve' extra (fastapi, uvicorn)")

from fastapi.testclient import TestClient  # noqa: E402
from samples import RAILWAY, RAILWAY_REQUEST  # noqa: E402

from spanqa.core.errors import ConfigError  # noqa: E402
from spanqa.interfaces import serve  # noqa: E402
from spanqa.interfaces.serve import ServeSettings, batching, create_app, serve_settings, uvicorn_options  # noqa: E402
from spanqa.reading.reader import Reader  # noqa: E402
from spanqa.stages.data import QAExample  # noqa: E402

CONTEXT = RAILWAY
GOOD = RAILWAY_REQUEST
JSON = {"content-type": "application/json"}



pytestmark = pytest.mark.usefixtures("clean_serve_environment")


def assert_error(response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"]["type"] == kind, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


# --------------------------------------------------------------------------- 1. abandoned work stops


class SlowBackend:
    """A reader's backend that sleeps before each forward pass and counts the passes."""

    def __init__(self, backend, delay: float) -> None:
        self.backend, self.delay, self.passes = backend, delay, 0

    def __call__(self, batch):
        self.passes += 1
        time.sleep(self.delay)
        return self.backend(batch)

    def __getattr__(self, name: str):
        return getattr(self.backend, name)


def test_a_timed_out_request_does_not_keep_the_model_busy(reader):
    """A request with many windows times out; its remaining forward passes are dropped, so the next one is answered."""
    backend = SlowBackend(reader.backend, delay=0.15)
    slow_reader = Reader(None, reader.tokenizer, reader.config, batch_size=2, backend=backend)  # 2 windows per pass
    long_context = " ".join([CONTEXT] * 150)
    windows = len(slow_reader.features([QAExample(id="x", question="When?", context=long_context)]).lengths)
    assert windows >= 60  # >= 30 passes, 4.5 s: far past the timeout
    app = create_app(slow_reader, ServeSettings(request_timeout_s=1.5, max_batch_windows=4))
    with TestClient(app) as client:
        assert_error(client.post("/answer", json={"question": "When was it built?", "context": long_context}), 504, "timeout")
        started = time.perf_counter()
        response = client.post("/answer", json=GOOD)
        assert response.status_code == 200, response.text  # not 504: the worker was free within one pass
        assert time.perf_counter() - started < 1.5
        passes = backend.passes
        assert passes < windows // 2 // 2, f"{passes} passes: the abandoned request ran on"
        time.sleep(0.4)
        assert backend.passes == passes  # nothing runs in the background any more
        assert client.get("/health").json()["batching"]["abandoned"] == 1


def test_each_worker_reader_shares_the_model_with_its_own_tokenizer(reader):
    readers = batching._worker_readers(reader, 2)
    assert readers[0] is reader and readers[1].backend is reader.backend
    assert readers[1].tokenizer is not reader.tokenizer
    assert readers[1](GOOD["question"], CONTEXT).to_dict() == reader(GOOD["question"], CONTEXT).to_dict()
    assert batching.reads_in_steps(reader) and not batching.reads_in_steps(object())


# --------------------------------------------------------------------------- 2. question length


def test_question_over_the_limit_is_413(reader):
    assert ServeSettings().max_question_chars == 2_000
    with TestClient(create_app(reader, ServeSettings(max_question_chars=50))) as client:
        error = assert_error(client.post("/answer", json={"question": "w" * 51, "context": CONTEXT}), 413, "question_too_long")
        assert error["message"] == "question has 51 characters; the limit is 50"
        batch = {"questions": [GOOD, {"question": "w" * 51, "context": CONTEXT}]}
        error = assert_error(client.post("/answer", json=batch), 413, "question_too_long")
        assert error["message"].startswith("questions[1]: question has 51 characters")
        assert client.post("/answer", json={"question": "w" * 49 + "?", "context": CONTEXT}).status_code == 200


def test_new_settings_come_from_the_environment_and_the_command_line(monkeypatch):
    from typer.testing import CliRunner

    from spanqa.interfaces.cli import app

    monkeypatch.setenv("SPANQA_SERVE_MAX_QUESTION_CHARS", "300")
    monkeypatch.setenv("SPANQA_SERVE_BODY_TIMEOUT_S", "2.5")
    settings = serve_settings(keep_alive_timeout_s="1.5")
    assert (settings.max_question_chars, settings.body_timeout_s, settings.keep_alive_timeout_s) == (300, 2.5, 1.5)
    with pytest.raises(ConfigError, match=r"body_timeout_s: must be a finite number of seconds > 0"):
        serve_settings(body_timeout_s="0")
    with pytest.raises(ConfigError, match=r"keep_alive_timeout_s: must be a finite number of seconds > 0"):
        serve_settings(keep_alive_timeout_s="inf")
    listing = CliRunner().invoke(app, ["serve", "--list-settings"])
    assert listing.exit_code == 0, listing.output
    for option in ("--max-question-chars", "--body-timeout-s", "--keep-alive-timeout-s"):
        assert option in listing.output


# --------------------------------------------------------------------------- 3. JSON only


@pytest.fixture(scope="module")
def client(reader):
    with TestClient(create_app(reader)) as c:
        yield c


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
     "application/jsonp", None],
)
def test_post_bodies_that_are_not_json_are_415(client, content_type):
    """What a web page on another origin can send without a CORS preflight is refused before the model runs."""
    import json

    before = client.app.state.batcher.requests
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/answer", content=json.dumps(GOOD).encode(), headers=headers)
    error = assert_error(response, 415, "unsupported_media_type")
    assert "application/json" in error["message"]
    assert client.app.state.batcher.requests == before


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON ;charset=UTF-8"])
def test_json_content_types_are_accepted(client, content_type):
    import json

    response = client.post("/answer", content=json.dumps(GOOD).encode(), headers={"content-type": content_type})
    assert response.status_code == 200, response.text


def test_no_cors_headers_and_other_errors_come_first(client):
    response = client.post("/answer", json=GOOD, headers={"origin": "https://elsewhere.example"})
    assert response.status_code == 200
    assert not any(name.lower().startswith("access-control-") for name in response.headers)
    assert_error(client.post("/nope", content=b"x", headers={"content-type": "text/plain"}), 404, "not_found")
    assert client.get("/health").status_code == 200  # GET needs no Content-Type


def test_cors_can_be_added_with_fastapis_middleware(reader):
    """The README's recipe: CORSMiddleware answers the preflight, and a JSON POST from that origin is readable."""
    from fastapi.middleware.cors import CORSMiddleware

    app = create_app(reader)
    app.add_middleware(CORSMiddleware, allow_origins=["https://your.site"], allow_methods=["POST"], allow_headers=["Content-Type"])
    origin = {"origin": "https://your.site"}
    with TestClient(app) as client:
        preflight = client.options("/answer", headers={**origin, "access-control-request-method": "POST",
                                                       "access-control-request-headers": "content-type"})
        assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "https://your.site"
        response = client.post("/answer", json=GOOD, headers=origin)
        assert response.status_code == 200 and response.headers["access-control-allow-origin"] == "https://your.site"


# --------------------------------------------------------------------------- 4. deadlines on a real socket


@pytest.fixture(scope="module")
def server(reader):
    """The app under uvicorn, with uvicorn_options() as run_server uses them, on a free loopback port."""
    settings = ServeSettings(body_timeout_s=0.5, keep_alive_timeout_s=0.5)
    app = create_app(reader, settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **uvicorn_options(settings)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    yield sock.getsockname()
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


HEAD = b"POST /answer HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"


def read_until_closed(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket.timeout if it never does).

    A reset counts as closed: a byte the client sent after the server closed (the trickle test
    sends one every 0.1 s) is answered by the server's kernel with RST, and the response before
    it has already been read (Linux hands over queued data before reporting the reset).
    """
    data = b""
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def read_response(conn: socket.socket) -> bytes:
    """One response with a Content-Length, leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def check_408(data: bytes, started: float) -> None:
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert b'"body_timeout"' in data
    assert 0.4 < time.monotonic() - started < 3


def test_a_stalled_body_is_408_and_closed(server):
    with socket.create_connection(server, timeout=5) as conn:
        conn.sendall(HEAD + b'{"question": "Who')  # 17 of the 1000 bytes promised, then nothing
        started = time.monotonic()
        check_408(read_until_closed(conn), started)


def test_a_trickled_body_is_408_and_closed(server):
    with socket.create_connection(server, timeout=5) as conn:
        conn.sendall(HEAD + b"{")
        started = time.monotonic()
        for _ in range(50):  # a byte every 0.1 s: always active, never done (5 s) unless the server cuts it off
            if select.select([conn], [], [], 0.1)[0]:
                break
            try:
                conn.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):  # the server closed just after the select
                break
        check_408(read_until_closed(conn), started)


def test_an_idle_keep_alive_connection_is_closed(server):
    with socket.create_connection(server, timeout=3) as conn:  # uvicorn's default keep-alive, 5 s, would time out here
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        assert read_response(conn).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert conn.recv(1) == b""  # closed by the server
        assert time.monotonic() - started < 2


def test_the_server_still_answers_after_the_deadlines(server):
    import httpx

    with httpx.Client(base_url=f"http://{server[0]}:{server[1]}", timeout=30, trust_env=False) as http:
        assert http.post("/answer", json=GOOD).status_code == 200


def test_run_server_passes_the_keep_alive_timeout(monkeypatch, reader):
    served: list[dict] = []
    monkeypatch.setattr(Reader, "from_pretrained", staticmethod(lambda name, load=None, **kwargs: reader))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append(kwargs))
    serve.run_server("some-model", settings=ServeSettings(keep_alive_timeout_s=7.5, threads=1))
    assert served[-1]["timeout_keep_alive"] == 7.5


# --------------------------------------------------------------------------- 5. numbers and nesting json refuses


@pytest.mark.parametrize(
    "body, status, kind",
    [
        pytest.param(b'{"question": "Who?", "context": "Some text.", "top_k": ' + b"9" * 5000 + b"}", 400, "invalid_json", id="5000-digit-int"),
        pytest.param(b'{"question": "Who?", "context": "Some text.", "top_k": -' + b"9" * 5000 + b"}", 400, "invalid_json", id="negative"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json", id="100000-nested-lists"),
        pytest.param(b'{"question": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}", 400, "invalid_json", id="nested-objects"),
        pytest.param(b'{"question": "Who?", "context": "Some text.", "top_k": ' + b"9" * 4000 + b"}", 422, "validation_error", id="4000-digit-int"),
        pytest.param(b'{"question": "Who?", "context": "Some text.", "top_k": 1e999}', 422, "validation_error", id="float-overflow"),
    ],
)
def test_numbers_and_nesting_json_refuses_are_4xx(reader, body, status, kind):
    with TestClient(create_app(reader), raise_server_exceptions=False) as client:
        error = assert_error(client.post("/answer", content=body, headers=JSON), status, kind)
        assert len(error["message"]) < 200  # no 5,000-digit echo
        assert client.post("/answer", json=GOOD).status_code == 200

