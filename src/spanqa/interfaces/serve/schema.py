"""The HTTP API's schema: the request and response bodies of ``/answer`` and ``/health``, and the error body.

The request models are what a body is validated against (strict: no type coercion, no unknown
fields); the response models document the API in ``/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from spanqa.reading.options import ANSWER_OPTION_NAMES, AnswerOptions

__all__ = [
    "QuestionRequest", "BatchRequest", "AnswerSpan", "AnswerResponse", "BatchResponse", "IndexHealth", "HealthResponse",
    "ErrorDetail", "ErrorResponse", "ERROR_RESPONSES", "ANSWER_REQUEST_BODY",
]


class QuestionRequest(BaseModel):
    """One question over a ``context``, or over ``documents`` ranked together (give exactly one of them);
    on a server started with ``--index``, a question with neither is answered from the index's passages."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"question": "When was the railway built?", "context": "The railway was built in 1897 to carry slate.", "top_k": 3},
                {"question": "Who founded the society?", "documents": ["First text ...", "Second text ..."]},
                {"question": "How do I reset the router?", "top_k": 3, "passages": 10},
            ]
        },
    )

    question: str = Field(description="The question; must not be empty.")
    context: str | None = Field(None, description="The text to answer from (any length up to the server's limit).")
    documents: list[str] | None = Field(None, description="Several texts; answers are ranked across them and carry a `document` index.")
    top_k: int = Field(1, ge=1, description="How many ranked answers to return in `answers`.")
    max_answer_length: int | None = Field(None, ge=1, description="Longest answer in tokens (default: the model's setting).")
    handle_impossible: bool | None = Field(None, description="Allow 'no answer' (default: the model's `handle_impossible` setting).")
    score_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Drop answers scoring below this; none left means 'no answer' (default: the model's)."
    )
    id: str | None = Field(None, description="Echoed back in the result.")
    passages: int | None = Field(
        None, ge=1, description="Without context or documents, on a server with an index: how many retrieved passages to read (default: the server's)."
    )

    def answer_options(self) -> AnswerOptions:
        """The request's :class:`~spanqa.reading.options.AnswerOptions`: every answer option the schema has
        (an option the schema leaves out keeps its default, the model's value).

        Raises:
            ConfigError: a value the options refuse.
        """
        return AnswerOptions(**{name: getattr(self, name) for name in _REQUEST_ANSWER_OPTIONS})


_REQUEST_ANSWER_OPTIONS = sorted(ANSWER_OPTION_NAMES & set(QuestionRequest.model_fields))
"""The answer options a request may set (computed once, not per request)."""


class BatchRequest(BaseModel):
    """Several questions answered in one call; results come back in the same order."""

    model_config = ConfigDict(extra="forbid", strict=True)

    questions: list[QuestionRequest] = Field(description="The questions, each with its own context or documents and settings.")


class AnswerSpan(BaseModel):
    text: str = Field(description="`text == context[start:end]` (or `documents[document][start:end]`).")
    start: int = Field(description="Character offset (Unicode code points) where the answer starts.")
    end: int = Field(description="Character offset just past the answer.")
    score: float = Field(description="Probability in [0, 1] over all candidates and 'no answer'.")
    document: int | None = Field(None, description="Index of the document holding the answer (null for a single context).")
    # Only in answers from the server's index (a question without context or documents):
    # there the "documents" are the retrieved passages, so `text == passage[start:end]`.
    passage: str | None = Field(None, description="Index answers only: the retrieved passage holding the answer; `text == passage[start:end]`.")
    source: str | None = Field(None, description="Index answers only: the file the answer's document came from.")
    page: int | None = Field(None, description="Index answers only: the (1-based) PDF page holding the passage (null for other files).")
    heading: str | None = Field(None, description="Index answers only: the nearest heading before the passage (Markdown, HTML, DOCX), or null.")
    doc_id: str | None = Field(None, description="Index answers only: the id of the answer's document (a file path, `FILE#ROW` or an id column).")
    document_start: int | None = Field(None, description="Index answers only: character offset of the answer in its source document.")
    document_end: int | None = Field(None, description="Index answers only: offset just past the answer in its source document.")


class AnswerResponse(BaseModel):
    id: str | None
    question: str
    answer: str = Field(description="The best answer, or '' when the model decides the text does not answer the question.")
    score: float
    start: int | None
    end: int | None
    document: int | None
    is_impossible: bool
    no_answer_score: float = Field(description="Probability that the text holds no answer (calibrated when the model is).")
    no_answer_threshold: float = Field(
        description="'No answer' is decided when no_answer_score exceeds this (1: not allowed for this request)."
    )
    answers: list[AnswerSpan] = Field(description="The `top_k` best spans, best first.")
    source: str | None = Field(None, description="Index answers only: the best answer's source file (null for 'no answer').")
    page: int | None = Field(None, description="Index answers only: the best answer's PDF page (null for other files).")
    heading: str | None = Field(None, description="Index answers only: the heading of the best answer's passage, or null.")
    doc_id: str | None = Field(None, description="Index answers only: the best answer's document id.")
    document_start: int | None = Field(None, description="Index answers only: the best answer's character offset in its source document.")
    document_end: int | None = Field(None, description="Index answers only: the offset just past the best answer in its source document.")


class BatchResponse(BaseModel):
    results: list[AnswerResponse]


class IndexHealth(BaseModel):
    passages: int = Field(description="Passages in the index.")
    documents: int = Field(description="Documents the passages come from.")
    retrieval: str = Field(description="How passages are retrieved: `bm25`, or `fused` (BM25 and embeddings).")
    embedding_model: str | None = Field(description="The sentence-embedding model of a fused index.")
    passages_per_question: int = Field(description="Retrieved passages the model reads per question unless a request asks for another number.")


class HealthResponse(BaseModel):
    status: str
    model: str | None
    handle_impossible: bool = Field(description="Whether the model may answer 'no answer' (its spanqa.json setting).")
    version_2: bool = Field(description="Deprecated: the name of `handle_impossible` before 0.2; removed in a later release.")
    null_threshold: float
    device: str
    max_length: int
    limits: dict[str, int | float]
    batching: dict[str, int | float]
    index: IndexHealth | None = Field(None, description="The passage index questions without a context are answered from (null: none).")
    report: bool = Field(False, description="Whether the model folder has a `spanqa report`, shown at `GET /report`.")


class ErrorDetail(BaseModel):
    type: str = Field(description="A stable machine-readable error kind, e.g. `invalid_json`, `validation_error`, `payload_too_large`.")
    message: str = Field(description="What was wrong, for people.")
    details: list[dict[str, Any]] | None = Field(None, description="Per-field problems (validation errors only).")


class ErrorResponse(BaseModel):
    error: ErrorDetail


# What /answer may answer instead of a result, for /openapi.json.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Malformed JSON or non-UTF-8 body"},
    408: {"model": ErrorResponse, "description": "The body did not arrive within the body timeout"},
    413: {"model": ErrorResponse, "description": "Body, a question or a context over the size limit, or more model windows than max_request_windows"},
    415: {"model": ErrorResponse, "description": "Content-Type is not application/json"},
    422: {"model": ErrorResponse, "description": "Missing fields, wrong types, empty question, too many questions"},
    503: {"model": ErrorResponse, "description": "Too many questions waiting"},
    504: {"model": ErrorResponse, "description": "No answer within the request timeout"},
}

# /answer's body for /openapi.json: one question or a batch (the route reads the raw body itself).
ANSWER_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"oneOf": [{"$ref": "#/components/schemas/QuestionRequest"}, {"$ref": "#/components/schemas/BatchRequest"}]}
        }
    },
}
