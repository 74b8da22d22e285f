"""Reader: long documents, several documents, per-request settings, agreement with evaluate."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import XQUAD, needs_shared
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from spanqa import Reader, SpanQAConfig, evaluate, load_examples
from spanqa.core.errors import SpanQAError
from spanqa.interfaces.cli import app
from spanqa.runtime.models import load_tokenizer

runner = CliRunner()
FILLER = "river stone lamp garden winter paper window market bridge yellow quiet morning".split()


class OracleModel(torch.nn.Module):
    """Start/end logits peak on two known token ids: tests windowing and offsets without training."""

    def __init__(self, start_id: int, end_id: int) -> None:
        super().__init__()
        self.start_id, self.end_id = start_id, end_id
        self.config = SimpleNamespace(max_position_embeddings=512)
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        base = torch.zeros(input_ids.shape) + self.anchor
        base[:, 0] += 1.0  # the CLS (no answer) position: wins only where neither token occurs
        start = base + 12.0 * (input_ids == self.start_id)
        end = base + 12.0 * (input_ids == self.end_id)
        return SimpleNamespace(start_logits=start, end_logits=end)


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return load_tokenizer("minilm")


def _oracle_reader(tokenizer, **config) -> Reader:
    start_id = tokenizer.convert_tokens_to_ids("aurora")
    end_id = tokenizer.convert_tokens_to_ids("falcon")
    assert tokenizer.unk_token_id not in (start_id, end_id)
    return Reader(OracleModel(start_id, end_id), tokenizer, SpanQAConfig(**config), device="cpu")


def test_twenty_thousand_word_document_answer_near_the_end(minilm_tokenizer):
    rng = random.Random(0)
    words = [rng.choice(FILLER) for _ in range(20_000)]
    words[19_700:19_702] = ["aurora", "falcon"]
    context = " ".join(words)
    reader = _oracle_reader(minilm_tokenizer)
    result = reader("What lights the northern sky?", context)
    assert result.answer is not None
    assert result.answer.text == "aurora falcon"
    assert context[result.answer.start : result.answer.end] == "aurora falcon"
    assert result.answer.start == context.index("aurora falcon")
    assert len(reader.features([__import__("spanqa").QAExample("x", "q", context)])) > 50


def test_documents_are_ranked_together_and_report_their_index(minilm_tokenizer):
    reader = _oracle_reader(minilm_tokenizer)
    documents = ["river stone lamp " * 50, "garden winter aurora falcon paper", "market bridge " * 30]
    result = reader("What?", documents=documents, top_k=3)
    assert result.answer.document == 1 and result.answer.text == "aurora falcon"
    assert sum(a.score for a in result.answers) + result.no_answer_score <= 1.0 + 1e-9
    assert result.answers == sorted(result.answers, key=lambda a: -a.score)


def test_per_request_settings_are_honoured_inside_one_batch(minilm_tokenizer):
    reader = _oracle_reader(minilm_tokenizer, handle_impossible=True)
    context = "garden aurora winter paper window market falcon bridge"
    results = reader.answer_batch([
        {"question": "a?", "context": context, "top_k": 1},
        {"question": "b?", "context": context, "top_k": 4},
        {"question": "c?", "context": context, "max_answer_length": 2},
        ("d?", context),
    ])
    assert len(results[0].answers) == 1 and 1 < len(results[1].answers) <= 4  # overlapping spans are dropped
    assert results[1].answers[0].text == "aurora winter paper window market falcon"
    assert all(len(minilm_tokenizer.tokenize(a.text)) <= 2 for a in results[2].answers)
    assert results[3].answer.text == results[0].answer.text


def test_no_answer_decided_by_saved_threshold(minilm_tokenizer):
    context = "river stone lamp garden"  # neither token present: the CLS (null) score wins
    reader = _oracle_reader(minilm_tokenizer, handle_impossible=True, null_threshold=0.0)
    assert reader("What?", context).is_impossible
    assert not reader("What?", context, handle_impossible=False).is_impossible
    lenient = _oracle_reader(minilm_tokenizer, handle_impossible=True, null_threshold=1e9)
    assert not lenient("What?", context).is_impossible


@pytest.mark.parametrize(
    "request_kwargs, message",
    [
        ({"question": " ", "context": "text"}, "empty question"),
        ({"question": "q", "context": ""}, "empty context"),
        ({"question": "q"}, "either a context or documents"),
        ({"question": "q", "context": "t", "documents": ["t"]}, "either a context or documents"),
        ({"question": "q", "context": "t", "top_k": 0}, "top_k"),
    ],
)
def test_bad_requests_raise_clear_errors(request_kwargs, message, minilm_tokenizer):
    reader = _oracle_reader(minilm_tokenizer)
    with pytest.raises(SpanQAError, match=message):  # DataError for the texts, ConfigError for the options
        reader.answer_batch([request_kwargs])


def test_ask_command_prints_answer_with_score(tiny_bert_dir, tmp_path):
    context_file = tmp_path / "doc.txt"
    context_file.write_text("The lighthouse on Gull Point is kept by Marta Ilves. " * 200, encoding="utf-8")
    res = runner.invoke(app, ["ask", str(tiny_bert_dir), "Who keeps the lighthouse?", "--context-file", str(context_file), "--top-k", "2", "--always-answer"])
    assert res.exit_code == 0, res.output
    assert "1. " in res.output and "score" in res.output and "2. " in res.output
    res = runner.invoke(app, ["ask", str(tiny_bert_dir), "Who?", "--json", "--context", "Marta keeps it."])
    assert res.exit_code == 0
    payload = json.loads(res.output[res.output.index("{"):])
    assert {"answer", "score", "start", "end", "no_answer_score", "answers"} <= set(payload)
    res = runner.invoke(app, ["ask", str(tiny_bert_dir), "Who?"])
    assert res.exit_code == 1 and "error: give the text" in res.output


def test_predict_command_streams_jsonl_for_data_without_answers(tiny_bert_dir, tmp_path):
    data = tmp_path / "questions.jsonl"
    rows = [{"id": f"q{i}", "question": f"Question {i}?", "context": f"Context number {i} about bridges."} for i in range(7)]
    data.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["predict", str(tiny_bert_dir), str(data), "--out", str(out), "--top-k", "2"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == [r["id"] for r in rows]
    for line, row in zip(lines, rows):
        for answer in line["answers"]:
            assert row["context"][answer["start"] : answer["end"]] == answer["text"]


@needs_shared(XQUAD)
def test_reader_agrees_with_evaluate_on_every_xquad_question(tiny_bert_dir, sample_train, tmp_path):
    """Same windows, same decode: the Reader's answers are evaluate's predictions (v1 data)."""
    from spanqa.jobs.training import train

    model = tmp_path / "trained"
    train(str(tiny_bert_dir), sample_train, output_dir=str(model), max_steps=5, max_length=256, stride=64, learning_rate=1e-3)
    dataset = load_examples(XQUAD / "xquad.en.json")
    result = evaluate(str(model), dataset, output_dir=tmp_path / "eval", batch_size=32)
    from spanqa.runtime.backends import evaluation_precision

    reader = Reader.from_pretrained(model, batch_size=32, dtype=evaluation_precision(None))  # the precision evaluate ran in
    # XQuAD is v1 data, so evaluate always answers; the Reader is asked to do the same.
    requests = [{"question": ex.question, "context": ex.context, "id": ex.id, "handle_impossible": False} for ex in dataset.examples]
    answers = reader.answer_batch(requests)
    predicted = json.loads((tmp_path / "eval" / "predictions.json").read_text())
    disagree = [r.id for r in answers if (r.answer.text if r.answer else "") != predicted[r.id]]
    assert not disagree, f"{len(disagree)} of {len(answers)} differ, e.g. {disagree[:3]}"
    assert len(answers) == len(dataset) == 1190
    assert np.isfinite(result.metrics["f1"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 384), max_size=80), st.integers(1, 40))
def test_length_batches_cover_every_window_with_bounded_padding(lengths, size):
    from spanqa.reading.reader import PADDING_SLACK, length_batches

    ordered = np.array(sorted(lengths, reverse=True), dtype=np.int64)
    ranges = length_batches(ordered, size)
    assert [i for lo, hi in ranges for i in range(lo, hi)] == list(range(len(ordered)))
    for lo, hi in ranges:
        assert 1 <= hi - lo <= size
        assert ordered[hi - 1] >= PADDING_SLACK * ordered[lo]  # no window padded by more than a quarter of the longest
    # Uniform lengths (bulk data) keep full batches.
    assert [hi - lo for lo, hi in length_batches(np.full(100, 200), 32)] == [32, 32, 32, 4]
