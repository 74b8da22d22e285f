"""Stage 4: start/end logits of windows to ranked answer spans per example.

Logits may come from any backend (PyTorch, ONNX, a Trainer's gathered
predictions) in any batch order; :class:`SpanDecoder` takes them batch by
batch and keeps only the best ``n_best`` candidates per example, so memory is
bounded however large the dataset.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from spanqa.core.config import DecodeConfig
from spanqa.core.errors import ConfigError
from spanqa.stages.data import QAExample
from spanqa.stages.features import Features

__all__ = [
    "DecodeConfig",
    "Span",
    "ExamplePrediction",
    "SpanDecoder",
    "decode",
    "abstains",
    "passage_offsets",
    "normalize_scores",
    "answer_scores",
    "no_answer_probability",
    "no_answer_threshold",
]


def abstains(null_score: float, best_score: float, threshold: float) -> bool:
    """The no-answer rule, the only place it is written: abstain when the null score
    minus the best span score (the null odds) exceeds ``threshold``.

    Args:
        null_score: The question's lowest null logit (start + end logit of CLS) over its windows.
        best_score: The best span's logit (start + end); -inf when there is none.
        threshold: The model's no-answer threshold (``spanqa.json``'s ``null_threshold``).
    """
    return bool(null_score - best_score > threshold)


def normalize_scores(logits: Sequence[float] | np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax over the last axis of logits divided by ``temperature``; ``-inf`` entries get 0, a row
    of only ``-inf`` gives zeros.

    Args:
        logits: Span logits (start + end logit): one question's, or one row per question.
        temperature: The calibration temperature (``spanqa.json``).
    """
    values = np.asarray(logits, dtype=np.float64) / temperature
    finite = np.isfinite(values)
    if values.size == 0:
        return np.zeros_like(values)
    top = np.where(finite, values, -np.inf).max(axis=-1, keepdims=True)
    shifted = np.where(finite, np.exp(np.where(finite, values - np.where(np.isfinite(top), top, 0.0), 0.0)), 0.0)
    total = shifted.sum(axis=-1, keepdims=True)
    return np.divide(shifted, total, out=np.zeros_like(shifted), where=total > 0)


def no_answer_probability(null_score: float | np.ndarray, best_score: float | np.ndarray, temperature: float = 1.0) -> Any:
    """The score users see for "no answer": sigmoid((null score - best span score) / temperature).

    It depends on the null odds only, like the decision (:func:`abstains`), so "no answer" is
    decided exactly when this exceeds :func:`no_answer_threshold` (up to float rounding).

    Args:
        null_score: The question's null logit (or one per question).
        best_score: Its best span's logit; -inf when it has none (then 1).
        temperature: The calibration temperature.
    """
    with np.errstate(invalid="ignore"):
        odds = (np.asarray(null_score, dtype=np.float64) - np.asarray(best_score, dtype=np.float64)) / temperature
    probability = np.where(np.isnan(odds), 0.0, 0.5 * (1.0 + np.tanh(odds / 2.0)))  # a sigmoid that cannot overflow
    return float(probability) if probability.ndim == 0 else probability


def no_answer_threshold(null_threshold: float, temperature: float = 1.0) -> float:
    """``null_threshold`` (on the null odds) on the no-answer score's scale, the one users see."""
    return float(no_answer_probability(null_threshold, 0.0, temperature))


