"""Serving that holds under abuse (issue 26, items 3-5): connection deadlines and caps on a real socket,
allowed Host names and the API key, safe headers on every response, /docs without a CDN, /report only
from the model folder."""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra (fastapi, uvicorn)")
httpx = pytest.importorskip("httpx", reason="the API tests need httpx")
uvicorn = pytest.importorskip("uvicorn", reason="serving needs the 'serve' extra (fastapi, uvicorn)")

from fastapi.testclient import TestClient  # noqa: E402
from live import chromium, serving  # noqa: E402
from samples import RAILWAY, RAILWAY_REQUEST  # noqa: E402

from spanqa.core.errors import ConfigError  # noqa: E402
from spanqa.interfaces import serve  # noqa: E402
from spanqa.interfaces.serve import ServeSettings, create_app, uvicorn_options  # noqa: E402
from spanqa.interfaces.serve.access import AccessOptions, access_options, bind_access  # noqa: E402
from spanqa.reading.reader import Reader  # noqa: E402

GOOD = RAILWAY_REQUEST
KEY = "k3y-for-tests-0123456789"
REPORT_MARKER = '<meta name="generator" content="spanqa report 0.2.0">'  # what jobs/report.py's render_html writes

pytestmark = pytest.mark.usefixtures("clean_serve_environment")


