"""Reading a request: its body (JSON only, size and time limits) into :class:`~spanqa.reading.reader.QARequest` /
:class:`IndexQuestion` objects, with the server's per-request limits (:class:`~.settings.ServeSettings`).

Every refusal is an :class:`~.errors.ApiError` with the status and error type the API documents.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from spanqa.core.errors import DataError, SpanQAError
from spanqa.interfaces.serve.errors import ApiError, validation_details
from spanqa.interfaces.serve.schema import BatchRequest, QuestionRequest
from spanqa.interfaces.serve.settings import ServeSettings
from spanqa.reading.index import Index
from spanqa.reading.options import AnswerOptions
from spanqa.reading.reader import QARequest

__all__ = ["IndexQuestion", "require_json", "read_body", "parse_json", "parse_payload"]


async def require_json(request: Request) -> None:
    """Refuse a POST body that is not declared ``application/json`` with 415 (parameters such as ``; charset=utf-8`` are fine).

    Why: a web page on another origin can POST without a CORS preflight only as
    ``text/plain``, a form type or with no Content-Type at all (a "simple
    request"); refusing those keeps any web page from making a server on
    localhost run the model. An app-wide dependency, so every POST endpoint has it.

    Args:
        request: The incoming request.
    """
    if request.method != "POST":
        return
    declared = request.headers.get("content-type")
    media_type = (declared or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        got = f"got {declared!r}" if declared else "the request has no Content-Type header"
        raise ApiError(415, "unsupported_media_type", f"POST {request.url.path} takes Content-Type: application/json; {got}")


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refused with 413 over ``limit`` bytes and with 408 when it takes over ``timeout`` seconds.

    uvicorn waits for a body as long as the client keeps the connection open, so
    without the deadline a client that sends headers and then stalls or
    trickles the body would hold a connection and a request task forever.

    Args:
        request: The incoming request.
        limit: Most bytes accepted: checked on Content-Length, then on the bytes read (chunked bodies have no length).
        timeout: Seconds the whole body may take to arrive after the headers.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", f"invalid Content-Length header {declared!r}") from None
        if size > limit:
            raise ApiError(413, "payload_too_large", f"request body is {size} bytes; the limit is {limit} bytes")
    try:
        return await asyncio.wait_for(_read_chunks(request, limit), timeout)
    except asyncio.TimeoutError:
        # Close the connection: the rest of the body may still come, and a stalled client should not keep it.
        raise ApiError(408, "body_timeout", f"the request body did not arrive within {timeout:g} s",
                       headers={"Connection": "close"}) from None


async def _read_chunks(request: Request, limit: int) -> bytes:
    """The body as it streams in, refused with 413 as soon as it passes ``limit`` bytes.

    Args:
        request: The incoming request.
        limit: Most bytes accepted.
    """
    chunks: list[bytes] = []
    read = 0
    try:
        async for chunk in request.stream():
            read += len(chunk)
            if read > limit:
                raise ApiError(413, "payload_too_large", f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "bad_request", "the client disconnected before sending the whole body") from None
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    """The decoded JSON body; malformed, non-UTF-8, too deeply nested JSON and over-long integers are 400.

    Args:
        body: The raw request body.
    """
    if not body.strip():
        raise ApiError(400, "invalid_json", "empty request body; expected a JSON object")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ApiError(400, "invalid_encoding", f"request body is not valid UTF-8 (bad byte at offset {err.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None
    except ValueError:  # not a JSONDecodeError (caught above): an integer over Python's digit limit
        raise ApiError(400, "invalid_json", f"request body has an integer with more than {sys.get_int_max_str_digits()} digits") from None
    except RecursionError:  # json's parser recurses once per nested list or object
        raise ApiError(400, "invalid_json", "request body is nested too deeply") from None


def _check_text(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(422, "validation_error", f"{where}: contains an unpaired surrogate escape (e.g. \\ud800); send valid Unicode text") from None


def _number(value: int) -> str:
    """``value`` for an error message; a huge one (JSON allows thousands of digits) by its length only."""
    text = str(value)
    return text if len(text) <= 20 else f"a {len(text.lstrip('-'))}-digit number"


SchemaT = TypeVar("SchemaT", bound=BaseModel)

@dataclass(frozen=True)
class IndexQuestion:
    """A question to answer from the server's index: its passages are retrieved (off the event loop)
    before it joins a micro-batch as a :class:`~spanqa.reading.reader.QARequest` over them.

    Attributes:
        question: The question.
        passages: How many retrieved passages the reader reads.
        options: The request's answer options.
        id: Echoed back in the result.
    """

    question: str
    passages: int
    options: AnswerOptions
    id: str | None = None


def _to_request(item: QuestionRequest, where: str, settings: ServeSettings, index: Index | None = None) -> QARequest | IndexQuestion:
    """The reader's request for one validated question, or an :class:`IndexQuestion` when it has no text of its own.

    Args:
        item: The question as sent.
        where: Its place in the body for error messages (``questions[2]``; ``""`` for a single question).
        settings: The limits.
        index: The server's passage index, if it has one.
    """
    prefix = f"{where}: " if where else ""
    from_index = item.context is None and item.documents is None
    if from_index and index is None:
        raise ApiError(422, "validation_error",
                       f"{prefix}give a context (or documents) to answer from; this server has no document index "
                       "(start it with `spanqa serve MODEL --index INDEX` to answer questions without a context)")
    _check_limits(item, prefix, settings, from_index)
    _check_texts(item, prefix, settings)
    try:
        options = item.answer_options()
        if from_index:
            if not item.question.strip():  # what QARequest would say, before any retrieval work
                raise DataError("empty question")
            return IndexQuestion(item.question, item.passages or settings.passages, options, item.id)
        return QARequest(question=item.question, context=item.context, documents=item.documents, options=options, id=item.id)
    except SpanQAError as err:
        raise ApiError(422, "validation_error", f"{prefix}{err}") from None


def _check_limits(item: QuestionRequest, prefix: str, settings: ServeSettings, from_index: bool) -> None:
    """Refuse a question asking for more than the server allows: passages, top_k, max_answer_length, documents (422).

    Args:
        item: The question as sent.
        prefix: ``"questions[2]: "`` (``""`` for a single question), for error messages.
        settings: The limits.
        from_index: Whether the question is answered from the index (it has neither context nor documents).
    """
    if item.passages is not None and not from_index:
        raise ApiError(422, "validation_error", f"{prefix}passages is for questions answered from the index; drop it or drop context/documents")
    if item.passages is not None and item.passages > settings.max_documents:
        raise ApiError(422, "validation_error", f"{prefix}passages is {_number(item.passages)}; the limit is {settings.max_documents}")
    if item.top_k > settings.max_top_k:
        raise ApiError(422, "validation_error", f"{prefix}top_k is {_number(item.top_k)}; the limit is {settings.max_top_k}")
    if item.max_answer_length is not None and item.max_answer_length > settings.max_answer_length:
        raise ApiError(422, "validation_error",
                       f"{prefix}max_answer_length is {_number(item.max_answer_length)}; the limit is {settings.max_answer_length} tokens")
    if item.documents is not None and len(item.documents) > settings.max_documents:
        raise ApiError(422, "too_many_documents", f"{prefix}{len(item.documents)} documents; the limit is {settings.max_documents}")


def _check_texts(item: QuestionRequest, prefix: str, settings: ServeSettings) -> None:
    """Refuse a question or text over its length limit (413) or holding an unpaired surrogate (422).

    Args:
        item: The question as sent.
        prefix: ``"questions[2]: "`` (``""`` for a single question), for error messages.
        settings: The limits.
    """
    if len(item.question) > settings.max_question_chars:
        raise ApiError(413, "question_too_long",
                       f"{prefix}question has {len(item.question)} characters; the limit is {settings.max_question_chars}")
    texts = [("context", item.context)] if item.context is not None else [(f"documents[{i}]", d) for i, d in enumerate(item.documents or [])]
    for name, text in texts:
        if text is not None and len(text) > settings.max_context_chars:
            raise ApiError(413, "context_too_long",
                           f"{prefix}{name} has {len(text)} characters; the limit is {settings.max_context_chars}")
    _check_text(item.question, f"{prefix}question")
    for name, text in texts:
        if text is not None:
            _check_text(text, f"{prefix}{name}")
    if item.id is not None:
        _check_text(item.id, f"{prefix}id")


def parse_payload(data: Any, settings: ServeSettings, index: Index | None = None) -> tuple[list[QARequest | IndexQuestion], bool]:
    """The requests in a decoded JSON body, and whether it was a batch; raises :class:`ApiError`.

    Args:
        data: The decoded JSON body.
        settings: The limits.
        index: The server's passage index: questions without context or documents become :class:`IndexQuestion`
            (without an index they are refused with 422).
    """
    if not isinstance(data, dict):
        raise ApiError(422, "validation_error", f"expected a JSON object, got {type(data).__name__ if data is not None else 'null'}")
    if "questions" in data:
        questions = data["questions"]
        if isinstance(questions, list):
            if not questions:
                raise ApiError(422, "validation_error", "questions is empty")
            if len(questions) > settings.max_batch:
                raise ApiError(422, "too_many_questions", f"{len(questions)} questions in one request; the limit is {settings.max_batch}")
        batch = _validated(BatchRequest, data)
        items = [_to_request(item, f"questions[{i}]", settings, index) for i, item in enumerate(batch.questions)]
        _check_passages_budget(items, settings)
        return items, True
    items = [_to_request(_validated(QuestionRequest, data), "", settings, index)]
    _check_passages_budget(items, settings)
    return items, False


def _check_passages_budget(items: list[QARequest | IndexQuestion], settings: ServeSettings) -> None:
    """Refuse with 413, before any retrieval, questions x passages over ``max_request_windows``: every
    passage read is at least one model window, so such a request would be refused once counted anyway.

    Args:
        items: The parsed questions.
        settings: The limits.
    """
    passages = sum(item.passages for item in items if isinstance(item, IndexQuestion))
    limit = settings.max_request_windows
    if passages > limit:
        raise ApiError(413, "too_many_windows",
                       f"this request reads {passages} passages (questions x passages), each at least one model window; "
                       f"the limit is max_request_windows={limit}: ask for fewer passages or send fewer questions")


def _validated(schema: type[SchemaT], data: dict[str, Any]) -> SchemaT:
    """``data`` checked against a request schema; its problems are one 422 with per-field details."""
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        message, details = validation_details(err.errors(include_url=False, include_input=False))
        raise ApiError(422, "validation_error", message, details) from None
