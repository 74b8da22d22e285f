"""`spanqa data check` and `spanqa data convert` through typer's CliRunner."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from conftest import SUBJQA, XQUAD, needs_shared
from typer.testing import CliRunner

from spanqa.interfaces.cli import app
from spanqa.stages.data import Answer, load_examples

SUBJQA_TRAIN = SUBJQA / "electronics" / "train.csv"
SUBJQA_COLUMNS = "context=review,answer_text=human_ans_spans,answer_start=human_ans_indices"

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("fresh_cli_logging")


def reviews_csv(path: Path) -> Path:
    """SubjQA-like rows: one good answer, one mis-spaced answer, one no-answer, one unrepairable."""
    rows = [
        ["a", "How is the bass?", "Great headphones, the bass is deep. ANSWERNOTFOUND", "the bass is deep", "(18, 34)"],
        ["b", "How is the screen?", "The screen is awesome! I use it daily. ANSWERNOTFOUND", "awesome !", "(14, 23)"],
        ["c", "How is the battery?", "Great headphones, the bass is deep. ANSWERNOTFOUND", "ANSWERNOTFOUND", "(36, 50)"],
        ["d", "How is the case?", "The case feels cheap. ANSWERNOTFOUND", "terrible hinge", "(0, 14)"],
    ]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["q_review_id", "question", "review", "human_ans_spans", "human_ans_indices"])
        writer.writerows(rows)
    return path


def mapping_args(extra: str = ",id=q_review_id") -> list[str]:
    return ["--columns", SUBJQA_COLUMNS + extra, "--no-answer-marker", "ANSWERNOTFOUND"]


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def assert_one_error(result, pattern: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = error_lines(result)
    assert len(lines) == 1, result.output
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


# --------------------------------------------------------------------------- data check


def test_check_reports_share_and_disagreeing_rows(tmp_path, tok_dir):
    path = reviews_csv(tmp_path / "reviews.csv")
    result = runner.invoke(app, ["data", "check", str(path), *mapping_args(), "--model", tok_dir, "--max-length", "64"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "examples: 3 (SQuAD v2 style)" in out
    assert "answerable: 2, unanswerable: 1 (33.3% unanswerable)" in out
    assert "question tokens: min" in out and "context tokens: min" in out
    assert "contexts longer than one 64-token window: 0" in out
    assert "disagreeing: 2 (policy 'repair': 1 repaired, 1 examples skipped)" in out
    assert f"{path} row 2: id b:" in out and f"{path} row 4: id d:" in out
    # the warning about disagreeing answers goes to stderr, not into the report
    assert "2 of 3 answers disagree" in result.stderr


def test_check_json(tmp_path, tok_dir):
    path = reviews_csv(tmp_path / "reviews.csv")
    result = runner.invoke(app, ["data", "check", str(path), *mapping_args(), "--model", tok_dir, "--json", "--on-mismatch", "skip"])
    assert result.exit_code == 0, result.output
    (summary,) = json.loads(result.stdout)
    assert summary["source"] == str(path)
    assert summary["examples"] == 2 and summary["unanswerable"] == 1
    assert summary["unanswerable_share"] == pytest.approx(0.5)
    assert summary["answers_mismatched"] == 2 and summary["examples_skipped"] == 2 and summary["policy"] == "skip"
    assert len(summary["problems"]) == 2 and summary["problems"][0].startswith(f"{path} row 2")
    assert summary["question_tokens"]["max"] >= summary["question_tokens"]["min"] > 0


def test_check_several_files_and_max_problems(tmp_path, tok_dir):
    first = reviews_csv(tmp_path / "one.csv")
    second = reviews_csv(tmp_path / "two.csv")
    result = runner.invoke(app, ["data", "check", str(first), str(second), *mapping_args(), "--model", tok_dir, "--max-problems", "1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("% unanswerable") == 2
    assert f"{first} row 2" in result.stdout and f"{first} row 4" not in result.stdout
    assert "... and 1 more (--max-problems to see them)" in result.stdout


def test_check_lists_answers_that_start_or_end_inside_a_word(tmp_path, tok_dir):
    squad = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [
        {"context": "The squid grabs prey with its neTentakel and covers 2,700,000 sq mi. 东京大学很大。",
         "qas": [
             {"id": "typo", "question": "With what?", "answers": [{"text": "Tentakel", "answer_start": 32}], "is_impossible": False},
             {"id": "cut", "question": "How much?", "answers": [{"text": "2,70", "answer_start": 52}], "is_impossible": False},
             {"id": "fine", "question": "What?", "answers": [{"text": "prey", "answer_start": 16}], "is_impossible": False},
             {"id": "cjk", "question": "Which?", "answers": [{"text": "大学", "answer_start": 71}], "is_impossible": False},
         ]}]}]}
    path = tmp_path / "typos.json"
    path.write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
    result = runner.invoke(app, ["data", "check", str(path), "--model", tok_dir])
    assert result.exit_code == 0, result.output
    assert "answers that start or end inside a word (can match exactly only if the tokenizer splits there): 2" in result.stdout
    assert "id typo: answer 'Tentakel' in 'ne[Tentakel]'" in result.stdout
    assert "id cut: answer '2,70' in '[2,70]0,000'" in result.stdout
    assert "id fine" not in result.stdout and "id cjk" not in result.stdout  # CJK has no spaces: any character may start a word
    (summary,) = json.loads(runner.invoke(app, ["data", "check", str(path), "--model", tok_dir, "--json"]).stdout)
    assert [line.split(":")[0] for line in summary["answers_inside_words"]] == ["id typo", "id cut"]


@needs_shared(SUBJQA)
def test_check_subjqa(tok_dir):
    result = runner.invoke(app, ["data", "check", str(SUBJQA_TRAIN), *mapping_args(""), "--model", tok_dir])
    assert result.exit_code == 0, result.output
    share = re.search(r"\((\d+\.\d)% unanswerable\)", result.stdout)
    assert share and 40 < float(share.group(1)) < 80
    assert re.search(rf"{re.escape(str(SUBJQA_TRAIN))} row \d+: ", result.stdout)
    disagreeing = re.search(r"disagreeing: (\d+)", result.stdout)
    assert disagreeing and int(disagreeing.group(1)) > 0


@needs_shared(SUBJQA)
def test_check_subjqa_json(tok_dir):
    result = runner.invoke(app, ["data", "check", str(SUBJQA_TRAIN), *mapping_args(""), "--model", tok_dir, "--json"])
    assert result.exit_code == 0, result.output
    (summary,) = json.loads(result.stdout)
    assert 0.4 < summary["unanswerable_share"] < 0.8
    assert summary["answers_mismatched"] > 0
    assert summary["version_2"] is True


@needs_shared(SUBJQA)
def test_check_subjqa_wrong_column(tok_dir):
    result = runner.invoke(app, ["data", "check", str(SUBJQA_TRAIN), "--columns", "context=reviw", "--model", tok_dir])
    assert_one_error(result, r"column 'reviw' \(for context\) not found \(did you mean 'review'\?\)")


def test_check_wrong_column_is_one_error_line(tmp_path, tok_dir):
    path = reviews_csv(tmp_path / "reviews.csv")
    result = runner.invoke(app, ["data", "check", str(path), "--columns", "context=reviw", "--model", tok_dir])
    line = assert_one_error(result, r"reviews\.csv: column 'reviw' \(for context\) not found \(did you mean 'review'\?\)")
    assert result.stdout == ""
    assert result.stderr.strip() == line


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--columns", "contxt=review"], r"unknown column role 'contxt' \(did you mean 'context'\?\)"),
        (["--columns", "review"], r"should look like ROLE=COLUMN"),
        ([], r"no context column found.*\(is it 'review'\? map it with context=review\)"),
        (["--columns", SUBJQA_COLUMNS, "--on-mismatch", "fix"], r"unknown mismatch policy 'fix'"),
    ],
)
def test_check_user_errors(tmp_path, tok_dir, args, pattern):
    path = reviews_csv(tmp_path / "reviews.csv")
    result = runner.invoke(app, ["data", "check", str(path), *args, "--model", tok_dir])
    assert_one_error(result, pattern)


def test_check_missing_file(tmp_path, tok_dir):
    result = runner.invoke(app, ["data", "check", str(tmp_path / "nope.csv"), "--model", tok_dir])
    assert_one_error(result, r"nope\.csv: file not found")


def test_check_malformed_json(tmp_path, tok_dir):
    path = tmp_path / "bad.json"
    path.write_text('{"data": [\n  oops\n]}', encoding="utf-8")
    result = runner.invoke(app, ["data", "check", str(path), "--model", tok_dir])
    assert_one_error(result, r"bad\.json: not valid JSON \(line 2")


# --------------------------------------------------------------------------- data convert


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_convert_csv(tmp_path, suffix):
    source = reviews_csv(tmp_path / "reviews.csv")
    target = tmp_path / f"converted{suffix}"
    result = runner.invoke(app, ["data", "convert", str(source), str(target), *mapping_args()])
    assert result.exit_code == 0, result.output
    assert f"wrote 3 examples to {target}" in result.stdout
    original = load_examples(source, columns={**_mapping_dict(), "id": "q_review_id"})
    converted = load_examples(target)
    assert sorted(converted.examples, key=lambda ex: ex.id) == sorted(original.examples, key=lambda ex: ex.id)
    assert converted.version_2 and converted.answers_mismatched == 0
    by_id = {ex.id: ex for ex in converted}
    assert by_id["b"].answers == (Answer("awesome!", 14),)
    assert by_id["c"].is_impossible
    assert "d" not in by_id
    assert not any(ex.context.endswith("ANSWERNOTFOUND") for ex in converted)


def test_convert_jsonl_keeps_order(tmp_path):
    source = reviews_csv(tmp_path / "reviews.csv")
    target = tmp_path / "converted.jsonl"
    assert runner.invoke(app, ["data", "convert", str(source), str(target), *mapping_args()]).exit_code == 0
    assert [json.loads(line)["id"] for line in target.read_text(encoding="utf-8").splitlines()] == ["a", "b", "c"]


def test_convert_trust_policy(tmp_path):
    source = reviews_csv(tmp_path / "reviews.csv")
    target = tmp_path / "trusted.jsonl"
    result = runner.invoke(app, ["data", "convert", str(source), str(target), *mapping_args(), "--on-mismatch", "trust"])
    assert result.exit_code == 0, result.output
    by_id = {ex.id: ex for ex in load_examples(target)}
    assert by_id["b"].answers == (Answer("awesome! ", 14),)  # the given (start, end) span, text from the context
    assert by_id["d"].answers == (Answer("The case feels", 0),)


def test_convert_to_unsupported_suffix(tmp_path):
    source = reviews_csv(tmp_path / "reviews.csv")
    result = runner.invoke(app, ["data", "convert", str(source), str(tmp_path / "out.csv"), *mapping_args()])
    assert_one_error(result, r"out\.csv: can only write \.json \(SQuAD\) or \.jsonl")
    assert not (tmp_path / "out.csv").exists()


def _mapping_dict() -> dict[str, str]:
    return {
        "context": "review",
        "answer_text": "human_ans_spans",
        "answer_start": "human_ans_indices",
        "no_answer_marker": "ANSWERNOTFOUND",
    }


@needs_shared(XQUAD)
def test_data_split_by_article_keeps_paragraphs_apart(tmp_path):
    from spanqa.stages.data import load_examples

    head, tail = tmp_path / "train.json", tmp_path / "eval.json"
    result = runner.invoke(app, ["data", "split", str(XQUAD / "xquad.en.json"), str(head), str(tail), "--articles", "36"])
    assert result.exit_code == 0, result.output
    first, rest = load_examples(head), load_examples(tail)
    assert (len(first), len(rest)) == (925, 265)
    assert not {ex.context for ex in first} & {ex.context for ex in rest}
    result = runner.invoke(app, ["data", "split", str(XQUAD / "xquad.en.json"), str(head), str(tail), "--articles", "99", "--overwrite"])
    assert result.exit_code == 1 and "leaves one part empty" in result.output
