"""Questions answered from the server's passage index: their passages retrieved off the event loop, and
their answers rendered with the passage, source document and offsets in it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from spanqa.interfaces.serve.requests import IndexQuestion
from spanqa.reading.index import Hit, Index
from spanqa.reading.indexed import IndexAnswer, index_request, sourced_answers
from spanqa.reading.reader import QARequest, ReaderResult

__all__ = ["retrieve", "result_dict"]


def retrieve(items: Sequence[QARequest | IndexQuestion], index: Index | None, lock: threading.Lock) -> tuple[list[QARequest], list[list[Hit] | None]]:
    """The reader's requests for ``items``, with the passages retrieved for each index question (None for the others).

    Called in a worker thread when there is something to retrieve: scoring every passage (and, for a fused
    index, encoding the question) would otherwise stall the event loop.

    Args:
        items: The parsed questions.
        index: The server's passage index (needed only when ``items`` hold an :class:`IndexQuestion`).
        lock: Serialises searches: the embedding model's fast tokenizer cannot be called from two threads at once.
    """
    requests: list[QARequest] = []
    hits: list[list[Hit] | None] = []
    for item in items:
        if isinstance(item, QARequest):
            requests.append(item)
            hits.append(None)
            continue
        assert index is not None  # parse_payload makes an IndexQuestion only for a server with an index
        with lock:
            request, found = index_request(index, item.question, passages=item.passages, options=item.options, id=item.id)
        requests.append(request)
        hits.append(found)
    return requests, hits


def result_dict(result: ReaderResult, hits: Sequence[Hit] | None) -> dict[str, Any]:
    """A result as JSON; an answer from the index also names its passage, source document and offsets in it.

    Args:
        result: The reader's result.
        hits: The passages it read, in its request's order; None for a question with its own context or
            documents, whose result keeps exactly the fields it always had.
    """
    if hits is None:
        return result.to_dict()
    return IndexAnswer(result.question, sourced_answers(result, hits), list(hits), result).to_dict()
