"""spanqa: fine-tune, evaluate and serve extractive question-answering models.

The public API is importable from here; each name is loaded on first use (``import spanqa`` stays
fast: training pulls in transformers' Trainer, serving FastAPI). "How the code is organised" in
the README shows the layers the names come from.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from spanqa.core.version import __version__

_PUBLIC = {
    "spanqa.core.config": ("SpanQAConfig", "WindowConfig", "DecodeConfig"),
    "spanqa.core.errors": ("ConfigError", "DataError", "ModelError", "SpanQAError"),
    "spanqa.stages.data": ("Answer", "ColumnMapping", "DataSource", "QADataset", "QAExample", "load_examples", "save_examples"),
    "spanqa.stages.decode": ("ExamplePrediction", "Span", "SpanDecoder", "decode"),
    "spanqa.stages.features": ("Features", "build_features"),
    "spanqa.stages.metrics": ("ScoreReport", "normalize_answer", "score_predictions"),
    "spanqa.runtime.options": ("LoadOptions",),
    "spanqa.reading.options": ("AnswerOptions",),
    "spanqa.reading.reader": ("QARequest", "Reader", "ReaderAnswer", "ReaderResult"),
    "spanqa.reading.index": ("Index",),
    "spanqa.jobs.evaluate": ("EvaluationResult", "EvaluationSteps", "evaluate"),
    "spanqa.jobs.training": ("train", "SpanQATrainingArguments", "TrainResult", "QAEvaluator"),
    "spanqa.jobs.report": ("write_report",),
    "spanqa.interfaces.pipeline": ("QuestionAnsweringPipeline", "pipeline"),
}
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}


def __getattr__(name: str) -> object:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'spanqa' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "__version__",
    "Answer",
    "AnswerOptions",
    "ColumnMapping",
    "ConfigError",
    "DataError",
    "DataSource",
    "DecodeConfig",
    "EvaluationResult",
    "EvaluationSteps",
    "ExamplePrediction",
    "Features",
    "Index",
    "LoadOptions",
    "ModelError",
    "QADataset",
    "QAEvaluator",
    "QAExample",
    "QARequest",
    "QuestionAnsweringPipeline",
    "Reader",
    "ReaderAnswer",
    "ReaderResult",
    "ScoreReport",
    "Span",
    "SpanDecoder",
    "SpanQAConfig",
    "SpanQAError",
    "SpanQATrainingArguments",
    "TrainResult",
    "WindowConfig",
    "build_features",
    "decode",
    "evaluate",
    "load_examples",
    "normalize_answer",
    "pipeline",
    "save_examples",
    "score_predictions",
    "train",
    "write_report",
]

if TYPE_CHECKING:  # pragma: no cover - what the names above are, for type checkers and IDEs
    from spanqa.core.config import DecodeConfig, SpanQAConfig, WindowConfig
    from spanqa.core.errors import ConfigError, DataError, ModelError, SpanQAError
    from spanqa.interfaces.pipeline import QuestionAnsweringPipeline, pipeline
    from spanqa.jobs.evaluate import EvaluationResult, EvaluationSteps, evaluate
    from spanqa.jobs.report import write_report
    from spanqa.jobs.training import QAEvaluator, SpanQATrainingArguments, TrainResult, train
    from spanqa.reading.index import Index
    from spanqa.reading.options import AnswerOptions
    from spanqa.reading.reader import QARequest, Reader, ReaderAnswer, ReaderResult
    from spanqa.runtime.options import LoadOptions
    from spanqa.stages.data import Answer, ColumnMapping, DataSource, QADataset, QAExample, load_examples, save_examples
    from spanqa.stages.decode import ExamplePrediction, Span, SpanDecoder, decode
    from spanqa.stages.features import Features, build_features
    from spanqa.stages.metrics import ScoreReport, normalize_answer, score_predictions
