"""Malformed values in data files and score inputs: one clear error naming file, row and field, never a traceback.

Covers answer texts that are not strings, is_impossible flags, ids and titles of
the wrong type, files Python's JSON reader or UTF-8 cannot take, prediction input
whose gold answers are broken, and non-finite no-answer probabilities.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from samples import write_csv
from test_metrics import HAND_V2, HAND_V2_PREDS, assert_metrics_match, examples_of, ref_v2_evaluate
from typer.testing import CliRunner

from spanqa.core.errors import ConfigError, DataError
from spanqa.interfaces.cli import app
from spanqa.stages.data import Answer, load_examples
from spanqa.stages.metrics import score_predictions

runner = CliRunner()

CTX = "The Denver Broncos won 24 to 10 in Santa Clara."
LONG_INT = "1" * (sys.get_int_max_str_digits() + 10)


pytestmark = pytest.mark.usefixtures("fresh_cli_logging")


def qa(qid: Any = "q1", **fields: Any) -> dict[str, Any]:
    """A SQuAD ``qas`` entry with one good answer ('Denver Broncos' at 4), overridden by ``fields``."""
    return {"id": qid, "question": "Who won?", "answers": [{"text": "Denver Broncos", "answer_start": 4}], **fields}


def write_squad(path: Path, qas: list[dict[str, Any]], title: Any = "Super Bowl", version: str = "1.1") -> Path:
    path.write_text(json.dumps({"version": version, "data": [{"title": title, "paragraphs": [{"context": CTX, "qas": qas}]}]}), encoding="utf-8")
    return path


def record(qid: Any = "r1", **fields: Any) -> dict[str, Any]:
    """A flat record with one good answer, overridden by ``fields``."""
    return {"id": qid, "question": "Who won?", "context": CTX, "answer": "Denver Broncos", "answer_start": 4, **fields}


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def assert_one_error_line(result, *patterns: str) -> None:
    """Exit status 1 and a single ``error: ...`` line matching each regex; no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for pattern in patterns:
        assert re.search(pattern, lines[0]), lines[0]


# --------------------------------------------------------------------------- 1. answer texts that are not strings

BAD_TEXTS = [34, None, ["Denver"], {"text": "Denver"}, 3.5, True]


@pytest.mark.parametrize("text", BAD_TEXTS, ids=repr)
def test_squad_answer_text_must_be_a_string(tmp_path, text):
    path = write_squad(tmp_path / "s.json", [qa(answers=[{"text": text, "answer_start": 4}])])
    with pytest.raises(DataError, match=r"s\.json: data\[0\]\.paragraphs\[0\]\.qas\[0\]: field 'answers\[0\]\.text': expected answer text"):
        load_examples(path)


@pytest.mark.parametrize("text", BAD_TEXTS, ids=repr)
@pytest.mark.parametrize("shape", ["columns", "records"])
def test_jsonl_answers_text_must_be_a_string(tmp_path, text, shape):
    answers = {"text": [text], "answer_start": [4]} if shape == "columns" else [{"text": text, "answer_start": 4}]
    good = {"id": "r1", "question": "Who won?", "context": CTX, "answers": {"text": ["Denver Broncos"], "answer_start": [4]}}
    records = [good, {"id": "r2", "question": "Who?", "context": CTX, "answers": answers}]
    with pytest.raises(DataError, match=r"a\.jsonl row 2: field 'answers': expected answer text"):
        load_examples(write_jsonl(tmp_path / "a.jsonl", records))


@pytest.mark.parametrize("text", [34, {"text": "Denver"}, [34], 3.5], ids=repr)
def test_mapped_answer_text_column_must_hold_strings(tmp_path, text):
    # A flat JSON records file with a column mapping; a list in the answer column is a list of answer texts.
    records = [{"qid": "m1", "ask": "Who won?", "passage": CTX, "span": text, "offset": 4}]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    mapping = {"id": "qid", "question": "ask", "context": "passage", "answer_text": "span", "answer_start": "offset"}
    with pytest.raises(DataError, match=r"r\.json row 1: field 'span': expected answer text"):
        load_examples(path, columns=mapping)


def test_csv_answers_cell_with_a_number_as_text(tmp_path):
    path = write_csv(tmp_path / "c.csv", ["id", "question", "context", "gold"], [["c1", "Who won?", CTX, '{"text": [34], "answer_start": [4]}']])
    with pytest.raises(DataError, match=r"c\.csv row 1: field 'gold': expected answer text \(a string\), got int 34"):
        load_examples(path, columns={"answers": "gold"})


