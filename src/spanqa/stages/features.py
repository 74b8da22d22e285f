"""Stage 2: examples to model windows, with labels and character offsets.

One tokenization serves training (start/end labels), evaluation and prediction
(offsets back into the original context), so the three can never disagree.
Windows are left unpadded: a collator pads each batch to its own longest row.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from spanqa.core.config import WindowConfig
from spanqa.core.errors import ConfigError, ModelError
from spanqa.stages.data import QAExample

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    from transformers import PreTrainedTokenizerBase

__all__ = ["WindowConfig", "Features", "build_features", "check_tokenizer", "context_first", "answer_windows"]

def context_first(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Left-padding models (XLNet style) put the context before the question."""
    return getattr(tokenizer, "padding_side", "right") == "left"


def check_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    """Offsets need a fast (Rust) tokenizer; say so instead of failing later."""
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(
            f"{type(tokenizer).__name__} is a slow tokenizer; spanqa needs a fast tokenizer "
            "(with offset mappings). Install `tokenizers` and load with use_fast=True."
        )


@dataclass
class Features:
    """Windows of a list of examples, unpadded, plus what decoding needs.

    ``offsets[i, t]`` is the (start, end) character span of token ``t`` of
    window ``i`` in its example's context, or (-1, -1) where the token is not
    context (question, special tokens, padding). ``word_edges[i, t]``, when built
    (``build_features(..., word_edges=True)``), is the span of the whole word
    (the tokenizer's pre-tokenized word) token ``t`` belongs to, for answers
    aligned to words.
    """

    input_ids: list[list[int]]
    attention_mask: list[list[int]]
    token_type_ids: list[list[int]] | None
    example_index: np.ndarray
    offsets: np.ndarray
    cls_index: np.ndarray
    start_positions: np.ndarray
    end_positions: np.ndarray
    word_edges: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    def model_inputs(self, indices: Sequence[int] | np.ndarray | None = None, with_labels: bool = False) -> list[dict[str, Any]]:
        """Rows for a collator (lists, unpadded)."""
        rows = range(len(self)) if indices is None else indices
        out = []
        for i in rows:
            row: dict[str, Any] = {"input_ids": self.input_ids[i], "attention_mask": self.attention_mask[i]}
            if self.token_type_ids is not None:
                row["token_type_ids"] = self.token_type_ids[i]
            if with_labels:
                row["start_positions"] = int(self.start_positions[i])
                row["end_positions"] = int(self.end_positions[i])
            out.append(row)
        return out

    def to_dataset(self, with_labels: bool = True) -> datasets.Dataset:
        """A :class:`datasets.Dataset` for :class:`transformers.Trainer`."""
        import datasets

        columns: dict[str, Any] = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            columns["token_type_ids"] = self.token_type_ids
        if with_labels:
            columns["start_positions"] = self.start_positions.tolist()
            columns["end_positions"] = self.end_positions.tolist()
        return datasets.Dataset.from_dict(columns)

    def select(self, indices: Sequence[int] | np.ndarray) -> Features:
        idx = np.asarray(indices, dtype=np.int64)
        return Features(
            input_ids=[self.input_ids[i] for i in idx],
            attention_mask=[self.attention_mask[i] for i in idx],
            token_type_ids=None if self.token_type_ids is None else [self.token_type_ids[i] for i in idx],
            example_index=self.example_index[idx],
            offsets=self.offsets[idx],
            cls_index=self.cls_index[idx],
            start_positions=self.start_positions[idx],
            end_positions=self.end_positions[idx],
        )


def _cut_long_questions(questions: list[str], tokenizer: PreTrainedTokenizerBase, limit: int) -> list[str]:
    """Trim questions to ``limit`` tokens; only those with more UTF-8 bytes than ``limit`` can exceed it
    (byte-level BPE may spend up to four tokens on one character)."""
    long = [i for i, q in enumerate(questions) if len(q.encode("utf-8", "surrogatepass")) > limit]
    out = list(questions)
    for _ in range(8):  # a cut text can tokenize differently, so check it and cut again
        if not long:
            break
        enc = tokenizer([out[i] for i in long], add_special_tokens=False, return_offsets_mapping=True)
        still = []
        for i, offsets in zip(long, enc["offset_mapping"]):
            if len(offsets) > limit:
                # Cut where the first token that does not fit starts: a character split over several
                # byte-level tokens (all with the same offsets) then goes as a whole.
                out[i] = out[i][: offsets[limit][0]].rstrip()
                still.append(i)
        long = still
    return out


def _is_mark(char: str) -> bool:
    return unicodedata.category(char).startswith("M")


