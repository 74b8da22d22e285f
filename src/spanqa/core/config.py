"""``spanqa.json``: the settings a model was trained and tuned with, saved beside its weights.

:class:`SpanQAConfig` is the one place where the window, decoding and
no-answer defaults are declared. :class:`~spanqa.stages.features.WindowConfig`,
:class:`~spanqa.stages.decode.DecodeConfig`, the training arguments and the command
line all take their defaults from it (``DEFAULTS``), so a default changes in
one line.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spanqa.core.errors import ConfigError, first_line
from spanqa.core.io import write_json

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase

__all__ = ["SpanQAConfig", "WindowConfig", "DecodeConfig", "CONFIG_NAME", "DEFAULTS", "SPECIAL_TOKEN_ROOM", "RENAMED_SETTINGS", "with_current_names"]

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
        handle_impossible: Whether the model may answer "no answer" (trained on SQuAD v2 style data);
            ``version_2`` in files written before 0.2.
        align_to_words: Widen answers to whole words (the tokenizer's words), as transformers'
            question-answering pipeline did; off, an answer may end inside a word.
        overlap_threshold: A top-k list never holds two answers from the same text that overlap
            by more than this share of the shorter one (the lower-scored is dropped); 1 keeps all.
        score_threshold: Answers whose score (probability) is below this are dropped; a question
            left with none is answered "no answer".
        temperature: Divides the span and null logits before the softmax that gives the scores
            users see; fitted on evaluation data (``spanqa evaluate --calibrate --save``) so that
            a score of 0.8 is right about 80% of the time. 1 leaves the model's scores as they are.
        retrieval_weight: Over several retrieved passages (``ask --index``), the weight of a
            passage's retrieval score (standardised over the question's passages) added to its
            spans' scores; fitted on the eval data's paragraphs at the end of training and by
            ``spanqa evaluate --index --save``. 0 ranks by the reader alone. The default, 8, is
            where both XQuAD-en models of the README's table did well (47.40 and 46.22 F1 with 10 passages).
    """

    max_length: int = 384
    stride: int = 128
    max_question_tokens: int = 64
    max_answer_length: int = 30
    n_best: int = 20
    null_threshold: float = 0.0
    handle_impossible: bool = False
    align_to_words: bool = False
    overlap_threshold: float = 0.5
    score_threshold: float = 0.0
    temperature: float = 1.0
    retrieval_weight: float = 8.0
    spanqa_version: str = ""
    data_fingerprint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def window(self) -> WindowConfig:
        return WindowConfig(self.max_length, self.stride, self.max_question_tokens)

    def decode_config(self, **overrides: Any) -> DecodeConfig:
        """The decoding settings, with ``overrides`` (None values ignored) on top."""
        settings: dict[str, Any] = {
            "n_best": self.n_best,
            "max_answer_length": self.max_answer_length,
            "null_threshold": self.null_threshold,
            "handle_impossible": self.handle_impossible,
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
        if not 0.0 <= config.retrieval_weight < float("inf"):
            raise ConfigError(f"retrieval_weight must be a number >= 0, got {config.retrieval_weight!r}")
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
        from spanqa.core.version import __version__

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
        data, renamed = with_current_names(data)
        known = {f.name: f for f in fields(cls)}
        for key, value in data.items():
            if key in known and not _has_type(value, known[key].type):
                raise ConfigError(f"{path}: {renamed.get(key, key)!r} must be {_TYPE_WORDS[str(known[key].type)]}, got {value!r}")
        extra = {k: v for k, v in data.items() if k not in known}
        config = cls(**{k: v for k, v in data.items() if k in known})
        config.extra.update(extra)
        try:
            return config.updated()
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None


RENAMED_SETTINGS = {"version_2": "handle_impossible"}
"""Settings' names in files written before 0.2 -> their names now (``spanqa.json``, a prediction run's settings)."""


def with_current_names(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``data`` with settings saved under an old name (:data:`RENAMED_SETTINGS`) under their current
    name, and which current names came from which old ones (for error messages).

    Args:
        data: Settings as read from a file.
    """
    renamed = {new: old for old, new in RENAMED_SETTINGS.items() if old in data and new not in data}
    current = {RENAMED_SETTINGS.get(key, key) if RENAMED_SETTINGS.get(key) in renamed else key: value for key, value in data.items()}
    return current, renamed


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

SPECIAL_TOKEN_ROOM = 4  # [CLS] q [SEP] c [SEP] needs 3; byte-level BPE pairs need 4


@dataclass(frozen=True)
class WindowConfig:
    """How a long context is cut into overlapping windows.

    ``stride`` is the number of tokens two neighbouring windows share (the
    Hugging Face tokenizers meaning). Questions longer than
    ``max_question_tokens`` are cut so every window keeps room for context.
    """

    max_length: int = DEFAULTS.max_length
    stride: int = DEFAULTS.stride
    max_question_tokens: int = DEFAULTS.max_question_tokens

    def __post_init__(self) -> None:
        if self.max_length < 16:
            raise ConfigError(f"max_length must be at least 16 tokens, got {self.max_length}")
        if self.stride < 0:
            raise ConfigError(f"stride must be >= 0, got {self.stride}")
        if self.max_question_tokens < 1:
            raise ConfigError(f"max_question_tokens must be >= 1, got {self.max_question_tokens}")
        room = self.max_length - self.max_question_tokens - SPECIAL_TOKEN_ROOM
        if room <= 0:
            raise ConfigError(
                f"max_length ({self.max_length}) leaves no room for context after the question "
                f"({self.max_question_tokens} tokens); raise max_length or lower max_question_tokens"
            )
        if self.stride >= room:
            raise ConfigError(
                f"stride ({self.stride}) must be smaller than the context room of a window "
                f"(max_length {self.max_length} - question {self.max_question_tokens} - {SPECIAL_TOKEN_ROOM} "
                f"special tokens = {room}); stride is the overlap between windows, e.g. max_length // 3"
            )

    def check_model_limit(self, tokenizer: PreTrainedTokenizerBase, max_positions: int | None = None) -> None:
        limit = max_positions or getattr(tokenizer, "model_max_length", None)
        if limit and limit < 100_000 and self.max_length > limit:
            raise ConfigError(f"max_length ({self.max_length}) exceeds the model's limit of {limit} tokens")


@dataclass(frozen=True)
class DecodeConfig:
    """Span search settings; ``max_answer_length`` counts tokens, as in the SQuAD reference."""

    n_best: int = DEFAULTS.n_best
    max_answer_length: int = DEFAULTS.max_answer_length
    null_threshold: float = DEFAULTS.null_threshold
    handle_impossible: bool = True
    align_to_words: bool = DEFAULTS.align_to_words
    temperature: float = DEFAULTS.temperature

    def __post_init__(self) -> None:
        if self.n_best < 1:
            raise ConfigError(f"n_best must be >= 1, got {self.n_best}")
        if self.max_answer_length < 1:
            raise ConfigError(f"max_answer_length must be >= 1 token, got {self.max_answer_length}")
        if self.null_threshold != self.null_threshold:  # NaN compares false with every score: no rule at all
            raise ConfigError("null_threshold must be a number, got nan")
