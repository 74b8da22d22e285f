"""Scores of decoded predictions, and the no-answer threshold that maximises F1.

Shared by evaluation (:mod:`spanqa.jobs.evaluate`), training's QA evaluator and run reports
(:mod:`spanqa.jobs.report`), so that the three compute the same numbers the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from spanqa.stages.data import QAExample
from spanqa.stages.decode import ExamplePrediction
from spanqa.stages.metrics import ScoreReport, score_predictions, threshold_curve

__all__ = [
    "ThresholdTuning",
    "ThresholdCurve",
    "score_decoded",
    "with_null_threshold",
    "tune_null_threshold",
    "null_threshold_curve",
    "threshold_metrics",
]


@dataclass
class ThresholdTuning:
    """The null threshold that maximises F1, with scores before and after applying it."""

    threshold: float
    default_threshold: float
    default_metrics: dict[str, float]
    tuned_metrics: dict[str, float]


@dataclass
class ThresholdCurve:
    """EM and F1 (percent) at every null threshold that changes an answer (see :func:`spanqa.stages.metrics.threshold_curve`)."""

    thresholds: np.ndarray
    exact: np.ndarray
    f1: np.ndarray


def score_decoded(
    examples: Sequence[QAExample],
    predictions: Sequence[ExamplePrediction],
    *,
    version_2: bool,
    lang: str = "squad",
) -> ScoreReport:
    """Official scores of decoded predictions; v2 adds the best-threshold keys from null odds.

    The headline EM/F1 are those of the answers as decided (no extra na-prob
    cut-off), so they match ``predictions.json`` scored without an na-prob file.
    """
    texts = {p.id: p.text for p in predictions}
    na_probs = {p.id: p.null_odds for p in predictions} if version_2 else None
    return score_predictions(examples, texts, na_probs, version_2=version_2, na_prob_thresh=float("inf"), lang=lang)


def with_null_threshold(predictions: Sequence[ExamplePrediction], threshold: float) -> list[ExamplePrediction]:
    """Each prediction re-decided at ``threshold`` (see :func:`spanqa.stages.decode.abstains`)."""
    return [p.decided(threshold) for p in predictions]


def tune_null_threshold(
    examples: Sequence[QAExample],
    predictions: Sequence[ExamplePrediction],
    *,
    default_threshold: float = 0.0,
    lang: str = "squad",
) -> ThresholdTuning:
    """Search the threshold on null odds that maximises F1 (the official v2 search, over :func:`null_threshold_curve`).

    Each question is scored with its best non-null span, so the search sees what
    every threshold would answer, not only what the default one did. The lowest
    threshold reaching the curve's maximum is taken, so the tuned F1 is that maximum
    (abstaining on every question included). The default
    stays unless the search beats it: a tie on the tuning data is no evidence to move.
    """
    curve = null_threshold_curve(examples, predictions, lang=lang)
    threshold = float(curve.thresholds[int(np.argmax(curve.f1))])
    default = score_decoded(examples, with_null_threshold(predictions, default_threshold), version_2=True, lang=lang).metrics
    tuned = score_decoded(examples, with_null_threshold(predictions, threshold), version_2=True, lang=lang).metrics
    if tuned["f1"] <= default["f1"]:
        threshold, tuned = default_threshold, default
    return ThresholdTuning(threshold, default_threshold, default, tuned)


def null_threshold_curve(examples: Sequence[QAExample], predictions: Sequence[ExamplePrediction], *, lang: str = "squad") -> ThresholdCurve:
    """EM and F1 against the no-answer threshold: at threshold ``t`` a question is answered with its
    best span when its null odds are at most ``t`` (:func:`spanqa.stages.decode.abstains`), else "no answer".

    Args:
        examples: The gold examples.
        predictions: Decoded predictions with their candidates and null odds (at any threshold).
        lang: Answer normalisation.
    """
    always = [replace(p, text=p.candidates[0].text if p.candidates else "") for p in predictions]
    questions = score_decoded(examples, always, version_2=True, lang=lang).questions
    order = [p.id for p in predictions]
    thresholds, f1 = threshold_curve(questions, "f1", na_probs_order=order)
    _, exact = threshold_curve(questions, "exact", na_probs_order=order)
    return ThresholdCurve(thresholds, exact, f1)


def threshold_metrics(tuning: ThresholdTuning) -> dict[str, Any]:
    """Headline metrics at the tuned threshold, with the default threshold's beside them."""
    metrics: dict[str, Any] = dict(tuning.tuned_metrics)
    metrics["null_threshold"] = tuning.threshold
    metrics["default_threshold"] = {"null_threshold": tuning.default_threshold, **tuning.default_metrics}
    return metrics