def test_data_check_reports_a_number_as_answer_text(tmp_path, tok_dir):
    path = write_squad(tmp_path / "s.json", [qa(), qa("q2", answers=[{"text": 34, "answer_start": 4}])])
    result = runner.invoke(app, ["data", "check", str(path), "--model", tok_dir])
    assert_one_error_line(result, r"s\.json: data\[0\]\.paragraphs\[0\]\.qas\[1\]: field 'answers\[0\]\.text': expected answer text \(a string\), got int 34")


# --------------------------------------------------------------------------- 2. is_impossible


@pytest.mark.parametrize("flag", [False, "false", "False", " FALSE ", "0", 0])
def test_squad_false_flags_are_false(tmp_path, flag):
    ds = load_examples(write_squad(tmp_path / "s.json", [qa(is_impossible=flag)]))
    assert not ds.version_2 and ds.examples[0].answers == (Answer("Denver Broncos", 4),)


@pytest.mark.parametrize("flag", [True, "true", "TRUE", "1", 1])
def test_squad_true_flags_are_true(tmp_path, flag):
    ds = load_examples(write_squad(tmp_path / "s.json", [qa(), qa("q2", answers=[], is_impossible=flag)]))
    assert ds.version_2 and ds.examples[1].is_impossible


@pytest.mark.parametrize("flag", ["maybe", "yes", "no", "", None, 2, -1, 0.0, 1.0, [], {}])
def test_squad_other_flags_are_errors(tmp_path, flag):
    path = write_squad(tmp_path / "s.json", [qa(), qa("q2", is_impossible=flag)])
    with pytest.raises(DataError, match=r"s\.json: data\[0\]\.paragraphs\[0\]\.qas\[1\]: field 'is_impossible': expected true/false"):
        load_examples(path)


@pytest.mark.parametrize("flag", ["yes", "no", "", None, 2, 0.0])
def test_flat_other_flags_are_errors(tmp_path, flag):
    path = write_jsonl(tmp_path / "f.jsonl", [record(is_impossible=False), record("r2", is_impossible=flag)])
    with pytest.raises(DataError, match=r"f\.jsonl row 2: field 'is_impossible': expected true/false"):
        load_examples(path)


def test_flat_flags_read_as_written(tmp_path):
    flags = [False, "false", "0", 0, True, "True", "1", 1]
    records = [record(f"r{i}", is_impossible=flag) for i, flag in enumerate(flags)]
    ds = load_examples(write_jsonl(tmp_path / "f.jsonl", records))
    assert [ex.is_impossible for ex in ds] == [False] * 4 + [True] * 4


# --------------------------------------------------------------------------- 3. ids and titles


@pytest.mark.parametrize("qid", [["q1"], {"id": "q1"}, 1.5, True])
def test_squad_id_must_be_text_or_an_integer(tmp_path, qid):
    path = write_squad(tmp_path / "s.json", [qa(qid)])
    with pytest.raises(DataError, match=r"s\.json: data\[0\]\.paragraphs\[0\]\.qas\[0\]: field 'id': expected text \(or an integer\)"):
        load_examples(path)


def test_null_id_is_missing(tmp_path):
    with pytest.raises(DataError, match=r"s\.json: data\[0\]\.paragraphs\[0\]\.qas\[0\]: missing id"):
        load_examples(write_squad(tmp_path / "s.json", [qa(None)]))
    with pytest.raises(DataError, match=r"f\.jsonl row 1: missing id"):
        load_examples(write_jsonl(tmp_path / "f.jsonl", [record(None)]))


def test_integer_ids_are_text(tmp_path):
    assert [ex.id for ex in load_examples(write_squad(tmp_path / "s.json", [qa(7), qa(8)]))] == ["7", "8"]
    assert [ex.id for ex in load_examples(write_jsonl(tmp_path / "f.jsonl", [record(10), record("r2")]))] == ["10", "r2"]


@pytest.mark.parametrize("title", [["Super Bowl"], {"name": "Super Bowl"}, 2.5, False])
def test_squad_title_must_be_text_or_an_integer(tmp_path, title):
    with pytest.raises(DataError, match=r"s\.json: data\[0\]: field 'title': expected text \(or an integer\)"):
        load_examples(write_squad(tmp_path / "s.json", [qa()], title=title))


def test_flat_id_and_title_of_the_wrong_type(tmp_path):
    with pytest.raises(DataError, match=r"f\.jsonl row 2: field 'id': expected text \(or an integer\), got dict"):
        load_examples(write_jsonl(tmp_path / "f.jsonl", [record(), record({"n": 2})]))
    with pytest.raises(DataError, match=r"t\.jsonl row 1: field 'title': expected text \(or an integer\), got list"):
        load_examples(write_jsonl(tmp_path / "t.jsonl", [record(title=["x"])]))


def test_null_title_is_the_empty_title(tmp_path):
    assert load_examples(write_squad(tmp_path / "s.json", [qa()], title=None)).examples[0].title == ""
    assert load_examples(write_jsonl(tmp_path / "f.jsonl", [record(title=None)])).examples[0].title == ""


