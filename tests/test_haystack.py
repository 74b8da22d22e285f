"""spanqa.integrations.haystack: SpanQAReader as a Haystack pipeline's extractive reader (tiny random model)."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import types

import pytest

# Tests never phone home: Haystack's usage telemetry is on unless this is set before it is imported.
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
pytest.importorskip("haystack")

from haystack import DeserializationError, Document, ExtractedAnswer, Pipeline  # noqa: E402
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever  # noqa: E402
from haystack.document_stores.in_memory import InMemoryDocumentStore  # noqa: E402
from haystack.utils import ComponentDevice  # noqa: E402

from spanqa import ConfigError, SpanQAConfig  # noqa: E402
from spanqa.integrations.haystack import SpanQAReader  # noqa: E402

TEXTS = [
    "The Amazon rainforest covers much of the Amazon basin of South America. Explorers born in Europe mapped its rivers.",
    "Beyonce Giselle Knowles was born in Houston, Texas, and performed in singing and dancing competitions as a child.",
    "The Normans gave their name to Normandy, a region in France. They were descended from Norse raiders and pirates.",
]
QUERY = "Where was Beyonce born?"


@pytest.fixture(scope="module")
def component(tiny_bert_dir) -> SpanQAReader:
    component = SpanQAReader(tiny_bert_dir, device="cpu", top_k=3)
    component.warm_up()
    return component


def spans(answers: list[ExtractedAnswer]) -> list[ExtractedAnswer]:
    return [a for a in answers if a.data is not None]


def check_offsets(answer: ExtractedAnswer) -> None:
    """An answer's text is its document's text at its offsets, and its context's at the context offsets."""
    assert answer.document is not None and answer.document.content is not None
    assert answer.document_offset is not None and answer.context_offset is not None and answer.context is not None
    assert answer.document.content[answer.document_offset.start : answer.document_offset.end] == answer.data
    assert answer.context[answer.context_offset.start : answer.context_offset.end] == answer.data
    assert answer.context in answer.document.content


def test_pipeline_with_retriever_answers_end_to_end(tiny_bert_dir, reader):
    store = InMemoryDocumentStore()
    store.write_documents([Document(content=text) for text in TEXTS])
    pipe = Pipeline()
    pipe.add_component("retriever", InMemoryBM25Retriever(document_store=store, top_k=2))
    pipe.add_component("reader", SpanQAReader(tiny_bert_dir, device="cpu", top_k=3))
    pipe.connect("retriever.documents", "reader.documents")

    out = pipe.run({"retriever": {"query": QUERY}, "reader": {"query": QUERY}}, include_outputs_from={"retriever"})

    retrieved = out["retriever"]["documents"]
    assert len(retrieved) == 2 and retrieved[0].content == TEXTS[1]  # BM25 finds the Beyonce text first
    answers = out["reader"]["answers"]
    found = spans(answers)
    assert 1 <= len(found) <= 3
    assert [a.data for a in answers].count(None) == 1  # one "no answer" entry, on by default
    for answer in answers:
        assert isinstance(answer, ExtractedAnswer) and answer.query == QUERY and 0.0 <= answer.score <= 1.0
    for answer in found:
        assert answer.document in retrieved
        check_offsets(answer)
    # The model was not trained for "no answer", so its rule never abstains: plain best-first order.
    assert [a.score for a in answers] == sorted((a.score for a in answers), reverse=True)
    # One softmax over every candidate and "no answer": the returned ones share at most probability 1.
    assert sum(a.score for a in answers) <= 1.0 + 1e-6

    # The same answers as spanqa's own reader over the retrieved texts.
    # (the component's own model: loaded in the CPU's default precision, where the fixture's reader is fp32)
    direct = pipe.get_component("reader")._reader(QUERY, documents=[d.content for d in retrieved], top_k=3)
    assert [(a.data, a.document_offset.start, a.document_offset.end) for a in found] == [(s.text, s.start, s.end) for s in direct.answers]  # type: ignore[union-attr]
    assert [a.score for a in found] == pytest.approx([s.score for s in direct.answers])
    assert [a.document for a in found] == [retrieved[s.document] for s in direct.answers]
    nothing = next(a for a in answers if a.data is None)
    assert nothing.score == pytest.approx(direct.no_answer_score) and nothing.document is None


