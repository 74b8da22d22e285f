"""Stage 5: the official SQuAD v1.1 / v2.0 scores, per question and overall.

The definitions follow the official evaluation scripts exactly (normalisation,
max over gold answers, v2's empty-gold handling and best-threshold search), so
the printed numbers are the ones papers report. ``lang`` switches the
normalisation to MLQA's language-aware rules (Unicode punctuation, each
language's articles, character-level tokens for scripts written without spaces).
"""

from __future__ import annotations

import logging
import math
import re
import string
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from spanqa.core.errors import ConfigError, DataError, did_you_mean
from spanqa.stages.data import QAExample

__all__ = [
    "headline_exact_match",
    "normalize_answer",
    "answer_tokens",
    "exact_score",
    "f1_score",
    "QuestionScore",
    "ScoreReport",
    "score_predictions",
    "best_threshold",
    "threshold_curve",
    "LANGUAGES",
]

logger = logging.getLogger(__name__)

_ASCII_PUNCT = frozenset(string.punctuation)
# Articles removed before comparison, per language (MLQA's lists; Greek, French,
# Italian, Romanian and Portuguese added the same way).
_ARTICLES: dict[str, str | None] = {
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    "ar": r"\sال^|ال",
    "el": r"\b(ο|η|το|οι|τα|του|της|των|τον|την|τους|τις|ένας|μία|μια|ένα|ενός|μιας)\b",
    "fr": r"\b(le|la|les|l|un|une|des|du)\b",
    "it": r"\b(il|lo|la|i|gli|le|l|un|uno|una)\b",
    "pt": r"\b(o|a|os|as|um|uma|uns|umas)\b",
    "ro": None,
    "hi": None,
    "ru": None,
    "zh": None,
    "ja": None,
    "th": None,
    "ko": None,
    "tr": None,
    "ur": None,
}
LANGUAGES: tuple[str, ...] = tuple(_ARTICLES)
# Scripts written without spaces: every such character is its own token.
_CHARACTER_SCRIPTS = {
    "zh": re.compile(r"[\u4e00-\u9fa5]"),  # MLQA's range, kept for comparable Chinese scores
    "ja": re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"),
    "th": re.compile(r"[\u0e00-\u0e7f]"),
}


@lru_cache(maxsize=1)
def _unicode_punct() -> frozenset[str]:
    chars = (chr(i) for i in range(sys.maxunicode + 1))
    return frozenset(c for c in chars if unicodedata.category(c).startswith("P")) | _ASCII_PUNCT


def _check_lang(lang: str) -> None:
    if lang not in _ARTICLES:
        choices = ("squad", *LANGUAGES)
        raise ConfigError(f"unknown language {lang!r}{did_you_mean(lang, choices)}; supported: {', '.join(choices)}")


def _segment(text: str, pattern: re.Pattern[str], punct: frozenset[str]) -> list[str]:
    """MLQA's mixed segmentation: CJK characters and punctuation alone, other runs by whitespace."""
    out: list[str] = []
    run = ""
    for char in text:
        if pattern.search(char) or char in punct:
            out.extend(run.split())
            run = ""
            out.append(char)
        else:
            run += char
    out.extend(run.split())
    return out


