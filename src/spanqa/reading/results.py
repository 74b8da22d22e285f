"""What a reader is asked and what it answers: :class:`QARequest` in, :class:`ReaderResult` out.

Every interface renders results through here: :meth:`ReaderResult.to_dict` is the one JSON form
of a result (``spanqa ask --json``, ``predict``'s lines, the HTTP API), and
:meth:`ReaderResult.with_no_answer` the one place the "no answer" entry is put among the answers
(the transformers-compatible pipeline and the Haystack component).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from spanqa.core.errors import DataError
from spanqa.reading.options import AnswerOptions, split_answer_options
from spanqa.stages.decode import Span

__all__ = ["QARequest", "ReaderResult", "ReaderAnswer", "AnswersBatches"]

ReaderAnswer = Span
"""An answer of a reader is a :class:`~spanqa.stages.decode.Span`; the old name stays for compatibility."""


@dataclass
class ReaderResult:
    """Ranked answers to one question; ``score`` values and ``no_answer_score`` are probabilities
    over every candidate of every window and document of the question, plus "no answer".

    ``no_answer_threshold`` is the no-answer rule on the same scale: the result is "no answer"
    when ``no_answer_score`` exceeds it (1 when "no answer" is not allowed), or when no answer
    passes the score threshold.
    """

    question: str
    answers: list[Span]
    no_answer_score: float
    is_impossible: bool
    id: str | None = None
    no_answer_threshold: float = 1.0
    note: str | None = None
    """Why fewer answers than ``top_k`` came back, when candidates overlapping the kept ones were dropped."""

    @property
    def answer(self) -> Span | None:
        """The decided answer, or None when the model says the text does not answer the question."""
        if self.is_impossible or not self.answers:
            return None
        return self.answers[0]

    def with_no_answer(self) -> list[Span | None]:
        """The answers with the "no answer" entry (None) in its place: first when the model abstains
        (its own rule leads, even where a span scores higher), else after the decided answer, among
        the others by score (its score is :attr:`no_answer_score`)."""
        if self.is_impossible:
            return [None, *self.answers]
        rest: list[Span | None] = [None, *self.answers[1:]]  # a tie puts "no answer" first
        rest.sort(key=lambda span: -(self.no_answer_score if span is None else span.score))
        return [*self.answers[:1], *rest]

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON: the decided answer's fields, the no-answer score and rule, and every answer."""
        best = self.answer
        note = {"note": self.note} if self.note else {}  # only when a top-k list came back short
        return {
            "id": self.id,
            "question": self.question,
            "answer": best.text if best else "",
            "score": best.score if best else self.no_answer_score,
            "start": best.start if best else None,
            "end": best.end if best else None,
            "document": best.document if best else None,
            "is_impossible": self.is_impossible,
            "no_answer_score": self.no_answer_score,
            "no_answer_threshold": self.no_answer_threshold,
            "answers": [{"text": a.text, "start": a.start, "end": a.end, "score": a.score, "document": a.document} for a in self.answers],
            **note,
        }


@dataclass
class QARequest:
    """One question over one context, or over several documents ranked together, with its answer options.

    Attributes:
        question: The question.
        context: The text to answer from (or give ``documents``).
        documents: Several texts; answers are ranked across them and name their document.
        options: How to answer (top_k, limits, no-answer handling); default: the model's settings.
        id: Echoed back in the result.
        document_scores: The documents' retrieval scores (higher is better), fused into the ranking
            by the model's ``retrieval_weight``; None ranks by the reader alone.
    """

    question: str
    context: str | None = None
    documents: list[str] | None = None
    options: AnswerOptions = field(default_factory=AnswerOptions)
    id: str | None = None
    document_scores: list[float] | None = None
    _texts: list[str] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.question, str) or not self.question.strip():
            raise DataError("empty question")
        if (self.context is None) == (self.documents is None):
            raise DataError("give either a context or documents (not both, not neither)")
        texts = [self.context] if self.context is not None else list(self.documents or [])
        if not texts:
            raise DataError("documents is empty")
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise DataError("empty context" if self.context is not None else f"document {i} is empty")
        if self.document_scores is not None and (self.documents is None or len(self.document_scores) != len(texts)):
            raise DataError(f"{len(self.document_scores)} document scores for {len(texts) if self.documents is not None else 0} documents")
        if not isinstance(self.options, AnswerOptions):
            raise TypeError(f"options must be AnswerOptions, got {type(self.options).__name__}")
        self._texts = texts

    @property
    def texts(self) -> list[str]:
        """The texts to read: the context, or the documents in order."""
        return self._texts

    @classmethod
    def coerce(cls, value: QARequest | Mapping[str, Any] | tuple[str, str]) -> QARequest:
        """A request from itself, a ``(question, context)`` pair, or a mapping of its fields and answer options.

        Args:
            value: ``QARequest``, ``(question, context)`` or ``{"question": ..., "context": ..., "top_k": 3, ...}``.
        """
        if isinstance(value, QARequest):
            return value
        if isinstance(value, tuple):
            return cls(question=value[0], context=value[1])
        options, rest = split_answer_options(value)
        base = rest.pop("options", None)
        return cls(**rest, options=AnswerOptions.of(base, **options))


class AnswersBatches(Protocol):
    """Anything that answers requests in shared passes (a :class:`~spanqa.reading.reader.Reader`)."""

    def answer_batch(self, requests: Sequence[QARequest | Mapping[str, Any] | tuple[str, str]]) -> list[ReaderResult]: ...
