"""What a dataset looks like before training on it: counts, lengths in tokens, problems."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from spanqa.core.config import DEFAULTS, SPECIAL_TOKEN_ROOM, WindowConfig
from spanqa.core.errors import ConfigError
from spanqa.stages.data import QADataset, QAExample, splits_word
from spanqa.stages.features import context_room

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase

__all__ = ["DataSummary", "answers_inside_words", "summarize", "window_for"]


@dataclass
class DataSummary:
    source: str
    examples: int
    answerable: int
    unanswerable: int
    version_2: bool
    contexts: int
    answers_checked: int
    answers_mismatched: int
    answers_repaired: int
    examples_skipped: int
    policy: str
    problems: list[str] = field(default_factory=list)
    answers_inside_words: list[str] = field(default_factory=list)
    question_tokens: dict[str, float] = field(default_factory=dict)
    context_tokens: dict[str, float] = field(default_factory=dict)
    answer_tokens: dict[str, float] = field(default_factory=dict)
    contexts_longer_than_window: int = 0
    window_max_length: int = 0
    marker_hint: str | None = None

    @property
    def unanswerable_share(self) -> float:
        return self.unanswerable / self.examples if self.examples else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["unanswerable_share"] = self.unanswerable_share
        return out

    def lines(self, max_problems: int = 10) -> list[str]:
        out = [
            f"{self.source}",
            f"  examples: {self.examples} ({'SQuAD v2 style' if self.version_2 else 'all answerable'}), "
            f"contexts: {self.contexts}",
            f"  answerable: {self.answerable}, unanswerable: {self.unanswerable} "
            f"({100 * self.unanswerable_share:.1f}% unanswerable)",
        ]
        for name, stats in (("question", self.question_tokens), ("context", self.context_tokens), ("answer", self.answer_tokens)):
            if stats:
                out.append(
                    f"  {name} tokens: min {stats['min']:.0f}, mean {stats['mean']:.1f}, median {stats['median']:.0f}, "
                    f"p95 {stats['p95']:.0f}, max {stats['max']:.0f}"
                )
        if self.window_max_length:
            out.append(
                f"  contexts longer than one {self.window_max_length}-token window: {self.contexts_longer_than_window}"
            )
        out.append(
            f"  answers checked against offsets: {self.answers_checked}; disagreeing: {self.answers_mismatched} "
            f"(policy {self.policy!r}: {self.answers_repaired} repaired, {self.examples_skipped} examples skipped)"
        )
        if self.marker_hint:
            out.append(f"  hint: {self.marker_hint.split(': ', 1)[1]}")
        out.extend(_listed(self.problems, max_problems))
        if self.answers_inside_words:
            out.append(
                f"  answers that start or end inside a word (can match exactly only if the tokenizer splits there): "
                f"{len(self.answers_inside_words)}"
            )
            out.extend(_listed(self.answers_inside_words, max_problems))
        return out


def _listed(items: list[str], limit: int) -> list[str]:
    out = [f"    {item}" for item in items[:limit]]
    if len(items) > limit:
        out.append(f"    ... and {len(items) - limit} more (--max-problems to see them)")
    return out


def answers_inside_words(examples: list[QAExample]) -> list[str]:
    """Each gold answer whose first or last character continues a word of the context, shown in place."""
    found = []
    for ex in examples:
        for answer in ex.answers:
            start, end = answer.trimmed_span
            text = ex.context[start:end]
            if splits_word(ex.context, start) or splits_word(ex.context, end):
                left = ex.context[max(0, start - 12) : start].rsplit(" ", 1)[-1]
                right = ex.context[end : end + 12].split(" ", 1)[0]
                found.append(f"id {ex.id}: answer {text!r} in '{left}[{text}]{right}'")
    return found


def _stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values)
    return {
        "min": float(arr.min()),
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
        "p95": float(np.percentile(arr, 95)),
        "max": float(arr.max()),
    }


def window_for(max_length: int) -> WindowConfig:
    """The default window settings at ``max_length``; in a window too short for them, the question
    limit and the stride shrink to the largest values :class:`WindowConfig` accepts."""
    question = min(DEFAULTS.max_question_tokens, max_length - SPECIAL_TOKEN_ROOM - 1)
    room = max_length - question - SPECIAL_TOKEN_ROOM
    return WindowConfig(max_length=max_length, stride=min(DEFAULTS.stride, room - 1), max_question_tokens=question)


def _contexts_cut(examples: list[QAExample], contexts: list[str], context_lengths: list[int], room: np.ndarray) -> int:
    """How many of ``contexts`` (``context_lengths`` tokens each) are longer than the room for context
    beside at least one of their questions (``room``, one per example)."""
    index = {context: i for i, context in enumerate(contexts)}
    context_of = np.fromiter((index[ex.context] for ex in examples), dtype=np.int64, count=len(examples))
    longer = np.asarray(context_lengths, dtype=np.int64)[context_of] > room
    return len(np.unique(context_of[longer]))


def summarize(
    dataset: QADataset,
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_length: int | None = None,
    window: WindowConfig | None = None,
) -> DataSummary:
    """Counts and problems; token length statistics when a tokenizer is given.

    The "contexts longer than one window" count is what ``build_features`` would
    make of the data with ``window``; given only ``max_length`` (default: the window default), the
    window is :func:`window_for` it.
    """
    if window is None:
        window = window_for(max_length if max_length is not None else DEFAULTS.max_length)
    elif max_length is not None and max_length != window.max_length:
        raise ConfigError(f"max_length ({max_length}) disagrees with the window's max_length ({window.max_length}); give one")
    examples = dataset.examples
    unanswerable = dataset.num_impossible
    summary = DataSummary(
        source=dataset.source,
        examples=len(examples),
        answerable=len(examples) - unanswerable,
        unanswerable=unanswerable,
        version_2=dataset.version_2,
        contexts=len({ex.context for ex in examples}),
        answers_checked=dataset.answers_checked,
        answers_mismatched=dataset.answers_mismatched,
        answers_repaired=dataset.answers_repaired,
        examples_skipped=dataset.examples_skipped,
        policy=dataset.policy,
        problems=[str(p) for p in dataset.problems],
        answers_inside_words=answers_inside_words(examples),
        marker_hint=dataset.marker_hint(),
    )
    if tokenizer is not None:
        contexts = list(dict.fromkeys(ex.context for ex in examples))
        count = lambda texts: [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]  # noqa: E731
        summary.question_tokens = _stats(count([ex.question for ex in examples]))
        context_lengths = count(contexts)
        summary.context_tokens = _stats(context_lengths)
        answers = [ex.answers[0].text for ex in examples if ex.answers]
        summary.answer_tokens = _stats(count(answers)) if answers else {}
        # Exactly what build_features does: a context of more tokens than the room beside its question overflows.
        room = context_room(tokenizer, [ex.question for ex in examples], window)
        summary.contexts_longer_than_window = _contexts_cut(examples, contexts, context_lengths, room)
        summary.window_max_length = window.max_length
    return summary
