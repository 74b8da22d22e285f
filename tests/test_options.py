"""Options declared once and passed whole: AnswerOptions, LoadOptions, DataSource, and the one "no answer" entry."""

from __future__ import annotations

import dataclasses
import json

import pytest
from samples import RAILWAY, RAILWAY_QUESTION
from typer.testing import CliRunner

from spanqa import AnswerOptions, DataSource, LoadOptions, QARequest, ReaderResult, SpanQAConfig
from spanqa.core.errors import ConfigError
from spanqa.interfaces.cli import app
from spanqa.stages.decode import Span

runner = CliRunner()


@pytest.mark.parametrize(
    "values, message",
    [
        ({"top_k": 0}, "top_k must be a positive integer"),
        ({"top_k": True}, "top_k must be a positive integer"),
        ({"max_answer_length": -1}, "max_answer_length must be a positive integer"),
        ({"score_threshold": 1.5}, "score_threshold must be a probability"),
        ({"overlap_threshold": float("nan")}, "overlap_threshold must be a probability"),
        ({"handle_impossible": "yes"}, "handle_impossible must be true, false or null"),
    ],
)
def test_answer_options_refuse_values_out_of_range(values, message):
    with pytest.raises(ConfigError, match=message):
        AnswerOptions(**values)


def test_answer_options_overrides_keep_unset_values_and_fill_from_the_model():
    base = AnswerOptions(top_k=3, score_threshold=0.2)
    assert base.updated(top_k=None, max_answer_length=7) == AnswerOptions(top_k=3, max_answer_length=7, score_threshold=0.2)
    with pytest.raises(TypeError, match="unknown answer option"):
        base.updated(topk=2)
    config = SpanQAConfig(max_answer_length=12, handle_impossible=True, overlap_threshold=0.3)
    filled = base.filled_from(config)
    assert (filled.top_k, filled.score_threshold) == (3, 0.2)  # given: kept
    assert (filled.max_answer_length, filled.handle_impossible, filled.overlap_threshold) == (12, True, 0.3)  # unset: the model's


def test_load_options_refuse_unknown_values():
    assert LoadOptions().updated(device="cpu", dtype=None) == LoadOptions(device="cpu")
    with pytest.raises(ConfigError, match="unknown backend 'onxx'.*did you mean 'onnx'"):
        LoadOptions(backend="onxx")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown dtype"):
        LoadOptions(dtype="bf61")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="batch size"):
        LoadOptions(batch_size=0)


def test_a_request_mapping_carries_its_answer_options():
    request = QARequest.coerce({"question": "q", "context": "text", "top_k": 3, "id": "a"})
    assert request.options == AnswerOptions(top_k=3) and request.id == "a"


def test_data_source_reads_the_forms_people_write(sample_dev):
    source = DataSource.of("reviews.csv", "context=review,answer_text=spans", no_answer_marker="NONE", on_mismatch="skip")
    assert (source.columns.context, source.columns.answer_text, source.columns.no_answer_marker) == ("review", "spans", "NONE")
    assert source.describe() == {"columns": {"context": "review", "answer_text": "spans", "no_answer_marker": "NONE"}, "on_mismatch": "skip", "split": None}
    assert DataSource.of(source) is source
    assert DataSource.of(sample_dev, {"no_answer_marker": "NONE"}).load().examples
    assert DataSource(sample_dev, version_2=False).load().version_2 is False  # v2 given: it overrides what the data says


def _span(text: str, score: float) -> Span:
    return Span(text, 0, len(text), 0.0, 0.0, 0.0, score=score)


@pytest.mark.parametrize(
    "impossible, no_answer_score, expected",
    [
        (True, 0.1, [None, "a", "b", "c"]),  # the model abstains: its decision leads, whatever the scores
        (False, 0.3, ["a", None, "b", "c"]),  # the decided answer first, then "no answer" by its score
        (False, 0.9, ["a", None, "b", "c"]),  # even when "no answer" scores higher than the decided answer
        (False, 0.05, ["a", "b", "c", None]),
        (False, 0.2, ["a", None, "b", "c"]),  # a tie puts "no answer" first
    ],
)
def test_one_place_puts_the_no_answer_entry(impossible, no_answer_score, expected):
    result = ReaderResult("q", [_span("a", 0.5), _span("b", 0.2), _span("c", 0.1)], no_answer_score, impossible)
    assert [None if span is None else span.text for span in result.with_no_answer()] == expected


@pytest.mark.parametrize(
    "command, groups",
    [
        (["ask", "m", "q", "--help"], (AnswerOptions, LoadOptions)),
        (["predict", "m", "d", "--help"], (AnswerOptions, LoadOptions)),
        (["evaluate", "--help"], (LoadOptions,)),
        (["serve", "--help"], (LoadOptions,)),
    ],
)
def test_commands_take_every_field_of_their_option_classes(command, groups):
    shown = runner.invoke(app, command, env={"COLUMNS": "200"}).output
    for group in groups:
        for field in dataclasses.fields(group):
            assert f"--{field.name.replace('_', '-')}" in shown, (command[0], field.name)


def test_an_answer_option_reaches_the_reader_from_the_command_line(tiny_bert_dir):
    args = ["ask", str(tiny_bert_dir), RAILWAY_QUESTION, "--context", RAILWAY, "--device", "cpu", "--json", "--top-k", "6"]
    apart = json.loads(runner.invoke(app, [*args, "--overlap-threshold", "0"]).stdout)["answers"]
    everything = json.loads(runner.invoke(app, [*args, "--overlap-threshold", "1"]).stdout)["answers"]
    assert len(everything) == 6
    for i, a in enumerate(apart):  # no two answers share a character
        assert all(a["end"] <= b["start"] or b["end"] <= a["start"] for b in apart[i + 1 :])
    assert "overlap_threshold must be a probability" in runner.invoke(app, [*args, "--overlap-threshold", "2"]).stderr
