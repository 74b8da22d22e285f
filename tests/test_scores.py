"""Scores users can trust: calibration, score thresholds, and top-k lists without overlapping answers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanqa import AnswerOptions, Reader, SpanQAConfig, evaluate
from spanqa.core.errors import ConfigError
from spanqa.jobs.calibration import expected_calibration_error, fit_temperature, shown_scores
from spanqa.reading.reader import QARequest, _overlap
from spanqa.stages.decode import ExamplePrediction, Span

CONTEXT = (
    "The footballers played at Wembley Stadium in 1966, winning the championship against West Germany. "
    "The final was watched by millions on television, and the captain lifted the trophy at Wembley."
)


def _prediction(logits: list[float], null: float = -np.inf, text: str = "a", qid: str = "q") -> ExamplePrediction:
    spans = [Span(text=f"s{i}", start=i, end=i + 1, logit=v, start_logit=v / 2, end_logit=v / 2) for i, v in enumerate(logits)]
    return ExamplePrediction(id=qid, text=text, candidates=spans, null_score=null, best_score=max(logits))


def test_expected_calibration_error_by_hand():
    assert expected_calibration_error([0.95, 0.95, 0.15, 0.15], [True, True, False, False]) == pytest.approx(0.1)
    assert expected_calibration_error([1.0, 0.0], [True, False]) == 0.0  # 1.0 lands in the last bin
    assert expected_calibration_error([], []) == 0.0


def test_fit_temperature_recovers_the_temperature_that_made_the_data():
    rng = np.random.default_rng(0)
    true_t = 3.0
    predictions, correct = [], []
    for i in range(3000):
        logits = np.sort(rng.normal(0, 4, size=8))[::-1]
        p_top = np.exp(logits[0] / true_t) / np.exp(logits / true_t).sum()
        predictions.append(_prediction(list(logits), qid=str(i)))
        correct.append(rng.random() < p_top)
    fitted = fit_temperature(predictions, np.array(correct), version_2=False)
    assert fitted == pytest.approx(true_t, rel=0.15)
    before = expected_calibration_error(shown_scores(predictions, False), correct)
    after = expected_calibration_error(shown_scores(predictions, False, fitted), correct)
    assert after < before / 2


def test_shown_score_is_the_null_answers_when_abstaining():
    abstained = _prediction([1.0, 0.5], null=3.0, text="")
    scores = shown_scores([abstained], version_2=True)
    assert scores[0] == pytest.approx(1 / (1 + np.exp(-(3.0 - 1.0))))  # sigmoid of the null odds


def test_temperature_changes_scores_not_answers(tiny_bert_dir, tmp_path):
    model = shutil.copytree(tiny_bert_dir, tmp_path / "m")
    plain = Reader.from_pretrained(model, device="cpu")
    hot = plain.with_settings(temperature=4.0)
    a, b = plain("Where did they play?", CONTEXT, top_k=5), hot("Where did they play?", CONTEXT, top_k=5)
    assert [x.text for x in a.answers] == [x.text for x in b.answers]
    assert b.answers[0].score < a.answers[0].score  # a higher temperature spreads the probability
    with pytest.raises(ConfigError, match="temperature must be a positive number"):
        plain.with_settings(temperature=0.0)


def test_evaluate_calibrate_save_stores_the_temperature(tiny_bert_dir, sample_dev, tmp_path):
    model = shutil.copytree(tiny_bert_dir, tmp_path / "m")
    result = evaluate(model, sample_dev, output_dir=tmp_path / "eval", calibrate=True, save=True)
    calibration = result.metrics["calibration"]
    assert set(calibration) == {"temperature", "ece_before", "ece_after", "questions", "bins", "fitted_temperature"}
    assert calibration["bins"] == 10
    assert calibration["ece_after"] <= calibration["ece_before"] + 1e-9
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["calibration"] == calibration
    assert SpanQAConfig.load(model).temperature == pytest.approx(calibration["temperature"])


# --------------------------------------------------------------------------- overlap and score threshold


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 50), st.integers(1, 20), st.integers(0, 50), st.integers(1, 20))
def test_overlap_share_of_the_shorter(a_start, a_len, b_start, b_len):
    a = Span("", a_start, a_start + a_len, 0.0, 0.0, 0.0)
    b = Span("", b_start, b_start + b_len, 0.0, 0.0, 0.0)
    shared = len(set(range(a.start, a.end)) & set(range(b.start, b.end)))
    assert _overlap(a, b) == pytest.approx(shared / min(a_len, b_len)) == pytest.approx(_overlap(b, a))


def _worst_overlap(answers) -> float:
    return max((_overlap(x, y) for i, x in enumerate(answers) for y in answers[i + 1 :] if x.document == y.document), default=0.0)


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.9])
def test_top_k_lists_never_hold_overlapping_answers(reader, threshold):
    reader = reader.with_settings(overlap_threshold=threshold)
    for question in ("Where did they play?", "Who won?", "What was watched?"):
        answers = reader(question, CONTEXT, top_k=20).answers
        assert len(answers) >= (2 if threshold == 0.0 else 3) and _worst_overlap(answers) <= threshold
        ranked = reader(question, documents=[CONTEXT, CONTEXT[:90]], top_k=20).answers
        assert _worst_overlap(ranked) <= threshold
    everything = reader.with_settings(overlap_threshold=1.0)("Where did they play?", CONTEXT, top_k=20).answers
    assert _worst_overlap(everything) > 0.5  # without the rule, the list is full of near-duplicates


def test_score_threshold_drops_answers_and_abstains_when_none_is_left(reader):
    # Overlapping answers allowed, so a random model's list is full whatever its near-tied logits
    # (with the overlap rule on, how many distinct answers survive depends on the CPU's rounding).
    reader = reader.with_settings(overlap_threshold=1.0)
    full = reader("Where did they play?", CONTEXT, top_k=10)
    assert len(full.answers) == 10
    cut = full.answers[2].score
    kept = reader.answer_batch([QARequest("Where did they play?", CONTEXT, options=AnswerOptions(top_k=10, score_threshold=cut))])[0]
    assert [a.text for a in kept.answers] == [a.text for a in full.answers if a.score >= cut]
    nothing = reader.answer_batch([QARequest("Where did they play?", CONTEXT, options=AnswerOptions(top_k=10, score_threshold=1.0))])[0]
    assert nothing.answers == [] and nothing.is_impossible and nothing.answer is None
    with pytest.raises(ConfigError, match="score_threshold must be a probability"):
        AnswerOptions(score_threshold=1.5)
    with pytest.raises(ConfigError, match="score_threshold must be between 0 and 1"):
        reader.with_settings(score_threshold=float("nan"))


def test_score_threshold_trades_coverage_for_precision_monotonically(reader):
    questions = ["Where did they play?", "Who won?", "When was it?", "What was watched?", "Who lifted the trophy?"]
    coverage = []
    for threshold in (0.0, 0.05, 0.1, 0.2, 0.5, 0.9):
        results = reader.answer_batch([QARequest(q, CONTEXT, options=AnswerOptions(score_threshold=threshold)) for q in questions])
        coverage.append(sum(r.answer is not None for r in results))
    assert coverage == sorted(coverage, reverse=True)


def test_a_temperature_that_does_not_help_is_not_taken():
    from spanqa.jobs.calibration import calibrate
    from spanqa.stages.metrics import QuestionScore

    # Confident and always right: any other temperature only moves scores away from 1.
    predictions = [_prediction([8.0, 0.0, -1.0], qid=str(i)) for i in range(20)]
    questions = [QuestionScore(id=str(i), prediction="s0", exact=1.0, f1=1.0, has_answer=True) for i in range(20)]
    result = calibrate(predictions, questions, version_2=False, current_temperature=1.0)
    assert result.ece_after <= result.ece_before
    if result.temperature == 1.0:
        assert result.ece_after == result.ece_before


def test_predict_and_ask_take_a_score_threshold(tiny_bert_dir, sample_dev, tmp_path):
    from typer.testing import CliRunner

    from spanqa.interfaces.cli import app

    runner = CliRunner()
    out = tmp_path / "p.jsonl"
    assert runner.invoke(app, ["predict", str(tiny_bert_dir), str(sample_dev), "-o", str(out), "--score-threshold", "1.0"]).exit_code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records and all(r["answer"] == "" and r["answers"] == [] and r["is_impossible"] for r in records)
    result = runner.invoke(app, ["ask", str(tiny_bert_dir), "Where did they play?", "--context", CONTEXT, "--score-threshold", "1.0", "--json"])
    assert result.exit_code == 0 and json.loads(result.output[result.output.index("{") :])["answers"] == []
