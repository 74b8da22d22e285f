"""The web page in a real browser: Debian's chromium, headless, driven by Playwright.

Needs ``apt-get install chromium`` and ``pip install playwright`` (no ``playwright install``:
the system chromium is used). Set SPANQA_CHROMIUM to use another chromium binary.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra (fastapi, uvicorn)")
uvicorn = pytest.importorskip("uvicorn", reason="serving needs the 'serve' extra (fastapi, uvicorn)")
httpx = pytest.importorskip("httpx", reason="the browser test asks the API through httpx")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs Playwright for Python: pip install playwright")

from live import CHROMIUM, NO_CHROMIUM, chromium, serving  # noqa: E402

from spanqa.interfaces.serve import ServeSettings, create_app  # noqa: E402

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=NO_CHROMIUM)

# An emoji and accents before the answer: the page must turn code-point offsets into JavaScript string indices.
CONTEXT = (
    "Route 🚂 notes. The Glenbarrow Light Railway runs for 14 kilometres between the market town of Ashby Cross "
    "and the quarry village of Glenbarrow. Built in 1897 to carry slate, it uses a narrow gauge of 610 millimetres. "
    "Zoë Ñúñez reopened the line to visitors in 1978."
)
QUESTION = "When was the railway built?"


@pytest.fixture(scope="module")
def server(reader):
    """The real app under uvicorn on a free loopback port, in a background thread."""
    with serving(create_app(reader, ServeSettings(max_context_chars=5000))) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, server):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(server + "/")
    yield page, requests, problems
    context.close()


def api_answer(server: str, payload: dict) -> dict:
    response = httpx.post(server + "/answer", json=payload, timeout=30, trust_env=False)
    assert response.status_code == 200, response.text
    return response.json()


def test_question_answer_highlighted_in_the_text(page, server):
    page, requests, problems = page
    page.fill("#context", CONTEXT)
    page.fill("#question", QUESTION)
    page.fill("#top_k", "3")
    page.click("#ask")
    mark = page.wait_for_selector("#passage mark")

    expected = api_answer(server, {"question": QUESTION, "context": CONTEXT, "top_k": 3})
    assert not expected["is_impossible"]
    assert mark.text_content() == expected["answer"] == CONTEXT[expected["start"] : expected["end"]]
    assert page.text_content("#passage") == CONTEXT  # the whole text, with the answer marked in place
    assert page.text_content("#answer-text") == expected["answer"]
    score = page.get_attribute("#answer-score", "data-score")
    assert float(score) == pytest.approx(expected["score"], rel=1e-6)
    assert f"{expected['score']:.3f}" in page.text_content("#answer-score")
    items = page.query_selector_all("#topk li")
    assert [li.query_selector("button").text_content() for li in items] == [a["text"] for a in expected["answers"]]

    # Picking another of the top-k answers moves the highlight to it.
    items[1].query_selector("button").click()
    assert page.text_content("#passage mark") == expected["answers"][1]["text"]
    assert float(page.get_attribute("#answer-score", "data-score")) == pytest.approx(expected["answers"][1]["score"], rel=1e-6)

    assert problems == [], "console errors (a Content-Security-Policy violation?)"
    assert all(url.startswith(server + "/") or url.startswith("data:") for url in requests), requests


def test_server_errors_are_shown(page, server):
    page, _, problems = page
    page.fill("#context", "long text " * 600)  # over the server's 5,000-character limit
    page.fill("#question", QUESTION)
    page.click("#ask")
    page.wait_for_selector("#status.error")
    status = page.text_content("#status")
    assert "6000 characters" in status and "5000" in status
    assert page.is_hidden("#result")

    # The next question works.
    page.fill("#context", CONTEXT)
    page.click("#ask")
    mark = page.wait_for_selector("#passage mark")
    assert mark.text_content() == api_answer(server, {"question": QUESTION, "context": CONTEXT, "top_k": 3})["answer"]
    assert not [p for p in problems if "413" not in p], problems  # the browser logs the failed request itself
