"""Stage 1 (data): every layout becomes validated QAExamples; problems are reported, errors are one clear DataError."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import SUBJQA, XQUAD, needs_shared, sample_path
from samples import write_csv

from spanqa.core.errors import ConfigError, DataError
from spanqa.stages.data import (
    Answer,
    ColumnMapping,
    QAExample,
    load_examples,
    parse_columns,
    save_examples,
    split_by_title,
    to_squad,
)
from spanqa.stages.datacheck import summarize
from spanqa.stages.features import WindowConfig, build_features

SUBJQA_MAPPING = {
    "context": "review",
    "answer_text": "human_ans_spans",
    "answer_start": "human_ans_indices",
    "no_answer_marker": "ANSWERNOTFOUND",
}

# Made-up text used across the tests.
CTX_BATTERY = "The battery lasts two days. Charging takes an hour."
CTX_SCREEN = "The screen is bright and sharp, even outdoors."
CTX_SOUND = "Sound is clear at low volume but it distorts when loud."


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def squad_v1() -> dict:
    return {
        "version": "1.1",
        "data": [
            {
                "title": "Battery",
                "paragraphs": [
                    {
                        "context": CTX_BATTERY,
                        "qas": [
                            {
                                "id": "b1",
                                "question": "How long does the battery last?",
                                "answers": [
                                    {"text": "two days", "answer_start": 18},
                                    {"text": "two days", "answer_start": 18},
                                    {"text": "lasts two days", "answer_start": 12},
                                ],
                            },
                            {
                                "id": "b2",
                                "question": "How long does charging take?",
                                "answers": [{"text": "an hour", "answer_start": 43}],
                            },
                        ],
                    }
                ],
            },
            {
                "title": "Screen",
                "paragraphs": [
                    {
                        "context": CTX_SCREEN,
                        "qas": [{"id": "s1", "question": "How is the screen?", "answers": [{"text": "bright and sharp", "answer_start": 14}]}],
                    }
                ],
            },
        ],
    }


def squad_v2() -> dict:
    data = squad_v1()
    data["version"] = "v2.0"
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                qa["is_impossible"] = False
    data["data"][1]["paragraphs"][0]["qas"].append(
        {
            "id": "s2",
            "question": "What is the screen resolution?",
            "answers": [],
            "plausible_answers": [{"text": "bright", "answer_start": 14}],
            "is_impossible": True,
        }
    )
    return data


def flat_records() -> list[dict]:
    return [
        {"id": "r1", "title": "Battery", "question": "How long does the battery last?", "context": CTX_BATTERY,
         "answers": {"text": ["two days", "lasts two days"], "answer_start": [18, 12]}},
        {"id": "r2", "title": "Screen", "question": "How is the screen?", "context": CTX_SCREEN,
         "answers": {"text": ["bright and sharp"], "answer_start": [14]}},
        {"id": "r3", "title": "Screen", "question": "What is the resolution?", "context": CTX_SCREEN,
         "answers": {"text": [], "answer_start": []}},
    ]


def check_flat_examples(dataset) -> None:
    assert [ex.id for ex in dataset] == ["r1", "r2", "r3"]
    r1, r2, r3 = dataset.examples
    assert r1.question == "How long does the battery last?"
    assert r1.context == CTX_BATTERY
    assert r1.answers == (Answer("two days", 18), Answer("lasts two days", 12))
    assert r1.title == "Battery"
    assert r2.answers == (Answer("bright and sharp", 14),)
    assert r3.is_impossible and r3.answers == ()
    assert dataset.version_2 and dataset.num_impossible == 1
    assert dataset.answers_checked == 3 and dataset.answers_mismatched == 0 and not dataset.problems


def test_offsets_of_made_up_text_are_right():
    assert CTX_BATTERY[18:26] == "two days" and CTX_BATTERY[12:26] == "lasts two days" and CTX_BATTERY[43:50] == "an hour"
    assert CTX_SCREEN[14:30] == "bright and sharp"


# --------------------------------------------------------------------------- layouts


def test_squad_v11(tmp_path):
    ds = load_examples(write_json(tmp_path / "v1.json", squad_v1()))
    assert [ex.id for ex in ds] == ["b1", "b2", "s1"]
    b1 = ds.examples[0]
    assert b1.question == "How long does the battery last?"
    assert b1.context == CTX_BATTERY and b1.title == "Battery"
    # multiple gold answers are kept, duplicates included (the official scorer takes the max over them)
    assert b1.answers == (Answer("two days", 18), Answer("two days", 18), Answer("lasts two days", 12))
    assert ds.examples[2].answers[0].end == 30
    assert not ds.version_2 and ds.num_impossible == 0
    assert ds.answers_checked == 5 and ds.answers_mismatched == 0
    assert ds.source == str(tmp_path / "v1.json") and len(ds) == 3


def test_squad_v20(tmp_path):
    ds = load_examples(write_json(tmp_path / "v2.json", squad_v2()))
    assert [ex.id for ex in ds] == ["b1", "b2", "s1", "s2"]
    s2 = ds.examples[3]
    assert s2.is_impossible and s2.answers == ()  # plausible_answers are not gold answers
    assert ds.version_2 and ds.num_impossible == 1


def test_squad_v20_version_detected_without_unanswerable_questions(tmp_path):
    data = squad_v1()
    data["version"] = "v2.0"
    ds = load_examples(write_json(tmp_path / "v2.json", data))
    assert ds.num_impossible == 0
    assert ds.version_2


def test_flat_json_list_and_data_wrapper(tmp_path):
    check_flat_examples(load_examples(write_json(tmp_path / "list.json", flat_records())))
    check_flat_examples(load_examples(write_json(tmp_path / "wrapped.json", {"data": flat_records()})))


def test_jsonl_hf_answers(tmp_path):
    check_flat_examples(load_examples(write_jsonl(tmp_path / "flat.jsonl", flat_records())))


def test_jsonl_answers_as_list_of_objects(tmp_path):
    records = flat_records()
    for record in records:
        answers = record["answers"]
        record["answers"] = [{"text": t, "answer_start": s} for t, s in zip(answers["text"], answers["answer_start"])]
    check_flat_examples(load_examples(write_jsonl(tmp_path / "flat.jsonl", records)))


def test_csv_with_hf_answers_as_json_strings(tmp_path):
    rows = [[r["id"], r["title"], r["question"], r["context"], json.dumps(r["answers"])] for r in flat_records()]
    path = write_csv(tmp_path / "flat.csv", ["id", "title", "question", "context", "answers"], rows)
    check_flat_examples(load_examples(path))


def test_csv_with_answers_as_python_repr(tmp_path):
    rows = [[r["id"], r["title"], r["question"], r["context"], repr(r["answers"])] for r in flat_records()]
    path = write_csv(tmp_path / "repr.csv", ["id", "title", "question", "context", "answers"], rows)
    check_flat_examples(load_examples(path))


def test_tsv(tmp_path):
    rows = [[r["id"], r["title"], r["question"], r["context"], json.dumps(r["answers"])] for r in flat_records()]
    path = write_csv(tmp_path / "flat.tsv", ["id", "title", "question", "context", "answers"], rows, delimiter="\t")
    check_flat_examples(load_examples(path))


def test_parquet_with_answers_struct(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    path = tmp_path / "flat.parquet"
    pd.DataFrame(flat_records()).to_parquet(path, index=False)
    check_flat_examples(load_examples(path))


def test_parquet_with_column_mapping(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame(
        {
            "qid": ["p1", "p2"],
            "ask": ["How long does the battery last?", "What is the resolution?"],
            "passage_text": [CTX_BATTERY, CTX_SCREEN],
            "span": ["two days", ""],
            "offset": [18, -1],
            "no_answer": [False, True],
        }
    )
    path = tmp_path / "mapped.pq"
    frame.to_parquet(path, index=False)
    mapping = {"id": "qid", "question": "ask", "context": "passage_text", "answer_text": "span", "answer_start": "offset", "is_impossible": "no_answer"}
    ds = load_examples(path, columns=mapping)
    assert [ex.id for ex in ds] == ["p1", "p2"]
    assert ds.examples[0].answers == (Answer("two days", 18),)
    assert ds.examples[1].is_impossible
    assert ds.version_2


def test_csv_with_column_mapping_and_span_strings(tmp_path):
    path = write_csv(
        tmp_path / "mapped.csv",
        ["key", "query_text", "body", "span", "span_pos"],
        [
            ["m1", "How long does the battery last?", CTX_BATTERY, "two days", "(18, 26)"],
            ["m2", "How is the screen?", CTX_SCREEN, "bright and sharp", "[14, 30]"],
            ["m3", "How is the sound?", CTX_SOUND, "clear", "9"],
        ],
    )
    mapping = ColumnMapping(id="key", question="query_text", context="body", answer_text="span", answer_start="span_pos")
    ds = load_examples(path, columns=mapping)
    assert [ex.id for ex in ds] == ["m1", "m2", "m3"]
    assert [ex.answers for ex in ds] == [(Answer("two days", 18),), (Answer("bright and sharp", 14),), (Answer("clear", 9),)]
    assert not ds.version_2 and ds.answers_mismatched == 0


def test_answer_end_column_and_missing_starts(tmp_path):
    records = [
        {"id": "e1", "question": "Charging?", "context": CTX_BATTERY, "answer": "an hour", "answer_start": 43, "answer_end": 50},
    ]
    ds = load_examples(write_jsonl(tmp_path / "ends.jsonl", records))
    assert ds.examples[0].answers == (Answer("an hour", 43),)
    # without any start column the answer text is located in the context
    located = load_examples(write_jsonl(tmp_path / "nostart.jsonl", [{"id": "n1", "question": "Charging?", "context": CTX_BATTERY, "answer_text": "an hour"}]))
    assert located.examples[0].answers == (Answer("an hour", 43),)


def test_uqa_style_jsonl(tmp_path):
    records = [
        {"id": "u1", "question": "How long does the battery last?", "context": CTX_BATTERY, "answer": "two days", "answer_start": 18, "is_impossible": False},
        {"id": "u2", "question": "What is the price?", "context": CTX_BATTERY, "answer": "", "answer_start": -1, "is_impossible": True},
    ]
    ds = load_examples(write_jsonl(tmp_path / "uqa.jsonl", records))
    assert [ex.id for ex in ds] == ["u1", "u2"]
    assert ds.examples[0].answers == (Answer("two days", 18),) and not ds.examples[0].is_impossible
    assert ds.examples[1].is_impossible and ds.examples[1].answers == ()
    assert ds.version_2 and ds.answers_checked == 1


def test_uqa_style_csv(tmp_path):
    path = write_csv(
        tmp_path / "uqa.csv",
        ["id", "question", "context", "answer", "answer_start", "is_impossible"],
        [
            ["u1", "How long does the battery last?", CTX_BATTERY, "two days", "18", "False"],
            ["u2", "What is the price?", CTX_BATTERY, "", "-1", "True"],
            ["u3", "How is the screen?", CTX_SCREEN, "bright", "14", "false"],
        ],
    )
    ds = load_examples(path)
    assert [ex.id for ex in ds] == ["u1", "u2", "u3"]
    assert [ex.is_impossible for ex in ds] == [False, True, False]
    assert ds.examples[2].answers == (Answer("bright", 14),)
    assert ds.version_2


def test_ids_made_up_when_missing(tmp_path):
    records = [{k: v for k, v in r.items() if k != "id"} for r in flat_records()]
    ds = load_examples(write_jsonl(tmp_path / "noid.jsonl", records))
    assert [ex.id for ex in ds] == ["noid-1", "noid-2", "noid-3"]


def test_question_whitespace_is_stripped_but_context_is_not(tmp_path):
    records = [{"id": "w1", "question": "  How long?\n", "context": " " + CTX_BATTERY, "answer": "two days", "answer_start": 19}]
    ex = load_examples(write_jsonl(tmp_path / "ws.jsonl", records)).examples[0]
    assert ex.question == "How long?"
    assert ex.context == " " + CTX_BATTERY and ex.answers == (Answer("two days", 19),)


def test_subjqa_style_csv_with_no_answer_marker(tmp_path):
    review_1 = "Great headphones, the bass is deep. ANSWERNOTFOUND"
    review_2 = "The case feels cheap and it scratches easily. ANSWERNOTFOUND"
    path = write_csv(
        tmp_path / "subj.csv",
        ["q_review_id", "question", "review", "human_ans_spans", "human_ans_indices"],
        [
            ["a", "How is the bass?", review_1, "the bass is deep", "(18, 34)"],
            ["b", "How is the battery?", review_1, "ANSWERNOTFOUND", "(36, 50)"],
            ["c", "How is the case?", review_2, "feels cheap", "(9, 20)"],
        ],
    )
    ds = load_examples(path, columns={**SUBJQA_MAPPING, "id": "q_review_id"})
    assert [ex.id for ex in ds] == ["a", "b", "c"]
    assert [ex.context for ex in ds] == [
        "Great headphones, the bass is deep.",
        "Great headphones, the bass is deep.",
        "The case feels cheap and it scratches easily.",
    ]
    assert ds.examples[0].answers == (Answer("the bass is deep", 18),)
    assert ds.examples[1].is_impossible
    assert ds.examples[2].answers == (Answer("feels cheap", 9),)
    assert ds.version_2 and ds.answers_mismatched == 0
    # without the marker the sentinel is an ordinary answer and stays in the context
    plain = load_examples(path, columns={k: v for k, v in SUBJQA_MAPPING.items() if k != "no_answer_marker"})
    assert plain.examples[0].context == review_1
    assert plain.examples[1].answers == (Answer("ANSWERNOTFOUND", 36),)


def test_parse_columns_and_column_mapping():
    assert parse_columns(None) == {} and parse_columns("") == {}
    spec = parse_columns(" context=review , answer_text=human_ans_spans,answer_start=human_ans_indices,")
    assert spec == {"context": "review", "answer_text": "human_ans_spans", "answer_start": "human_ans_indices"}
    mapping = ColumnMapping.from_mapping(spec)
    assert mapping.context == "review" and mapping.question is None
    assert ColumnMapping.from_mapping(None) == ColumnMapping()
    with pytest.raises(DataError, match=r"'context' should look like ROLE=COLUMN"):
        parse_columns("context")
    with pytest.raises(DataError, match=r"unknown column role 'answer_txt' \(did you mean 'answer_text'\?\)"):
        parse_columns("context=review,answer_txt=x")


# --------------------------------------------------------------------------- mismatch policies


def write_mismatch_file(tmp_path: Path) -> tuple[Path, list[str]]:
    contexts = [
        "The battery lasts two days.",
        "This phone is awesome! Truly the best.",
        "Sadly the screen is bright and sharp only indoors.",
        "Shipping was quick and painless.",
    ]
    records = [
        {"id": "good", "question": "Battery?", "context": contexts[0], "answer": "two days", "answer_start": 18},
        # tokenised spacing: 'awesome !' where the context says 'awesome!'
        {"id": "spaced", "question": "Opinion?", "context": contexts[1], "answer": "awesome !", "answer_start": 14},
        # offset shifted by six characters
        {"id": "shifted", "question": "Screen?", "context": contexts[2], "answer": "bright and sharp", "answer_start": 14},
        # the text does not occur at all
        {"id": "broken", "question": "Sound?", "context": contexts[3], "answer": "terrible sound", "answer_start": 0},
    ]
    assert contexts[2].index("bright and sharp") == 20
    return write_jsonl(tmp_path / "mismatch.jsonl", records), contexts


def test_policy_repair(tmp_path, caplog):
    path, contexts = write_mismatch_file(tmp_path)
    with caplog.at_level(logging.WARNING, logger="spanqa"):
        ds = load_examples(path, on_mismatch="repair")
    assert [ex.id for ex in ds] == ["good", "spaced", "shifted"]
    assert ds.examples[1].answers == (Answer("awesome!", 14),)
    assert ds.examples[2].answers == (Answer("bright and sharp", 20),)
    for ex in ds:
        for answer in ex.answers:
            assert ex.context[answer.start : answer.end] == answer.text
    assert (ds.answers_checked, ds.answers_mismatched, ds.answers_repaired, ds.examples_skipped) == (4, 3, 2, 1)
    assert ds.policy == "repair"
    assert [p.location for p in ds.problems] == [f"{path} row 2", f"{path} row 3", f"{path} row 4"]
    assert "repaired to 14" in str(ds.problems[0]) and "id spaced" in str(ds.problems[0])
    assert "repaired to 20" in str(ds.problems[1])
    assert "not found nearby; skipped" in str(ds.problems[2]) and "'terrible sound'" in str(ds.problems[2])
    assert str(ds.problems[0]).startswith(f"{path} row 2: ")
    # the warning gives the count and the first rows with file and row
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "3 of 4 answers disagree" in warning and f"{path} row 2" in warning


def test_policy_repair_other_spacing_direction(tmp_path):
    records = [
        {"id": "a", "question": "Opinion?", "context": "This phone is awesome ! Truly.", "answer": "awesome!", "answer_start": 14},
        {"id": "b", "question": "Price?", "context": "It costs $ 750 , which is fair.", "answer": "$750,", "answer_start": 3},
    ]
    ds = load_examples(write_jsonl(tmp_path / "spacing.jsonl", records))
    assert ds.examples[0].answers == (Answer("awesome !", 14),)
    assert ds.examples[1].answers == (Answer("$ 750 ,", 9),)
    assert ds.answers_repaired == 2 and ds.examples_skipped == 0


def test_policy_repair_prefers_nearest_occurrence(tmp_path):
    context = "good sound, good bass, good price"
    records = [{"id": "a", "question": "Price?", "context": context, "answer": "good price", "answer_start": 20}]
    ds = load_examples(write_jsonl(tmp_path / "near.jsonl", records))
    assert ds.examples[0].answers == (Answer("good price", context.index("good price")),)


def test_policy_trust(tmp_path):
    path, contexts = write_mismatch_file(tmp_path)
    ds = load_examples(path, on_mismatch="trust")
    assert [ex.id for ex in ds] == ["good", "spaced", "shifted", "broken"]
    # the offsets are kept and the text is taken from the context
    assert ds.examples[1].answers == (Answer(contexts[1][14:23], 14),)
    assert ds.examples[2].answers == (Answer(contexts[2][14:30], 14),)
    assert ds.examples[3].answers == (Answer(contexts[3][0:14], 0),)
    assert (ds.answers_mismatched, ds.answers_repaired, ds.examples_skipped) == (3, 0, 0)
    assert all("kept the offsets" in str(p) for p in ds.problems)
    assert [p.location for p in ds.problems] == [f"{path} row 2", f"{path} row 3", f"{path} row 4"]


def test_policy_trust_uses_given_end_and_skips_out_of_range(tmp_path):
    records = [
        {"id": "a", "question": "Battery?", "context": "The battery lasts two days.", "answer": "two  days", "answer_start": 18, "answer_end": 26},
        {"id": "b", "question": "Battery?", "context": "Short.", "answer": "two days", "answer_start": 40, "answer_end": 48},
        {"id": "c", "question": "Battery?", "context": "The battery lasts two days.", "answer": "two days", "answer_start": 18, "answer_end": 26},
    ]
    ds = load_examples(write_jsonl(tmp_path / "ends.jsonl", records), on_mismatch="trust")
    assert [ex.id for ex in ds] == ["a", "c"]
    assert ds.examples[0].answers == (Answer("two days", 18),)
    assert ds.examples_skipped == 1 and "out of range" in str(ds.problems[1])


def test_policy_skip(tmp_path):
    path, _ = write_mismatch_file(tmp_path)
    ds = load_examples(path, on_mismatch="skip")
    assert [ex.id for ex in ds] == ["good"]
    assert (ds.answers_checked, ds.answers_mismatched, ds.answers_repaired, ds.examples_skipped) == (4, 3, 0, 3)
    assert all(str(p).startswith(f"{path} row ") and "(skipped)" in str(p) for p in ds.problems)


def test_skip_keeps_example_with_one_good_answer(tmp_path):
    records = [{"id": "a", "question": "Battery?", "context": CTX_BATTERY,
                "answers": {"text": ["two days", "three days"], "answer_start": [18, 18]}}]
    ds = load_examples(write_jsonl(tmp_path / "multi.jsonl", records), on_mismatch="skip")
    assert ds.examples[0].answers == (Answer("two days", 18),)
    assert ds.answers_mismatched == 1 and ds.examples_skipped == 0


def test_every_row_unusable_is_an_error(tmp_path):
    records = [{"id": "a", "question": "Sound?", "context": "Shipping was quick.", "answer": "terrible sound", "answer_start": 0}]
    with pytest.raises(DataError, match=r"all\.jsonl: no usable examples \(1 skipped"):
        load_examples(write_jsonl(tmp_path / "all.jsonl", records))


# --------------------------------------------------------------------------- errors


def test_malformed_json_names_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"data": [\n  {"title": "x",\n   oops\n]}', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json: not valid JSON \(line 3"):
        load_examples(path)


def test_malformed_jsonl_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(flat_records()[0]) + "\n\n{not json}\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl line 3: not valid JSON"):
        load_examples(path)


def test_malformed_csv(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('id,question,context,answers\n1,"q","unterminated\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.csv: cannot parse as CSV"):
        load_examples(path)


def test_malformed_parquet(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match=r"bad\.parquet: cannot read as Parquet"):
        load_examples(path)


def test_not_utf8(tmp_path):
    path = tmp_path / "latin.json"
    path.write_bytes('[{"question": "Caf\xe9?"}]'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.json: not UTF-8"):
        load_examples(path)


def test_json_of_wrong_shape(tmp_path):
    with pytest.raises(DataError, match=r"scalar\.json: expected SQuAD JSON .* got a JSON int"):
        load_examples(write_json(tmp_path / "scalar.json", 3))
    with pytest.raises(DataError, match=r"rows\.jsonl row 2: expected a record \(object\), got list"):
        load_examples(write_jsonl(tmp_path / "rows.jsonl", [flat_records()[0], [1, 2]]))


def test_squad_structure_errors(tmp_path):
    data = squad_v1()
    del data["data"][1]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"]
    with pytest.raises(DataError, match=r"data\[1\]\.paragraphs\[0\]\.qas\[0\]: field 'answers': each answer needs 'text' and 'answer_start'"):
        load_examples(write_json(tmp_path / "s.json", data))
    data = squad_v1()
    del data["data"][0]["paragraphs"][0]["context"]
    with pytest.raises(DataError, match=r"data\[0\]\.paragraphs\[0\]: expected an object with 'context' and 'qas'"):
        load_examples(write_json(tmp_path / "s.json", data))


def subjqa_like_csv(tmp_path: Path) -> Path:
    return write_csv(
        tmp_path / "reviews.csv",
        ["question", "review", "human_ans_spans", "human_ans_indices"],
        [["How is the bass?", "Great headphones, the bass is deep. ANSWERNOTFOUND", "the bass is deep", "(18, 34)"]],
    )


def test_missing_column_did_you_mean(tmp_path):
    path = subjqa_like_csv(tmp_path)
    mapping = {**SUBJQA_MAPPING, "context": "reviw"}
    with pytest.raises(DataError, match=r"reviews\.csv: column 'reviw' \(for context\) not found \(did you mean 'review'\?\); columns are: question, review"):
        load_examples(path, columns=mapping)


def test_no_context_column_hint(tmp_path):
    path = subjqa_like_csv(tmp_path)
    with pytest.raises(DataError, match=r"reviews\.csv: no context column found; columns are: .*\(is it 'review'\? map it with context=review\)"):
        load_examples(path, columns={"answer_text": "human_ans_spans", "answer_start": "human_ans_indices"})


def test_no_answer_column(tmp_path):
    path = write_csv(tmp_path / "noans.csv", ["question", "context"], [["q?", "c."]])
    with pytest.raises(DataError, match=r"noans\.csv: no answer column found"):
        load_examples(path)


def test_field_missing_in_later_record(tmp_path):
    records = flat_records()
    del records[1]["context"]
    with pytest.raises(DataError, match=r"gap\.jsonl row 2: missing field 'context'"):
        load_examples(write_jsonl(tmp_path / "gap.jsonl", records))


def test_empty_question(tmp_path):
    records = flat_records()
    records[1]["question"] = "   "
    with pytest.raises(DataError, match=r"q\.jsonl row 2: empty question"):
        load_examples(write_jsonl(tmp_path / "q.jsonl", records))


def test_empty_context(tmp_path):
    path = write_csv(
        tmp_path / "c.csv",
        ["id", "question", "context", "answer", "answer_start"],
        [["1", "q?", "Some text.", "Some", "0"], ["2", "q?", "", "", ""]],
    )
    with pytest.raises(DataError, match=r"c\.csv row 2: empty context"):
        load_examples(path)


def test_empty_question_in_squad_json(tmp_path):
    data = squad_v1()
    data["data"][1]["paragraphs"][0]["qas"][0]["question"] = ""
    with pytest.raises(DataError, match=r"e\.json: data\[1\]\.paragraphs\[0\]\.qas\[0\]: empty question"):
        load_examples(write_json(tmp_path / "e.json", data))


def test_non_text_question(tmp_path):
    records = flat_records()
    records[0]["question"] = 42
    with pytest.raises(DataError, match=r"n\.jsonl row 1: field 'question': expected text, got int"):
        load_examples(write_jsonl(tmp_path / "n.jsonl", records))


def test_duplicate_id_names_both_rows(tmp_path):
    records = flat_records()
    records[2]["id"] = "r1"
    path = write_jsonl(tmp_path / "dup.jsonl", records)
    with pytest.raises(DataError, match=rf"{re.escape(str(path))} row 3: duplicate id 'r1' \(first seen at {re.escape(str(path))} row 1\)"):
        load_examples(path)


def test_duplicate_id_in_squad_json(tmp_path):
    data = squad_v1()
    data["data"][1]["paragraphs"][0]["qas"][0]["id"] = "b1"
    with pytest.raises(DataError, match=r"data\[1\]\.paragraphs\[0\]\.qas\[0\]: duplicate id 'b1' \(first seen at .*data\[0\]\.paragraphs\[0\]\.qas\[0\]\)"):
        load_examples(write_json(tmp_path / "d.json", data))


def test_bad_offsets_and_answers(tmp_path):
    records = [{"id": "1", "question": "q?", "context": CTX_BATTERY, "answer": "two days", "answer_start": "soon"}]
    with pytest.raises(DataError, match=r"o\.jsonl row 1: field 'answer_start': expected a character offset \(integer\), got 'soon'"):
        load_examples(write_jsonl(tmp_path / "o.jsonl", records))
    records = [{"id": "1", "question": "q?", "context": CTX_BATTERY, "answers": {"text": ["two days", "an hour"], "answer_start": [18]}}]
    with pytest.raises(DataError, match=r"a\.jsonl row 1: field 'answers': 2 texts but 1 answer_start values"):
        load_examples(write_jsonl(tmp_path / "a.jsonl", records))
    records = [{"id": "1", "question": "q?", "context": CTX_BATTERY, "answers": "two days"}]
    with pytest.raises(DataError, match=r"s\.jsonl row 1: field 'answers': expected"):
        load_examples(write_jsonl(tmp_path / "s.jsonl", records))
    records = [{"id": "1", "question": "q?", "context": CTX_BATTERY, "answer": "two days", "answer_start": 18, "is_impossible": "maybe"}]
    with pytest.raises(DataError, match=r"b\.jsonl row 1: field 'is_impossible': expected true/false, got 'maybe'"):
        load_examples(write_jsonl(tmp_path / "b.jsonl", records))


def test_file_not_found(tmp_path):
    with pytest.raises(DataError, match=r"nope\.json: file not found"):
        load_examples(tmp_path / "nope.json")
    with pytest.raises(DataError, match=r"file not found"):
        load_examples(str(tmp_path / "missing" / "data.csv"))


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("question\tcontext\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"data\.txt: unsupported file type '\.txt'"):
        load_examples(path)


def test_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"is a folder"):
        load_examples(tmp_path)


def test_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"empty\.json: contains no examples"):
        load_examples(write_json(tmp_path / "empty.json", []))


def test_unknown_policy(tmp_path):
    path = write_jsonl(tmp_path / "flat.jsonl", flat_records())
    with pytest.raises(DataError, match=r"unknown mismatch policy 'repiar' \(did you mean 'repair'\?\); choose one of repair, trust, skip"):
        load_examples(path, on_mismatch="repiar")  # type: ignore[arg-type]


def test_unknown_column_role(tmp_path):
    path = write_jsonl(tmp_path / "flat.jsonl", flat_records())
    with pytest.raises(DataError, match=r"unknown column role 'contxt' \(did you mean 'context'\?\); roles are: "):
        load_examples(path, columns={"contxt": "context"})


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


# --------------------------------------------------------------------------- hub


def hub_rows() -> list[dict]:
    return [
        {"id": "h1", "title": "Battery", "question": "How long does the battery last?", "context": CTX_BATTERY,
         "answers": {"text": ["two days"], "answer_start": [18]}},
        {"id": "h2", "title": "Battery", "question": "What is the price?", "context": CTX_BATTERY,
         "answers": {"text": [], "answer_start": []}},
    ]


def test_hub_dataset(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(name, config=None, split=None, **kwargs):
        calls.append((name, config, split))
        return datasets.Dataset.from_list(hub_rows())

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    ds = load_examples("someuser/someset:validation")
    assert calls == [("someuser/someset", None, "validation")]
    assert [ex.id for ex in ds] == ["h1", "h2"]
    assert ds.examples[0].answers == (Answer("two days", 18),)
    assert ds.examples[1].is_impossible and ds.version_2
    assert ds.source == "someuser/someset:validation"

    load_examples("someuser/someset@plain_text", split="test")
    assert calls[-1] == ("someuser/someset", "plain_text", "test")
    load_examples("squadlike")
    assert calls[-1] == ("squadlike", None, "train")


def test_hub_config_with_a_dot_is_not_a_file_extension(monkeypatch, tmp_path):
    """``google/xquad@xquad.en``: '.en' belongs to the config name, so this is a hub dataset, not a missing file."""
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(name, config=None, split=None, **kwargs):
        calls.append((name, config, split))
        return datasets.Dataset.from_dict({
            "id": ["x1"], "title": ["Battery"], "context": [CTX_BATTERY], "question": ["How long does the battery last?"],
            "answers": [{"text": ["two days"], "answer_start": [18]}],
        })

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.chdir(tmp_path)
    for spec, call in [
        ("google/xquad@xquad.en:validation", ("google/xquad", "xquad.en", "validation")),
        ("google/xquad@xquad.en", ("google/xquad", "xquad.en", "train")),
        ("wikimedia/wikipedia@20231101.en", ("wikimedia/wikipedia", "20231101.en", "train")),
        ("someuser/qa.v2", ("someuser/qa.v2", None, "train")),
    ]:
        ds = load_examples(spec)
        assert calls[-1] == call and ds.examples[0].answers == (Answer("two days", 18),), spec
    # Names ending in a data-file extension are (missing) local files, whatever follows them.
    calls.clear()
    for spec in ("data/train.json", "train.jsonl", "reviews.csv:test", "data/train.parquet@x"):
        with pytest.raises(DataError, match=rf"^{re.escape(spec)}: file not found$"):
            load_examples(spec)
    assert calls == []


def test_hub_rows_are_validated_with_location(monkeypatch):
    datasets = pytest.importorskip("datasets")
    rows = hub_rows()
    rows[1]["id"] = "h1"
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, split=None, **kw: datasets.Dataset.from_list(rows))
    with pytest.raises(DataError, match=r"someuser/someset\[validation\] row 2: duplicate id 'h1'"):
        load_examples("someuser/someset:validation")


def test_hub_failure_is_a_data_error(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def offline(*args, **kwargs):
        raise ConnectionError("no network\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    expected = r"someuser/missing:test: not a local file, and loading it from the Hugging Face hub failed \(ConnectionError: no network\)$"
    with pytest.raises(DataError, match=expected):
        load_examples("someuser/missing:test")


# --------------------------------------------------------------------------- writing, splitting, fingerprints


def mixed_examples() -> list[QAExample]:
    return [
        QAExample("x1", "How long does the battery last?", CTX_BATTERY, (Answer("two days", 18), Answer("lasts two days", 12)), "Battery"),
        QAExample("x2", "What is the price?", CTX_BATTERY, (), "Battery"),
        QAExample("x3", "How is the screen?", CTX_SCREEN, (Answer("bright and sharp", 14),), "Screen"),
        QAExample("x4", "Wie klingt es?", "Klingt gut – sehr gut.", (Answer("sehr gut", 13),), "Sound"),
    ]


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_save_and_reload_round_trip(tmp_path, suffix):
    examples = mixed_examples()
    path = tmp_path / f"out{suffix}"
    save_examples(examples, path)
    again = load_examples(path)
    assert again.examples == examples
    assert again.version_2 and again.answers_mismatched == 0


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_round_trip_of_a_loaded_file(tmp_path, suffix):
    source = load_examples(write_jsonl(tmp_path / "flat.jsonl", flat_records()))
    path = tmp_path / f"copy{suffix}"
    save_examples(source.examples, path, version_2=source.version_2)
    again = load_examples(path)
    assert again.examples == source.examples
    assert again.fingerprint() == source.fingerprint()


def test_round_trip_answerable_only_is_v1(tmp_path):
    examples = [ex for ex in mixed_examples() if ex.answers]
    save_examples(examples, tmp_path / "v1.json")
    raw = json.loads((tmp_path / "v1.json").read_text(encoding="utf-8"))
    assert raw["version"] == "1.1"
    assert "is_impossible" not in raw["data"][0]["paragraphs"][0]["qas"][0]
    again = load_examples(tmp_path / "v1.json")
    assert again.examples == examples and not again.version_2


def test_round_trip_interleaved_titles_keeps_every_example(tmp_path):
    examples = mixed_examples()
    shuffled = [examples[0], examples[2], examples[1], examples[3]]  # Battery, Screen, Battery, Sound
    save_examples(shuffled, tmp_path / "mixed.json")
    again = load_examples(tmp_path / "mixed.json")
    assert sorted(again.examples, key=lambda ex: ex.id) == sorted(shuffled, key=lambda ex: ex.id)


def test_to_squad_layout():
    squad = to_squad(mixed_examples(), version_2=True)
    assert squad["version"] == "v2.0"
    assert [a["title"] for a in squad["data"]] == ["Battery", "Screen", "Sound"]
    battery = squad["data"][0]["paragraphs"]
    assert len(battery) == 1 and battery[0]["context"] == CTX_BATTERY
    assert [qa["id"] for qa in battery[0]["qas"]] == ["x1", "x2"]
    assert battery[0]["qas"][0]["answers"] == [{"text": "two days", "answer_start": 18}, {"text": "lasts two days", "answer_start": 12}]
    assert battery[0]["qas"][1] == {"id": "x2", "question": "What is the price?", "answers": [], "is_impossible": True}


def test_save_unsupported_suffix(tmp_path):
    with pytest.raises(DataError, match=r"out\.csv: can only write \.json \(SQuAD\) or \.jsonl"):
        save_examples(mixed_examples(), tmp_path / "out.csv")


def test_split_by_title(tmp_path):
    save_examples(mixed_examples(), tmp_path / "all.jsonl")
    ds = load_examples(tmp_path / "all.jsonl")
    head, tail = split_by_title(ds, 2)
    assert [ex.id for ex in head] == ["x1", "x2", "x3"]
    assert [ex.id for ex in tail] == ["x4"]
    assert head.version_2 == ds.version_2 and head.source == ds.source
    empty, everything = split_by_title(ds, 0)
    assert len(empty) == 0 and everything.examples == ds.examples
    whole, nothing = split_by_title(ds, 10)
    assert whole.examples == ds.examples and len(nothing) == 0


def test_fingerprint_stable_and_content_sensitive(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", flat_records())
    first = load_examples(path).fingerprint()
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert load_examples(path).fingerprint() == first
    # the same content in another layout has the same fingerprint
    assert load_examples(write_json(tmp_path / "a.json", flat_records())).fingerprint() == first
    for change in (
        lambda r: r[0].__setitem__("question", "How long does the battery really last?"),
        lambda r: r[0].__setitem__("context", CTX_BATTERY + " Extra."),
        lambda r: r[1]["answers"].__setitem__("text", ["bright"]),
        lambda r: r[0].__setitem__("answers", {"text": ["lasts two days", "two days"], "answer_start": [12, 18]}),
        lambda r: r[2].__setitem__("id", "r9"),
    ):
        records = flat_records()
        change(records)
        assert load_examples(write_jsonl(tmp_path / "b.jsonl", records)).fingerprint() != first


def test_summarize_counts(tmp_path, wordpiece_tokenizer):
    path, _ = write_mismatch_file(tmp_path)
    ds = load_examples(path)
    plain = summarize(ds)
    assert (plain.examples, plain.answerable, plain.unanswerable, plain.contexts) == (3, 3, 0, 3)
    assert (plain.answers_checked, plain.answers_mismatched, plain.answers_repaired, plain.examples_skipped) == (4, 3, 2, 1)
    assert plain.question_tokens == {} and plain.unanswerable_share == 0.0
    assert plain.problems == [str(p) for p in ds.problems]
    full = summarize(load_examples(write_jsonl(tmp_path / "flat.jsonl", flat_records())), wordpiece_tokenizer, max_length=16)
    assert full.unanswerable == 1 and full.unanswerable_share == pytest.approx(1 / 3)
    assert full.question_tokens["min"] > 0 and full.context_tokens["max"] >= full.context_tokens["min"]
    assert full.contexts_longer_than_window >= 1 and full.window_max_length == 16
    as_dict = full.to_dict()
    assert as_dict["unanswerable_share"] == pytest.approx(1 / 3)
    json.dumps(as_dict)
    text = "\n".join(full.lines())
    assert "(33.3% unanswerable)" in text and "question tokens: min" in text


def _contexts_cut_by_build_features(examples, tokenizer, window) -> int:
    """The truth: distinct contexts with a question that build_features spreads over several windows."""
    features = build_features(examples, tokenizer, window)
    windows = np.bincount(features.example_index, minlength=len(examples))
    return len({examples[k].context for k in np.flatnonzero(windows > 1)})


LONG_QUESTION = "東京大学の😀図書館は何年に建てられましたか" * 3  # byte-level BPE cuts it inside a character


@pytest.mark.parametrize("long_questions", [False, True])
def test_contexts_longer_than_window_agrees_with_build_features(any_tokenizer, long_questions):
    """data check's count is build_features' own: same question cut, same special tokens, for every window size."""
    dataset = load_examples(sample_path("train"))
    if long_questions:
        dataset = dataset.subset([replace(ex, question=LONG_QUESTION + ex.question) for ex in dataset.examples])
    lengths = [len(ids) for ids in any_tokenizer(sorted({ex.context for ex in dataset}), add_special_tokens=False)["input_ids"]]
    assert min(lengths) < 200 < max(lengths)  # the sweep below crosses the contexts' lengths
    for max_length in range(80, 480, 32):
        window = WindowConfig(max_length=max_length, stride=16, max_question_tokens=16 if long_questions else min(64, max_length - 21))
        truth = _contexts_cut_by_build_features(dataset.examples, any_tokenizer, window)
        summary = summarize(dataset, any_tokenizer, window=window)
        assert (summary.contexts_longer_than_window, summary.window_max_length) == (truth, max_length), window
        if max_length >= 96 and not long_questions:  # max_length alone: the default window of that length
            assert summarize(dataset, any_tokenizer, max_length=max_length).contexts_longer_than_window == truth, max_length


def test_summarize_window_for_max_length_alone(wordpiece_tokenizer):
    """A short max_length alone still gives a valid window: the question limit and stride shrink to fit."""
    dataset = load_examples(sample_path("train"))
    assert summarize(dataset, wordpiece_tokenizer, max_length=16).contexts_longer_than_window == len({ex.context for ex in dataset})
    assert summarize(dataset, wordpiece_tokenizer).window_max_length == WindowConfig().max_length
    with pytest.raises(ConfigError, match="max_length"):
        summarize(dataset, wordpiece_tokenizer, max_length=128, window=WindowConfig(max_length=256))


def test_summary_lines_list_problem_rows(tmp_path):
    path, _ = write_mismatch_file(tmp_path)
    lines = summarize(load_examples(path)).lines(max_problems=2)
    text = "\n".join(lines)
    assert "disagreeing: 3" in text and f"{path} row 2" in text and f"{path} row 3" in text
    assert f"{path} row 4" not in text and "... and 1 more" in text


# --------------------------------------------------------------------------- shared data


@needs_shared(SUBJQA)
def test_subjqa_electronics():
    ds = load_examples(SUBJQA / "electronics" / "train.csv", columns=SUBJQA_MAPPING)
    share = ds.num_impossible / len(ds)
    assert 0.4 < share < 0.8
    assert ds.version_2
    assert ds.answers_mismatched > 0 and ds.problems
    assert all(re.match(rf"{re.escape(str(SUBJQA / 'electronics' / 'train.csv'))} row \d+$", p.location) for p in ds.problems)
    assert not any(ex.context.rstrip().endswith("ANSWERNOTFOUND") for ex in ds)
    for ex in ds:
        for answer in ex.answers:
            assert ex.context[answer.start : answer.end] == answer.text
    assert ds.answers_checked == ds.answers_mismatched + sum(len(ex.answers) for ex in ds) - ds.answers_repaired


@needs_shared(XQUAD)
def test_xquad_all_languages():
    files = sorted(XQUAD.glob("xquad.*.json"))
    assert len(files) >= 2
    ids = None
    for path in files:
        ds = load_examples(path)
        assert len(ds) == 1190, path
        assert ds.answers_mismatched == 0 and not ds.problems, path
        assert ds.num_impossible == 0 and not ds.version_2
        if ids is None:
            ids = [ex.id for ex in ds]
        assert [ex.id for ex in ds] == ids  # same questions in every language