def answer_scores(
    span_logits: Sequence[float] | np.ndarray,
    null_score: float | np.ndarray,
    temperature: float = 1.0,
    with_null: bool = True,
    normalizing: np.ndarray | None = None,
) -> tuple[np.ndarray, Any]:
    """The probabilities users see: each span's and "no answer"'s; they sum to 1 over all spans.

    "No answer" gets :func:`no_answer_probability` (from the null odds); the spans share the
    rest in proportion to their softmax. Without ``with_null`` (the question may not be
    unanswerable) the spans share everything. Works on one question or on rows of questions.

    Args:
        span_logits: The question's candidate logits (``-inf`` pads a row).
        null_score: Its null logit (one per row).
        temperature: The calibration temperature.
        with_null: Whether "no answer" is possible.
        normalizing: Which spans share the probability (default: all); the others (one question
            only) get a share of the same total, so that adding candidates changes no score.
    """
    logits = np.asarray(span_logits, dtype=np.float64)
    if normalizing is not None and not normalizing.all():
        spans = _shares_of(logits, normalizing, temperature)
    else:
        spans = normalize_scores(logits, temperature)
    best = logits.max(axis=-1) if logits.shape[-1] else np.full(logits.shape[:-1], -np.inf)
    null = no_answer_probability(null_score, best, temperature) if with_null else np.zeros_like(best)[()]
    return spans * (1.0 - np.asarray(null))[..., None], null


