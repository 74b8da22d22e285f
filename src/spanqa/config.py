"""``spanqa.json``: the settings a model was trained and tuned with, saved beside its weights.

:class:`SpanQAConfig` is the one place where the window, decoding and
no-answer defaults are declared. :class:`~spanqa.features.WindowConfig`,
:class:`~spanqa.decode.DecodeConfig`, the training arguments and the command
line all take their defaults from it (``DEFAULTS``), so a default changes in
one line.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, first_line
from .io import write_json

if TYPE_CHECKING:  # pragma: no cover
    from .decode import DecodeConfig
    from .features import WindowConfig

__all__ = ["SpanQAConfig", "CONFIG_NAME", "DEFAULTS"]

CONFIG_NAME = "spanqa.json"


@dataclass
class SpanQAConfig:
    """Everything inference needs besides the weights, so a model answers as it was evaluated.

    Attributes:
        max_length: Window length in tokens (question + context + special tokens).
        stride: Tokens shared by neighbouring windows of a long context.
        max_question_tokens: Longer questions are cut to this many tokens.
        max_answer_length: Longest answer considered, in tokens.
        n_best: Candidate answers kept per question.
        null_threshold: "No answer" when the null score minus the best span score exceeds this.
        version_2: Whether the model may answer "no answer" (SQuAD v2 style).
        align_to_words: Widen answers to whole words (the tokenizer's words), as transformers'
            question-answering pipeline did; off, an answer may end inside a word.
        overlap_threshold: A top-k list never holds two answers from the same text that overlap
            by more than this share of the shorter one (the lower-scored is dropped); 1 keeps all.
        score_threshold: Answers whose score (probability) is below this are dropped; a question
            left with none is answered "no answer".
        temperature: Divides the span and null logits before the softmax that gives the scores
            users see; fitted on evaluation data (``spanqa evaluate --calibrate --save``) so that
            a score of 0.8 is right about 80% of the time. 1 leaves the model's scores as they are.
    """

    max_length: int = 384
    stride: int = 128
    max_question_tokens: int = 64
    max_answer_length: int = 30
    n_best: int = 20
    null_threshold: float = 0.0
    version_2: bool = False
    align_to_words: bool = False
    overlap_threshold: float = 0.5
    score_threshold: float = 0.0
    temperature: float = 1.0
    spanqa_version: str = ""
    data_fingerprint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def window(self) -> WindowConfig:
        from .features import WindowConfig

        return WindowConfig(self.max_length, self.stride, self.max_question_tokens)

    def decode_config(self, **overrides: Any) -> DecodeConfig:
        """The decoding settings, with ``overrides`` (None values ignored) on top."""
        from .decode import DecodeConfig

        settings: dict[str, Any] = {
            "n_best": self.n_best,
            "max_answer_length": self.max_answer_length,
            "null_threshold": self.null_threshold,
            "allow_impossible": self.version_2,
            "align_to_words": self.align_to_words,
            "temperature": self.temperature,
        }
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return DecodeConfig(**settings)

    def updated(self, **overrides: Any) -> SpanQAConfig:
        """A copy with ``overrides`` applied (None values ignored), validated.

        Raises:
            TypeError: an override names no setting.
            ConfigError: the resulting window settings are invalid.
        """
        for key in overrides:
            if key not in _SETTING_NAMES:
                raise TypeError(f"unknown spanqa setting {key!r}")
        config = replace(self, **{k: v for k, v in overrides.items() if v is not None}, extra=dict(self.extra))
        for name in ("overlap_threshold", "score_threshold"):
            if not 0.0 <= getattr(config, name) <= 1.0:  # also refuses NaN
                raise ConfigError(f"{name} must be between 0 and 1, got {getattr(config, name)!r}")
        if not 0.0 < config.temperature < float("inf"):
            raise ConfigError(f"temperature must be a positive number, got {config.temperature!r}")
        # Build both now: they validate max_length, stride, n_best... before anything heavy happens.
        _ = config.window, config.decode_config()
        return config

    def save(self, folder: str | Path) -> Path:
        """Write ``spanqa.json`` into ``folder`` (atomically).

        Args:
            folder: The model folder.
        """
        from . import __version__

        self.spanqa_version = __version__
        path = Path(folder) / CONFIG_NAME
        write_json(path, asdict(self))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> SpanQAConfig:
        """The saved settings, or defaults for a model spanqa did not train."""
        path = Path(folder) / CONFIG_NAME
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError) as err:
            raise ConfigError(f"{path}: not valid JSON ({getattr(err, 'msg', None) or first_line(err)})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object of settings, got a JSON {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        for key, value in data.items():
            if key in known and not _has_type(value, known[key].type):
                raise ConfigError(f"{path}: {key!r} must be {_TYPE_WORDS[str(known[key].type)]}, got {value!r}")
        extra = {k: v for k, v in data.items() if k not in known}
        config = cls(**{k: v for k, v in data.items() if k in known})
        config.extra.update(extra)
        try:
            return config.updated()
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "str | None": "a string or null",
    "dict[str, Any]": "a JSON object",
}
"""How an error names each field type of SpanQAConfig (annotations are strings here)."""


def _has_type(value: Any, annotation: Any) -> bool:
    """Whether a JSON value fits a SpanQAConfig field's annotation (bools are not numbers)."""
    kind = str(annotation)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "str | None":
        return value is None or isinstance(value, str)
    return isinstance(value, dict)


_SETTING_NAMES = frozenset(f.name for f in fields(SpanQAConfig)) - {"spanqa_version", "data_fingerprint", "extra"}

DEFAULTS = SpanQAConfig()
"""The default settings: read these, never repeat their values."""
