"""The files of an evaluation folder: which they are, the guard of the folder, writing and reading them.

``spanqa evaluate --output-dir`` (and the ``eval/`` folder of a training run) holds the prediction
files and metrics written here, and the report ``spanqa report`` draws from them. Both
:mod:`spanqa.jobs.evaluate` and :mod:`spanqa.jobs.report` build on this module.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spanqa.core.errors import DataError, OutputError
from spanqa.core.io import atomic_folder, check_output_folder, read_json, write_json
from spanqa.stages.decode import ExamplePrediction, Span

__all__ = [
    "EVALUATION_FILES",
    "MODEL_FILES",
    "REPORT_NAME",
    "REPORT_FIGURES",
    "is_report_file",
    "is_evaluation_file",
    "check_evaluation_folder",
    "write_prediction_files",
    "read_prediction_files",
]

EVALUATION_FILES = ("predictions.json", "nbest_predictions.json", "null_odds.json", "metrics.json", "evaluation.json", "open_domain_predictions.json")
"""What :func:`write_prediction_files` writes: a folder holding only these (and a report) is an evaluation folder."""

MODEL_FILES = ("config.json", "spanqa.json", "model.safetensors", "model.safetensors.index.json", "model.onnx")

REPORT_NAME = "report.html"
"""The report :func:`spanqa.jobs.report.write_report` writes by default."""
REPORT_FIGURES = ("training", "breakdown", "threshold")
"""The report's figures, written beside it as ``report-<name>.png``."""


def is_report_file(name: str) -> bool:
    """Whether a file name is one :func:`spanqa.jobs.report.write_report` writes by default (``report.html``, ``report-*.png``).

    Args:
        name: A file name (no folder).
    """
    stem = Path(REPORT_NAME).stem
    return name == REPORT_NAME or name in {f"{stem}-{figure}.png" for figure in REPORT_FIGURES}


def is_evaluation_file(name: str) -> bool:
    """Whether a file name is one an evaluation folder holds: the evaluation's files or its report.

    Args:
        name: A file name (no folder).
    """
    return name in EVALUATION_FILES or is_report_file(name)


def check_evaluation_folder(output_dir: str | Path, overwrite: bool = False) -> Path:
    """``output_dir`` if evaluation files may go there: a new or empty folder, or (with ``overwrite``)
    an earlier evaluation's folder (:func:`spanqa.core.io.check_output_folder`). Checked before any
    work, so a long run never ends in a refusal.

    Args:
        output_dir: The folder for the evaluation files.
        overwrite: Replace an earlier evaluation's files.

    Raises:
        OutputError: It is a file, a model folder (its training ``metrics.json`` would be replaced),
            a folder with other files, or an earlier evaluation and ``overwrite`` is False.
    """
    out = Path(output_dir)
    if out.is_dir() and any((out / name).exists() for name in MODEL_FILES):
        raise OutputError(f"{out}: is a model folder; evaluation files would replace its metrics.json. Choose another folder, e.g. {out / 'eval'}")
    return check_output_folder(out, overwrite, owned=is_evaluation_file, what="evaluation")


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
        output_dir: A new or empty folder, or an earlier evaluation's (see :func:`check_evaluation_folder`).
        predictions: The decoded predictions.
        metrics: The scores, or None to write none.
        version_2: Whether to write ``null_odds.json`` (the official v2 script's na-prob file).
        overwrite: Replace an earlier evaluation's files.
        settings: What was evaluated (model, gold data, window...), written as ``evaluation.json``
            so that ``spanqa report`` finds the gold answers again; None to write none.
        open_domain_predictions: The answers read from an index's passages (``evaluate --index``),
            written as ``open_domain_predictions.json`` (the layout of ``predictions.json``).
    """
    out = check_evaluation_folder(output_dir, overwrite)
    with atomic_folder(out) as staging:
        write_json(staging / "predictions.json", {p.id: p.text for p in predictions})
        write_json(staging / "nbest_predictions.json", {p.id: [_candidate(s) for s in p.candidates] for p in predictions}, indent=None)
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


def _candidate(span: Span) -> dict[str, Any]:
    """One n-best entry as ``nbest_predictions.json`` holds it."""
    return {
        "text": span.text,
        "start": span.start,
        "end": span.end,
        "probability": span.score,
        "start_logit": span.start_logit,
        "end_logit": span.end_logit,
    }


def read_prediction_files(folder: str | Path) -> list[ExamplePrediction]:
    """The predictions :func:`write_prediction_files` wrote, back as :class:`ExamplePrediction` objects.

    The candidates come from ``nbest_predictions.json`` (none when it is absent) and the null
    odds from ``null_odds.json`` (as ``null_score``, with ``best_score`` 0; -inf without the
    file), so :meth:`ExamplePrediction.decided` and :func:`spanqa.jobs.scoring.tune_null_threshold`
    work on them as on the predictions evaluated.

    Args:
        folder: An evaluation folder.

    Raises:
        DataError: ``predictions.json`` is missing or any file is not what :func:`write_prediction_files` writes.
    """
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
