"""Answering from a passage index: retrieve passages for a question, let a reader rank answers
across them, and locate each answer in its source document.

The reader is anything with ``answer_batch`` (:class:`~spanqa.reading.results.AnswersBatches`), so
this module sits below :class:`~spanqa.reading.reader.Reader`, which offers it as
:meth:`~spanqa.reading.reader.Reader.answer_from_index`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spanqa.reading.index import Hit, Index, Passage
from spanqa.reading.options import AnswerOptions
from spanqa.reading.results import AnswersBatches, QARequest, ReaderResult

__all__ = ["SourcedAnswer", "IndexAnswer", "index_request", "sourced_answers", "answer_from_index", "answer_questions_from_index"]


@dataclass(frozen=True)
class SourcedAnswer:
    """An answer located in its source document: ``document text[start:end] == text``, with the
    passage's PDF page and heading (None when unknown)."""

    text: str
    score: float
    doc_id: str
    source: str
    start: int
    end: int
    passage: Passage
    page: int | None = None
    heading: str | None = None


@dataclass
class IndexAnswer:
    """The answers to one question over an index, with the passages the reader saw."""

    question: str
    answers: list[SourcedAnswer]
    hits: list[Hit]
    result: ReaderResult

    @property
    def answer(self) -> SourcedAnswer | None:
        """The decided answer, or None for "no answer"."""
        return self.answers[0] if self.result.answer is not None and self.answers else None

    def to_dict(self) -> dict[str, Any]:
        """The answers as JSON (``spanqa ask --index --json``, the HTTP API): the reader's result
        (:meth:`~spanqa.reading.results.ReaderResult.to_dict`, offsets in the passages it read), each
        answer also naming its passage, source file, PDF page, heading, document id and offsets in
        that document, and the decided answer's source, page, heading and offsets beside it."""
        out = self.result.to_dict()
        for span, answer in zip(out["answers"], self.answers):
            span.update(passage=answer.passage.text, source=answer.source, page=answer.page, heading=answer.heading, doc_id=answer.doc_id)
            span.update(document_start=answer.start, document_end=answer.end)
        best = self.answer
        out.update(
            source=best.source if best else None,
            page=best.page if best else None,
            heading=best.heading if best else None,
            doc_id=best.doc_id if best else None,
            document_start=best.start if best else None,
            document_end=best.end if best else None,
        )
        return out



def index_request(
    index: Index, question: str, *, passages: int = 10, options: AnswerOptions | None = None, id: str | None = None, hits: Sequence[Hit] | None = None
) -> tuple[QARequest, list[Hit]]:
    """Retrieve passages for ``question``: the reader's request over them, and the hits.

    Args:
        index: The passage index.
        question: The question.
        passages: How many retrieved passages the reader reads.
        options: How to answer; default: the model's settings, one answer.
        id: Echoed back in the result.
        hits: Passages already retrieved for ``question`` (best first; the first ``passages`` are
            read), instead of searching again.
    """
    hits = index.search(question, passages) if hits is None else list(hits[:passages])
    texts, scores = [hit.passage.text for hit in hits], [hit.score for hit in hits]
    return QARequest(question, documents=texts, options=options or AnswerOptions(), id=id, document_scores=scores), hits


def sourced_answers(result: ReaderResult, hits: Sequence[Hit]) -> list[SourcedAnswer]:
    """The reader's answers over the hits' passages, located in their source documents
    (offset of the passage in its document + offset of the answer in the passage).

    Args:
        result: The reader's result for the request of :func:`index_request`.
        hits: The passages it read, in the request's order.
    """
    located = []
    for span in result.answers:
        passage = hits[span.document or 0].passage
        start, end = passage.start + span.start, passage.start + span.end
        located.append(SourcedAnswer(span.text, span.score, passage.doc_id, passage.source, start, end, passage, passage.page, passage.heading))
    return located


def answer_from_index(
    reader: AnswersBatches, index: Index, question: str, *, passages: int = 10, options: AnswerOptions | None = None, **overrides: Any
) -> IndexAnswer:
    """Retrieve passages for ``question`` and rank the reader's answers across them.

    Args:
        reader: The QA model.
        index: The passage index.
        question: The question.
        passages: How many retrieved passages the reader reads.
        options: How to answer; default: the model's settings, one answer.
        **overrides: :class:`~spanqa.reading.options.AnswerOptions` fields on top of ``options``.

    Returns:
        Answers with offsets in their source documents (passage start + offset in the passage).
    """
    return answer_questions_from_index(reader, index, [question], passages=passages, options=AnswerOptions.of(options, **overrides))[0]


def answer_questions_from_index(
    reader: AnswersBatches,
    index: Index,
    questions: Sequence[str],
    *,
    passages: int = 10,
    options: AnswerOptions | None = None,
    hits: Sequence[Sequence[Hit]] | None = None,
) -> list[IndexAnswer]:
    """:func:`answer_from_index` for many questions, read in shared forward passes.

    Args:
        reader: The QA model.
        index: The passage index.
        questions: The questions.
        passages: How many retrieved passages the reader reads per question.
        options: How to answer every question.
        hits: Each question's passages, already retrieved (see :func:`index_request`).
    """
    if hits is not None and len(hits) != len(questions):
        raise ValueError(f"{len(hits)} lists of hits for {len(questions)} questions")
    retrieved = [
        index_request(index, question, passages=passages, options=options, hits=None if hits is None else hits[i]) for i, question in enumerate(questions)
    ]
    results = reader.answer_batch([request for request, _ in retrieved])
    return [IndexAnswer(question, sourced_answers(result, found), found, result) for question, (_, found), result in zip(questions, retrieved, results)]