def _grapheme_edges(context: str, start: int, end: int) -> tuple[int, int]:
    """``(start, end)`` moved so combining marks stay with their base character, for labelling.

    A normaliser that strips accents (uncased BERT: NFD, then drop category Mn)
    leaves a mark in no token, so a token never ends after a trailing mark: an
    answer ending in marks at the very end of its context (``cafe`` + U+0301, Thai
    and Devanagari vowel signs) would fit no window and be labelled "no answer".
    The end therefore goes back over trailing marks onto their base; the decoder
    puts the marks back (see ``decode._tidy``). A start on a mark goes back onto its
    base, as ``decode._tidy`` does, but never onto a space before a stray mark.
    """
    base = start
    while base > 0 and _is_mark(context[base]):
        base -= 1
    if base < start and not context[base].isspace():
        start = base
    while end - 1 > start and _is_mark(context[end - 1]):
        end -= 1
    return start, end


def _answer_chars(examples: Sequence[QAExample]) -> tuple[np.ndarray, np.ndarray]:
    """First gold answer's (start, end) per example with surrounding spaces trimmed and combining marks
    kept with their base (see :func:`_grapheme_edges`); -1 when none."""
    starts = np.full(len(examples), -1, dtype=np.int64)
    ends = np.full(len(examples), -1, dtype=np.int64)
    for i, ex in enumerate(examples):
        if ex.answers:
            starts[i], ends[i] = _grapheme_edges(ex.context, *ex.answers[0].trimmed_span)
    return starts, ends


def context_room(tokenizer: PreTrainedTokenizerBase, questions: Sequence[str], window: WindowConfig) -> np.ndarray:
    """Context tokens one window holds beside each question, exactly as :func:`build_features` pairs them.

    A context of more tokens than this is cut into several windows. Questions are
    cut as build_features cuts them: a cut one can have fewer than
    ``max_question_tokens`` tokens (byte-level BPE drops a character split over
    the limit whole), so ``min(question tokens, limit)`` would not be exact.
    """
    cut = _cut_long_questions(list(questions), tokenizer, window.max_question_tokens)
    ids = tokenizer(cut, add_special_tokens=False, verbose=False)["input_ids"] if cut else []
    question_tokens = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(cut))
    return window.max_length - question_tokens - tokenizer.num_special_tokens_to_add(pair=True)


def build_features(
    examples: Sequence[QAExample],
    tokenizer: PreTrainedTokenizerBase,
    config: WindowConfig = WindowConfig(),
    word_edges: bool = False,
) -> Features:
    """Tokenize examples into overlapping windows with labels and context offsets.

    Args:
        examples: Questions with contexts (and answers, for labels).
        tokenizer: A fast tokenizer.
        config: Window length, overlap and question limit.
        word_edges: Also record each context token's whole-word span (for ``align_to_words``).
    """
    check_tokenizer(tokenizer)
    if not examples:
        raise ConfigError("no examples to tokenize")
    flipped = context_first(tokenizer)
    with_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ["token_type_ids"])
    enc = _encode(examples, tokenizer, config, flipped, with_types)
    offsets, sequence, ids, words = _token_arrays(enc, word_edges)
    in_context = sequence == (0 if flipped else 1)
    offsets[~in_context] = -1
    example_index = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)
    cls_index = _cls_positions(ids, tokenizer.cls_token_id)
    start_positions, end_positions = _answer_positions(examples, example_index, offsets, in_context, cls_index)
    return Features(
        input_ids=enc["input_ids"],
        attention_mask=enc["attention_mask"],
        token_type_ids=enc["token_type_ids"] if with_types and "token_type_ids" in enc else None,
        example_index=example_index,
        offsets=offsets.astype(np.int32),
        cls_index=cls_index,
        start_positions=start_positions,
        end_positions=end_positions,
        word_edges=None if words is None else _word_edges(offsets, np.where(in_context, words, np.nan)),
    )


def _encode(examples: Sequence[QAExample], tokenizer: PreTrainedTokenizerBase, config: WindowConfig, flipped: bool, with_types: bool) -> Any:
    """The tokenizer's overflowing windows of every example, with offsets (question first, unless ``flipped``)."""
    questions = _cut_long_questions([ex.question for ex in examples], tokenizer, config.max_question_tokens)
    contexts = [ex.context for ex in examples]
    first, second = (contexts, questions) if flipped else (questions, contexts)
    return tokenizer(
        first,
        second,
        truncation="only_first" if flipped else "only_second",
        max_length=config.max_length,
        stride=config.stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_token_type_ids=with_types,
        padding=False,
    )


