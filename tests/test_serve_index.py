"""`spanqa serve MODEL --index DIR`: questions without a context are answered from the index's passages,
each answer naming its source document and offsets in it; context requests are unchanged; the web page
shows the source."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra (fastapi, uvicorn)")
httpx = pytest.importorskip("httpx", reason="the API tests need httpx")

from fastapi.testclient import TestClient  # noqa: E402
from live import chromium, serving  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from spanqa.interfaces.cli import app as cli_app  # noqa: E402
from spanqa.interfaces.serve import ServeSettings, create_app  # noqa: E402
from spanqa.reading.index import Index, build_index  # noqa: E402
from spanqa.reading.indexed import answer_from_index  # noqa: E402
from spanqa.reading.reader import Reader  # noqa: E402

pytestmark = pytest.mark.usefixtures("clean_serve_environment")

FILLER = " ".join(f"word{i}" for i in range(120))
# An emoji before the answer: offsets are code points, in the API and on the page.
FACTS = {
    "tower.txt": "The Eiffel Tower\n\nRoute 🚂 notes. The Eiffel Tower was completed in 1889 in Paris.\n\n" + FILLER,
    "rivers.md": "# Rivers\n\n" + FILLER + "\n\nThe Danube flows through Vienna and Budapest.\n",
    "notes/bread.txt": "Sourdough bread rises because of wild yeast.\n",
}
QUESTION = "When was the Eiffel Tower completed?"
CONTEXT = "The Glenbarrow Light Railway was built in 1897 to carry slate from the quarry village of Glenbarrow."
# The fields of a result and of an answer before the index existed: a context request still has exactly these.
RESULT_FIELDS = {"id", "question", "answer", "score", "start", "end", "document", "is_impossible", "no_answer_score", "no_answer_threshold", "answers"}
SPAN_FIELDS = {"text", "start", "end", "score", "document"}
SOURCE_FIELDS = {"source", "doc_id", "document_start", "document_end"}


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Index:
    folder = tmp_path_factory.mktemp("docs")
    for name, text in FACTS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return build_index([folder], tmp_path_factory.mktemp("ix") / "index", max_words=100)



def check_sourced(result: dict) -> None:
    """Every answer is a span of its passage and, at its document offsets, of its source file."""
    assert result["answers"]
    for span in result["answers"]:
        assert span["passage"][span["start"] : span["end"]] == span["text"]
        assert Path(span["source"]).read_text(encoding="utf-8")[span["document_start"] : span["document_end"]] == span["text"]
        assert span["doc_id"] == span["source"]  # text files: the path is the id
    if not result["is_impossible"]:
        best = result["answers"][0]
        assert {key: result[key] for key in SOURCE_FIELDS} == {key: best[key] for key in SOURCE_FIELDS}
    else:
        assert all(result[key] is None for key in SOURCE_FIELDS)


def test_answers_from_the_index_name_their_source(reader, index):
    with TestClient(create_app(reader, ServeSettings(threads=1), index=index)) as client:
        response = client.post("/answer", json={"question": QUESTION, "top_k": 3, "passages": 3, "handle_impossible": False})
        assert response.status_code == 200, response.text
        result = response.json()
        check_sourced(result)
        assert all(0 <= span["document"] < 3 for span in result["answers"])  # the rank of the passage read
        # The same answers as the library's own answer_from_index, through the same micro-batcher as every request.
        direct = answer_from_index(reader, index, QUESTION, top_k=3, passages=3, handle_impossible=False)
        assert [(a["text"], a["doc_id"], a["document_start"], a["document_end"]) for a in result["answers"]] == [
            (a.text, a.doc_id, a.start, a.end) for a in direct.answers
        ]
        assert [a["score"] for a in result["answers"]] == pytest.approx([a.score for a in direct.answers], rel=1e-5)
        stats = client.get("/health").json()["batching"]
        assert stats["questions"] == 1 and stats["batches"] == 1
        assert 'spanqa_questions_answered_total 1.0' in client.get("/metrics").text


def test_a_batch_mixes_context_and_index_questions(reader, index):
    with TestClient(create_app(reader, ServeSettings(threads=1, passages=2), index=index)) as client:
        payload = {"questions": [{"question": "When was the railway built?", "context": CONTEXT, "top_k": 2},
                                 {"question": QUESTION, "top_k": 2, "handle_impossible": False, "id": "q2"}]}
        response = client.post("/answer", json=payload)
        assert response.status_code == 200, response.text
        with_context, from_index = response.json()["results"]
        assert set(with_context) == RESULT_FIELDS  # unchanged: no source fields on a context answer
        for span in with_context["answers"]:
            assert set(span) == SPAN_FIELDS and CONTEXT[span["start"] : span["end"]] == span["text"]
        assert from_index["id"] == "q2"
        check_sourced(from_index)
        assert all(span["document"] < 2 for span in from_index["answers"])  # the server's default: 2 passages


def test_index_request_errors(reader, index):
    settings = ServeSettings(threads=1, max_documents=5)
    with TestClient(create_app(reader, settings, index=index)) as client:
        cases = [
            ({"question": QUESTION, "passages": 6}, "passages is 6; the limit is 5"),
            ({"question": QUESTION, "passages": 0}, "passages"),
            ({"question": QUESTION, "context": CONTEXT, "passages": 2}, "passages is for questions answered from the index"),
            ({"question": "   "}, "empty question"),
            ({"questions": [{"question": QUESTION}, {"question": ""}]}, "questions[1]: empty question"),
        ]
        for payload, message in cases:
            response = client.post("/answer", json=payload)
            assert response.status_code == 422, (payload, response.text)
            assert message in response.json()["error"]["message"], (payload, response.text)


def test_no_context_without_an_index_is_a_clear_error(reader):
    with TestClient(create_app(reader, ServeSettings(threads=1))) as client:
        response = client.post("/answer", json={"question": QUESTION})
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["type"] == "validation_error"
        assert "give a context" in error["message"] and "--index" in error["message"]
        assert client.get("/health").json()["index"] is None


def test_health_describes_the_index(reader, index):
    with TestClient(create_app(reader, ServeSettings(threads=1, passages=4), index=index)) as client:
        health = client.get("/health").json()
    assert health["index"] == {
        "passages": len(index.passages),
        "documents": 3,
        "retrieval": "bm25",
        "embedding_model": None,
        "passages_per_question": 4,
    }


def test_cli_loads_the_index_before_the_model(monkeypatch, reader, index, tmp_path, fresh_cli_logging):
    import uvicorn

    loads: list[str] = []
    served: list = []
    monkeypatch.setattr(Reader, "from_pretrained", staticmethod(lambda name, load=None, **kwargs: loads.append(name) or reader))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append(app))
    runner = CliRunner()

    result = runner.invoke(cli_app, ["serve", "some-model", "--index", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope'}: not a spanqa index (no index.json); "
                                                  f"build one with `spanqa index DOCS --out {tmp_path / 'nope'}`"]
    assert loads == [] and served == []  # failed before the model loaded

    result = runner.invoke(cli_app, ["serve", "some-model", "--index", str(index.folder), "--passages", "4", "--max-batch", "3"])
    assert result.exit_code == 0, result.output
    (app,) = served
    assert isinstance(app.state.index, Index) and len(app.state.index.passages) == len(index.passages)
    assert (app.state.settings.passages, app.state.settings.max_batch) == (4, 3)


# --------------------------------------------------------------------------- the web page


@pytest.fixture(scope="module")
def server(reader, index):
    """The real app with the index under uvicorn on a free loopback port, in a background thread."""
    with serving(create_app(reader, ServeSettings(threads=1), index=index)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def test_page_answers_from_the_collection_and_shows_the_source(browser, server, index):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        page.goto(server + "/")
        hint = page.wait_for_selector("#index-hint:not([hidden])")  # the page learnt of the index from /health
        assert f"collection of {len(index.passages)} passages from 3 documents" in hint.text_content()
        assert page.is_visible("#context-optional")
        page.fill("#question", QUESTION)  # the text box stays empty
        page.fill("#top_k", "2")
        page.click("#ask")
        name = page.wait_for_selector("#source-name")

        response = httpx.post(server + "/answer", json={"question": QUESTION, "top_k": 2}, timeout=30, trust_env=False)
        assert response.status_code == 200, response.text
        expected = response.json()
        assert not expected["is_impossible"]
        best = expected["answers"][0]
        assert name.text_content() == best["doc_id"]
        assert f"characters {best['document_start']}–{best['document_end']}" in page.text_content("#source")
        assert page.text_content("#passage") == best["passage"]  # the passage read, with the answer marked in place
        assert page.text_content("#passage mark") == best["text"] == page.text_content("#answer-text")

        # Another of the answers shows its own passage and source.
        page.query_selector_all("#topk li button")[1].click()
        second = expected["answers"][1]
        assert page.text_content("#passage mark") == second["text"]
        assert page.text_content("#passage") == second["passage"]
        assert page.text_content("#source-name") == second["doc_id"]
        assert problems == [], "console errors (a Content-Security-Policy violation?)"
    finally:
        context.close()
