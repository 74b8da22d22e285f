"""spanqa: fine-tune, evaluate and serve extractive question-answering models."""

from __future__ import annotations

__version__ = "0.1.0"

from .config import SpanQAConfig
from .data import Answer, ColumnMapping, QADataset, QAExample, load_examples, save_examples
from .decode import DecodeConfig, ExamplePrediction, Span, SpanDecoder, decode
from .errors import ConfigError, DataError, ModelError, SpanQAError
from .evaluate import EvaluationResult, evaluate
from .features import Features, WindowConfig, build_features
from .metrics import ScoreReport, normalize_answer, score_predictions
from .pipeline import QuestionAnsweringPipeline, pipeline
from .reader import QARequest, Reader, ReaderAnswer, ReaderResult

_LAZY = {  # importing transformers' TrainingArguments is slow; load training only when asked for
    "train": "training",
    "SpanQATrainingArguments": "training",
    "TrainResult": "training",
    "QAEvaluator": "training",
    "write_report": "report",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'spanqa' has no attribute {name!r}")


__all__ = [
    "__version__",
    "Answer",
    "ColumnMapping",
    "ConfigError",
    "DataError",
    "DecodeConfig",
    "EvaluationResult",
    "ExamplePrediction",
    "Features",
    "ModelError",
    "QAEvaluator",
    "QARequest",
    "QADataset",
    "QAExample",
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
