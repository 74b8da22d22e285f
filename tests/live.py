"""Test support: a real app served on a loopback port, and headless system chromium (Playwright).

Chromium is Debian's (``apt-get install chromium``; no ``playwright install``); set SPANQA_CHROMIUM
to use another binary. Both helpers skip the calling test, with the reason, where a piece is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("SPANQA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
]
NO_CHROMIUM = f"chromium not found at {CHROMIUM} (apt-get install chromium, or set SPANQA_CHROMIUM)"


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run an ASGI app under uvicorn on a free loopback port in a background thread; yields its base URL."""
    uvicorn = pytest.importorskip("uvicorn", reason="serving needs the 'serve' extra (fastapi, uvicorn)")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium browser (Playwright's Browser); skips the test where chromium or Playwright is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need Playwright for Python: pip install playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip(NO_CHROMIUM)
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        except Exception as err:  # pragma: no cover - depends on the machine
            pytest.skip(f"cannot start chromium at {CHROMIUM}: {str(err).splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()
