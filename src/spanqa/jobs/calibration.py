"""Scores users can trust: a temperature fitted so that the shown answer's score matches how often it is right.

A span's score is its share (softmax of its logit, start + end logit) of the question's
candidates, times the chance that there is an answer (:func:`spanqa.stages.decode.answer_scores`:
"no answer" gets a sigmoid of the null odds). Both divide the logits by a temperature. Fine-tuned models are usually
over-confident; dividing the logits by a temperature T > 1 spreads the probabilities (T < 1
sharpens them) without changing any ranking or decision. T is fitted on evaluation data by
minimising the log loss of "the shown answer is exactly right", and the expected calibration
error (10 equal-width bins) is reported before and after.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spanqa.stages.decode import ExamplePrediction, answer_scores
from spanqa.stages.metrics import QuestionScore

logger = logging.getLogger(__name__)

__all__ = ["Calibration", "expected_calibration_error", "shown_scores", "fit_temperature", "calibrate"]

ECE_BINS = 10


@dataclass(frozen=True)
class Calibration:
    """The temperature to use and the expected calibration error of the shown answer's score before and after.

    ``fitted`` is the log-loss optimum; ``temperature`` is it when it lowers the error on the
    fitting data, else the model's current temperature (and ``ece_after == ece_before``);
    ``fitted_ece`` is the error at ``fitted`` (not in :meth:`to_dict`).
    """

    temperature: float
    ece_before: float
    ece_after: float
    questions: int
    bins: int = ECE_BINS
    fitted: float | None = None
    fitted_ece: float | None = None

    @property
    def kept_fitted(self) -> bool:
        """Whether the fitted temperature is the one to use (it lowered the calibration error)."""
        return self.fitted is not None and self.temperature == self.fitted and self.ece_after < self.ece_before

    def describe(self) -> str:
        """One sentence: the temperature now used, the calibration error before and after, and, when
        the fitted temperature was not kept, why (what ``to_dict`` records, in words)."""
        if self.fitted is None:
            return f"score temperature {self.temperature:.3f}: expected calibration error {self.ece_before:.4f}"
        if self.kept_fitted:
            return (
                f"score temperature {self.temperature:.3f} fitted on {self.questions} questions: "
                f"expected calibration error {self.ece_before:.4f} -> {self.ece_after:.4f}"
            )
        at_fitted = f" ({self.ece_before:.4f} -> {self.fitted_ece:.4f})" if self.fitted_ece is not None else ""
        return (
            f"score temperature kept at {self.temperature:.3f} (expected calibration error {self.ece_before:.4f}): "
            f"the fitted {self.fitted:.3f} did not lower the error on these {self.questions} questions{at_fitted}"
        )

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "temperature": self.temperature,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "questions": self.questions,
            "bins": self.bins,
            "fitted_temperature": self.fitted,
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


class _ShownAnswers:
    """Per question, what its shown score depends on: span logits (padded with -inf), the null logit,
    and whether the shown answer is "no answer"; scores at any temperature as :func:`answer_scores` gives them."""

    def __init__(self, predictions: Sequence[ExamplePrediction], version_2: bool) -> None:
        width = max((len(p.candidates) for p in predictions), default=0)
        self.spans = np.full((len(predictions), max(width, 1)), -np.inf)
        for i, p in enumerate(predictions):
            self.spans[i, : len(p.candidates)] = [c.logit for c in p.candidates]
        self.null = np.array([p.null_score for p in predictions], dtype=np.float64)
        self.abstained = np.array([version_2 and p.is_impossible for p in predictions])
        self.version_2 = version_2

    def scores(self, temperature: float) -> np.ndarray:
        spans, null = answer_scores(self.spans, self.null, temperature, with_null=self.version_2)
        return np.where(self.abstained, null, spans[:, 0])  # candidates are best first


def shown_scores(predictions: Sequence[ExamplePrediction], version_2: bool, temperature: float = 1.0) -> np.ndarray:
    """The score users see for each question's decided answer (its span's, or "no answer"'s) at ``temperature``.

    Args:
        predictions: Decoded predictions (candidates best first).
        version_2: Whether "no answer" competes.
        temperature: Divides the logits (see :func:`spanqa.stages.decode.answer_scores`).
    """
    return _ShownAnswers(predictions, version_2).scores(temperature)


def fit_temperature(predictions: Sequence[ExamplePrediction], correct: Sequence[bool] | np.ndarray, version_2: bool) -> float:
    """The temperature that minimises the log loss of the shown answers' scores against their correctness.

    A one-dimensional search on log T over [0.05, 50] (a grid, then golden-section refinement).

    Args:
        predictions: Decoded predictions on evaluation data.
        correct: Whether each decided answer was exactly right.
        version_2: Whether "no answer" competes.
    """
    target = np.asarray(correct, dtype=np.float64)
    if not len(predictions):
        return 1.0
    shown = _ShownAnswers(predictions, version_2)

    def loss(log_t: float) -> float:
        p = np.clip(shown.scores(math.exp(log_t)), 1e-12, 1 - 1e-12)
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
    return math.exp((lo + hi) / 2)


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
    fitted = fit_temperature(predictions, correct, version_2)
    before = expected_calibration_error(shown_scores(predictions, version_2, current_temperature), correct)
    after = expected_calibration_error(shown_scores(predictions, version_2, fitted), correct)
    # The log-loss optimum need not lower the binned error (little data, scores far from calibratable);
    # as with the no-answer threshold, nothing changes without evidence that it helps.
    kept = after < before
    calibration = Calibration(
        fitted if kept else current_temperature, before, after if kept else before, len(predictions), fitted=fitted, fitted_ece=after
    )
    logger.info("%s", calibration.describe())  # what was fitted, whether it was kept, and why: for evaluate and train alike
    return calibration
