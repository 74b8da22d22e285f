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
from .reader import Reader

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
    "QADataset",
    "QAExample",
    "Reader",
    "ScoreReport",
    "Span",
    "SpanDecoder",
    "SpanQAConfig",
    "SpanQAError",
    "WindowConfig",
    "build_features",
    "decode",
    "evaluate",
    "load_examples",
    "normalize_answer",
    "save_examples",
    "score_predictions",
]
