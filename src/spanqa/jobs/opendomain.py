"""Open-domain evaluation: questions asked of a whole passage index instead of their paragraph.

Two numbers say how well "retrieve, then read" works on a dataset:

* retrieval recall@k: the share of answerable questions for which one of the first ``k``
  retrieved passages is a *gold passage*: the question's own context at the same offsets
  (``context[p.start:p.end] == p.text``) covering the first gold answer. This needs an index
  built from the dataset's contexts (``spanqa index DATA --out DIR``); ``answer_recall@k`` (a
  passage contains a gold answer's text, normalised, as DPR counts it) works for any collection;
* end-to-end EM/F1: the reader's answer over the retrieved passages, scored like the
  gold-passage EM/F1 of ``spanqa evaluate``, which it is printed beside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spanqa.stages.metrics import normalize_answer, score_predictions

if TYPE_CHECKING:  # pragma: no cover
    from spanqa.reading.index import Hit, Index
    from spanqa.reading.reader import Reader
    from spanqa.stages.data import QAExample

__all__ = ["RECALL_KS", "OpenDomainResult", "retrieval_recall", "evaluate_open_domain", "is_gold_passage"]

RECALL_KS = (1, 5, 20)


@dataclass
class OpenDomainResult:
    """Retrieval recall per method and the end-to-end scores over the index.

    Attributes:
        recall: ``{method: {"recall@k": share, "answer_recall@k": share}}`` over answerable questions.
        end_to_end: EM/F1 (and the v2 breakdown) of the answers read from retrieved passages.
        method: The retrieval method the reader's passages came from.
        passages: Passages the reader read per question.
        questions: Questions asked (answerable ones count for recall).
        predictions: The end-to-end answer text per question id ("" for no answer).
    """

    recall: dict[str, dict[str, float]]
    end_to_end: dict[str, Any]
    method: str
    passages: int
    questions: int
    predictions: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"retrieval": self.recall, "end_to_end": self.end_to_end, "method": self.method, "passages": self.passages, "questions": self.questions}


def is_gold_passage(example: QAExample, hit: Hit) -> bool:
    """Whether the retrieved passage is the question's own context around its first gold answer.

    Args:
        example: An answerable question.
        hit: A retrieved passage.
    """
    answer, passage = example.answers[0], hit.passage
    return passage.start <= answer.start and answer.end <= passage.end and example.context[passage.start : passage.end] == passage.text


def _holds_answer(example: QAExample, hit: Hit, lang: str) -> bool:
    text = normalize_answer(hit.passage.text, lang)
    return any((gold := normalize_answer(a.text, lang)) and gold in text for a in example.answers)


def retrieval_recall(
    index: Index, examples: Sequence[QAExample], methods: Sequence[str] | None = None, ks: Sequence[int] = RECALL_KS, lang: str = "squad"
) -> dict[str, dict[str, float]]:
    """Recall@k of the gold passage, and of any passage holding a gold answer, per retrieval method.

    Args:
        index: The passage index.
        examples: The questions; unanswerable ones are left out.
        methods: Retrieval methods (default: every one the index supports).
        ks: The cut-offs.
        lang: Answer normalisation for ``answer_recall``.
    """
    methods = index.methods if methods is None else methods
    return _recall(examples, _search(index, examples, methods, max(ks)), ks, lang)


def _search(index: Index, examples: Sequence[QAExample], methods: Sequence[str], depth: int) -> dict[str, list[list[Hit]]]:
    """Each question's first ``depth`` passages, per method (a stable ranking, so any shorter
    search returns the head of these)."""
    return {method: [index.search(ex.question, depth, method=method) for ex in examples] for method in methods}


def _recall(examples: Sequence[QAExample], searched: dict[str, list[list[Hit]]], ks: Sequence[int], lang: str) -> dict[str, dict[str, float]]:
    """Recall@k per method from each question's retrieved passages (``searched[method][i]`` for ``examples[i]``)."""
    answerable = [i for i, ex in enumerate(examples) if ex.answers]
    depth = max(ks)
    out: dict[str, dict[str, float]] = {}
    for method, found in searched.items():
        gold_ranks, answer_ranks = [], []
        for i in answerable:
            ex, hits = examples[i], found[i][:depth]
            gold_ranks.append(next((r for r, hit in enumerate(hits) if is_gold_passage(ex, hit)), depth))
            answer_ranks.append(next((r for r, hit in enumerate(hits) if _holds_answer(ex, hit, lang)), depth))
        total = max(len(answerable), 1)
        out[method] = {f"recall@{k}": sum(r < k for r in gold_ranks) / total for k in ks}
        out[method].update({f"answer_recall@{k}": sum(r < k for r in answer_ranks) / total for k in ks})
    return out


def evaluate_open_domain(
    reader: Reader,
    index: Index,
    examples: Sequence[QAExample],
    *,
    passages: int = 10,
    version_2: bool = False,
    lang: str = "squad",
    methods: Sequence[str] | None = None,
    ks: Sequence[int] = RECALL_KS,
) -> OpenDomainResult:
    """Retrieval recall of every method, then the reader's EM/F1 over the retrieved passages.

    Args:
        reader: The QA model.
        index: The passage index (built from the examples' contexts for gold-passage recall).
        examples: The gold questions.
        passages: Passages the reader reads per question (retrieved by the index's default method).
        version_2: Allow and score "no answer".
        lang: Answer normalisation.
        methods: Retrieval methods whose recall is measured (default: all the index supports).
        ks: Recall cut-offs.
    """
    from spanqa.reading.indexed import answer_questions_from_index
    from spanqa.reading.options import AnswerOptions

    methods = index.methods if methods is None else methods
    # One search per question and method, deep enough for both: recall reads its head to max(ks),
    # the reader its first `passages` of the default method's (searching again would double the
    # question encodings of dense and fused retrieval).
    searched = _search(index, examples, sorted({*methods, index.default_method}), max(*ks, passages))
    recall = _recall(examples, {method: searched[method] for method in methods}, ks, lang)
    options = AnswerOptions(handle_impossible=version_2)
    questions = [ex.question for ex in examples]
    found = answer_questions_from_index(reader, index, questions, passages=passages, options=options, hits=searched[index.default_method])
    predictions = {ex.id: answer.answer.text if answer.answer else "" for ex, answer in zip(examples, found)}
    end_to_end = dict(score_predictions(examples, predictions, version_2=version_2, lang=lang).metrics)
    return OpenDomainResult(recall, end_to_end, index.default_method, passages, len(examples), predictions)
