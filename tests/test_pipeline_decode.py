"""spanqa.stages.pipeline_decode against a literal transcription of transformers 4.57's QA postprocessing.

``reference_4x`` below is 4.57's ``select_starts_ends``, ``decode_spans`` and the fast-tokenizer branch of
``QuestionAnsweringPipeline.postprocess`` (with ``get_indices``/``get_answer``), copied statement by
statement, run on a fake ``tokenizers.Encoding``. Hypothesis draws windows (logits, which tokens are
question, context and words) and arguments; both must give the same answers and the same scores.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanqa.stages.pipeline_decode import PipelineRule, WindowScores, pipeline_answers


class FakeEncoding:
    """What 4.x's ``get_indices`` reads of a window's ``tokenizers.Encoding`` (question first)."""

    def __init__(self, offsets: list[tuple[int, int]], words: list[int | None]) -> None:
        self.offsets, self.words = offsets, words

    def token_to_word(self, token: int) -> int | None:
        return self.words[token]

    def word_to_chars(self, word: int | None, sequence_index: int = 0) -> tuple[int, int]:
        tokens = [t for t, w in enumerate(self.words) if w is not None and w == word]
        if not tokens:
            raise TypeError("no such word")
        return self.offsets[tokens[0]][0], self.offsets[tokens[-1]][1]


def _decode_spans_4x(start, end, topk, max_answer_len, undesired_tokens):
    if start.ndim == 1:
        start = start[None]
    if end.ndim == 1:
        end = end[None]
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    if topk == 1:
        idx_sort = [np.argmax(scores_flat)]
    elif len(scores_flat) < topk:
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, topk)[0:topk]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    desired_spans = np.isin(starts, undesired_tokens.nonzero()) & np.isin(ends, undesired_tokens.nonzero())
    starts = starts[desired_spans]
    ends = ends[desired_spans]
    scores = candidates[0, starts, ends]
    return starts, ends, scores


def _select_starts_ends_4x(start, end, p_mask, attention_mask, min_null_score, top_k, handle_impossible_answer, max_answer_len):
    undesired_tokens = np.abs(np.array(p_mask) - 1)
    if attention_mask is not None:
        undesired_tokens = undesired_tokens & attention_mask
    undesired_tokens_mask = undesired_tokens == 0.0
    start = np.where(undesired_tokens_mask, -10000.0, start)
    end = np.where(undesired_tokens_mask, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0
    starts, ends, scores = _decode_spans_4x(start, end, top_k, max_answer_len, undesired_tokens)
    return starts, ends, scores, min_null_score


def reference_4x(context, outputs, top_k, handle_impossible_answer, max_answer_len, align_to_words):
    """4.57's postprocess over (start logits, end logits, p_mask, encoding) per window, each (1, n)."""
    min_null_score = 1000000
    answers = []
    for start_, end_, p_mask, enc in outputs:
        attention_mask = np.ones_like(p_mask)
        pre_topk = top_k * 2 + 10 if align_to_words else top_k
        starts, ends, scores, min_null_score = _select_starts_ends_4x(
            start_, end_, p_mask, attention_mask, min_null_score, pre_topk, handle_impossible_answer, max_answer_len
        )
        for s, e, score in zip(starts, ends, scores):
            if align_to_words:
                try:
                    start_index = enc.word_to_chars(enc.token_to_word(s), sequence_index=1)[0]
                    end_index = enc.word_to_chars(enc.token_to_word(e), sequence_index=1)[1]
                except Exception:
                    start_index, end_index = enc.offsets[s][0], enc.offsets[e][1]
            else:
                start_index, end_index = enc.offsets[s][0], enc.offsets[e][1]
            target = context[start_index:end_index]
            answer = next((a for a in answers if a["answer"].lower() == target.lower()), None)
            if answer:
                answer["score"] += score.item()
            else:
                answers.append({"score": score.item(), "start": start_index, "end": end_index, "answer": target})
    if handle_impossible_answer:
        answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
    return sorted(answers, key=lambda x: x["score"], reverse=True)[:top_k]


