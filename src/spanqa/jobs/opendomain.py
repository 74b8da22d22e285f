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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from spanqa.reading.indexed import index_request
from spanqa.reading.options import AnswerOptions
from spanqa.reading.results import QARequest
from spanqa.stages.metrics import headline_exact_match, normalize_answer, score_predictions

if TYPE_CHECKING:  # pragma: no cover
    from spanqa.reading.index import Hit, Index
    from spanqa.reading.reader import Reader
    from spanqa.stages.data import QAExample
    from spanqa.stages.decode import ExamplePrediction

__all__ = [
    "RECALL_KS",
    "PASSAGE_COUNTS",
    "OpenDomainResult",
    "RetrievalFit",
    "retrieval_recall",
    "evaluate_open_domain",
    "fit_retrieval_weight",
    "is_gold_passage",
]

RECALL_KS = (1, 5, 20)
PASSAGE_COUNTS = (1, 3, 10)
"""Passages read per question for the end-to-end scores of ``evaluate --index`` (besides ``--passages``)."""
WEIGHT_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)
"""Retrieval weights tried by :func:`fit_retrieval_weight`."""
READ_CHUNK = 256
"""Questions whose passages are read in one shared pass (bounds the windows held at once)."""


@dataclass
class RetrievalFit:
    """The retrieval weight that fitted the evaluation questions best.

    Attributes:
        weight: The best weight.
        f1: End-to-end F1 with it.
        tried: F1 for every weight tried.
    """

    weight: float
    f1: float
    tried: dict[float, float]


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
        by_passages: EM/F1 for each number of passages read (1, 3, 10 and ``passages``).
        fitted: The retrieval weight fitted on these questions (None with one passage).
    """

    recall: dict[str, dict[str, float]]
    end_to_end: dict[str, Any]
    method: str
    passages: int
    questions: int
    predictions: dict[str, str]
    by_passages: dict[int, dict[str, float]] = field(default_factory=dict)
    fitted: RetrievalFit | None = None

    def to_dict(self) -> dict[str, Any]:
        fitted = self.fitted and {"retrieval_weight": self.fitted.weight, "f1": self.fitted.f1, "tried": {str(k): v for k, v in self.fitted.tried.items()}}
        return {
            "retrieval": self.recall,
            "end_to_end": self.end_to_end,
            "method": self.method,
            "passages": self.passages,
            "questions": self.questions,
            "by_passages": {str(count): scores for count, scores in self.by_passages.items()},
            "fitted": fitted,
        }


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
    """Retrieval recall of every method, then the reader's EM/F1 over 1, 3, 10 and ``passages``
    retrieved passages (each passage read once, then ranked for each count), and the retrieval
    weight that fits these questions best.

    Args:
        reader: The QA model.
        index: The passage index (built from the examples' contexts for gold-passage recall).
        examples: The gold questions.
        passages: Passages the reader reads per question for ``end_to_end`` (retrieved by the index's default method).
        version_2: Allow and score "no answer".
        lang: Answer normalisation.
        methods: Retrieval methods whose recall is measured (default: all the index supports).
        ks: Recall cut-offs.
    """
    methods = index.methods if methods is None else methods
    counts = sorted({*PASSAGE_COUNTS, passages})
    # One search per question and method, deep enough for all: recall reads its head to max(ks),
    # the reader the first passages of the default method's (searching again would double the
    # question encodings of dense and fused retrieval).
    searched = _search(index, examples, sorted({*methods, index.default_method}), max(*ks, *counts))
    recall = _recall(examples, {method: searched[method] for method in methods}, ks, lang)
    read = _ReadPassages.of(reader, index, examples, searched[index.default_method], max(counts), AnswerOptions(handle_impossible=version_2))

    def scored(count: int, weight: float | None = None) -> tuple[dict[str, Any], dict[str, str]]:
        predictions = read.answers(count, weight)
        return dict(score_predictions(examples, predictions, version_2=version_2, lang=lang).metrics), predictions

    end_to_end, predictions = scored(passages)
    by_passages = {count: _em_f1(scored(count)[0]) for count in counts}
    fitted = fit_retrieval_weight(lambda weight: scored(passages, weight)[0]["f1"]) if passages > 1 else None
    return OpenDomainResult(recall, end_to_end, index.default_method, passages, len(examples), predictions, by_passages, fitted)


def fit_retrieval_weight(f1_of: Callable[[float], float], grid: Sequence[float] = WEIGHT_GRID) -> RetrievalFit:
    """The retrieval weight (see :func:`~spanqa.stages.decode.passage_offsets`) with the best F1;
    among equals, the smallest (the reader's own ranking, trusted when the retriever adds nothing).

    Args:
        f1_of: End-to-end F1 of the evaluation questions with a given weight.
        grid: The weights tried.
    """
    found = {weight: f1_of(weight) for weight in grid}
    best = max(found, key=lambda weight: (found[weight], -weight))
    return RetrievalFit(best, found[best], found)


def _em_f1(metrics: dict[str, Any]) -> dict[str, float]:
    return {"exact_match": headline_exact_match(metrics), "f1": float(metrics["f1"])}


@dataclass
class _ReadPassages:
    """Every question's retrieved passages, read once; ranked for any count and retrieval weight."""

    reader: Reader
    examples: Sequence[QAExample]
    requests: list[QARequest]
    read: list[list[ExamplePrediction]]

    @classmethod
    def of(
        cls, reader: Reader, index: Index, examples: Sequence[QAExample], hits: Sequence[Sequence[Hit]], depth: int, options: AnswerOptions
    ) -> _ReadPassages:
        requests = [index_request(index, ex.question, passages=depth, options=options, hits=found)[0] for ex, found in zip(examples, hits)]
        read: list[list[ExamplePrediction]] = []
        for lo in range(0, len(requests), READ_CHUNK):
            read.extend(reader.read_texts(requests[lo : lo + READ_CHUNK]))
        return cls(reader, examples, requests, read)

    def answers(self, count: int, weight: float | None) -> dict[str, str]:
        """Each question's answer text ("" for none) from its first ``count`` passages."""
        out = {}
        for ex, request, read in zip(self.examples, self.requests, self.read):
            first = replace(request, documents=request.texts[:count], document_scores=(request.document_scores or [])[:count] or None)
            best = self.reader.rank(first, read, retrieval_weight=weight).answer
            out[ex.id] = best.text if best else ""
        return out