# --------------------------------------------------------------------------- 4. files Python's readers refuse


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [("deep.json", f"[{json.dumps(record())}, {DEEP}]", r"deep\.json"), ("deep.jsonl", f"{json.dumps(record())}\n{DEEP}\n", r"deep\.jsonl line 2")],
    ids=["json", "jsonl"],
)
def test_deeply_nested_json(tmp_path, name, text, where):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=where + r": JSON nested too deeply"):
        load_examples(path)


@pytest.mark.parametrize(("name", "where"), [("big.json", r"big\.json"), ("big.jsonl", r"big\.jsonl line 1")])
def test_integer_with_thousands_of_digits_in_json(tmp_path, name, where):
    path = tmp_path / name
    text = json.dumps(record(answer_start=0)).replace('"answer_start": 0', f'"answer_start": {LONG_INT}')
    path.write_text(text if name.endswith("l") else f"[{text}]", encoding="utf-8")
    with pytest.raises(DataError, match=where + r": a number too long to read"):
        load_examples(path)


@pytest.mark.parametrize("start", [LONG_INT, f"({LONG_INT}, 18)", f"[{LONG_INT}]"])
def test_integer_with_thousands_of_digits_in_a_csv_cell(tmp_path, start):
    path = write_csv(tmp_path / "c.csv", ["id", "question", "context", "answer", "answer_start"], [["c1", "Who?", CTX, "Denver", start]])
    with pytest.raises(DataError, match=r"c\.csv row 1: field 'answer_start': a number too long to read"):
        load_examples(path)


def test_deeply_nested_csv_cell(tmp_path):
    path = write_csv(tmp_path / "c.csv", ["id", "question", "context", "answers"], [["c1", "Who?", CTX, "[" * 100_000]])
    with pytest.raises(DataError, match=r"c\.csv row 1: field 'answers': JSON nested too deeply"):
        load_examples(path)


