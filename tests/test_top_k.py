"""top_k: k answers when the text has k that do not overlap, a note when fewer were kept, the same
scores whatever k, and plain Python numbers."""

from __future__ import annotations

import json

import numpy as np

from spanqa import AnswerOptions, Reader
from spanqa.reading.reader import QARequest

CONTEXT = (
    "Jane Austen wrote the novel Emma in a small house in Chawton, Hampshire, in 1815, "
    "while her brother Henry arranged its printing with John Murray in London that winter."
)


class OneStartBackend:
    """The reader's backend with its logits replaced: one start token far above the rest, every end alike,
    so a text's best candidates all begin at that token and overlap each other."""

    def __init__(self, backend, favourite: int) -> None:
        self.backend, self.favourite = backend, favourite

    def __call__(self, batch):
        start, end = self.backend(batch)
        start = np.where(np.arange(start.shape[1]) == self.favourite, 10.0, 0.0).astype(np.float32) + 0.01 * start
        return np.broadcast_to(start, end.shape).copy(), 0.01 * end

    def __getattr__(self, name: str):
        return getattr(self.backend, name)


def one_start_reader(reader: Reader) -> Reader:
    favourite = reader.tokenizer("Who wrote it?", CONTEXT)["input_ids"].index(reader.tokenizer.sep_token_id) + 1  # "Jane"
    return Reader(None, reader.tokenizer, reader.config, backend=OneStartBackend(reader.backend, favourite))


def ask(reader: Reader, k: int, context: str = CONTEXT, **options):
    return reader.answer_batch([QARequest("Who wrote it?", context, options=AnswerOptions(top_k=k, **options))])[0]


def test_top_k_finds_k_answers_apart_when_the_best_candidates_all_overlap(reader):
    """Before: the 20 best candidates all started at "Jane", overlapped the first answer, and 1 of 3 came back, silently."""
    skewed = one_start_reader(reader)
    result = ask(skewed, 3)
    assert len(result.answers) == 3 and result.note is None
    first, *others = result.answers
    assert first.start == CONTEXT.index("Jane")
    assert all(min(a.end, first.end) <= max(a.start, first.start) or a.start >= first.end for a in others)  # apart from the first


def test_a_short_list_says_why(reader):
    skewed = one_start_reader(reader)
    result = ask(skewed, 10, context="Emma Woodhouse.")  # fewer than 10 spans apart in three words
    assert len(result.answers) < 10
    assert result.note is not None and f"{len(result.answers)} of 10 answers" in result.note and "overlap_threshold" in result.note
    assert result.to_dict()["note"] == result.note
    assert "note" not in ask(skewed, 1).to_dict()  # nothing to explain: no key


def test_scores_do_not_depend_on_top_k(reader):
    skewed = one_start_reader(reader)
    scores = [ask(skewed, k).answers[0].score for k in (1, 3, 8)]
    assert scores[0] == scores[1] == scores[2]


def test_answers_are_plain_python_numbers(reader):
    """Before: no_answer_score was a numpy float64 when "no answer" was not allowed."""
    assert type(ask(reader, 1).no_answer_score) is float
    result = ask(reader, 3, handle_impossible=True)
    data = result.to_dict()
    assert type(result.no_answer_score) is float and all(type(a.score) is float for a in result.answers)
    assert json.loads(json.dumps(data)) == data
    assert type(data["no_answer_score"]) is float and type(data["no_answer_threshold"]) is float