def assert_error(response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"]["type"] == kind, body
    return body["error"]["message"]


# --------------------------------------------------------------------------- a real server


@contextmanager
def guarded_server(reader, **values) -> Iterator[tuple[tuple[str, int], type]]:
    """The app under uvicorn with ``uvicorn_options()`` as run_server uses them; yields its address and protocol class."""
    settings = ServeSettings(threads=1, **values)
    options = uvicorn_options(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(reader, settings), log_level="error", **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield sock.getsockname(), options["http"]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def read_until_closed(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset counts as closed; socket.timeout if it never does)."""
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


def closed_within(conn: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``conn`` (sending nothing more) within ``seconds``."""
    conn.settimeout(seconds)
    try:
        return read_until_closed(conn) == b""
    except TimeoutError:
        return False


def wait_for(condition, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


PARTIAL_POST = b"POST /answer HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"


def test_a_silent_connection_is_closed_after_the_header_timeout(reader):
    with guarded_server(reader, header_timeout_s=1) as (address, _), socket.create_connection(address) as conn:
        started = time.monotonic()
        assert closed_within(conn, 5), "a connection that sends nothing stays open"
        assert 0.8 < time.monotonic() - started < 3


def trickle(conn: socket.socket, seconds: float) -> None:
    """A header byte every 0.1 s (each one is activity, none completes the headers) until the server answers or closes."""
    for _ in range(int(seconds * 10)):
        if select.select([conn], [], [], 0.1)[0]:
            return
        try:
            conn.sendall(b"a")
        except (BrokenPipeError, ConnectionResetError):
            return


def test_trickled_headers_get_408_and_the_connection_closed(reader):
    with guarded_server(reader, header_timeout_s=1) as (address, _), socket.create_connection(address, timeout=5) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        started = time.monotonic()
        trickle(conn, 5)
        data = read_until_closed(conn)
        assert data.startswith(b"HTTP/1.1 408") and b'"header_timeout"' in data, data[:300]
        assert time.monotonic() - started < 3


def test_trickled_headers_after_a_response_are_cut_off_too(reader):
    """After a response uvicorn's keep-alive timer is cancelled by any byte; the header deadline is not."""
    with guarded_server(reader, header_timeout_s=1, keep_alive_timeout_s=20) as (address, _), socket.create_connection(address, timeout=5) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_response(conn).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        conn.sendall(b"GET /health HTTP/1.1\r\n")
        trickle(conn, 5)
        assert read_until_closed(conn).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 3


def test_idle_connections_make_room_for_a_client_that_sends_a_request(reader):
    """At max_connections, a new connection closes the longest-idle one: idle sockets never lock clients out."""
    with guarded_server(reader, max_connections=20, header_timeout_s=20) as (address, protocol), ExitStack() as stack:
        idle = [stack.enter_context(socket.create_connection(address)) for _ in range(20)]
        assert wait_for(lambda: len(protocol.registry) == 20)
        with httpx.Client(base_url=f"http://localhost:{address[1]}", timeout=5, trust_env=False) as client:
            assert client.get("/health").status_code == 200
            assert client.post("/answer", json=GOOD).status_code == 200
        assert closed_within(idle[0], 2), "the longest-idle connection was not closed to make room"
        assert len(protocol.registry) <= 20
        more = [stack.enter_context(socket.create_connection(address)) for _ in range(30)]  # newer ones push older ones out
        assert wait_for(lambda: len(protocol.registry) <= 20) and closed_within(idle[-1], 2)
        assert not closed_within(more[-1], 0.2)


def test_when_every_connection_is_busy_a_new_one_gets_503(reader):
    with guarded_server(reader, max_connections=5, body_timeout_s=10) as (address, protocol), ExitStack() as stack:
        for _ in range(5):  # each with a request in flight: its body is still on the way
            stack.enter_context(socket.create_connection(address)).sendall(PARTIAL_POST)
        assert wait_for(lambda: protocol.registry.busy_count == 5)
        with socket.create_connection(address, timeout=5) as refused:
            data = read_until_closed(refused)
        assert data.startswith(b"HTTP/1.1 503") and b'"too_many_connections"' in data, data[:300]
        assert b"retry-after: 1" in data.lower()
        stack.close()  # the busy clients go away: room again
        assert wait_for(lambda: len(protocol.registry) == 0)
        with httpx.Client(base_url=f"http://localhost:{address[1]}", timeout=5, trust_env=False) as client:
            assert client.get("/health").status_code == 200


def test_requests_in_flight_are_capped(reader):
    with guarded_server(reader, max_requests=1, body_timeout_s=10) as (address, _), socket.create_connection(address) as slow:
        slow.sendall(PARTIAL_POST)  # in flight until its body arrives
        time.sleep(0.2)
        with httpx.Client(base_url=f"http://localhost:{address[1]}", timeout=5, trust_env=False) as client:
            response = client.get("/health")
            assert "(1)" in assert_error(response, 503, "too_many_requests") and response.headers["retry-after"] == "1"
            slow.close()
            assert wait_for(lambda: client.get("/health").status_code == 200)


def test_the_connection_cap_fits_the_open_file_limit(monkeypatch, caplog):
    """Past the file limit accepting fails and clients hang: the cap is lowered (with a warning) when the limit cannot be raised."""
    import resource

    from spanqa.interfaces.serve import connections

    def refuse(*args):
        raise ValueError("not allowed")

    monkeypatch.setattr(resource, "getrlimit", lambda kind: (300, 300))
    monkeypatch.setattr(resource, "setrlimit", refuse)
    with caplog.at_level(logging.WARNING, logger="spanqa"):
        assert connections.fit_open_files(1000) == 300 - 64
        assert connections.fit_open_files(100) == 100
    assert "ulimit -n" in caplog.text


# --------------------------------------------------------------------------- Host names


@pytest.fixture(scope="module")
def local_app(reader):
    """The app as run_server builds it on 127.0.0.1 with no options."""
    return create_app(reader, ServeSettings(threads=1), access=bind_access("127.0.0.1", AccessOptions()))


def test_only_local_names_are_answered_on_loopback(local_app):
    """DNS rebinding: a page of attacker.example resolving to 127.0.0.1 gets neither answers nor passages."""
    for host in ["attacker.example", "attacker.example:8000", "localhost.attacker.example", "127.0.0.1.nip.io"]:
        with TestClient(local_app, base_url=f"http://{host}") as client:
            message = assert_error(client.post("/answer", json=GOOD), 400, "invalid_host")
            assert "localhost" in message and "--allowed-hosts" in message
            assert_error(client.get("/health"), 400, "invalid_host")
            assert_error(client.get("/"), 400, "invalid_host")
    for host in ["localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST"]:
        with TestClient(local_app, base_url=f"http://{host}") as client:
            assert client.get("/health").status_code == 200, host
            assert client.post("/answer", json=GOOD).status_code == 200, host


def test_a_refused_host_never_reaches_the_model(reader):
    app = create_app(reader, ServeSettings(threads=1), access=bind_access("127.0.0.1", AccessOptions()))
    with TestClient(app, base_url="http://attacker.example") as client:
        assert_error(client.post("/answer", json=GOOD), 400, "invalid_host")
        assert app.state.batcher.requests == 0
    metrics = TestClient(app, base_url="http://localhost").get("/metrics").text
    assert 'spanqa_errors_total{endpoint="/answer",type="invalid_host"} 1.0' in metrics


def test_allowed_hosts_add_names_and_keep_the_local_ones(reader):
    access = bind_access("127.0.0.1", access_options("qa.example.com, *.corp.example"))
    app = create_app(reader, ServeSettings(threads=1), access=access)
    for host, status in [("qa.example.com", 200), ("qa.example.com:443", 200), ("a.corp.example", 200), ("localhost:1", 200),
                         ("corp.example", 400), ("other.example", 400)]:
        with TestClient(app, base_url=f"http://{host}") as client:
            assert client.get("/health").status_code == status, host


def test_any_host_on_another_address_warns(reader, caplog):
    with caplog.at_level(logging.WARNING, logger="spanqa"):
        access = bind_access("0.0.0.0", AccessOptions())
    assert access.allowed_hosts is None
    warnings = " ".join(record.getMessage() for record in caplog.records)
    assert "without an API key" in warnings and "--allowed-hosts" in warnings
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="spanqa"):
        access = bind_access("0.0.0.0", AccessOptions(allowed_hosts=("qa.example.com",), api_key=KEY))
    assert not caplog.records
    with TestClient(create_app(reader, ServeSettings(threads=1), access=access), base_url="http://attacker.example") as client:
        assert_error(client.get("/health"), 400, "invalid_host")


@pytest.mark.parametrize("text", ["", "a.example,", "*a.example", "a.*.example", "http://a.example", "a.example:port"])
def test_malformed_allowed_hosts_are_config_errors(text):
    with pytest.raises(ConfigError, match="--allowed-hosts"):
        access_options(text)


def test_run_server_refuses_other_hosts_on_loopback(monkeypatch, reader):
    served: list = []
    monkeypatch.setattr(Reader, "from_pretrained", staticmethod(lambda name, load=None, **kwargs: reader))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append((app, kwargs)))
    serve.run_server("some-model", settings=ServeSettings(threads=1, max_connections=30))
    app, kwargs = served[-1]
    assert kwargs["http"].limits.max_connections == 30 and "limit_concurrency" not in kwargs
    with TestClient(app, base_url="http://attacker.example") as client:
        assert_error(client.get("/health"), 400, "invalid_host")
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        assert client.get("/health").status_code == 200


# --------------------------------------------------------------------------- API key


@pytest.fixture(scope="module")
def keyed(reader):
    with TestClient(create_app(reader, ServeSettings(threads=1), access=AccessOptions(api_key=KEY))) as client:
        yield client


@pytest.mark.parametrize(
    "headers, problem",
    [({}, "no API key"), ({"x-api-key": "wrong"}, "wrong API key"), ({"authorization": "Bearer wrong"}, "wrong API key"),
     ({"authorization": f"Basic {KEY}"}, "no API key"), ({"x-api-key": KEY[:-1]}, "wrong API key")],
)
def test_post_without_the_key_is_401(keyed, headers, problem):
    response = keyed.post("/answer", json=GOOD, headers=headers)
    message = assert_error(response, 401, "unauthorized")
    assert problem in message and "X-API-Key" in message and KEY not in message
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_key_opens_post_and_get_needs_none(keyed):
    assert_error(keyed.post("/answer", json=GOOD), 401, "unauthorized")
    for headers in [{"x-api-key": KEY}, {"authorization": f"Bearer {KEY}"}, {"authorization": f"bearer  {KEY}"}]:
        assert keyed.post("/answer", json=GOOD, headers=headers).status_code == 200, headers
    assert keyed.get("/health").status_code == 200
    assert keyed.get("/").status_code == 200  # the page loads, then asks for the key


def test_the_key_comes_from_a_file_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("SPANQA_API_KEY", raising=False)
    assert access_options().api_key is None
    monkeypatch.setenv("SPANQA_API_KEY", " from-env ")
    assert access_options().api_key == "from-env"
    key_file = tmp_path / "key"
    key_file.write_text(f"{KEY}\n", encoding="utf-8")
    assert access_options(api_key_file=key_file).api_key == KEY  # the file beats the environment
    assert KEY not in repr(access_options(api_key_file=key_file))
    key_file.write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="empty"):
        access_options(api_key_file=key_file)
    with pytest.raises(ConfigError, match="cannot read"):
        access_options(api_key_file=tmp_path / "missing")
    monkeypatch.setenv("SPANQA_API_KEY", "two words")
    with pytest.raises(ConfigError, match="SPANQA_API_KEY"):
        access_options()