@pytest.mark.parametrize("name", ["latin.json", "latin.jsonl", "latin.csv", "latin.tsv"])
def test_not_utf8(tmp_path, name):
    path = tmp_path / name
    path.write_bytes("id,question,context\nc1,Qu\xe9?,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=re.escape(str(path)) + r": not UTF-8 text \(invalid continuation byte at byte \d+\)"):
        load_examples(path)


@pytest.mark.parametrize("name", ["folder.json", "folder"])
def test_directory(tmp_path, name):
    (tmp_path / name).mkdir()
    with pytest.raises(DataError, match=re.escape(str(tmp_path / name)) + r": is a folder"):
        load_examples(tmp_path / name)


def test_data_check_on_deep_json_is_one_error_line(tmp_path, tok_dir):
    path = tmp_path / "deep.json"
    path.write_text(DEEP, encoding="utf-8")
    assert_one_error_line(runner.invoke(app, ["data", "check", str(path), "--model", tok_dir]), r"deep\.json: JSON nested too deeply")


# --------------------------------------------------------------------------- 5. prediction input keeps questions with broken gold answers

BROKEN_GOLD_QAS = [
    qa("good"),
    qa("text-number", answers=[{"text": 34, "answer_start": 4}]),
    qa("start-word", answers=[{"text": "Denver", "answer_start": "soon"}]),
    qa("not-there", answers=[{"text": "Kansas City", "answer_start": 4}]),
    qa("out-of-range", answers=[{"text": "Denver", "answer_start": 9000}]),
    qa("flag", is_impossible="perhaps"),
]


def test_squad_prediction_input_keeps_questions_with_broken_gold(tmp_path):
    path = write_squad(tmp_path / "s.json", BROKEN_GOLD_QAS)
    with pytest.raises(DataError, match=r"qas\[1\]: field 'answers\[0\]\.text'"):
        load_examples(path)
    ds = load_examples(path, require_answers=False, on_mismatch="skip")
    assert [ex.id for ex in ds] == [q["id"] for q in BROKEN_GOLD_QAS]
    assert ds.examples[0].answers == (Answer("Denver Broncos", 4),)
    assert all(ex.answers == () for ex in ds.examples[1:])
    assert ds.examples_skipped == 0 and not ds.version_2
    ignored = [str(p) for p in ds.problems if "gold answers ignored" in p.message]
    assert [re.search(r"id ([\w-]+): gold answers ignored", p)[1] for p in ignored] == ["text-number", "start-word", "flag"]
    assert "field 'answers[0].text': expected answer text (a string), got int 34" in ignored[0]


def test_flat_prediction_input_keeps_questions_with_broken_gold(tmp_path):
    records = [
        record("good"),
        record("text-object", answer={"a": 1}),
        record("start-word", answer_start="soon"),
        record("not-there", answer="Kansas City"),
        record("long-start", answer_start=LONG_INT),
    ]
    path = write_jsonl(tmp_path / "f.jsonl", records)
    with pytest.raises(DataError, match=r"f\.jsonl row 2: field 'answer'"):
        load_examples(path)
    ds = load_examples(path, require_answers=False)
    assert [ex.id for ex in ds] == [r["id"] for r in records]
    assert ds.examples[0].answers == (Answer("Denver Broncos", 4),)
    assert all(ex.answers == () for ex in ds.examples[1:])


def test_prediction_input_csv_with_broken_offsets(tmp_path):
    path = write_csv(
        tmp_path / "c.csv",
        ["id", "question", "context", "answer", "answer_start", "is_impossible"],
        [["c1", "Who?", CTX, "Denver", "4", "no"], ["c2", "Who?", CTX, "Denver", f"({LONG_INT}, 10)", "false"]],
    )
    ds = load_examples(path, require_answers=False)
    assert [ex.id for ex in ds] == ["c1", "c2"] and all(ex.answers == () for ex in ds)


# --------------------------------------------------------------------------- 6. non-finite no-answer probabilities


def strict_json(text: str) -> Any:
    """``json.loads`` that refuses NaN and Infinity, as JSON itself does."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"invalid JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


INF = math.inf
# Sorted by na-prob: q1 (-inf), q3 (0.9), q2 (inf), q4 (inf, after q2 in file order). Best exact is
# reached at q1 (threshold -inf), best F1 at q2 (threshold +inf): both must come out finite.
NA_INF = {"q1": -INF, "q2": INF, "q4": INF, "q3": 0.9}


@pytest.mark.parametrize("thresh", [1.0, 0.5, INF, -INF])
def test_infinite_na_probs_score_as_the_official_script(thresh):
    report = score_predictions(examples_of(HAND_V2), HAND_V2_PREDS, NA_INF, na_prob_thresh=thresh)
    want = ref_v2_evaluate(HAND_V2, HAND_V2_PREDS, NA_INF, na_prob_thresh=thresh)
    assert (want["best_exact_thresh"], want["best_f1_thresh"]) == (-INF, INF)  # what the official script would print
    got = dict(report.metrics)
    assert (got.pop("best_exact_thresh"), got.pop("best_f1_thresh")) == (-sys.float_info.max, sys.float_info.max)
    assert_metrics_match(got, {k: v for k, v in want.items() if not k.endswith("_thresh")})
    json.dumps(report.metrics, allow_nan=False)  # valid JSON


def test_nan_na_prob_is_refused_naming_the_id():
    with pytest.raises(DataError, match=r"no-answer probability of id 'q4' is NaN"):
        score_predictions(examples_of(HAND_V2), HAND_V2_PREDS, {"q1": 0.1, "q2": 0.2, "q4": math.nan, "q3": 0.9})


def test_nan_threshold_is_refused():
    with pytest.raises(ConfigError, match=r"na_prob_thresh.*is NaN"):
        score_predictions(examples_of(HAND_V2), HAND_V2_PREDS, {"q1": 0.1}, na_prob_thresh=math.nan)


def write_score_inputs(tmp_path: Path, na_probs: dict[str, float]) -> list[str]:
    gold = tmp_path / "gold.json"
    gold.write_text(json.dumps({"version": "v2.0", "data": HAND_V2}), encoding="utf-8")
    (tmp_path / "preds.json").write_text(json.dumps(HAND_V2_PREDS), encoding="utf-8")
    (tmp_path / "na.json").write_text(json.dumps(na_probs), encoding="utf-8")  # json.dumps writes NaN / Infinity
    return ["score", "--data", str(gold), "--predictions", str(tmp_path / "preds.json"), "--na-probs", str(tmp_path / "na.json")]


def test_score_cli_with_infinite_na_probs_prints_valid_json(tmp_path):
    result = runner.invoke(app, write_score_inputs(tmp_path, NA_INF))
    assert result.exit_code == 0, result.output
    metrics = strict_json(result.stdout)
    assert metrics["best_f1_thresh"] == sys.float_info.max and metrics["best_exact_thresh"] == -sys.float_info.max


def test_score_cli_nan_na_prob_and_threshold(tmp_path):
    args = write_score_inputs(tmp_path, {"q1": 0.1, "q2": math.nan, "q4": 0.3, "q3": 0.9})
    assert_one_error_line(runner.invoke(app, args), r"no-answer probability of id 'q2' is NaN")
    args = write_score_inputs(tmp_path, {"q1": 0.1})
    assert_one_error_line(runner.invoke(app, [*args, "--na-prob-thresh", "nan"]), r"--na-prob-thresh\) is NaN")
