"""Hints where new users stumble on their data: an answer text that means "no answer" but was not declared."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from samples import write_csv
from typer.testing import CliRunner

from spanqa.interfaces.cli import app
from spanqa.stages.data import load_examples
from spanqa.stages.datacheck import summarize

REVIEWS = [
    ("The bass is deep and the mids are clear.", "How is the bass?", "deep"),
    ("Battery lasts two days with heavy use.", "How long does the battery last?", "two days"),
    ("The case feels cheap and scratches.", "Is the case sturdy?", "NONE"),
    ("Setup took a minute on my phone.", "Does it have a warranty?", "NONE"),
    ("Colours are vivid and the screen is sharp.", "How is the sound?", "NONE"),
    ("It arrived late but well packed.", "Is it waterproof?", "NONE"),
]


def write_reviews(path: Path, rows=REVIEWS) -> Path:
    return write_csv(path, ["id", "context", "question", "answer"], [[f"r{i}", *row] for i, row in enumerate(rows)])


def test_many_answers_found_in_no_context_suggest_the_no_answer_marker(tmp_path, caplog):
    """Before: 'examples: 2 (all answerable)' and four 'not found nearby; skipped' lines, no word of the option."""
    path = write_reviews(tmp_path / "reviews.csv")
    with caplog.at_level(logging.WARNING, logger="spanqa"):
        dataset = load_examples(path)
    assert dataset.suspected_marker == "NONE" and dataset.suspected_marker_rows == 4
    assert "4 answers are 'NONE', found in no context" in caplog.text
    assert "--no-answer-marker NONE" in caplog.text and "no_answer_marker='NONE'" in caplog.text
    marked = load_examples(path, no_answer_marker="NONE")
    assert marked.suspected_marker is None and marked.marker_hint() is None
    assert sum(ex.is_impossible for ex in marked) == 4


@pytest.mark.parametrize(
    "answers, marker",
    [
        (["N/A"] * 3, "N/A"),
        (["-"] * 3, "-"),
        (["NONE", "NONE"], None),  # two rows: could be typos, no hint
        (["NONE", "NONE", "NONE", "qwerty", "asdf", "zxcv", "uiop"], None),  # not most of the unfound answers
    ],
)
def test_the_hint_needs_one_text_for_most_unfound_answers(tmp_path, answers, marker):
    rows = [REVIEWS[0], REVIEWS[1]] + [(f"Review number {i} says little.", "Anything?", text) for i, text in enumerate(answers)]
    assert load_examples(write_reviews(tmp_path / "r.csv", rows)).suspected_marker == marker


def test_data_check_names_the_marker_and_the_option(tmp_path):
    path = write_reviews(tmp_path / "reviews.csv")
    result = CliRunner().invoke(app, ["data", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "hint: 4 answers are 'NONE'" in result.stdout and "--no-answer-marker NONE" in result.stdout
    assert summarize(load_examples(path)).to_dict()["marker_hint"].endswith("(Python: no_answer_marker='NONE')")


def test_predict_data_gets_no_marker_hint(tmp_path):
    """Questions to predict on keep their rows whatever their answers: nothing was skipped, nothing to hint."""
    assert load_examples(write_reviews(tmp_path / "r.csv"), require_answers=False).suspected_marker is None


def test_the_python_evaluate_takes_the_marker_as_the_cli_does(tiny_bert_dir, tmp_path):
    """spanqa.evaluate(..., no_answer_marker=...) as `spanqa evaluate --no-answer-marker`: v2 scores over every row."""
    import spanqa

    path = write_reviews(tmp_path / "reviews.csv")
    result = spanqa.evaluate(str(tiny_bert_dir), str(path), no_answer_marker="NONE", device="cpu")
    assert result.metrics["total"] == len(REVIEWS) and result.metrics["NoAns_total"] == 4
