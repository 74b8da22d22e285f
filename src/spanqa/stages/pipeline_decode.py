"""Stage 4, as transformers 4.x's question-answering pipeline decided: its per-window scores and answers.

spanqa's own decoding (:mod:`spanqa.stages.decode`) ranks spans by start + end logit across all of
a question's windows and turns them into probabilities that include "no answer". transformers 4.x
(``QuestionAnsweringPipeline.postprocess``, 4.57) chose differently, and code written against it may
rely on its numbers (a threshold on ``score``), so ``spanqa.pipeline`` reproduces it here:

1. Each window on its own: start and end logits outside the context (question, special tokens,
   padding; the CLS token stays in) set to -10000, a softmax over the window, "no answer" is
   ``p_start[0] * p_end[0]``, then token 0 is taken out (score 0).
2. Span scores ``p_start[s] * p_end[e]`` for ``s <= e < s + max_answer_len``; the window's best
   ``top_k * 2 + 10`` (``top_k`` without ``align_to_words``), kept where both ends are context (or CLS).
3. Each kept span widened to whole words (``align_to_words``) or its tokens' characters; a span whose
   text (case-insensitive) an earlier one already has adds its score to that one, which keeps its
   position: token spans widened to the same words, the same answer from overlapping windows, and the
   same words elsewhere in the text all add up.
4. "No answer" (with ``handle_impossible_answer``) scores the smallest of the windows' null scores;
   all candidates sorted by score (ties keep their order), the first ``top_k`` returned.

The arithmetic is float32 as in 4.x (its logits are float32 tensors), so scores agree to ~1e-7.
Vectorised per window (numpy over the window's token pairs); only the <= ``top_k * 2 + 10`` kept
spans of a window are visited one by one, to add up equal texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["PipelineRule", "WindowScores", "pipeline_answers"]

MASKED_LOGIT = np.float32(-10000.0)
"""What 4.x put in place of the logits of tokens that cannot be in an answer."""


@dataclass(frozen=True)
class PipelineRule:
    """transformers 4.x's postprocessing arguments (its defaults).

    Attributes:
        top_k: Answers returned.
        max_answer_len: Most tokens in an answer.
        handle_impossible_answer: Also rank "no answer" (``{"answer": "", "start": 0, "end": 0}``).
        align_to_words: Widen answers to whole words.
    """

    top_k: int = 1
    max_answer_len: int = 15
    handle_impossible_answer: bool = False
    align_to_words: bool = True

    @property
    def window_candidates(self) -> int:
        """Spans each window offers: 4.x took extra ones when aligning to words, as some would merge."""
        return self.top_k * 2 + 10 if self.align_to_words else self.top_k


@dataclass(frozen=True)
class WindowScores:
    """One window of one question: its logits and where its tokens are in the context.

    Attributes:
        start_logits: Start logits, one per token of the window (unpadded).
        end_logits: End logits, the same length.
        allowed: Tokens that may be in an answer: the context's and the CLS token's (4.x's ``p_mask == 0``).
        offsets: Each token's ``(start, end)`` characters in the context; ``(-1, -1)`` outside it.
        word_edges: Each context token's whole word's ``(start, end)``; None when not aligning to words.
    """

    start_logits: np.ndarray
    end_logits: np.ndarray
    allowed: np.ndarray
    offsets: np.ndarray
    word_edges: np.ndarray | None = None


def pipeline_answers(context: str, windows: Sequence[WindowScores], rule: PipelineRule = PipelineRule()) -> list[dict[str, object]]:
    """The answers transformers 4.x's pipeline gave for one question, best first.

    Args:
        context: The question's text.
        windows: Its windows, in the order the tokenizer made them.
        rule: 4.x's postprocessing arguments.

    Returns:
        At most ``rule.top_k`` dicts ``{"score", "start", "end", "answer"}``.
    """
    answers: list[dict[str, object]] = []
    by_text: dict[str, dict[str, object]] = {}
    null_score = 1000000.0  # 4.x's start value: "large and positive"
    for window in windows:
        start_p, end_p = _window_probabilities(window)
        null_score = min(null_score, float(start_p[0] * end_p[0]))
        start_p[0] = end_p[0] = 0.0
        for s, e, score in zip(*_best_spans(start_p, end_p, window.allowed, rule)):
            first, last = _characters(window, s, e, rule.align_to_words)
            text = context[first:last]
            found = by_text.get(text.lower())
            if found is not None:
                found["score"] = float(found["score"]) + score  # type: ignore[arg-type]
                continue
            answer: dict[str, object] = {"score": score, "start": first, "end": last, "answer": text}
            answers.append(answer)
            by_text[text.lower()] = answer
    if rule.handle_impossible_answer:
        answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
    return sorted(answers, key=lambda answer: answer["score"], reverse=True)[: rule.top_k]  # type: ignore[arg-type,return-value]


def _window_probabilities(window: WindowScores) -> tuple[np.ndarray, np.ndarray]:
    """Softmax of the start and end logits over the window, tokens outside the answer's reach at -10000."""
    out = []
    for logits in (window.start_logits, window.end_logits):
        masked = np.where(window.allowed, np.asarray(logits, dtype=np.float32), MASKED_LOGIT)
        exp = np.exp(masked - masked.max())
        out.append(exp / exp.sum())
    return out[0], out[1]


def _best_spans(start_p: np.ndarray, end_p: np.ndarray, allowed: np.ndarray, rule: PipelineRule) -> tuple[list[int], list[int], list[float]]:
    """The window's best ``rule.window_candidates`` spans by ``p_start * p_end`` (4.x's ``decode_spans``),
    those with both ends allowed (or at token 0), best first."""
    n = len(start_p)
    scores = np.tril(np.triu(np.outer(start_p, end_p)), rule.max_answer_len - 1).ravel()
    k = rule.window_candidates
    if k == 1:
        order = np.array([np.argmax(scores)])
    elif len(scores) < k:
        order = np.argsort(-scores)
    else:
        top = np.argpartition(-scores, k)[:k]
        order = top[np.argsort(-scores[top])]
    starts, ends = np.divmod(order, n)
    reach = allowed.copy()
    reach[0] = True  # 4.x's filter compared against the nonzero() of a (1, n) mask: its row indices (0) passed too
    keep = reach[starts] & reach[ends]
    starts, ends = starts[keep], ends[keep]
    return starts.tolist(), ends.tolist(), scores[starts * n + ends].tolist()


def _characters(window: WindowScores, s: int, e: int, align_to_words: bool) -> tuple[int, int]:
    """A token span's characters in the context: whole words, or the tokens' own characters.

    A span from token 0 (CLS, no word) falls back to both tokens' own characters, CLS's being
    ``(0, 0)``, as 4.x's ``get_indices`` did when ``token_to_word`` gave None.
    """
    inside = window.offsets[s][0] >= 0 and window.offsets[e][0] >= 0
    edges = window.word_edges if align_to_words and inside and window.word_edges is not None else window.offsets
    return max(int(edges[s][0]), 0), max(int(edges[e][1]), 0)
