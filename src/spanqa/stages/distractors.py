"""Distractor passages for training: each question also sees paragraphs that do not answer it.

A reader trained only on the paragraph that holds the answer learns to find the best span *given*
that the answer is there; its span scores say nothing about whether a paragraph answers at all, so
over several retrieved passages the highest raw score is often in the wrong one (XQuAD-en, 10 BM25
passages: F1 18.9 against 46.6 with one). Training each question also on its closest other
paragraphs of the training data, labelled "no answer" (the CLS token, like an unanswerable
question), teaches the null score to say "not in this passage", so that a span's score relative to
its passage's null score compares across passages (Clark and Gardner 2018, "Simple and Effective
Multi-Paragraph Reading Comprehension", their "no-answer option"). The distractors are the BM25
best matches of the question among the other paragraphs: the passages a retriever would hand the
reader, and the hardest to tell apart.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from spanqa.stages.data import QAExample
from spanqa.stages.lexical import bm25_words

__all__ = ["DISTRACTOR_MARK", "with_distractors"]

logger = logging.getLogger(__name__)

DISTRACTOR_MARK = "~distractor"
"""Joins a question's id and a number in its distractors' ids."""

SEARCH_SLACK = 4
"""Extra paragraphs searched per question: its own paragraph and ones holding its answer are passed over."""


def with_distractors(examples: Sequence[QAExample], k: int) -> list[QAExample]:
    """``examples`` followed by ``k`` unanswerable copies of each answerable question, over the
    paragraphs of ``examples`` that best match it by BM25 but are not its own and do not hold any of
    its answers' text.

    Args:
        examples: Training questions with their paragraphs.
        k: Distractor paragraphs per question; 0 returns ``examples`` unchanged (so does data with a
            single paragraph).

    Returns:
        The examples, then the distractors (question id + ``~distractorN``, no answers).
    """
    if k < 0:
        raise ValueError(f"distractors per question must be 0 or more, got {k}")
    contexts = list(dict.fromkeys(ex.context for ex in examples))
    answerable = [ex for ex in examples if ex.answers]
    if k == 0 or len(contexts) < 2 or not answerable:
        return list(examples)
    ranked = _search(contexts, [ex.question for ex in answerable], min(k + SEARCH_SLACK, len(contexts)))
    distractors = [
        replace(ex, id=f"{ex.id}{DISTRACTOR_MARK}{n}", context=contexts[c], answers=())
        for ex, candidates in zip(answerable, ranked)
        for n, c in enumerate(_usable(ex, contexts, candidates)[:k])
    ]
    logger.info("training on %d distractor passages (%d per question, by BM25 from the other paragraphs)", len(distractors), k)
    return [*examples, *distractors]


def _search(contexts: list[str], questions: list[str], depth: int) -> np.ndarray:
    """Each question's ``depth`` best-matching paragraphs (indices into ``contexts``), best first."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25_words(contexts), show_progress=False)
    # Questions of stop words only have no words; bm25s takes an empty query and ranks by index order.
    found, _ = retriever.retrieve(bm25_words(questions, return_ids=False), k=depth, show_progress=False, n_threads=1)
    return np.asarray(found)


def _usable(example: QAExample, contexts: list[str], candidates: np.ndarray) -> list[int]:
    """The candidate paragraphs that are not ``example``'s own and do not contain its answer text
    (labelling those "no answer" would teach the model that the answer is wrong)."""
    answers = [a.text.lower() for a in example.answers if a.text.strip()]
    usable: list[int] = []
    for c in candidates.tolist():
        text = contexts[c]
        if text != example.context and not any(answer in text.lower() for answer in answers):
            usable.append(c)
    return usable
