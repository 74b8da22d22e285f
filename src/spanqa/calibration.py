"""Scores users can trust: a temperature fitted so that the shown answer's score matches how often it is right.

A span's score is the softmax of its logit (start + end logit) over every candidate of the
question and, where "no answer" competes, the null logit. Fine-tuned models are usually
over-confident; dividing the logits by a temperature T > 1 spreads the probabilities (T < 1
sharpens them) without changing any ranking or decision. T is fitted on evaluation data by
minimising the log loss of "the shown answer is exactly right", and the expected calibration
error (10 equal-width bins) is reported before and after.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .decode import ExamplePrediction, normalize_scores
from .metrics import QuestionScore

__all__ = ["Calibration", "expected_calibration_error", "shown_scores", "fit_temperature", "calibrate"]

ECE_BINS = 10


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and the expected calibration error of the shown answer's score before and after."""

    temperature: float
    ece_before: float
    ece_after: float
    questions: int
    bins: int = ECE_BINS

    def to_dict(self) -> dict[str, float | int]:
        return {
            "temperature": self.temperature,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "questions": self.questions,
            "bins": self.bins,
        }


def expected_calibration_error(confidences: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the question-weighted mean gap between confidence and accuracy per bin.

    Args:
        confidences: Each question's shown score, in [0, 1].
        correct: Whether each shown answer was right.
        bins: Equal-width confidence bins (the last includes 1.0).
    """
    conf = np.asarray(confidences, dtype=np.float64)
    hits = np.asarray(correct, dtype=np.float64)
    if conf.size == 0:
        return 0.0
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    counts = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, weights=conf, minlength=bins) - np.bincount(which, weights=hits, minlength=bins))
    return float(gap.sum() / conf.size) if counts.sum() else 0.0


def _logit_sets(predictions: Sequence[ExamplePrediction], version_2: bool) -> list[tuple[np.ndarray, int]]:
    """Per question: its candidates' logits (+ the null logit in v2) and the index of the shown answer."""
    sets = []
    for p in predictions:
        logits = [c.logit for c in p.candidates] + ([p.null_score] if version_2 else [])
        shown = len(p.candidates) if p.is_impossible and version_2 else 0
        sets.append((np.asarray(logits, dtype=np.float64), shown))
    return sets


def shown_scores(predictions: Sequence[ExamplePrediction], version_2: bool, temperature: float = 1.0) -> np.ndarray:
    """The score users see for each question's decided answer (its span's, or "no answer"'s) at ``temperature``.

    Args:
        predictions: Decoded predictions (candidates best first).
        version_2: Whether "no answer" competes in the softmax.
        temperature: Divides the logits before the softmax.
    """
    out = np.zeros(len(predictions))
    for i, (logits, shown) in enumerate(_logit_sets(predictions, version_2)):
        if logits.size:
            out[i] = normalize_scores(logits, temperature)[shown]
    return out


def fit_temperature(predictions: Sequence[ExamplePrediction], correct: Sequence[bool] | np.ndarray, version_2: bool) -> float:
    """The temperature that minimises the log loss of the shown answers' scores against their correctness.

    A one-dimensional search on log T over [0.05, 50] (a grid, then golden-section refinement);
    questions without any candidate carry no information and are skipped.

    Args:
        predictions: Decoded predictions on evaluation data.
        correct: Whether each decided answer was exactly right.
        version_2: Whether "no answer" competes in the softmax.
    """
    hits = np.asarray(correct, dtype=np.float64)
    sets = _logit_sets(predictions, version_2)
    keep = [i for i, (logits, _) in enumerate(sets) if np.isfinite(logits).sum() > 1]
    if not keep:
        return 1.0
    width = max(sets[i][0].size for i in keep)
    matrix = np.full((len(keep), width), -np.inf)
    for row, i in enumerate(keep):
        matrix[row, : sets[i][0].size] = sets[i][0]
    shown = np.array([sets[i][1] for i in keep])
    target = hits[keep]
    finite = np.isfinite(matrix)

    def loss(log_t: float) -> float:
        scaled = np.where(finite, matrix / np.exp(log_t), -np.inf)
        top = scaled.max(axis=1, keepdims=True)
        log_norm = np.log(np.where(finite, np.exp(scaled - top), 0.0).sum(axis=1)) + top[:, 0]
        p = np.clip(np.exp(scaled[np.arange(len(keep)), shown] - log_norm), 1e-12, 1 - 1e-12)
        return float(-(target * np.log(p) + (1 - target) * np.log1p(-p)).mean())

    grid = np.linspace(np.log(0.05), np.log(50.0), 61)
    best = int(np.argmin([loss(g) for g in grid]))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(40):  # golden-section search inside the best grid cell's neighbours
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if loss(a) < loss(b):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


def calibrate(
    predictions: Sequence[ExamplePrediction], questions: Sequence[QuestionScore], version_2: bool, current_temperature: float = 1.0
) -> Calibration:
    """Fit the temperature on scored predictions and measure the calibration error before and after.

    Args:
        predictions: Decoded predictions as decided (their texts were scored).
        questions: The official per-question scores of those texts, in any order.
        version_2: Whether "no answer" competes in the softmax.
        current_temperature: The model's temperature so far ("before" is measured with it).
    """
    exact = {q.id: q.exact == 1.0 for q in questions}
    correct = np.array([exact.get(p.id, False) for p in predictions])
    temperature = fit_temperature(predictions, correct, version_2)
    before = expected_calibration_error(shown_scores(predictions, version_2, current_temperature), correct)
    after = expected_calibration_error(shown_scores(predictions, version_2, temperature), correct)
    return Calibration(temperature, before, after, len(predictions))