def _shares_of(logits: np.ndarray, normalizing: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of one question's ``logits`` with the total of the ``normalizing`` ones only."""
    values = logits / temperature
    top = values[normalizing].max() if normalizing.any() else values.max()
    weights = np.exp(values - top)
    total = weights[normalizing].sum()
    return weights / total if total > 0 else np.zeros_like(weights)


def passage_offsets(null_scores: Sequence[float], retrieval_scores: Sequence[float] | None = None, retrieval_weight: float = 0.0) -> np.ndarray:
    """What each passage adds to its spans' logits so that spans rank across passages: minus the
    passage's null score (a span counts by how much it beats "not in this passage"; a model trained
    with distractor passages learns that null), plus ``retrieval_weight`` times the passage's
    retrieval score standardised over the question's passages (the retriever's opinion, fused in).

    With one passage the offset only shifts every logit and the null score alike: probabilities and
    the no-answer rule (against a null score of 0) are as without it.

    Args:
        null_scores: Each passage's null score (its windows' lowest); ``-inf`` (no window) adds nothing.
        retrieval_scores: Each passage's retrieval score (higher is better), or None.
        retrieval_weight: The retrieval score's weight (``spanqa.json``, fitted by ``evaluate --index``).
    """
    null = np.asarray(null_scores, dtype=np.float64)
    offsets = np.where(np.isfinite(null), -null, 0.0)
    if retrieval_scores is not None and retrieval_weight and len(offsets) > 1:
        found = np.asarray(retrieval_scores, dtype=np.float64)
        spread = found.std()
        if spread > 0:
            offsets = offsets + retrieval_weight * (found - found.mean()) / spread
    return offsets


@dataclass(frozen=True)
class Span:
    """A candidate answer: ``context[start:end] == text`` (``documents[document]`` when ranked across documents).

    ``logit`` (start logit + end logit) ranks candidates; ``score`` is the probability
    users see (:func:`answer_scores`): its share of the question's candidates, with "no answer".
    """

    text: str
    start: int
    end: int
    logit: float
    start_logit: float
    end_logit: float
    score: float = 0.0
    window: int = -1
    document: int | None = None


@dataclass
class ExamplePrediction:
    """The decision for one example plus its ranked candidates.

    ``null_odds`` (null score minus best span score) is what the official
    SQuAD v2 script takes as a no-answer probability file.
    """

    id: str
    text: str
    candidates: list[Span]
    null_score: float
    best_score: float
    no_answer_probability: float = 0.0

    @property
    def null_odds(self) -> float:
        return self.null_score - self.best_score

    @property
    def is_impossible(self) -> bool:
        return self.text == ""

    def decided(self, threshold: float) -> ExamplePrediction:
        """This prediction re-decided at another no-answer ``threshold``."""
        text = "" if not self.candidates or abstains(self.null_score, self.best_score, threshold) else self.candidates[0].text
        return replace(self, text=text)


@dataclass
class _Pending:
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    start_logits: list[float] = field(default_factory=list)
    end_logits: list[float] = field(default_factory=list)
    windows: list[int] = field(default_factory=list)
    null_score: float = float("inf")


def _fit_width(logits: np.ndarray, width: int) -> np.ndarray:
    """Trim or pad (with -inf) logits to the features' width; backends pad differently."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.shape[1] >= width:
        return logits[:, :width]
    pad = np.full((logits.shape[0], width - logits.shape[1]), -np.inf)
    return np.concatenate([logits, pad], axis=1)


class SpanDecoder:
    """Accumulate window logits and produce per-example predictions.

    >>> decoder = SpanDecoder(examples, features, DecodeConfig())
    >>> decoder.add(indices, start_logits, end_logits)  # any batch order, any number of times
    >>> predictions = decoder.finalize()
    """

    def __init__(
        self,
        examples: Sequence[QAExample],
        features: Features,
        config: DecodeConfig = DecodeConfig(),
        max_answer_lengths: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        """``max_answer_lengths`` (one per example, each <= config.max_answer_length) narrows the span limit per request."""
        self.examples = examples
        self.features = features
        self.config = config
        self._limits = None if max_answer_lengths is None else np.asarray(max_answer_lengths, dtype=np.int64)
        if self._limits is not None and (self._limits > config.max_answer_length).any():
            raise ConfigError("a per-example max_answer_length exceeds the decoder's max_answer_length")
        self._pending = [_Pending() for _ in examples]
        self._char_maps: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    def _offsets(self, idx: np.ndarray, width: int) -> np.ndarray:
        """The batch's token character spans: each token's own, or its whole word's with ``align_to_words``."""
        if not self.config.align_to_words:
            return self.features.offsets[idx, :width]
        if self.features.word_edges is None:
            raise ConfigError("align_to_words needs features built with word_edges=True")
        return self.features.word_edges[idx, :width]  # each token spans its whole word

    def _pair_scores(self, idx: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Start + end logit of every (start token, answer length) pair of each window, flattened;
        pairs longer than the window's example may have are -inf."""
        width, span = s.shape[1], self.config.max_answer_length
        e_padded = np.concatenate([e, np.full((len(idx), span - 1), -np.inf)], axis=1)
        ends_of = np.arange(width)[:, None] + np.arange(span)[None, :]  # (start, length) -> end token
        scores = s[:, :, None] + e_padded[:, ends_of]
        if self._limits is not None:
            limit = self._limits[self.features.example_index[idx]]
            scores = np.where(np.arange(span)[None, None, :] < limit[:, None, None], scores, -np.inf)
        return scores.reshape(len(idx), -1)

    def _top_pairs(self, scores: np.ndarray, spans: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ``n_best`` best pairs of each window, and which of them to drop (they repeat a text).

        Args:
            scores: :meth:`_pair_scores`.
            spans: Each token's text start, tidied start, text end and tidied end (see :meth:`_tidy_tokens`).
            valid: Which tokens are context.
        """
        k = min(self.config.n_best, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        dropped = np.zeros(top.shape, dtype=bool)
        text_start, tidy_start, text_end, tidy_end = spans
        for b in _rows_with_collisions(text_start, tidy_start, text_end, tidy_end, valid):
            # A lone '▁' / empty 'Ġ' token or tokens sharing characters: some pairs are whitespace only or
            # tidy to the same text; walk the pairs by score instead.
            chosen = _distinct_top(scores[b], k, self.config.max_answer_length, text_start[b], tidy_start[b], text_end[b], tidy_end[b])
            top[b, : len(chosen)] = chosen
            dropped[b, len(chosen) :] = True
        return top, dropped

    def add(self, indices: Sequence[int] | np.ndarray, start_logits: np.ndarray, end_logits: np.ndarray) -> None:
        """Decode one batch of windows: ``start_logits[b]`` belongs to window ``indices[b]``."""
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) == 0:
            return
        # Only as wide as this batch's longest window: past it there is padding and no context.
        width = max(len(self.features.input_ids[i]) for i in idx.tolist())
        offsets = self._offsets(idx, width)
        start = _fit_width(start_logits, width)
        end = _fit_width(end_logits, width)
        rows = np.arange(len(idx))
        cls = self.features.cls_index[idx]
        null = start[rows, cls] + end[rows, cls]

        valid = offsets[..., 0] >= 0
        owners = self.features.example_index[idx]
        # Each token's tidied span (see _tidy), so the top-k below counts text spans, not token pairs.
        text_start, tidy_start, text_end, tidy_end = self._tidy_tokens(owners, offsets, valid)
        s = np.where(valid, start, -np.inf)
        e = np.where(valid, end, -np.inf)
        span = self.config.max_answer_length
        scores = self._pair_scores(idx, s, e)
        top, dropped = self._top_pairs(scores, (text_start, tidy_start, text_end, tidy_end), valid)
        top_scores = np.take_along_axis(scores, top, axis=1)
        start_tok = top // span
        end_tok = start_tok + top % span
        found = np.isfinite(top_scores) & ~dropped
        safe_end = np.minimum(end_tok, width - 1)
        char_start = np.take_along_axis(tidy_start, start_tok, axis=1)
        char_end = np.take_along_axis(tidy_end, safe_end, axis=1)
        s_logit = np.take_along_axis(start, start_tok, axis=1)
        e_logit = np.take_along_axis(end, safe_end, axis=1)

        for b in range(len(idx)):
            pending = self._pending[owners[b]]
            pending.null_score = min(pending.null_score, float(null[b]))
            keep = found[b]
            if not keep.any():
                continue
            pending.starts.extend(char_start[b, keep].tolist())
            pending.ends.extend(char_end[b, keep].tolist())
            pending.scores.extend(top_scores[b, keep].tolist())
            pending.start_logits.extend(s_logit[b, keep].tolist())
            pending.end_logits.extend(e_logit[b, keep].tolist())
            pending.windows.extend([int(idx[b])] * int(keep.sum()))
            if len(pending.scores) > 4 * self.config.n_best:
                _truncate(pending, self.config.n_best)

    def _tidy_tokens(self, owners: np.ndarray, offsets: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per token: its first non-space character, tidied start (back to a mark's base), end of its
        last non-space character, and tidied end (marks kept).

        Tokens ``s..e`` tidy to ``(tidy_start[s], tidy_end[e])``; the span is
        whitespace only unless ``text_start[s] < text_end[e]``.
        """
        distinct, row_owner = np.unique(owners, return_inverse=True)
        maps = []
        for owner in distinct.tolist():
            found = self._char_maps.get(owner)
            if found is None:
                if len(self._char_maps) >= 1024:
                    self._char_maps.clear()
                found = self._char_maps[owner] = _char_maps(self.examples[owner].context)
            maps.append(found)
        # All owners' maps end to end: row b reads from base[b] .. base[b] + len(context).
        sizes = np.array([len(m[0]) for m in maps], dtype=np.int64)
        base = (np.cumsum(sizes) - sizes)[row_owner][:, None]
        limit = (sizes - 1)[row_owner][:, None]
        next_text, onto_base, last_text_end, past_marks = (np.concatenate([m[j] for m in maps]) for j in range(4))
        first = base + np.clip(np.where(valid, offsets[..., 0], 0), 0, limit)
        last = base + np.clip(np.where(valid, offsets[..., 1], 0), 0, limit)
        text_start = next_text[first].astype(np.int64)
        tidy_start = onto_base[base + text_start].astype(np.int64)
        text_end = last_text_end[last].astype(np.int64)
        tidy_end = past_marks[base + text_end].astype(np.int64)
        return text_start, tidy_start, text_end, tidy_end

    def finalize(self) -> list[ExamplePrediction]:
        """One prediction per example, in the examples' order."""
        return [self._finalize_one(ex, p) for ex, p in zip(self.examples, self._pending)]

    def _finalize_one(self, example: QAExample, pending: _Pending) -> ExamplePrediction:
        order: Sequence[int] = np.argsort(-np.asarray(pending.scores), kind="stable").tolist() if pending.scores else []
        kept: list[tuple[int, int, int]] = []  # (start, end, pending index): distinct, non-empty, best first
        seen: set[tuple[int, int]] = set()
        for j in order:
            start, end = _tidy(example.context, pending.starts[j], pending.ends[j])
            if (start, end) in seen or end <= start:
                continue
            seen.add((start, end))
            kept.append((start, end, j))
            if len(kept) == self.config.n_best:
                break
        null_score = pending.null_score if np.isfinite(pending.null_score) else -np.inf
        best_score = pending.scores[kept[0][2]] if kept else -np.inf
        # Probabilities over this example's candidates and the null answer: comparable across windows.
        probs, null_probability = answer_scores(
            [pending.scores[j] for _, _, j in kept], null_score, self.config.temperature, self.config.handle_impossible
        )
        spans = [
            Span(
                text=example.context[start:end],
                start=start,
                end=end,
                logit=pending.scores[j],
                start_logit=pending.start_logits[j],
                end_logit=pending.end_logits[j],
                score=float(probs[i]),
                window=pending.windows[j],
            )
            for i, (start, end, j) in enumerate(kept)
        ]
        if not spans:
            text = ""
        elif self.config.handle_impossible and abstains(null_score, best_score, self.config.null_threshold):
            text = ""
        else:
            text = spans[0].text
        return ExamplePrediction(
            id=example.id,
            text=text,
            candidates=spans,
            null_score=float(null_score),
            best_score=float(best_score),
            no_answer_probability=null_probability,
        )


_ASCII_KINDS = np.frombuffer(bytes(ord("s") if chr(c).isspace() else ord("t") for c in range(0x80)), dtype=np.uint8)
"""Each ASCII character's kind for _char_maps: ``s`` (space) or ``t`` (text)."""


def _char_maps(context: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each position c in 0..len(context), as _tidy moves span edges: the first non-space position
    >= c, c moved back onto the (non-space) base of a mark, the end of the last non-space character
    before c, and c moved past the combining marks that start there."""
    n = len(context)
    positions = np.arange(n + 1, dtype=np.int32)
    if context.isascii():  # most contexts: a table lookup, and no combining marks to move edges over
        flags = _ASCII_KINDS[np.frombuffer(context.encode("ascii"), dtype=np.uint8)]
    else:
        kinds = {ord(ch): "s" if ch.isspace() else "m" if unicodedata.category(ch).startswith("M") else "t" for ch in set(context)}
        flags = np.frombuffer(context.translate(kinds).encode("ascii"), dtype=np.uint8)
    text = flags != ord("s")
    next_text = np.minimum.accumulate(np.where(np.append(text, True), positions, n)[::-1])[::-1]
    last_text_end = np.maximum.accumulate(np.concatenate([[0], np.where(text, positions[1:], 0)])).astype(np.int32)
    if not (flags == ord("m")).any():
        return next_text, positions, last_text_end, positions
    not_mark = np.append(flags != ord("m"), True)
    past_marks = np.minimum.accumulate(np.where(not_mark, positions, n)[::-1])[::-1]
    base = np.maximum(np.maximum.accumulate(np.where(not_mark, positions, -1)), 0)  # last non-mark at or before c
    onto_base = np.where(~not_mark & np.append(text, False)[base], base, positions)
    return next_text, onto_base, last_text_end, past_marks


def _rows_with_collisions(
    text_start: np.ndarray, tidy_start: np.ndarray, text_end: np.ndarray, tidy_end: np.ndarray, valid: np.ndarray
) -> np.ndarray:
    """Windows where a token is whitespace only or two tokens' tidied edges coincide.

    Elsewhere every token pair is a distinct, non-empty text span (always so for WordPiece).
    """
    blank = (valid & (text_start >= text_end)).any(axis=1)
    positions = np.where(valid, np.arange(valid.shape[1]), -1)
    before = np.maximum.accumulate(positions, axis=1)  # last context token at or before each position
    previous = np.concatenate([np.full((len(valid), 1), -1), before[:, :-1]], axis=1)
    at = np.maximum(previous, 0)
    clash = (
        valid
        & (previous >= 0)
        & ((tidy_start <= np.take_along_axis(tidy_start, at, axis=1)) | (tidy_end <= np.take_along_axis(tidy_end, at, axis=1)))
    )
    return np.flatnonzero(blank | clash.any(axis=1))


def _distinct_top(
    scores: np.ndarray, k: int, span: int, text_start: np.ndarray, tidy_start: np.ndarray, text_end: np.ndarray, tidy_end: np.ndarray
) -> list[int]:
    """Indices of the ``k`` best (start, length) pairs of one window that tidy to distinct, non-empty spans.

    Pairs are visited best first, so each text span is taken at its best pair; exact.
    """
    finite = int(np.isfinite(scores).sum())
    m = min(finite, 4 * k)
    while True:
        pool = np.argpartition(-scores, m - 1)[:m] if 0 < m < len(scores) else np.arange(len(scores))
        pool = pool[np.argsort(-scores[pool], kind="stable")]
        chosen: list[int] = []
        seen: set[tuple[int, int]] = set()
        for j in pool[:m].tolist():
            first = j // span
            last = first + j % span
            if text_start[first] >= text_end[last]:
                continue  # whitespace only (or nothing)
            key = (int(tidy_start[first]), int(tidy_end[last]))
            if key in seen:
                continue
            seen.add(key)
            chosen.append(j)
            if len(chosen) == k:
                return chosen
        if m >= finite:
            return chosen
        m = min(finite, 4 * m)


def _truncate(pending: _Pending, keep: int) -> None:
    """Keep the ``keep`` best distinct spans, each at its best score."""
    order = np.argsort(-np.asarray(pending.scores), kind="stable")
    kept: list[int] = []
    seen: set[tuple[int, int]] = set()
    for i in order.tolist():
        key = (pending.starts[i], pending.ends[i])
        if key not in seen:
            seen.add(key)
            kept.append(i)
            if len(kept) == keep:
                break
    order = np.asarray(kept, dtype=np.int64)
    for name in ("starts", "ends", "scores", "start_logits", "end_logits", "windows"):
        values = getattr(pending, name)
        setattr(pending, name, [values[i] for i in order])


def _tidy(context: str, start: int, end: int) -> tuple[int, int]:
    """Drop whitespace a token's offsets may include; keep combining marks with their base."""
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    base = start
    while base > 0 and base < end and unicodedata.category(context[base]).startswith("M"):
        base -= 1  # a token boundary inside a grapheme: keep the base character with its marks ...
    if base < start and not context[base].isspace():
        start = base  # ... but never a space before a stray mark
    while end < len(context) and unicodedata.category(context[end]).startswith("M"):
        end += 1
    return start, end


def decode(
    examples: Sequence[QAExample],
    features: Features,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    config: DecodeConfig = DecodeConfig(),
    batch_size: int = 256,
) -> list[ExamplePrediction]:
    """Decode logits for all windows at once (row ``i`` belongs to window ``i``)."""
    if len(start_logits) != len(features):
        raise ConfigError(f"got logits for {len(start_logits)} windows but there are {len(features)} windows")
    decoder = SpanDecoder(examples, features, config)
    for lo in range(0, len(features), batch_size):
        rows = np.arange(lo, min(lo + batch_size, len(features)))
        decoder.add(rows, start_logits[rows], end_logits[rows])
    return decoder.finalize()
