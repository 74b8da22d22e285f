"""``spanqa score``: files in, the official scripts' keys and numbers out (to 1e-9), clean errors.

The expected numbers come from the scalar reference of the official SQuAD v2.0 /
v1.1 scripts (and MLQA's normalisation) in ``test_metrics.py``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import XQUAD, needs_shared
from hypothesis import given, settings
from hypothesis import strategies as st
from test_metrics import (
    HAND_NA,
    HAND_V2,
    HAND_V2_PREDS,
    HYPO,
    MLQA_LANGS,
    THRESHOLDS,
    assert_metrics_match,
    gold_sets,
    na_probs_for,
    predictions_for,
    ref_mlqa_exact,
    ref_mlqa_f1,
    ref_v1_evaluate,
    ref_v2_evaluate,
    squad_dataset,
)
from typer.testing import CliRunner

from spanqa.interfaces.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def fresh_spanqa_logger(monkeypatch):
    """Each invocation installs its stderr handler afresh (the CLI adds one only when none is there)."""
    logger = logging.getLogger("spanqa")
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "propagate", logger.propagate)


def write_json(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def write_squad(path: Path, dataset: list[dict[str, Any]], version: str) -> Path:
    return write_json(path, {"version": version, "data": dataset})


def score(*args: Any):
    return runner.invoke(app, ["score", *(str(a) for a in args)])


def metrics_of(result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_one_error_line(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --------------------------------------------------------------------------- SQuAD v2.0 files


def test_v2_file_matches_the_official_definitions(tmp_path):
    gold = write_squad(tmp_path / "dev-v2.0.json", HAND_V2, "v2.0")
    preds = write_json(tmp_path / "pred.json", HAND_V2_PREDS)
    got = metrics_of(score("--data", gold, "--predictions", preds))
    assert_metrics_match(got, ref_v2_evaluate(HAND_V2, HAND_V2_PREDS))
    # the hand numbers (worked out in test_metrics.test_v2_hand_case_without_na_probs)
    assert (got["exact"], got["f1"], got["total"], got["HasAns_f1"], got["NoAns_total"]) == (50.0, 62.5, 4, 75.0, 2)
    assert list(got)[:3] == ["exact", "f1", "total"]


def test_v2_file_with_na_probs_and_threshold(tmp_path):
    gold = write_squad(tmp_path / "dev.json", HAND_V2, "v2.0")
    preds = write_json(tmp_path / "pred.json", HAND_V2_PREDS)
    na = write_json(tmp_path / "na.json", HAND_NA)
    got = metrics_of(score("-d", gold, "-p", preds, "--na-probs", na))
    assert_metrics_match(got, ref_v2_evaluate(HAND_V2, HAND_V2_PREDS, HAND_NA))
    assert (got["best_exact"], got["best_exact_thresh"], got["best_f1"], got["best_f1_thresh"]) == (75.0, 0.1, 87.5, 0.2)
    got = metrics_of(score("-d", gold, "-p", preds, "--na-probs", na, "--na-prob-thresh", "0.25"))
    assert_metrics_match(got, ref_v2_evaluate(HAND_V2, HAND_V2_PREDS, HAND_NA, 0.25))
    assert (got["exact"], got["f1"]) == (75.0, 87.5)


def test_negative_threshold_without_na_probs_file(tmp_path):
    gold = write_squad(tmp_path / "dev.json", HAND_V2, "v2.0")
    preds = write_json(tmp_path / "pred.json", HAND_V2_PREDS)
    got = metrics_of(score("-d", gold, "-p", preds, "--na-prob-thresh", "-0.5"))
    assert_metrics_match(got, ref_v2_evaluate(HAND_V2, HAND_V2_PREDS, na_prob_thresh=-0.5))
    assert (got["HasAns_exact"], got["NoAns_exact"]) == (0.0, 100.0)


def test_v2_file_with_only_answerable_questions_keeps_v2_keys(tmp_path):
    dataset = squad_dataset([("a", ["Denver Broncos"]), ("b", ["Broncos"])])
    gold = write_squad(tmp_path / "dev.json", dataset, "v2.0")
    preds = write_json(tmp_path / "pred.json", {"a": "the Denver Broncos", "b": ""})
    got = metrics_of(score("-d", gold, "-p", preds))
    assert_metrics_match(got, ref_v2_evaluate(dataset, {"a": "the Denver Broncos", "b": ""}))
    assert "NoAns_total" not in got and got["HasAns_total"] == 2 and got["exact"] == 50.0


def test_out_file_holds_the_printed_metrics(tmp_path):
    gold = write_squad(tmp_path / "dev.json", HAND_V2, "v2.0")
    preds = write_json(tmp_path / "pred.json", HAND_V2_PREDS)
    out = tmp_path / "out" / "metrics.json"
    got = metrics_of(score("-d", gold, "-p", preds, "-o", out))
    assert json.loads(out.read_text(encoding="utf-8")) == got


def test_missing_predictions_warn_and_count_as_wrong(tmp_path):
    dataset = squad_dataset([("h1", ["cat"]), ("h2", ["dog"]), ("n1", []), ("n2", [])])
    gold = write_squad(tmp_path / "dev.json", dataset, "v2.0")
    preds_obj = {"h1": "cat", "n2": ""}
    preds = write_json(tmp_path / "pred.json", preds_obj)
    result = score("-d", gold, "-p", preds)
    got = metrics_of(result)
    assert "2 of 4 questions have no prediction" in result.stderr
    assert (got["exact"], got["total"], got["HasAns_total"], got["NoAns_total"]) == (50.0, 4, 2, 2)
    assert_metrics_match(got, ref_v2_evaluate(dataset, preds_obj, missing_as_wrong=True))


# --------------------------------------------------------------------------- SQuAD v1.1 files


def test_v1_file_gives_the_v1_keys(tmp_path):
    dataset = squad_dataset([("a", ["Denver Broncos", "Broncos"]), ("b", ["Saint Bernadette Soubirous"]), ("c", ["the"]), ("d", ["x"])])
    preds_obj = {"a": "broncos", "b": "Bernadette Soubirous!", "c": "a"}
    gold = write_squad(tmp_path / "dev-v1.1.json", dataset, "1.1")
    preds = write_json(tmp_path / "pred.json", preds_obj)
    result = score("-d", gold, "-p", preds)
    got = metrics_of(result)
    assert list(got) == ["exact_match", "f1"]
    # (1 + 0 + 1 + 0) / 4 and (1 + 0.8 + 0 + 0) / 4, see test_metrics.test_v1_missing_predictions_...
    assert got == pytest.approx({"exact_match": 50.0, "f1": 45.0}, abs=1e-9)
    assert_metrics_match(got, ref_v1_evaluate(dataset, preds_obj))
    assert "1 of 4 questions have no prediction" in result.stderr


# --------------------------------------------------------------------------- random files, end to end


@settings(parent=HYPO, max_examples=60)
@given(st.data())
def test_property_cli_v2_and_v1_files_match_reference(data):
    v2 = data.draw(st.booleans())
    dataset = data.draw(gold_sets(handle_impossible=v2))
    preds_obj = data.draw(predictions_for(dataset, allow_missing=not v2))
    na_obj = data.draw(st.one_of(st.none(), na_probs_for(dataset, partial=False))) if v2 else None
    thresh = data.draw(st.sampled_from(THRESHOLDS))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        gold = write_squad(folder / "gold.json", dataset, "v2.0" if v2 else "1.1")
        preds = write_json(folder / "pred.json", preds_obj)
        args = ["-d", gold, "-p", preds, "--na-prob-thresh", repr(thresh)]
        if na_obj is not None:
            args += ["--na-probs", write_json(folder / "na.json", na_obj)]
        got = metrics_of(score(*args))
    want = ref_v2_evaluate(dataset, preds_obj, na_obj, thresh) if v2 else ref_v1_evaluate(dataset, preds_obj)
    assert_metrics_match(got, want)


# --------------------------------------------------------------------------- bad input files


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("{not json", ("not valid JSON",)),
        ('["a", "b"]', ("expected a JSON object", "list")),
        ('"just a string"', ("expected a JSON object", "str")),
        ('{"q1": 3}', ("'q1'", "expected an answer string", "3")),
        ('{"q1": null}', ("'q1'", "expected an answer string", "None")),
        ('{"q1": ["Broncos"]}', ("'q1'", "expected an answer string")),
    ],
)
def test_bad_predictions_file_is_one_error_line(tmp_path, content, fragments):
    gold = write_squad(tmp_path / "dev.json", HAND_V2, "v2.0")
    preds = tmp_path / "pred.json"
    preds.write_text(content, encoding="utf-8")
    assert_one_error_line(score("-d", gold, "-p", preds), str(preds), *fragments)


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("nope", ("not valid JSON",)),
        ("[0.5]", ("expected a JSON object",)),
        ('{"q1": "0.5"}', ("'q1'", "expected a number")),
        ('{"q1": true}', ("'q1'", "expected a number")),
    ],
)
def test_bad_na_probs_file_is_one_error_line(tmp_path, content, fragments):
    gold = write_squad(tmp_path / "dev.json", HAND_V2, "v2.0")
    preds = write_json(tmp_path / "pred.json", HAND_V2_PREDS)
    na = tmp_path / "na.json"
    na.write_text(content, encoding="utf-8")
    assert_one_error_line(score("-d", gold, "-p", preds, "--na-probs", na), *fragments)


def test_missing_predictions_file_is_one_error_line(tmp_path):
    gold = write_squad(tmp_path / "dev.json", HAND_V2, "v2.0")
    assert_one_error_line(score("-d", gold, "-p", tmp_path / "nowhere.json"), "nowhere.json", "not found")


def test_unknown_lang_is_one_error_line(tmp_path):
    gold = write_squad(tmp_path / "dev.json", HAND_V2, "v2.0")
    preds = write_json(tmp_path / "pred.json", HAND_V2_PREDS)
    assert_one_error_line(score("-d", gold, "-p", preds, "--lang", "ara"), "unknown language 'ara'", "did you mean 'ar'")


# --------------------------------------------------------------------------- --lang


def test_lang_zh_scores_chinese_by_character(tmp_path):
    dataset = squad_dataset([("z1", ["北京大学"]), ("z2", ["2008年北京奥运会"])])
    gold = write_squad(tmp_path / "zh.json", dataset, "1.1")
    preds = write_json(tmp_path / "pred.json", {"z1": "北京", "z2": "北京奥运会。"})
    got = metrics_of(score("-d", gold, "-p", preds, "--lang", "zh"))
    # z1: P = 1, R = 2/4 -> F1 2/3; z2: P = 1, R = 5/7 -> F1 5/6; no exact match
    assert got["exact_match"] == 0.0
    assert got["f1"] == pytest.approx(100 * (2 / 3 + 5 / 6) / 2, abs=1e-9)  # 75.0
    # The SQuAD rules see each answer as one token: no overlap at all
    assert metrics_of(score("-d", gold, "-p", preds)) == {"exact_match": 0.0, "f1": 0.0}


def test_lang_el_and_ar_on_v2_file(tmp_path):
    dataset = squad_dataset([("g", ["Η Αθήνα"]), ("a", ["الكتاب"]), ("n", [])])
    gold = write_squad(tmp_path / "mixed.json", dataset, "v2.0")
    preds = write_json(tmp_path / "pred.json", {"g": "Αθήνα\u037e", "a": "كتاب", "n": ""})
    assert metrics_of(score("-d", gold, "-p", preds, "--lang", "el"))["HasAns_exact"] == 50.0  # ال stays in 'el'
    assert metrics_of(score("-d", gold, "-p", preds, "--lang", "ar"))["HasAns_exact"] == 50.0  # Η stays in 'ar'


# --------------------------------------------------------------------------- real data (XQuAD)


def _xquad_predictions(dataset: list[dict[str, Any]]) -> dict[str, str]:
    """Deterministic mix: exact gold, truncated gold, gold with a context word, wrong span, empty, missing."""
    preds: dict[str, str] = {}
    n = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                gold = qa["answers"][0]["text"]
                end = qa["answers"][0]["answer_start"] + len(gold)
                kind = n % 6
                n += 1
                if kind == 0:
                    preds[qa["id"]] = gold
                elif kind == 1:
                    preds[qa["id"]] = gold[: max(1, len(gold) // 2)]
                elif kind == 2:
                    preds[qa["id"]] = context[end - len(gold) : end + 12]
                elif kind == 3:
                    preds[qa["id"]] = context[:20]
                elif kind == 4:
                    preds[qa["id"]] = ""
    return preds


@needs_shared(XQUAD)
@pytest.mark.shared
@pytest.mark.parametrize("lang", [lang for lang in MLQA_LANGS if lang != "vi"])  # XQuAD has no Vietnamese
def test_xquad_scores_match_the_reference(tmp_path, lang):
    path = XQUAD / f"xquad.{lang}.json"
    if not path.exists():
        pytest.skip(f"{path} not in the shared data")
    dataset = json.loads(path.read_text(encoding="utf-8"))["data"]
    preds_obj = _xquad_predictions(dataset)
    preds = write_json(tmp_path / "pred.json", preds_obj)
    got = metrics_of(score("-d", path, "-p", preds, "--lang", lang))
    want = ref_v1_evaluate(
        dataset, preds_obj, exact_fn=lambda p, g: ref_mlqa_exact(p, g, lang), f1_fn=lambda p, g: ref_mlqa_f1(p, g, lang)
    )
    assert_metrics_match(got, want)
    if lang == "en":  # and the plain SQuAD rules
        assert_metrics_match(metrics_of(score("-d", path, "-p", preds)), ref_v1_evaluate(dataset, preds_obj))
