"""The one rule for BM25's words, shared by the passage index and by training's distractor search:
lower-cased words of two or more letters, English stop words dropped, Snowball-stemmed."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

__all__ = ["BM25_STOPWORDS", "stemmer", "bm25_words"]

BM25_STOPWORDS = "en"


@functools.cache
def stemmer() -> Any:
    """The English Snowball stemmer: "built" finds "build", "rivers" finds "river" (on XQuAD-en,
    recall@1 0.898 -> 0.928; bench/bm25_engines.py)."""
    import Stemmer

    return Stemmer.Stemmer("english")


def bm25_words(texts: Sequence[str], return_ids: bool = True) -> Any:
    """``texts`` tokenized for BM25 (``bm25s.tokenize`` with spanqa's stop words and stemmer).

    Args:
        texts: Passages or questions.
        return_ids: Return a ``bm25s`` ``Tokenized`` (ids and vocabulary, what ``BM25.index``
            takes); False returns each text's list of words (what ``BM25.get_scores`` takes).
    """
    import bm25s

    return bm25s.tokenize(list(texts), stopwords=BM25_STOPWORDS, stemmer=stemmer(), return_ids=return_ids, show_progress=False)