def test_the_cli_passes_hosts_key_and_docs(monkeypatch, tmp_path, fresh_cli_logging):
    from typer.testing import CliRunner

    from spanqa.interfaces.cli import app

    calls: list[dict] = []
    monkeypatch.setattr(serve, "run_server", lambda model, **kwargs: calls.append(kwargs))
    key_file = tmp_path / "key"
    key_file.write_text(KEY, encoding="utf-8")
    args = ["serve", "m", "--allowed-hosts", "qa.example.com", "--api-key-file", str(key_file), "--docs", "--header-timeout-s", "5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert calls[-1]["access"] == AccessOptions(("qa.example.com",), KEY, True)
    assert calls[-1]["settings"].header_timeout_s == 5
    result = CliRunner().invoke(app, ["serve", "m", "--header-timeout-s", "60"])
    assert result.exit_code == 1 and "header_timeout_s: must be a finite number of seconds > 0 and <= 30" in result.stderr


# --------------------------------------------------------------------------- headers, /docs, /report


@pytest.fixture(scope="module")
def plain(reader):
    with TestClient(create_app(reader, ServeSettings(threads=1)), raise_server_exceptions=False) as client:
        yield client


def test_every_response_says_nosniff_and_has_a_policy(plain):
    responses = [plain.get("/health"), plain.get("/metrics"), plain.get("/openapi.json"), plain.get("/nope"),
                 plain.post("/answer", json={"question": ""}), plain.post("/answer", json=GOOD), plain.get("/report")]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff", response.request.url
        assert "default-src 'none'" in response.headers["content-security-policy"], response.request.url
    page = plain.get("/")
    assert "script-src 'sha256-" in page.headers["content-security-policy"]  # the page keeps its own, stricter one


def test_a_500_has_the_headers_too(reader):
    class Broken:
        def __getattr__(self, name):
            return getattr(reader, name)

        @property
        def config(self):
            raise RuntimeError("boom")

    with TestClient(create_app(Broken(), ServeSettings(threads=1)), raise_server_exceptions=False) as client:
        response = client.get("/health")
    assert_error(response, 500, "internal_error")
    assert response.headers["x-content-type-options"] == "nosniff" and "default-src 'none'" in response.headers["content-security-policy"]


def test_docs_are_off_unless_asked(plain):
    message = assert_error(plain.get("/docs"), 404, "not_found")
    assert "--docs" in message and "/openapi.json" in message
    assert plain.get("/redoc").status_code == 404
    assert plain.get("/openapi.json").status_code == 200


def test_docs_asked_for_come_from_this_server(reader):
    pytest.importorskip("fastapi_offline", reason="--docs serves the fastapi-offline package's files")
    with TestClient(create_app(reader, ServeSettings(threads=1), access=AccessOptions(docs=True))) as client:
        page = client.get("/docs")
        assert page.status_code == 200 and "//" not in page.text.replace("<!doctype", "")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "http" not in csp
        for asset, kind in [("docs/swagger-ui-bundle.js", "text/javascript"), ("docs/swagger-ui.css", "text/css"),
                            ("docs/init.js", "text/javascript")]:
            response = client.get(f"/{asset}")
            assert response.status_code == 200 and response.headers["content-type"].startswith(kind), asset
            assert response.headers["x-content-type-options"] == "nosniff"
        assert client.get("/docs/index.html").status_code == 404  # only the files it needs, no folder


def test_docs_without_the_package_is_a_config_error(reader, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "fastapi_offline", None)
    with pytest.raises(ConfigError, match="fastapi-offline"):
        create_app(reader, ServeSettings(threads=1), access=AccessOptions(docs=True))


def write_report(folder: Path, text: str) -> None:
    (folder / "report.html").write_text(f"<!DOCTYPE html><html><head>{REPORT_MARKER}</head><body>{text}</body></html>", encoding="utf-8")


def test_report_comes_from_the_model_folder_resolved_at_start(reader, tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    for root in (first, second):
        (root / "model").mkdir(parents=True)
        write_report(root / "model", f"report of {root.name}")
    monkeypatch.chdir(first)
    app = create_app(reader, ServeSettings(threads=1), model_name="model")  # relative, as typed on the command line
    monkeypatch.chdir(second)
    with TestClient(app) as client:
        assert "report of first" in client.get("/report").text


def test_only_a_spanqa_report_is_served(reader, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "report.html").write_text("<html><script>alert(1)</script>a page of someone else</html>", encoding="utf-8")
    with TestClient(create_app(reader, ServeSettings(threads=1), model_name=str(folder))) as client:
        assert_error(client.get("/report"), 404, "not_found")
        assert client.get("/health").json()["report"] is False
        write_report(folder, "the real one")
        assert "the real one" in client.get("/report").text and client.get("/health").json()["report"] is True


def test_no_report_for_a_name_that_is_no_folder(reader, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "minilm").mkdir()
    write_report(tmp_path / "minilm", "not the alias's")
    with TestClient(create_app(reader, ServeSettings(threads=1), model_name="minilm")) as client:  # an alias, not ./minilm
        assert client.get("/report").status_code == 404


# --------------------------------------------------------------------------- in a browser


def test_the_page_asks_for_the_key_and_then_answers(reader):
    app = create_app(reader, ServeSettings(threads=1), access=AccessOptions(api_key=KEY))
    with chromium() as browser, serving(app) as url:
        page = browser.new_page()
        page.goto(url + "/")
        assert page.locator("#key-row").is_hidden()
        page.fill("#context", RAILWAY)
        page.fill("#question", GOOD["question"])
        page.click("#ask")
        page.wait_for_selector("#key-row", state="visible")
        assert "API key" in page.inner_text("#status")
        page.fill("#api_key", KEY)
        page.click("#ask")
        page.wait_for_selector("#result", state="visible")
        assert page.inner_text("#answer-text")
        page.reload()  # the key lasts for the tab
        assert page.input_value("#api_key") == KEY


def test_docs_render_under_their_policy(reader):
    pytest.importorskip("fastapi_offline", reason="--docs serves the fastapi-offline package's files")
    app = create_app(reader, ServeSettings(threads=1), access=AccessOptions(docs=True))
    with chromium() as browser, serving(app) as url:
        page = browser.new_page()
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("request", lambda request: problems.append(request.url) if not request.url.startswith((url, "data:")) else None)
        page.goto(url + "/docs")
        page.wait_for_selector("text=/answer", timeout=15000)
        assert not problems, problems