def test_top_k_and_no_answer(component):
    documents = [Document(content=text) for text in TEXTS]
    full = component.run(query=QUERY, documents=documents)["answers"]
    assert len(spans(full)) == 3 and len(full) == 4

    one = component.run(query=QUERY, documents=documents, top_k=1)["answers"]
    assert len(spans(one)) == 1 and spans(one)[0].data == spans(full)[0].data
    assert len(one) == 2 and [a.data for a in one].count(None) == 1

    without = component.run(query=QUERY, documents=documents, no_answer=False)["answers"]
    assert [a.data for a in without] == [a.data for a in spans(full)]
    assert SpanQAReader("m", no_answer=False).no_answer is False


def test_score_threshold_keeps_answers_at_or_above_it(component):
    documents = [Document(content=text) for text in TEXTS]
    full = component.run(query=QUERY, documents=documents)["answers"]
    threshold = sorted(a.score for a in full)[len(full) // 2]  # a score in the middle: some pass, some do not
    kept = component.run(query=QUERY, documents=documents, score_threshold=threshold)["answers"]
    assert kept == [a for a in full if a.score >= threshold] and 0 < len(kept) < len(full)
    # The component's own threshold applies when run is given none; 1.0 keeps nothing from a random model.
    strict = SpanQAReader(component.model, device="cpu", score_threshold=1.0)
    assert strict.run(query=QUERY, documents=documents)["answers"] == []


def test_no_answer_leads_when_the_model_abstains(tiny_bert_dir, tmp_path):
    # A "no answer" model whose threshold always abstains: its decision comes first whatever the scores.
    folder = shutil.copytree(tiny_bert_dir, tmp_path / "abstains")
    SpanQAConfig(handle_impossible=True, null_threshold=-1e9).save(folder)
    component = SpanQAReader(folder, device="cpu", top_k=2)
    answers = component.run(query=QUERY, documents=[Document(content=text) for text in TEXTS])["answers"]
    assert answers[0].data is None and answers[0].document is None
    assert len(spans(answers)) == 2 and all(a.data is not None for a in answers[1:])
    assert [a.data for a in component.run(query=QUERY, documents=[Document(content=TEXTS[0])], no_answer=False)["answers"]].count(None) == 0


def test_documents_without_text(component, caplog):
    assert component.run(query=QUERY, documents=[])["answers"] == []
    assert component.run(query=QUERY, documents=[Document(content=None), Document(content="  ")])["answers"] == []
    assert "skipped 2 document(s) without text" in caplog.text
    # Answers point at the right document when empty ones are skipped before it.
    text = Document(content=TEXTS[2])
    answers = spans(component.run(query=QUERY, documents=[Document(content=""), text])["answers"])
    assert answers and all(a.document is text for a in answers)
    for answer in answers:
        check_offsets(answer)


def test_context_window(tiny_bert_dir):
    component = SpanQAReader(tiny_bert_dir, device="cpu", top_k=2, context_window_size=0)
    for answer in spans(component.run(query=QUERY, documents=[Document(content=TEXTS[1])])["answers"]):
        assert answer.context == answer.data
        check_offsets(answer)


@pytest.mark.parametrize(
    "settings",
    [
        {"top_k": 0},
        {"top_k": 2.5},
        {"top_k": True},
        {"score_threshold": 1.5},
        {"score_threshold": -0.1},
        {"backend": "tensorflow"},
        {"context_window_size": -1},
    ],
)
def test_bad_settings_are_refused_at_construction(settings):
    name = next(iter(settings))
    with pytest.raises(ConfigError, match=name):
        SpanQAReader("any/model", **settings)


def test_bad_run_arguments_are_refused(component):
    with pytest.raises(ConfigError, match="top_k"):
        component.run(query=QUERY, documents=[Document(content=TEXTS[0])], top_k=0)
    with pytest.raises(ConfigError, match="score_threshold"):
        component.run(query=QUERY, documents=[Document(content=TEXTS[0])], score_threshold=2.0)


def test_dtype_and_batch_size_reach_the_reader(tiny_bert_dir, bert_onnx):
    component = SpanQAReader(tiny_bert_dir, device="cpu", dtype="fp32", max_batch_size=4)
    component.warm_up()
    assert component._reader.backend.dtype == "fp32" and component._reader.batch_size == 4
    assert SpanQAReader.from_dict(component.to_dict()).dtype == "fp32"
    onnx = SpanQAReader(bert_onnx)
    onnx.warm_up()
    assert onnx._reader.batch_size == 8  # the ONNX backend's own default on the CPU
    with pytest.raises(ConfigError, match="bf61"):
        SpanQAReader(tiny_bert_dir, dtype="bf61")  # type: ignore[arg-type]


def test_to_dict_from_dict_round_trip(tiny_bert_dir):
    component = SpanQAReader(
        tiny_bert_dir, device=ComponentDevice.from_str("cpu"), top_k=4, score_threshold=0.01, no_answer=False, max_seq_length=128, stride=32
    )
    data = component.to_dict()
    assert data == {
        "type": "spanqa.integrations.haystack.SpanQAReader",
        "init_parameters": {
            "model": str(tiny_bert_dir),
            "device": "cpu",
            "backend": "auto",
            "top_k": 4,
            "score_threshold": 0.01,
            "no_answer": False,
            "max_answer_length": None,
            "max_seq_length": 128,
            "stride": 32,
            "max_batch_size": None,
            "context_window_size": 150,
            "dtype": None,
        },
    }
    restored = SpanQAReader.from_dict(data)
    assert restored.to_dict() == data

    # A saved pipeline (YAML) loads back with the same reader, which answers the same. Haystack 3
    # builds only allowlisted classes from a file; the user, not spanqa, decides to trust this one.
    pipe = Pipeline()
    pipe.add_component("reader", component)
    saved = pipe.dumps()
    with pytest.raises(DeserializationError, match="allowlist"):
        Pipeline.loads(saved)
    loaded = Pipeline.loads(saved, allowed_modules=["spanqa.integrations.haystack"])
    assert loaded.get_component("reader").to_dict() == data
    documents = [Document(content=text) for text in TEXTS]
    before = pipe.run({"reader": {"query": QUERY, "documents": documents}})["reader"]["answers"]
    after = loaded.run({"reader": {"query": QUERY, "documents": documents}})["reader"]["answers"]
    assert [(a.data, a.score) for a in after] == [(a.data, a.score) for a in before] and before


@pytest.mark.parametrize(
    ("stand_in", "message"),
    [(None, 'which is not installed: pip install "spanqa[haystack]"'), (types.ModuleType("haystack"), "installed `haystack` is another")],
)
def test_import_without_haystack_says_how_to_install(monkeypatch, stand_in, message):
    # None in sys.modules makes `import haystack` fail as if it were not installed; an empty module
    # stands for farm-haystack 1.x, which installs a `haystack` without the 3.x names.
    monkeypatch.setitem(sys.modules, "haystack", stand_in)
    monkeypatch.delitem(sys.modules, "spanqa.integrations.haystack")  # restored after the test
    with pytest.raises(ImportError, match='pip install "spanqa\\[haystack\\]"') as caught:
        importlib.import_module("spanqa.integrations.haystack")
    assert message in str(caught.value)


def test_spanqa_imports_without_haystack():
    code = (
        "import sys; sys.modules['haystack'] = None\n"
        "import spanqa, spanqa.integrations\n"
        "try:\n    import spanqa.integrations.haystack\nexcept ImportError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert 'pip install "spanqa[haystack]"' in done.stdout  # the README's spelling
