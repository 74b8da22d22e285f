"""How a question is answered: the answer options, declared once and passed whole.

The command line, the HTTP request schema, the transformers-compatible pipeline, the Haystack
component and both prediction engines build one :class:`AnswerOptions` from their own inputs and
hand it on; the reader reads it. A field left None takes the model's value from ``spanqa.json``
(as a Haystack ``run()`` argument left None takes the component's). Adding an answer option means
adding its field here and reading it where it is used; the command line's ``ask`` and ``predict``
offer it at once (their options are made from these fields), while the HTTP request schema, the
pipeline (transformers' argument names) and the Haystack component list the options they expose.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from spanqa.core.config import SpanQAConfig
from spanqa.core.errors import ConfigError

__all__ = ["AnswerOptions", "split_answer_options"]


@dataclass(frozen=True)
class AnswerOptions:
    """The options of one question's answers; None takes the model's ``spanqa.json`` value.

    Each field's ``metadata["help"]`` is its one-line description: the command line's options
    (``spanqa ask``, ``spanqa predict``) are made from the fields, so a new field is a new option.

    Attributes:
        top_k: How many ranked answers to return.
        max_answer_length: Longest answer in tokens.
        handle_impossible: Whether "no answer" may be the answer (the model's ``handle_impossible``).
        score_threshold: Drop answers whose score (probability) is below this; a question left with
            none is answered "no answer".
        overlap_threshold: Drop an answer overlapping a better one from the same text by more than
            this share of the shorter one (1 keeps all).
        align_to_words: Widen answers to whole words of the tokenizer.

    Raises:
        ConfigError: a value out of its range, naming the option and the value (the one answer-limit
            check: every interface refuses the same values with the same words).
    """

    top_k: int = field(default=1, metadata={"help": "Answers kept per question."})
    max_answer_length: int | None = field(default=None, metadata={"help": "Longest answer in tokens (default: the model's)."})
    handle_impossible: bool | None = field(
        default=None, metadata={"help": "Allow 'no answer' (default: as the model was trained).", "flag": "--handle-impossible/--always-answer"}
    )
    score_threshold: float | None = field(
        default=None, metadata={"help": "Drop answers scoring (probability) below this; none left means 'no answer' (default: the model's)."}
    )
    overlap_threshold: float | None = field(
        default=None, metadata={"help": "Drop answers overlapping a better one by more than this share; 1 keeps all (default: the model's)."}
    )
    align_to_words: bool | None = field(
        default=None, metadata={"help": "Widen answers to whole words (default: the model's).", "flag": "--align-to-words/--no-align-to-words"}
    )

    def __post_init__(self) -> None:
        if not _is_count(self.top_k):
            raise ConfigError(f"top_k must be a positive integer, got {self.top_k!r}")
        if self.max_answer_length is not None and not _is_count(self.max_answer_length):
            raise ConfigError(f"max_answer_length must be a positive integer, got {self.max_answer_length!r}")
        for name in ("score_threshold", "overlap_threshold"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0):
                raise ConfigError(f"{name} must be a probability between 0 and 1, got {value!r}")
        for name in ("handle_impossible", "align_to_words"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true, false or null, got {getattr(self, name)!r}")

    def updated(self, **overrides: Any) -> AnswerOptions:
        """A copy with ``overrides`` applied; None values keep this object's value.

        Args:
            **overrides: :class:`AnswerOptions` fields.

        Raises:
            TypeError: an override names no answer option.
        """
        unknown = set(overrides) - ANSWER_OPTION_NAMES
        if unknown:
            raise TypeError(f"unknown answer option(s) {', '.join(sorted(unknown))}; the options are {', '.join(sorted(ANSWER_OPTION_NAMES))}")
        given = {name: value for name, value in overrides.items() if value is not None}
        return replace(self, **given) if given else self

    @classmethod
    def of(cls, options: AnswerOptions | None = None, **overrides: Any) -> AnswerOptions:
        """``options`` (default: all defaults) with ``overrides`` on top: the keyword form every
        convenience call (``reader(question, context, top_k=3)``) goes through.

        Args:
            options: The options to start from.
            **overrides: :class:`AnswerOptions` fields; None keeps the value.
        """
        return (options or DEFAULT_ANSWER_OPTIONS).updated(**overrides)

    def filled_from(self, config: SpanQAConfig) -> AnswerOptions:
        """These options with every None replaced by the model's setting of the same name.

        Args:
            config: The model's ``spanqa.json`` settings.
        """
        missing = {f.name: getattr(config, f.name) for f in fields(self) if getattr(self, f.name) is None}
        return replace(self, **missing) if missing else self

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON values (for a prediction run's settings file)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


ANSWER_OPTION_NAMES = frozenset(f.name for f in fields(AnswerOptions))
DEFAULT_ANSWER_OPTIONS = AnswerOptions()


def split_answer_options(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The answer options among ``values`` (keyword arguments, a request as a mapping) and the other entries.

    Args:
        values: Names to values, answer options and others mixed.
    """
    options = {k: v for k, v in values.items() if k in ANSWER_OPTION_NAMES}
    rest = {k: v for k, v in values.items() if k not in ANSWER_OPTION_NAMES}
    return options, rest