@st.composite
def windows(draw):
    """A context of words (some repeated, in several cases), cut into 1-3 overlapping windows of
    [CLS] question [SEP] context-tokens [SEP]; words of 1-3 tokens."""
    vocabulary = ["Ada", "ada", "wrote", "it", "in", "1843", "Lovelace", "note", "G"]
    words = draw(st.lists(st.sampled_from(vocabulary), min_size=1, max_size=14))
    context, spans = "", []
    for word in words:
        if context:
            context += " "
        spans.append((len(context), len(context) + len(word)))
        context += word
    tokens = []  # (offsets, word) per context token: a word may be split into pieces
    for w, (a, b) in enumerate(spans):
        pieces = min(draw(st.integers(1, 3)), b - a)
        cuts = [a + (b - a) * i // pieces for i in range(pieces + 1)]
        tokens += [((cuts[i], cuts[i + 1]), w) for i in range(pieces)]
    question = draw(st.integers(1, 4))
    size = draw(st.integers(1, len(tokens)))
    step = max(1, size - draw(st.integers(0, size - 1)))
    out, lo = [], 0
    while True:
        part = tokens[lo : lo + size]
        offsets = [(0, 0)] + [(0, 0)] * question + [(0, 0)] + [o for o, _ in part] + [(0, 0)]
        word_ids = [None] + list(range(question)) + [None] + [w for _, w in part] + [None]
        n = len(offsets)
        sequence = [None] + [0] * question + [None] + [1] * len(part) + [None]
        logits = draw(st.lists(st.floats(-8, 8, allow_nan=False, width=32), min_size=2 * n, max_size=2 * n))
        out.append((np.array(logits[:n], dtype=np.float32), np.array(logits[n:], dtype=np.float32), sequence, offsets, word_ids))
        if lo + size >= len(tokens):
            break
        lo += step
    return context, out


def _ours(context, drawn, rule):
    scored = []
    for start, end, sequence, offsets, word_ids in drawn:
        in_context = np.array([s == 1 for s in sequence])
        allowed = in_context.copy()
        allowed[0] = True  # CLS
        spans = np.array([o if c else (-1, -1) for o, c in zip(offsets, in_context)], dtype=np.int32)
        edges = FakeEncoding(offsets, [w if c else None for w, c in zip(word_ids, in_context)])
        words = np.array([edges.word_to_chars(w) if c else (-1, -1) for w, c in zip(word_ids, in_context)], dtype=np.int32)
        scored.append(WindowScores(start, end, allowed, spans, words if rule.align_to_words else None))
    return pipeline_answers(context, scored, rule)


def _theirs(context, drawn, rule):
    outputs = []
    for start, end, sequence, offsets, word_ids in drawn:
        p_mask = np.array([[s != 1 for s in sequence]], dtype=np.int64)
        p_mask[0, 0] = 0  # 4.x keeps CLS unmasked
        # Words of the context only (sequence 1): the question's word ids must not collide with them.
        enc = FakeEncoding(offsets, [w if s == 1 else None for w, s in zip(word_ids, sequence)])
        outputs.append((start[None], end[None], p_mask, enc))
    return reference_4x(context, outputs, rule.top_k, rule.handle_impossible_answer, rule.max_answer_len, rule.align_to_words)


@settings(max_examples=300, deadline=None)
@given(
    drawn=windows(),
    top_k=st.integers(1, 6),
    max_answer_len=st.integers(1, 8),
    handle_impossible=st.booleans(),
    align=st.booleans(),
)
def test_the_same_answers_and_scores_as_4x(drawn, top_k, max_answer_len, handle_impossible, align):
    context, windows_ = drawn
    rule = PipelineRule(top_k, max_answer_len, handle_impossible, align)
    ours, theirs = _ours(context, windows_, rule), _theirs(context, windows_, rule)
    assert [(a["start"], a["end"], a["answer"]) for a in ours] == [(a["start"], a["end"], a["answer"]) for a in theirs]
    assert [a["score"] for a in ours] == pytest.approx([a["score"] for a in theirs], rel=1e-6, abs=1e-12)


def test_token_spans_widened_to_one_word_add_up():
    """Two pieces of one word: 4.x's answers are words, the word's score the sum of its token spans."""
    context = "Lovelace wrote"
    offsets = np.array([(-1, -1), (-1, -1), (-1, -1), (0, 4), (4, 8), (9, 14), (-1, -1)], dtype=np.int32)
    edges = np.array([(-1, -1), (-1, -1), (-1, -1), (0, 8), (0, 8), (9, 14), (-1, -1)], dtype=np.int32)
    allowed = np.array([1, 0, 0, 1, 1, 1, 0], dtype=bool)
    start = np.array([0, 0, 0, 3, 3, 0, 0], dtype=np.float32)
    end = np.array([0, 0, 0, 3, 3, 0, 0], dtype=np.float32)
    window = WindowScores(start, end, allowed, offsets, edges)
    words = pipeline_answers(context, [window], PipelineRule(top_k=3))
    assert words[0]["answer"] == "Lovelace" and words[0]["start"] == 0 and words[0]["end"] == 8
    pieces = pipeline_answers(context, [window], PipelineRule(top_k=10, align_to_words=False))
    lovelace = [a["score"] for a in pieces if context[a["start"] : a["end"]] in ("Love", "lace", "Lovelace")]
    assert words[0]["score"] == pytest.approx(sum(lovelace), rel=1e-6)  # Love, lace and Love|lace, added up


def test_no_answer_scores_the_least_null_score_of_the_windows():
    offsets = np.array([(-1, -1), (0, 3), (-1, -1)], dtype=np.int32)
    allowed = np.array([1, 1, 0], dtype=bool)
    sure = WindowScores(np.array([-5, 5, 0], np.float32), np.array([-5, 5, 0], np.float32), allowed, offsets)
    unsure = WindowScores(np.array([5, -5, 0], np.float32), np.array([5, -5, 0], np.float32), allowed, offsets)
    answers = pipeline_answers("Ada", [unsure, sure], PipelineRule(top_k=2, handle_impossible_answer=True, align_to_words=False))
    assert answers[0]["answer"] == "Ada"
    null = [a for a in answers if a["answer"] == ""][0]
    p = np.exp(np.float32(-10)) / (1 + np.exp(np.float32(-10)))
    assert null["score"] == pytest.approx(float(p * p), rel=1e-5)  # the sure window's, the smaller one


def test_each_window_offers_top_k_times_2_plus_10_spans_before_they_add_up():
    """One word of five pieces, equal logits: 15 token spans widen to it, 4.x added up the best 12."""
    context = "Supercalifragilistic"
    cuts = [0, 4, 8, 12, 16, 20]
    offsets = np.array([(-1, -1), (-1, -1), (-1, -1)] + [(cuts[i], cuts[i + 1]) for i in range(5)] + [(-1, -1)], dtype=np.int32)
    edges = np.where(offsets >= 0, np.array([0, 20], dtype=np.int32), -1).astype(np.int32)
    allowed = np.array([1, 0, 0, 1, 1, 1, 1, 1, 0], dtype=bool)
    logits = np.zeros(9, dtype=np.float32)
    answer = pipeline_answers(context, [WindowScores(logits, logits, allowed, offsets, edges)], PipelineRule())[0]
    assert answer["answer"] == context
    assert answer["score"] == pytest.approx(12 / 36, rel=1e-6)  # 6 allowed tokens (CLS too): 1/6 x 1/6 per span


def test_spans_from_the_cls_token_count_as_4x_counted_them():
    """A one-token context and top_k 2: 4.x's filter let spans from token 0 through, each scored 0
    (CLS's probability is taken out), and its empty text ranked second; same here."""
    rule = PipelineRule(top_k=2)
    sequence = [None, 0, None, 1, None]
    offsets = [(0, 0), (0, 3), (0, 0), (0, 3), (0, 0)]
    words = [None, 0, None, 0, None]
    logits = np.array([1, 0, 0, 2, 0], dtype=np.float32)
    drawn = [(logits, logits, sequence, offsets, words)]
    ours, theirs = _ours("Ada", drawn, rule), _theirs("Ada", drawn, rule)
    assert ours == theirs
    assert [a["answer"] for a in ours] == ["Ada", ""]