def _token_arrays(enc: Any, word_edges: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Each window's token offsets, sequence ids (nan for special tokens), token ids and (with
    ``word_edges``) word ids, as arrays padded with -1 to the longest window."""
    n = len(enc["input_ids"])
    lengths = np.fromiter((len(ids) for ids in enc["input_ids"]), dtype=np.int64, count=n)
    width = int(lengths.max())
    offsets = np.full((n, width, 2), -1, dtype=np.int64)
    sequence = np.full((n, width), -1.0)
    ids = np.full((n, width), -1, dtype=np.int64)
    words = np.full((n, width), -1.0) if word_edges else None
    for i, encoding in enumerate(enc.encodings):
        k = lengths[i]
        offsets[i, :k] = encoding.offsets
        sequence[i, :k] = np.array(encoding.sequence_ids, dtype=float)  # None -> nan
        ids[i, :k] = encoding.ids
        if words is not None:
            words[i, :k] = np.array(encoding.word_ids, dtype=float)
    return offsets, sequence, ids, words


def _cls_positions(ids: np.ndarray, cls_id: int | None) -> np.ndarray:
    """Where each window's CLS token is (the "no answer" label); 0 for a tokenizer without one."""
    if cls_id is None:
        return np.zeros(len(ids), dtype=np.int64)
    is_cls = ids == cls_id
    return np.where(is_cls.any(axis=1), is_cls.argmax(axis=1), 0)


def _answer_positions(
    examples: Sequence[QAExample], example_index: np.ndarray, offsets: np.ndarray, in_context: np.ndarray, cls_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Start and end token labels of every window: the tokens covering the answer where the window
    holds it whole, else its CLS position."""
    answer_start, answer_end = _answer_chars(examples)
    char_start = answer_start[example_index][:, None]
    char_end = answer_end[example_index][:, None]
    token_start, token_end = offsets[..., 0], offsets[..., 1]
    width = offsets.shape[1]
    positions = np.arange(width)[None, :]
    big = np.iinfo(np.int64).max
    first_char = np.where(in_context, token_start, big).min(axis=1)
    last_char = np.where(in_context, token_end, -1).max(axis=1)
    contains = (char_start[:, 0] >= 0) & (first_char <= char_start[:, 0]) & (last_char >= char_end[:, 0])
    # First context token ending after the answer's start; last one starting before its end.
    start_tok = np.where(in_context & (token_end > char_start), positions, width).min(axis=1)
    end_tok = np.where(in_context & (token_start < char_end), positions, -1).max(axis=1)
    contains &= (start_tok < width) & (end_tok >= start_tok)
    return np.where(contains, start_tok, cls_index), np.where(contains, end_tok, cls_index)


def answer_windows(examples: Sequence[QAExample], features: Features) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each example's gold answer fell among its context's windows.

    The answer is the one the windows were labelled with (the first, trimmed; see
    :func:`build_features`); a window holds it when its labels point at it.

    Args:
        examples: The examples ``features`` were built from, in the same order.
        features: Their windows (:func:`build_features`).

    Returns:
        Per example: the number of windows its context took; whether some window holds the
        answer whole; whether some window's edge cuts through the answer (part of it in that
        window, part outside). Both flags are False for an example without an answer.
    """
    n = len(examples)
    owner = features.example_index
    windows = np.bincount(owner, minlength=n)
    whole = np.zeros(n, dtype=bool)
    np.logical_or.at(whole, owner, features.start_positions != features.cls_index)
    starts, ends = _answer_chars(examples)
    start, end = starts[owner], ends[owner]
    in_context = features.offsets[..., 0] >= 0
    first_char = np.where(in_context, features.offsets[..., 0], np.iinfo(np.int32).max).min(axis=1)
    last_char = np.where(in_context, features.offsets[..., 1], -1).max(axis=1)
    overlaps = (start >= 0) & (first_char < end) & (last_char > start)
    cut = np.zeros(n, dtype=bool)
    np.logical_or.at(cut, owner, overlaps & ~((first_char <= start) & (last_char >= end)))
    return windows, whole, cut


def _word_edges(offsets: np.ndarray, words: np.ndarray) -> np.ndarray:
    """Per context token, the character span of its word: from its word's first token's start to
    its last token's end (a word's tokens are consecutive). Non-context tokens keep (-1, -1)."""
    n, width = words.shape
    positions = np.broadcast_to(np.arange(width), (n, width))
    previous = np.concatenate([np.full((n, 1), np.nan), words[:, :-1]], axis=1)
    following = np.concatenate([words[:, 1:], np.full((n, 1), np.nan)], axis=1)
    first = np.maximum.accumulate(np.where(words != previous, positions, 0), axis=1)  # nan != x: every non-context token starts a run
    last = np.minimum.accumulate(np.where(words != following, positions, width - 1)[:, ::-1], axis=1)[:, ::-1]
    edges = np.stack([np.take_along_axis(offsets[..., 0], first, axis=1), np.take_along_axis(offsets[..., 1], last, axis=1)], axis=-1)
    edges[offsets[..., 0] < 0] = -1
    return edges.astype(np.int32)
