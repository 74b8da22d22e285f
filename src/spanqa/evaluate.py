"""Run a model over a gold dataset and score it with the official SQuAD metrics."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import ColumnMapping, MismatchPolicy, QADataset, QAExample, load_examples
from .decode import ExamplePrediction
from .io import write_json
from .metrics import ScoreReport, score_predictions
from .reader import Reader

__all__ = ["EvaluationResult", "evaluate", "score_decoded", "write_prediction_files"]

logger = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    metrics: dict[str, float]
    predictions: list[ExamplePrediction]
    report: ScoreReport
    output_dir: Path | None = None


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
    progress: bool = False,
) -> EvaluationResult:
    """Predict every question of ``data`` with ``model`` and score the answers.

    With ``output_dir`` the prediction files and ``metrics.json`` are written there.
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
    report = score_decoded(dataset.examples, predictions, version_2=v2, lang=lang)
    out = None
    if output_dir is not None:
        out = write_prediction_files(output_dir, predictions, report.metrics, version_2=v2)
    return EvaluationResult(report.metrics, predictions, report, out)
