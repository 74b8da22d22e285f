"""Run a model over a gold dataset and score it with the official SQuAD metrics."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .data import ColumnMapping, MismatchPolicy, QADataset, QAExample, load_examples
from .decode import ExamplePrediction
from .io import write_json
from .metrics import ScoreReport, score_predictions
from .reader import Reader

__all__ = [
    "EvaluationResult",
    "ThresholdTuning",
    "evaluate",
    "score_decoded",
    "tune_null_threshold",
    "with_null_threshold",
    "write_prediction_files",
]

logger = logging.getLogger(__name__)


@dataclass
class ThresholdTuning:
    """The null threshold that maximises F1, with scores before and after applying it."""

    threshold: float
    default_threshold: float
    default_metrics: dict[str, float]
    tuned_metrics: dict[str, float]


@dataclass
class EvaluationResult:
    metrics: dict[str, float]
    predictions: list[ExamplePrediction]
    report: ScoreReport
    output_dir: Path | None = None
    tuning: ThresholdTuning | None = None


def with_null_threshold(predictions: Sequence[ExamplePrediction], threshold: float) -> list[ExamplePrediction]:
    """Re-decide each answer: no answer when null score - best span score > threshold."""
    return [
        replace(p, text="" if not p.candidates or p.null_odds > threshold else p.candidates[0].text)
        for p in predictions
    ]


def tune_null_threshold(
    examples: Sequence[QAExample],
    predictions: Sequence[ExamplePrediction],
    *,
    default_threshold: float = 0.0,
    lang: str = "squad",
) -> ThresholdTuning:
    """Search the threshold on null odds that maximises F1 (the official v2 best-threshold search).

    Each question is scored with its best non-null span, so the search sees what
    every threshold would answer, not only what the default one did. The default
    stays unless the search beats it: a tie on the tuning data is no evidence to move.
    """
    from .metrics import best_threshold

    always = [replace(p, text=p.candidates[0].text if p.candidates else "") for p in predictions]
    report = score_decoded(examples, always, version_2=True, lang=lang)
    _, threshold = best_threshold(report.questions, "f1", na_probs_order=[p.id for p in predictions])
    default = score_decoded(examples, with_null_threshold(predictions, default_threshold), version_2=True, lang=lang).metrics
    tuned = score_decoded(examples, with_null_threshold(predictions, threshold), version_2=True, lang=lang).metrics
    if tuned["f1"] <= default["f1"]:
        threshold, tuned = default_threshold, default
    return ThresholdTuning(threshold, default_threshold, default, tuned)


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


def write_prediction_files(
    output_dir: str | Path,
    predictions: Sequence[ExamplePrediction],
    metrics: Mapping[str, Any] | None,
    *,
    version_2: bool,
) -> Path:
    """``predictions.json``, ``nbest_predictions.json``, ``null_odds.json`` (v2), ``metrics.json``; each atomic."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "predictions.json", {p.id: p.text for p in predictions})
    write_json(
        out / "nbest_predictions.json",
        {
            p.id: [
                {
                    "text": s.text,
                    "start": s.start,
                    "end": s.end,
                    "probability": s.probability,
                    "start_logit": s.start_logit,
                    "end_logit": s.end_logit,
                }
                for s in p.candidates
            ]
            for p in predictions
        },
        indent=None,
    )
    if version_2:
        write_json(out / "null_odds.json", {p.id: p.null_odds for p in predictions})
    if metrics is not None:
        write_json(out / "metrics.json", dict(metrics))
    return out


def evaluate(
    model: str | Path | Reader,
    data: str | Path | QADataset,
    *,
    output_dir: str | Path | None = None,
    columns: ColumnMapping | Mapping[str, str] | None = None,
    on_mismatch: MismatchPolicy = "repair",
    split: str | None = None,
    version_2: bool | None = None,
    lang: str = "squad",
    batch_size: int = 32,
    device: str | None = None,
    max_length: int | None = None,
    stride: int | None = None,
    n_best: int | None = None,
    max_answer_length: int | None = None,
    null_threshold: float | None = None,
    tune_threshold: bool = False,
    save_threshold: bool = False,
    progress: bool = False,
) -> EvaluationResult:
    """Predict every question of ``data`` with ``model`` and score the answers.

    With ``output_dir`` the prediction files and ``metrics.json`` are written there.
    ``tune_threshold`` (v2 data) also finds the F1-maximising null threshold,
    reports scores at both thresholds and, with ``save_threshold``, stores it in
    the model's ``spanqa.json`` so Reader, predict and serve apply it.
    """
    dataset = data if isinstance(data, QADataset) else load_examples(data, columns=columns, on_mismatch=on_mismatch, split=split)
    reader = (
        model
        if isinstance(model, Reader)
        else Reader.from_pretrained(
            model, device=device, batch_size=batch_size, max_length=max_length, stride=stride, n_best=n_best,
            max_answer_length=max_answer_length, null_threshold=null_threshold,
        )
    )
    v2 = dataset.version_2 if version_2 is None else version_2
    decode_config = reader.config.decode_config(allow_impossible=v2)
    predictions = reader.predict_examples(dataset.examples, decode_config, progress=progress)
    tuning = None
    if tune_threshold:
        if not v2:
            from .errors import ConfigError

            raise ConfigError("--tune-threshold needs SQuAD v2 style data (with unanswerable questions) or --version-2")
        tuning = tune_null_threshold(dataset.examples, predictions, default_threshold=decode_config.null_threshold, lang=lang)
        predictions = with_null_threshold(predictions, tuning.threshold)
        if save_threshold:
            _save_threshold(model, reader, tuning.threshold)
    report = score_decoded(dataset.examples, predictions, version_2=v2, lang=lang)
    metrics = dict(report.metrics)
    if tuning is not None:
        metrics = threshold_metrics(tuning)
    out = None
    if output_dir is not None:
        out = write_prediction_files(output_dir, predictions, metrics, version_2=v2)
    return EvaluationResult(metrics, predictions, report, out, tuning)


def threshold_metrics(tuning: ThresholdTuning) -> dict[str, Any]:
    """Headline metrics at the tuned threshold, with the default threshold's beside them."""
    metrics: dict[str, Any] = dict(tuning.tuned_metrics)
    metrics["null_threshold"] = tuning.threshold
    metrics["default_threshold"] = {"null_threshold": tuning.default_threshold, **tuning.default_metrics}
    return metrics


def _save_threshold(model: str | Path | Reader, reader: Reader, threshold: float) -> None:
    from .errors import ConfigError
    from .models import resolve_model

    if isinstance(model, Reader) or not Path(resolve_model(str(model))).is_dir():
        raise ConfigError("--save-threshold needs a local model folder to write spanqa.json into")
    reader.config.null_threshold = threshold
    reader.config.save(resolve_model(str(model)))
    logger.info("saved null_threshold %.4f to %s", threshold, Path(resolve_model(str(model))) / "spanqa.json")