@lru_cache(maxsize=65536)
def normalize_answer(text: str, lang: str = "squad") -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace.

    ``lang="squad"`` (the default) is exactly the official SQuAD script; a
    language code applies the MLQA rules for that language.
    """
    text = text.lower()
    if lang == "squad":
        text = "".join(ch for ch in text if ch not in _ASCII_PUNCT)
        text = re.sub(r"\b(a|an|the)\b", " ", text)
        return " ".join(text.split())
    _check_lang(lang)
    punct = _unicode_punct()
    text = "".join(ch for ch in text if ch not in punct)
    articles = _ARTICLES[lang]
    if articles:
        text = re.sub(articles, " ", text)
    pattern = _CHARACTER_SCRIPTS.get(lang)
    tokens = _segment(text, pattern, punct) if pattern else text.split()
    return " ".join(t for t in tokens if t.strip())


def answer_tokens(text: str, lang: str = "squad") -> list[str]:
    return normalize_answer(text, lang).split() if text else []


def exact_score(prediction: str, gold: str, lang: str = "squad") -> int:
    return int(normalize_answer(gold, lang) == normalize_answer(prediction, lang))


def f1_score(prediction: str, gold: str, lang: str = "squad", v2: bool = True) -> float:
    """Token F1. v2 scores empty against empty as 1; v1.1 scores any zero overlap as 0."""
    gold_toks = answer_tokens(gold, lang)
    pred_toks = answer_tokens(prediction, lang)
    if v2 and (not gold_toks or not pred_toks):
        return float(gold_toks == pred_toks)
    common = Counter(gold_toks) & Counter(pred_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_toks)
    recall = same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


@dataclass(frozen=True)
class QuestionScore:
    """One question's result, kept for error analysis and reports."""

    id: str
    prediction: str | None
    exact: float
    f1: float
    has_answer: bool
    na_prob: float | None = None


@dataclass
class ScoreReport:
    """Overall metrics (the official script's keys) plus every question's score."""

    metrics: dict[str, float]
    questions: list[QuestionScore]
    missing: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "questions": [asdict(q) for q in self.questions], "missing": self.missing}


def _gold_texts(example: QAExample, lang: str, v2: bool) -> list[str]:
    texts = [a.text for a in example.answers]
    if not v2:
        return texts
    texts = [t for t in texts if normalize_answer(t, lang)]
    return texts or [""]


def score_predictions(
    examples: Sequence[QAExample],
    predictions: Mapping[str, str],
    na_probs: Mapping[str, float] | None = None,
    *,
    version_2: bool | None = None,
    na_prob_thresh: float = 1.0,
    lang: str = "squad",
) -> ScoreReport:
    """Score ``{id: answer text}`` against gold examples with the official definitions.

    Questions without a prediction count as wrong (a warning says how many); the
    official scripts would skip (v2) them or count them as wrong (v1.1).

    No-answer probabilities and the threshold must not be NaN (the official
    script's sort and comparisons give arbitrary results for it); infinities
    are kept in order as the largest finite floats, so the reported best
    thresholds are always valid JSON and the scores those of the official script.

    Args:
        examples: The gold examples.
        predictions: Answer text per question id ("" for no answer).
        na_probs: No-answer probability (or any score, higher meaning "no answer") per id; v2 only.
        version_2: Score as SQuAD v2.0 (default: when some gold question is unanswerable).
        na_prob_thresh: Questions whose na-prob exceeds this are taken as answered "no answer".
        lang: Answer normalisation: "squad" or a language code (MLQA rules).

    Raises:
        ConfigError: ``na_prob_thresh`` is NaN, or ``lang`` is unknown.
        DataError: a question's na-prob is NaN (names the id).
    """
    if lang != "squad":
        _check_lang(lang)
    if math.isnan(na_prob_thresh):
        raise ConfigError("the no-answer threshold (na_prob_thresh, --na-prob-thresh) is NaN; give a number (the official default is 1.0)")
    na_prob_thresh = _clamped(na_prob_thresh)
    v2 = any(ex.is_impossible for ex in examples) if version_2 is None else version_2
    missing_ids = [ex.id for ex in examples if ex.id not in predictions]
    if missing_ids:
        logger.warning("%d of %d questions have no prediction and count as wrong (first: %s)", len(missing_ids), len(examples), missing_ids[0])
    extra = len(set(predictions) - {ex.id for ex in examples})
    if extra:
        logger.warning("%d predictions have ids that are not in the gold data and are ignored", extra)
    if na_probs is not None:
        missing_na = sum(1 for ex in examples if ex.id not in na_probs)
        if missing_na:
            logger.warning("%d questions have no no-answer probability; taken as 0.0", missing_na)

    questions: list[QuestionScore] = []
    for ex in examples:
        pred = predictions.get(ex.id)
        gold = _gold_texts(ex, lang, v2)
        if pred is None:
            exact, f1 = 0.0, 0.0
        else:
            exact = float(max(exact_score(pred, g, lang) for g in gold)) if gold else 0.0
            f1 = max(f1_score(pred, g, lang, v2=v2) for g in gold) if gold else 0.0
        na = None if na_probs is None else _na_prob(na_probs.get(ex.id, 0.0), ex.id)
        questions.append(QuestionScore(ex.id, pred, exact, f1, not ex.is_impossible, na))

    if not v2:
        total = len(questions)
        metrics = {
            "exact_match": 100.0 * sum(q.exact for q in questions) / total,
            "f1": 100.0 * sum(q.f1 for q in questions) / total,
        }
        return ScoreReport(metrics, questions, len(missing_ids))

    exact_thresh = [_apply_threshold(q, q.exact, na_prob_thresh) for q in questions]
    f1_thresh = [_apply_threshold(q, q.f1, na_prob_thresh) for q in questions]
    metrics = _summary(exact_thresh, f1_thresh)
    has = [i for i, q in enumerate(questions) if q.has_answer]
    no = [i for i, q in enumerate(questions) if not q.has_answer]
    if has:
        for key, value in _summary([exact_thresh[i] for i in has], [f1_thresh[i] for i in has]).items():
            metrics[f"HasAns_{key}"] = value
    if no:
        for key, value in _summary([exact_thresh[i] for i in no], [f1_thresh[i] for i in no]).items():
            metrics[f"NoAns_{key}"] = value
    if na_probs is not None:
        for name in ("exact", "f1"):
            best, thresh = best_threshold(questions, name, na_probs_order=list(na_probs))
            metrics[f"best_{name}"] = best
            metrics[f"best_{name}_thresh"] = thresh
    return ScoreReport(metrics, questions, len(missing_ids))


