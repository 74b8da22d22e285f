"""Run a model over a gold dataset and score it with the official SQuAD metrics."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .backends import BackendName, Precision
from .calibration import Calibration
from .calibration import calibrate as fit_calibration
from .config import SpanQAConfig
from .data import ColumnMapping, MismatchPolicy, QADataset, QAExample, load_examples
from .decode import ExamplePrediction
from .index import Index
from .io import atomic_folder, write_json
from .metrics import ScoreReport, score_predictions
from .opendomain import evaluate_open_domain
from .reader import Reader

__all__ = [
    "EvaluationResult",
    "ThresholdTuning",
    "ThresholdCurve",
    "null_threshold_curve",
    "read_prediction_files",
    "evaluate",
    "score_decoded",
    "tune_null_threshold",
    "with_null_threshold",
    "write_prediction_files",
    "check_output_folder",
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
    calibration: Calibration | None = None


def with_null_threshold(predictions: Sequence[ExamplePrediction], threshold: float) -> list[ExamplePrediction]:
    """Each prediction re-decided at ``threshold`` (see :func:`spanqa.decode.abstains`)."""
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


@dataclass
class ThresholdCurve:
    """EM and F1 (percent) at every null threshold that changes an answer (see :func:`spanqa.metrics.threshold_curve`)."""

    thresholds: np.ndarray
    exact: np.ndarray
    f1: np.ndarray


def null_threshold_curve(examples: Sequence[QAExample], predictions: Sequence[ExamplePrediction], *, lang: str = "squad") -> ThresholdCurve:
    """EM and F1 against the no-answer threshold: at threshold ``t`` a question is answered with its
    best span when its null odds are at most ``t`` (:func:`spanqa.decode.abstains`), else "no answer".

    Args:
        examples: The gold examples.
        predictions: Decoded predictions with their candidates and null odds (at any threshold).
        lang: Answer normalisation.
    """
    from .metrics import threshold_curve

    always = [replace(p, text=p.candidates[0].text if p.candidates else "") for p in predictions]
    questions = score_decoded(examples, always, version_2=True, lang=lang).questions
    order = [p.id for p in predictions]
    thresholds, f1 = threshold_curve(questions, "f1", na_probs_order=order)
    _, exact = threshold_curve(questions, "exact", na_probs_order=order)
    return ThresholdCurve(thresholds, exact, f1)


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


EVALUATION_FILES = ("predictions.json", "nbest_predictions.json", "null_odds.json", "metrics.json", "evaluation.json", "open_domain_predictions.json")
"""What :func:`write_prediction_files` writes: a folder holding only these (and a report) is an evaluation folder."""

MODEL_FILES = ("config.json", "spanqa.json", "model.safetensors", "model.safetensors.index.json", "model.onnx")


def check_output_folder(output_dir: str | Path, overwrite: bool = False) -> Path:
    """``output_dir`` if evaluation files may go there: a new or empty folder, or (with ``overwrite``)
    an earlier evaluation's folder. Checked before any work, so a long run never ends in a refusal.

    Args:
        output_dir: The folder for the evaluation files.
        overwrite: Replace an earlier evaluation's files.

    Raises:
        OutputError: It is a file, a model folder (its training ``metrics.json`` would be replaced),
            a folder with other files, or an earlier evaluation and ``overwrite`` is False.
    """
    from .errors import OutputError

    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is a file; the output must be a folder (for {', '.join(EVALUATION_FILES)})")
    if not out.exists():
        return out
    entries = sorted(entry.name for entry in out.iterdir())
    if any(name in MODEL_FILES for name in entries):
        raise OutputError(f"{out}: is a model folder; evaluation files would replace its metrics.json. Choose another folder, e.g. {out / 'eval'}")
    from .report import is_report_file

    others = [name for name in entries if name not in EVALUATION_FILES and not is_report_file(name)]
    if others:
        raise OutputError(f"{out}: holds other files ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); choose a new or empty folder")
    if entries and not overwrite:
        raise OutputError(f"{out}: holds an earlier evaluation ({', '.join(entries)}); pass --overwrite to replace it, or choose another folder")
    return out


def write_prediction_files(
    output_dir: str | Path,
    predictions: Sequence[ExamplePrediction],
    metrics: Mapping[str, Any] | None,
    *,
    version_2: bool,
    overwrite: bool = False,
    settings: Mapping[str, Any] | None = None,
    open_domain_predictions: Mapping[str, str] | None = None,
) -> Path:
    """``predictions.json``, ``nbest_predictions.json``, ``null_odds.json`` (v2) and ``metrics.json``, swapped in as one set.

    Args:
        output_dir: A new or empty folder, or an earlier evaluation's (see :func:`check_output_folder`).
        predictions: The decoded predictions.
        metrics: The scores, or None to write none.
        version_2: Whether to write ``null_odds.json`` (the official v2 script's na-prob file).
        overwrite: Replace an earlier evaluation's files.
        settings: What was evaluated (model, gold data, window...), written as ``evaluation.json``
            so that ``spanqa report`` finds the gold answers again; None to write none.
        open_domain_predictions: The answers read from an index's passages (``evaluate --index``),
            written as ``open_domain_predictions.json`` (the layout of ``predictions.json``).
    """
    out = check_output_folder(output_dir, overwrite)
    with atomic_folder(out) as staging:
        write_json(staging / "predictions.json", {p.id: p.text for p in predictions})
        write_json(
            staging / "nbest_predictions.json",
            {
                p.id: [
                    {
                        "text": s.text,
                        "start": s.start,
                        "end": s.end,
                        "probability": s.score,
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
            # A question without any candidate has infinite odds; JSON has no infinity, the largest float keeps the order.
            write_json(staging / "null_odds.json", {p.id: max(-sys.float_info.max, min(p.null_odds, sys.float_info.max)) for p in predictions})
        if metrics is not None:
            write_json(staging / "metrics.json", dict(metrics))
        if open_domain_predictions is not None:
            write_json(staging / "open_domain_predictions.json", dict(open_domain_predictions))
        if settings is not None:
            write_json(staging / "evaluation.json", dict(settings))
    return out


def read_prediction_files(folder: str | Path) -> list[ExamplePrediction]:
    """The predictions :func:`write_prediction_files` wrote, back as :class:`ExamplePrediction` objects.

    The candidates come from ``nbest_predictions.json`` (none when it is absent) and the null
    odds from ``null_odds.json`` (as ``null_score``, with ``best_score`` 0; -inf without the
    file), so :meth:`ExamplePrediction.decided` and :func:`tune_null_threshold` work on them
    as on the predictions evaluated.

    Args:
        folder: An evaluation folder.

    Raises:
        DataError: ``predictions.json`` is missing or any file is not what :func:`write_prediction_files` writes.
    """
    from .decode import Span
    from .errors import DataError
    from .io import read_json

    out = Path(folder)
    if not (out / "predictions.json").is_file():
        raise DataError(f"{out}: no predictions.json; write one with `spanqa evaluate --output-dir {out}`")
    texts = read_json(out / "predictions.json")
    nbest = read_json(out / "nbest_predictions.json") if (out / "nbest_predictions.json").is_file() else {}
    odds = read_json(out / "null_odds.json") if (out / "null_odds.json").is_file() else {}
    for name, obj in (("predictions.json", texts), ("nbest_predictions.json", nbest), ("null_odds.json", odds)):
        if not isinstance(obj, dict):
            raise DataError(f"{out / name}: expected a JSON object {{id: ...}}, got a JSON {type(obj).__name__}")
    predictions = []
    for qid, text in texts.items():
        try:
            candidates = [
                Span(c["text"], int(c["start"]), int(c["end"]), float(c["start_logit"]) + float(c["end_logit"]),
                     float(c["start_logit"]), float(c["end_logit"]), float(c["probability"]))
                for c in nbest.get(qid, [])
            ]
            null_odds = float(odds.get(qid, float("-inf")))
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{out}: id {qid!r}: unreadable candidate or null odds ({err!r})") from None
        if not isinstance(text, str):
            raise DataError(f"{out / 'predictions.json'}: id {qid!r}: expected an answer string, got {text!r}")
        predictions.append(ExamplePrediction(qid, text, candidates, null_score=null_odds, best_score=0.0))
    return predictions


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
    batch_size: int | None = None,
    device: str | None = None,
    backend: BackendName = "auto",
    dtype: Precision | None = None,
    max_length: int | None = None,
    stride: int | None = None,
    n_best: int | None = None,
    max_answer_length: int | None = None,
    null_threshold: float | None = None,
    tune_threshold: bool = False,
    save_threshold: bool = False,
    calibrate: bool = False,
    save: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    index: str | Path | Index | None = None,
    passages: int = 10,
) -> EvaluationResult:
    """Predict every question of ``data`` with ``model`` and score the answers.

    Args:
        model: A model folder, alias or hub id, or a loaded :class:`Reader`.
        data: A data file or hub dataset name (any layout :func:`load_examples` reads), or a loaded dataset.
        output_dir: Where ``predictions.json``, ``nbest_predictions.json``, ``null_odds.json`` (v2)
            and ``metrics.json`` go; nothing is written when None.
        columns: Column mapping for flat files.
        on_mismatch: What to do with answers whose text is not at their offset.
        split: Split of a hub dataset.
        version_2: Allow "no answer"; default: detected from the data.
        lang: Answer normalisation, ``"squad"`` or a language code.
        batch_size: Windows per forward pass (default: the reader's, 32 for a loaded model).
        device: ``cpu``, ``cuda``, ... when ``model`` is loaded here.
        backend: ``auto``, ``torch`` or ``onnx`` when ``model`` is loaded here (see :meth:`Reader.from_pretrained`).
        dtype: PyTorch precision (``bf16``, ``fp16``, ``fp32``) when ``model`` is loaded here; default: bf16 on GPUs
            that support it, else fp32.
        max_length: Window length override (else the model's ``spanqa.json``).
        stride: Window overlap override.
        n_best: Candidates kept per question.
        max_answer_length: Longest answer in tokens.
        null_threshold: No-answer threshold override.
        tune_threshold: Also find the F1-maximising null threshold (v2 data) and report both.
        save_threshold: Tune the threshold (implies ``tune_threshold``) and store it in the
            model folder's ``spanqa.json`` so Reader, predict and serve apply it.
        calibrate: Fit the score temperature on this data (see :mod:`spanqa.calibration`); the
            expected calibration error before and after goes into the metrics.
        save: Store what was tuned or fitted (threshold, temperature) in the model's ``spanqa.json``.
        overwrite: Replace an earlier evaluation's files in ``output_dir``.
        progress: Show a progress bar.
        index: Also evaluate open-domain over this passage index (see :mod:`spanqa.opendomain`):
            retrieval recall@1/5/20 and end-to-end EM/F1 go into the metrics under ``open_domain``.
        passages: With ``index``: passages the reader reads per question.

    Raises:
        ConfigError: threshold tuning on data without unanswerable questions, or saving
            a threshold without a local model folder; both checked before predicting.
        OutputError: ``output_dir`` may not be written (see :func:`check_output_folder`); checked first.
    """
    from .errors import ConfigError

    if output_dir is not None:
        check_output_folder(output_dir, overwrite)
    tune_threshold = tune_threshold or save_threshold
    save = save or save_threshold
    save_folder = _threshold_folder(model) if save else None
    if index is not None:
        index = Index.open(index)  # before the model loads: a wrong folder fails fast
    dataset = data if isinstance(data, QADataset) else load_examples(data, columns=columns, on_mismatch=on_mismatch, split=split)
    v2 = dataset.version_2 if version_2 is None else version_2
    if tune_threshold and not v2:
        raise ConfigError("--tune-threshold needs SQuAD v2 style data (with unanswerable questions) or --version-2")
    settings = dict(max_length=max_length, stride=stride, n_best=n_best, max_answer_length=max_answer_length, null_threshold=null_threshold)
    if isinstance(model, Reader):
        reader = model.with_settings(batch_size=batch_size, **settings)
    else:
        reader = Reader.from_pretrained(model, device=device, batch_size=32 if batch_size is None else batch_size, backend=backend, dtype=dtype, **settings)
    decode_config = reader.config.decode_config(allow_impossible=v2)
    predictions = reader.predict_examples(dataset.examples, decode_config, progress=progress)
    tuning = None
    if tune_threshold:
        tuning = tune_null_threshold(dataset.examples, predictions, default_threshold=decode_config.null_threshold, lang=lang)
        predictions = with_null_threshold(predictions, tuning.threshold)
        if save_folder is not None:
            SpanQAConfig.load(save_folder).updated(null_threshold=tuning.threshold).save(save_folder)
            logger.info("saved null_threshold %.4f to %s", tuning.threshold, save_folder / "spanqa.json")
    report = score_decoded(dataset.examples, predictions, version_2=v2, lang=lang)
    metrics: dict[str, Any] = dict(report.metrics)
    if tuning is not None:
        metrics = threshold_metrics(tuning)
    calibration = None
    if calibrate:
        calibration = fit_calibration(predictions, report.questions, v2, current_temperature=reader.config.temperature)
        metrics["calibration"] = calibration.to_dict()
        logger.info(
            "score temperature %.3f: expected calibration error %.4f -> %.4f", calibration.temperature, calibration.ece_before, calibration.ece_after
        )
        if save_folder is not None:
            SpanQAConfig.load(save_folder).updated(temperature=calibration.temperature).save(save_folder)
            logger.info("saved temperature %.4f to %s", calibration.temperature, save_folder / "spanqa.json")
    open_domain = None
    if index is not None:
        open_domain = evaluate_open_domain(reader, index, dataset.examples, passages=passages, version_2=v2, lang=lang)
        metrics["open_domain"] = open_domain.to_dict()
    out = None
    if output_dir is not None:
        settings_used = _evaluation_settings(model, reader, dataset, columns, on_mismatch, split, v2, lang, decode_config.null_threshold)
        out = write_prediction_files(
            output_dir,
            predictions,
            metrics,
            version_2=v2,
            overwrite=overwrite,
            settings=settings_used,
            open_domain_predictions=open_domain.predictions if open_domain else None,
        )
    return EvaluationResult(metrics, predictions, report, out, tuning, calibration)


def _local_or_name(name: str) -> str:
    """An existing local path made absolute (a report may run from another folder), else the name as given."""
    path = Path(name)
    try:
        return str(path.resolve()) if name and path.exists() else name
    except OSError:
        return name


def _evaluation_settings(
    model: str | Path | Reader,
    reader: Reader,
    dataset: QADataset,
    columns: ColumnMapping | Mapping[str, str] | None,
    on_mismatch: str,
    split: str | None,
    version_2: bool,
    lang: str,
    null_threshold: float,
) -> dict[str, Any]:
    """What ``evaluation.json`` records: enough to load the same gold data and windows again."""
    if isinstance(model, Reader):
        config = getattr(getattr(model, "model", None), "config", None)
        name = getattr(config, "name_or_path", None) or None
    else:
        name = str(model)
    mapping = vars(columns) if isinstance(columns, ColumnMapping) else dict(columns or {})
    return {
        "model": _local_or_name(str(name)) if name else None,
        "data": _local_or_name(dataset.source),
        "columns": {key: value for key, value in mapping.items() if value is not None},
        "on_mismatch": on_mismatch,
        "split": split,
        "version_2": version_2,
        "lang": lang,
        "null_threshold": null_threshold,
        "max_length": reader.config.max_length,
        "stride": reader.config.stride,
        "max_question_tokens": reader.config.max_question_tokens,
    }


def threshold_metrics(tuning: ThresholdTuning) -> dict[str, Any]:
    """Headline metrics at the tuned threshold, with the default threshold's beside them."""
    metrics: dict[str, Any] = dict(tuning.tuned_metrics)
    metrics["null_threshold"] = tuning.threshold
    metrics["default_threshold"] = {"null_threshold": tuning.default_threshold, **tuning.default_metrics}
    return metrics


def _threshold_folder(model: str | Path | Reader) -> Path:
    """The local model folder a tuned threshold is saved into; refused before any work when there is none."""
    from .errors import ConfigError
    from .models import resolve_model

    folder = None if isinstance(model, Reader) else Path(resolve_model(str(model)))
    if folder is None or not folder.is_dir():
        raise ConfigError("--save needs a local model folder to write spanqa.json into")
    return folder