# The official v2 script only compares na-probs, with each other and with the threshold, and
# infinities take part in that fine; but the best threshold it reports is one of them, and
# Infinity is not JSON. Mapping +-inf onto +-the largest finite float, the threshold too, keeps
# every comparison's outcome (bar a tie with a value of exactly that size), so the scores stay
# the official ones and every reported threshold is finite.
_LARGEST = sys.float_info.max


def _clamped(value: float) -> float:
    """``value`` with +-inf mapped to +-``sys.float_info.max`` (see _LARGEST for why); NaN must be refused before."""
    return max(-_LARGEST, min(_LARGEST, value))


def _na_prob(value: Any, qid: str) -> float:
    """One question's no-answer probability as a finite float.

    Args:
        value: The na-prob (anything float() takes).
        qid: The question's id, for the message.

    Raises:
        DataError: ``value`` is NaN (which has no place in the official sort) or not a number.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"the no-answer probability of id {qid!r} is not a number: {value!r}") from None
    if math.isnan(number):
        raise DataError(f"the no-answer probability of id {qid!r} is NaN; give a number (NaN has no order, so no threshold can use it)")
    return _clamped(number)


def _apply_threshold(q: QuestionScore, value: float, thresh: float) -> float:
    """The official script: a question with na_prob above the threshold is answered 'no answer'.

    Without a na-prob file the official script takes 0.0 for every prediction, so a
    negative threshold still flips every answered question.
    """
    na_prob = 0.0 if q.na_prob is None else q.na_prob
    if q.prediction is not None and na_prob > thresh:
        return float(not q.has_answer)
    return value


def _summary(exact: Sequence[float], f1: Sequence[float]) -> dict[str, float]:
    total = len(exact)
    return {"exact": 100.0 * sum(exact) / total, "f1": 100.0 * sum(f1) / total, "total": total}


def _running_scores(
    questions: Sequence[QuestionScore], metric: str, na_probs_order: Iterable[str] | None
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """The official v2 search's running score: questions in increasing ``na_prob`` (ties in the
    na-prob file's order), the score after answering each one and abstaining on all after it.

    Returns:
        The sorted na-probs, the running score (in questions) after each, the score when every
        question abstains, and the number of questions.
    """
    by_id = {q.id: q for q in questions}
    ids = [i for i in (na_probs_order or by_id) if i in by_id] or list(by_id)
    listed = set(ids)
    ids += [i for i in by_id if i not in listed]
    qs = [by_id[i] for i in ids]
    na = np.array([_na_prob(q.na_prob, q.id) if q.na_prob is not None else 0.0 for q in qs], dtype=np.float64)
    raw = np.array([getattr(q, metric) for q in qs], dtype=np.float64)
    has = np.array([q.has_answer for q in qs])
    answered = np.array([bool(q.prediction) for q in qs])
    present = np.array([q.prediction is not None for q in qs])
    order = np.argsort(na, kind="stable")
    diff = np.where(has, raw, np.where(answered, -1.0, 0.0))[order]
    start = float(np.sum(~has & present))
    return na[order], start + np.cumsum(diff), start, len(qs)


def best_threshold(questions: Sequence[QuestionScore], metric: str = "f1", na_probs_order: Iterable[str] | None = None) -> tuple[float, float]:
    """Best score over no-answer thresholds and the threshold that reaches it (official v2 search).

    Questions are visited in increasing ``na_prob`` (ties in the na-prob file's
    order, as the official script's stable sort does); answering those below the
    threshold and abstaining on the rest.

    The na-probs are read as :func:`score_predictions` reads them (NaN is an
    error, infinities count as the largest finite floats), so the threshold
    returned is always finite.
    """
    na, running, start, total = _running_scores(questions, metric, na_probs_order)
    best, thresh = start, 0.0
    if running.size and running.max() > start:
        top = int(np.argmax(running == running.max()))
        best, thresh = float(running[top]), float(na[top])
    return 100.0 * best / total, thresh


def threshold_curve(
    questions: Sequence[QuestionScore], metric: str = "f1", na_probs_order: Iterable[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The score (in percent) at every no-answer threshold that changes it.

    At threshold ``t`` a question is answered when its ``na_prob`` is at most ``t``
    and abstains otherwise (the official script's rule, and :func:`spanqa.stages.decode.abstains`).
    Unlike :func:`best_threshold`, which may stop inside a run of equal na-probs,
    every point here is reachable: the thresholds are the distinct na-probs, plus
    one just below the lowest (every question abstains) when a finite one exists.

    Args:
        questions: Scored questions with their ``na_prob`` (their prediction as if answered).
        metric: ``"f1"`` or ``"exact"``.
        na_probs_order: Question ids in the na-prob file's order (ties keep it).

    Returns:
        ``(thresholds, scores)``: increasing thresholds and the score at each.
    """
    na, running, start, total = _running_scores(questions, metric, na_probs_order)
    if not na.size:
        return np.zeros(1), np.zeros(1)
    last = np.append(na[1:] != na[:-1], True)  # the end of each run of equal na-probs
    thresholds, scores = na[last], running[last]
    below = np.nextafter(na[0], -np.inf)
    if np.isfinite(below):
        thresholds, scores = np.insert(thresholds, 0, below), np.insert(scores, 0, start)
    return thresholds, 100.0 * scores / total


def headline_exact_match(metrics: Mapping[str, Any]) -> float:
    """The exact-match score of a metrics dict: SQuAD v1.1's script names it ``exact_match``, v2.0's ``exact``.

    Args:
        metrics: Scores from :func:`score_predictions` (or loaded from ``metrics.json``).
    """
    return float(metrics.get("exact_match", metrics.get("exact", 0.0)))
