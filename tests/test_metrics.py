"""Stage 5 metrics: spanqa's scores against an independent scalar reference of the official scripts.

The reference is a plain, dict-and-loop re-statement of the official SQuAD
evaluation scripts (``evaluate-v2.0.py`` below; ``evaluate-v1.1.py`` and the
shared answer normalisation in ``bench/reference_recipe.py``) and of MLQA's
language-aware normalisation (``mlqa_evaluation_v1.py``, below). It deliberately
shares no code with :mod:`spanqa.stages.metrics`. Hand-made cases pin the numbers
(worked out by hand in the comments); Hypothesis checks spanqa against the
reference on random data to 1e-9 on every key.

The reference also serves ``tests/test_score_cli.py``.
"""

from __future__ import annotations

import logging
import math
import random
import re
import string
import sys
import time
import unicodedata
from collections import Counter
from functools import lru_cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_recipe import iter_qas, ref_normalize_answer, ref_token_f1, ref_v1_evaluate

from spanqa.core.errors import ConfigError
from spanqa.stages.data import Answer, QAExample
from spanqa.stages.metrics import (
    LANGUAGES,
    QuestionScore,
    best_threshold,
    exact_score,
    f1_score,
    normalize_answer,
    score_predictions,
)

TOL = 1e-9
HYPO = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# =============================================================================================
# Reference: the official SQuAD v2.0 script, statement by statement
# =============================================================================================


def ref_get_tokens(s: str) -> list[str]:
    if not s:
        return []
    return ref_normalize_answer(s).split()


def ref_compute_exact(a_gold: str, a_pred: str) -> int:
    return int(ref_normalize_answer(a_gold) == ref_normalize_answer(a_pred))


def ref_compute_f1(a_gold: str, a_pred: str) -> float:
    gold_toks = ref_get_tokens(a_gold)
    pred_toks = ref_get_tokens(a_pred)
    common = Counter(gold_toks) & Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        # If either is no-answer, then F1 is 1 if they agree, 0 otherwise
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def ref_make_qid_to_has_ans(dataset):
    return {qa["id"]: bool(qa["answers"]) for qa in iter_qas(dataset)}


def ref_get_raw_scores(dataset, preds, missing_as_wrong=False):
    exact_scores: dict[str, float] = {}
    f1_scores: dict[str, float] = {}
    for qa in iter_qas(dataset):
        qid = qa["id"]
        gold_answers = [a["text"] for a in qa["answers"] if ref_normalize_answer(a["text"])]
        if not gold_answers:
            # For unanswerable questions, only correct answer is empty string
            gold_answers = [""]
        if qid not in preds:
            # The official script prints 'Missing prediction' and skips the question;
            # spanqa's stated extension instead counts it as wrong (score 0).
            if missing_as_wrong:
                exact_scores[qid] = 0
                f1_scores[qid] = 0
            continue
        a_pred = preds[qid]
        exact_scores[qid] = max(ref_compute_exact(a, a_pred) for a in gold_answers)
        f1_scores[qid] = max(ref_compute_f1(a, a_pred) for a in gold_answers)
    return exact_scores, f1_scores


def ref_apply_no_ans_threshold(scores, na_probs, qid_to_has_ans, na_prob_thresh, wrong=frozenset()):
    new_scores = {}
    for qid, s in scores.items():
        if qid in wrong:  # extension: a missing prediction stays wrong whatever its na_prob
            new_scores[qid] = 0.0
            continue
        pred_na = na_probs[qid] > na_prob_thresh
        if pred_na:
            new_scores[qid] = float(not qid_to_has_ans[qid])
        else:
            new_scores[qid] = s
    return new_scores


def ref_make_eval_dict(exact_scores, f1_scores, qid_list=None):
    if not qid_list:
        total = len(exact_scores)
        return {
            "exact": 100.0 * sum(exact_scores.values()) / total,
            "f1": 100.0 * sum(f1_scores.values()) / total,
            "total": total,
        }
    total = len(qid_list)
    return {
        "exact": 100.0 * sum(exact_scores[k] for k in qid_list) / total,
        "f1": 100.0 * sum(f1_scores[k] for k in qid_list) / total,
        "total": total,
    }


def ref_merge_eval(main_eval, new_eval, prefix):
    for k in new_eval:
        main_eval[f"{prefix}_{k}"] = new_eval[k]


def ref_find_best_thresh(preds, scores, na_probs, qid_to_has_ans, wrong=frozenset()):
    num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k] and k not in wrong)
    cur_score = num_no_ans
    best_score = cur_score
    best_thresh = 0.0
    qid_list = sorted(na_probs, key=lambda k: na_probs[k])  # stable: ties keep the file's order
    for qid in qid_list:
        if qid not in scores:
            continue
        if qid in wrong:
            diff = 0
        elif qid_to_has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1 if preds[qid] else 0
        cur_score += diff
        if cur_score > best_score:
            best_score = cur_score
            best_thresh = na_probs[qid]
    return 100.0 * best_score / len(scores), best_thresh


def ref_find_all_best_thresh(main_eval, preds, exact_raw, f1_raw, na_probs, qid_to_has_ans, wrong=frozenset()):
    best_exact, exact_thresh = ref_find_best_thresh(preds, exact_raw, na_probs, qid_to_has_ans, wrong)
    best_f1, f1_thresh = ref_find_best_thresh(preds, f1_raw, na_probs, qid_to_has_ans, wrong)
    main_eval["best_exact"] = best_exact
    main_eval["best_exact_thresh"] = exact_thresh
    main_eval["best_f1"] = best_f1
    main_eval["best_f1_thresh"] = f1_thresh


def ref_v2_evaluate(dataset, preds, na_probs=None, na_prob_thresh=1.0, *, missing_as_wrong=False):
    """The official v2.0 ``main()``; ``dataset`` is the file's ``data`` list.

    ``missing_as_wrong`` switches on spanqa's documented extensions, which only
    matter where the official script crashes or skips: a question without a
    prediction scores 0 in every key (and counts in every total), and a question
    missing from the na-prob file takes 0.0 (the official script raises KeyError).
    """
    qid_to_has_ans = ref_make_qid_to_has_ans(dataset)
    wrong = frozenset(q for q in qid_to_has_ans if q not in preds)
    if wrong and not missing_as_wrong:
        raise AssertionError("the official v2 script cannot score missing predictions; use missing_as_wrong")
    if na_probs is None:
        has_file = False
        na_probs = {k: 0.0 for k in preds}
    else:
        has_file = True
        na_probs = dict(na_probs)
    if missing_as_wrong:
        for qid in qid_to_has_ans:
            na_probs.setdefault(qid, 0.0)
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    exact_raw, f1_raw = ref_get_raw_scores(dataset, preds, missing_as_wrong)
    exact_thresh = ref_apply_no_ans_threshold(exact_raw, na_probs, qid_to_has_ans, na_prob_thresh, wrong)
    f1_thresh = ref_apply_no_ans_threshold(f1_raw, na_probs, qid_to_has_ans, na_prob_thresh, wrong)
    out_eval = ref_make_eval_dict(exact_thresh, f1_thresh)
    if has_ans_qids:
        ref_merge_eval(out_eval, ref_make_eval_dict(exact_thresh, f1_thresh, qid_list=has_ans_qids), "HasAns")
    if no_ans_qids:
        ref_merge_eval(out_eval, ref_make_eval_dict(exact_thresh, f1_thresh, qid_list=no_ans_qids), "NoAns")
    if has_file:
        ref_find_all_best_thresh(out_eval, preds, exact_raw, f1_raw, na_probs, qid_to_has_ans, wrong)
    return out_eval


# =============================================================================================
# Reference: MLQA's language-aware normalisation (mlqa_evaluation_v1.py)
# =============================================================================================

MLQA_LANGS = ("en", "es", "de", "vi", "ar", "hi", "zh")
_MLQA_WHITESPACE_LANGS = ("en", "es", "hi", "vi", "de", "ar")


@lru_cache(maxsize=1)
def mlqa_punct() -> frozenset[str]:
    return frozenset(chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")) | frozenset(
        string.punctuation
    )


def _mlqa_mixed_segmentation(text: str) -> list[str]:
    segs_out: list[str] = []
    temp_str = ""
    for char in text:
        if re.search(r"[\u4e00-\u9fa5]", char) or char in mlqa_punct():
            if temp_str != "":
                segs_out.extend(temp_str.split())
                temp_str = ""
            segs_out.append(char)
        else:
            temp_str += char
    if temp_str != "":
        segs_out.extend(temp_str.split())
    return segs_out


def ref_mlqa_normalize(s: str, lang: str) -> str:
    def remove_articles(text):
        if lang == "en":
            return re.sub(r"\b(a|an|the)\b", " ", text)
        if lang == "es":
            return re.sub(r"\b(un|una|unos|unas|el|la|los|las)\b", " ", text)
        if lang == "hi":
            return text  # Hindi does not have formal articles
        if lang == "vi":
            return re.sub(r"\b(của|là|cái|chiếc|những)\b", " ", text)
        if lang == "de":
            return re.sub(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b", " ", text)
        if lang == "ar":
            return re.sub(r"\sال^|ال", " ", text)
        if lang == "zh":
            return text  # Chinese does not have formal articles
        raise ValueError(lang)

    def white_space_fix(text):
        tokens = text.split() if lang in _MLQA_WHITESPACE_LANGS else _mlqa_mixed_segmentation(text)
        return " ".join(t for t in tokens if t.strip() != "")

    def remove_punc(text):
        return "".join(ch for ch in text if ch not in mlqa_punct())

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def ref_mlqa_f1(prediction: str, ground_truth: str, lang: str) -> float:
    return ref_token_f1(ref_mlqa_normalize(prediction, lang).split(), ref_mlqa_normalize(ground_truth, lang).split())


def ref_mlqa_exact(prediction: str, ground_truth: str, lang: str) -> bool:
    return ref_mlqa_normalize(prediction, lang) == ref_mlqa_normalize(ground_truth, lang)


# =============================================================================================
# Helpers shared with test_score_cli.py
# =============================================================================================


def squad_dataset(questions: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
    """SQuAD ``data`` list, one paragraph per question; the context holds every gold answer at its offset."""
    articles = []
    for qid, golds in questions:
        context = "Context:"
        answers = []
        for text in golds:
            context += " "
            answers.append({"text": text, "answer_start": len(context)})
            context += text
        context += " end."
        qa = {"id": qid, "question": f"Question {qid}?", "answers": answers, "is_impossible": not golds}
        articles.append({"title": f"T{qid}", "paragraphs": [{"context": context, "qas": [qa]}]})
    return articles


def examples_of(dataset: list[dict[str, Any]]) -> list[QAExample]:
    out = []
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answers = tuple(Answer(a["text"], a["answer_start"]) for a in qa["answers"])
                out.append(QAExample(qa["id"], qa["question"], paragraph["context"], answers, article.get("title", "")))
    return out


def assert_metrics_match(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert set(got) == set(want), f"keys differ: spanqa {sorted(got)} vs reference {sorted(want)}"
    for key, value in want.items():
        assert math.isclose(float(got[key]), float(value), rel_tol=0.0, abs_tol=TOL), f"{key}: spanqa {got[key]!r} != reference {value!r}"


# --------------------------------------------------------------------------- hypothesis strategies

WORDS = ["the", "The", "THE", "a", "A", "an", "An", "cat", "Cat", "dog", "sat", "on", "mat", "theatre", "anna", "U.S.", "don't", "42", "x"]
PUNCT_ONLY = ["!", "...", "?!", "--", "(", ")", "\u00ab", "\u00bb"]
SEPS = [" ", "  ", "\t", "\n", ", ", ". ", "!", "-"]
# Fragments joined without separators: words glued to words, punctuation and runs of whitespace all occur.
FRAGMENTS = WORDS + [w + " " for w in WORDS] + PUNCT_ONLY + SEPS




def _phrase_pool(size: int = 400) -> list[str]:
    """Fixed-seed phrases of 1-5 fragments plus hand-picked awkward ones (one Hypothesis draw each keeps tests fast)."""
    rng = random.Random(1234)
    pool = ["the", "The.", "a", "An!", "!", "...", " \t", "Cat", "the cat", "cat the", "THE CAT.", "cat cat dog", "theatre", "U.S.", "US"]
    while len(pool) < size:
        pool.append("".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 5))))
    return pool


PHRASE_POOL = _phrase_pool()


def phrases(min_parts: int = 0, max_parts: int = 5) -> st.SearchStrategy[str]:
    del max_parts  # the pool holds 1-5 fragments
    pooled = st.sampled_from(PHRASE_POOL)
    return pooled if min_parts else st.one_of(st.just(""), pooled)


@st.composite
def gold_sets(draw, handle_impossible: bool = True, max_questions: int = 8) -> list[dict[str, Any]]:
    n = draw(st.integers(1, max_questions))
    questions = []
    for i in range(n):
        impossible = handle_impossible and draw(st.booleans())
        golds = [] if impossible else draw(st.lists(phrases(min_parts=1), min_size=1, max_size=3))
        questions.append((f"q{i}", golds))
    return squad_dataset(questions)


@st.composite
def predictions_for(draw, dataset, allow_missing: bool) -> dict[str, str]:
    preds: dict[str, str] = {}
    for qa in iter_qas(dataset):
        golds = [a["text"] for a in qa["answers"]]
        choices = ["random", "empty", "space"] + (["gold", "gold_upper", "gold_punct"] if golds else [])
        if allow_missing:
            choices.append("missing")
        kind = draw(st.sampled_from(choices))
        if kind == "missing":
            continue
        if kind == "random":
            preds[qa["id"]] = draw(phrases())
        elif kind == "empty":
            preds[qa["id"]] = ""
        elif kind == "space":
            preds[qa["id"]] = " "
        else:
            gold = draw(st.sampled_from(golds))
            preds[qa["id"]] = gold if kind == "gold" else gold.upper() if kind == "gold_upper" else f"the {gold}!"
    if draw(st.booleans()) and allow_missing:
        preds["not-a-gold-id"] = "cat"
    return preds


NA_VALUES = [0.0, 0.1, 0.25, 0.5, 0.5, 0.75, 1.0, 1.0]
THRESHOLDS = [1.0, 1.0, 0.5, 0.3, 0.0, -0.5, 2.0]


@st.composite
def na_probs_for(draw, dataset, partial: bool) -> dict[str, float]:
    ids = [qa["id"] for qa in iter_qas(dataset)]
    ids = draw(st.permutations(ids))  # file order decides ties
    if partial:
        ids = [i for i in ids if draw(st.booleans())]
        if draw(st.booleans()):
            ids.append("not-a-gold-id")
    return {i: draw(st.sampled_from(NA_VALUES)) for i in ids}


# =============================================================================================
# normalize_answer / exact_score / f1_score: the SQuAD script's rules
# =============================================================================================


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The  Cat!", "cat"),  # case, article, punctuation, double space
        ("  an apple, a pear and THE banana. ", "apple pear and banana"),  # every article, surrounding spaces
        ("\tNew\n York  ", "new york"),  # tabs/newlines are whitespace
        ("theatre anna", "theatre anna"),  # articles only as whole words
        ("the-cat", "thecat"),  # punctuation goes first, so 'the' is glued to 'cat' and survives
        ("U.S.A.", "usa"),
        ("don't", "dont"),
        ("a", ""),
        ("!?.", ""),
        ("", ""),
        ("«the cat»", "« cat»"),  # the official script only removes ASCII punctuation
    ],
)
def test_normalize_answer_squad_rules(text, expected):
    assert normalize_answer(text) == expected
    assert ref_normalize_answer(text) == expected  # the reference agrees with the hand value too


def test_exact_score_ignores_case_punctuation_articles_and_spacing():
    assert exact_score("The Denver  Broncos!", "denver broncos") == 1
    assert exact_score("Denver", "Denver Broncos") == 0
    assert exact_score("", "") == 1
    assert exact_score("the", "") == 1  # an article alone normalises to ''


def test_f1_partial_overlap():
    # pred tokens [big, red, dog], gold tokens [red, dog, barked]: 2 in common, P = R = 2/3, F1 = 2/3
    assert f1_score("the big red dog", "a red dog barked") == pytest.approx(2 / 3, abs=TOL)
    # repeated tokens count with multiplicity: pred [dog, dog, dog], gold [dog, cat]: common 1,
    # P = 1/3, R = 1/2, F1 = 2 * (1/6) / (5/6) = 0.4
    assert f1_score("dog dog dog", "dog cat") == pytest.approx(0.4, abs=TOL)
    # 'Bernadette' against 'Saint Bernadette Soubirous': P = 1, R = 1/3, F1 = 2 * (1/3) / (4/3) = 0.5
    assert f1_score("Bernadette", "Saint Bernadette Soubirous") == pytest.approx(0.5, abs=TOL)
    assert f1_score("cat", "dog") == 0.0


def test_f1_empty_answers_v2_and_v1():
    # v2: if either side has no tokens, F1 is 1 when both are empty and 0 otherwise
    assert f1_score("", "") == 1.0
    assert f1_score("The.", "") == 1.0  # the prediction normalises to nothing
    assert f1_score("cat", "") == 0.0
    assert f1_score("", "cat") == 0.0
    # v1.1: zero tokens in common is always 0, even empty against empty
    assert f1_score("", "", v2=False) == 0.0
    assert f1_score("a", "the", v2=False) == 0.0
    assert f1_score("Cat", "the cat", v2=False) == 1.0


# =============================================================================================
# score_predictions: hand-made v2 cases
# =============================================================================================

HAND_V2 = squad_dataset(
    [
        ("q1", ["Denver Broncos", "The Denver Broncos", "Broncos"]),
        ("q2", ["Saint Bernadette Soubirous"]),
        ("q3", []),
        ("q4", []),
    ]
)
HAND_V2_PREDS = {
    "q1": "the denver broncos!",  # exact 1, F1 1 (matches all three after normalisation)
    "q2": "Bernadette",  # exact 0, F1 0.5 (see test_f1_partial_overlap)
    "q3": "",  # unanswerable, abstains: exact 1, F1 1
    "q4": "Broncos",  # unanswerable, answers: exact 0, F1 0
}


def test_v2_hand_case_without_na_probs():
    report = score_predictions(examples_of(HAND_V2), HAND_V2_PREDS)
    expected = {
        "exact": 50.0,  # (1 + 0 + 1 + 0) / 4
        "f1": 62.5,  # (1 + 0.5 + 1 + 0) / 4
        "total": 4,
        "HasAns_exact": 50.0,  # q1, q2
        "HasAns_f1": 75.0,  # (1 + 0.5) / 2
        "HasAns_total": 2,
        "NoAns_exact": 50.0,  # q3, q4
        "NoAns_f1": 50.0,
        "NoAns_total": 2,
    }
    assert_metrics_match(report.metrics, expected)
    assert_metrics_match(ref_v2_evaluate(HAND_V2, HAND_V2_PREDS), expected)
    by_id = {q.id: q for q in report.questions}
    assert (by_id["q2"].exact, by_id["q2"].f1, by_id["q2"].has_answer) == (0.0, pytest.approx(0.5), True)
    assert (by_id["q3"].exact, by_id["q3"].f1, by_id["q3"].has_answer) == (1.0, 1.0, False)
    assert report.missing == 0


HAND_NA = {"q1": 0.1, "q2": 0.2, "q4": 0.3, "q3": 0.9}


def test_v2_hand_case_best_thresholds():
    # Start from 'abstain on everything': the 2 unanswerable questions are right (score 2).
    # Visiting in increasing na_prob and answering each in turn:
    #   exact: q1 +1 -> 3 (t=0.1), q2 +0 -> 3, q4 answered wrongly -1 -> 2, q3 abstains +0 -> 2
    #   f1:    q1 +1 -> 3 (t=0.1), q2 +0.5 -> 3.5 (t=0.2), q4 -1 -> 2.5, q3 +0 -> 2.5
    report = score_predictions(examples_of(HAND_V2), HAND_V2_PREDS, HAND_NA)
    m = report.metrics
    assert m["best_exact"] == pytest.approx(75.0, abs=TOL) and m["best_exact_thresh"] == 0.1
    assert m["best_f1"] == pytest.approx(87.5, abs=TOL) and m["best_f1_thresh"] == 0.2
    # The default na_prob_thresh (1.0) flips nothing: the main keys are the plain scores.
    assert m["exact"] == 50.0 and m["f1"] == pytest.approx(62.5)
    assert_metrics_match(m, ref_v2_evaluate(HAND_V2, HAND_V2_PREDS, HAND_NA))
    assert [q.na_prob for q in report.questions] == [0.1, 0.2, 0.9, 0.3]


def test_v2_na_prob_thresh_turns_confident_questions_into_no_answer():
    # thresh 0.25: q4 (0.3) and q3 (0.9) predict 'no answer', right for both (unanswerable).
    #   exact = (1 + 0 + 1 + 1) / 4 = 75, f1 = (1 + 0.5 + 1 + 1) / 4 = 87.5, NoAns 100 / 100
    m = score_predictions(examples_of(HAND_V2), HAND_V2_PREDS, HAND_NA, na_prob_thresh=0.25).metrics
    assert (m["exact"], m["f1"], m["NoAns_exact"], m["NoAns_f1"]) == (75.0, 87.5, 100.0, 100.0)
    assert (m["HasAns_exact"], m["HasAns_f1"]) == (50.0, 75.0)
    # thresh 0.15: q2 (0.2) also abstains, which is wrong for an answerable question: its 0.5 F1 -> 0
    #   exact = (1 + 0 + 1 + 1) / 4 = 75, f1 = (1 + 0 + 1 + 1) / 4 = 75, HasAns_f1 = 50
    m = score_predictions(examples_of(HAND_V2), HAND_V2_PREDS, HAND_NA, na_prob_thresh=0.15).metrics
    assert (m["exact"], m["f1"], m["HasAns_f1"]) == (75.0, 75.0, 50.0)
    # The best-threshold keys are computed from the raw scores, whatever na_prob_thresh is.
    assert (m["best_f1"], m["best_f1_thresh"]) == (87.5, 0.2)
    # na_prob equal to the threshold does not flip (strictly greater only).
    m = score_predictions(examples_of(HAND_V2), HAND_V2_PREDS, HAND_NA, na_prob_thresh=0.3).metrics
    # At 0.3, q4 (na 0.3) keeps its wrong answer: NoAns_exact back to (1 + 0) / 2 = 50 (it was 100 at 0.25);
    # q3 (0.9) flips but was already right, so every key equals the unthresholded one.
    assert (m["NoAns_exact"], m["exact"], m["f1"]) == (50.0, 50.0, 62.5)


def test_v2_negative_threshold_without_na_probs_file():
    # Without a na-prob file the official script takes na_prob = 0.0 for every prediction, so a
    # negative threshold turns every question into 'no answer': HasAns all wrong, NoAns all right.
    m = score_predictions(examples_of(HAND_V2), HAND_V2_PREDS, na_prob_thresh=-0.5).metrics
    assert (m["exact"], m["f1"], m["HasAns_exact"], m["NoAns_exact"]) == (50.0, 50.0, 0.0, 100.0)
    assert_metrics_match(m, ref_v2_evaluate(HAND_V2, HAND_V2_PREDS, na_prob_thresh=-0.5))


def test_best_threshold_ties_follow_the_na_prob_file_order():
    data = squad_dataset([("a", ["cat"]), ("b", [])])
    preds = {"a": "cat", "b": "dog"}  # a right (+1 when answered), b answers an unanswerable (-1)
    # Start 1 (b abstaining). Order [b, a]: b -1 -> 0, a +1 -> 1, never above 1: best 50 at 0.0.
    m = score_predictions(examples_of(data), preds, {"b": 0.5, "a": 0.5}).metrics
    assert (m["best_exact"], m["best_exact_thresh"]) == (50.0, 0.0)
    # Order [a, b]: a +1 -> 2 (t=0.5): best 100 at 0.5.
    m = score_predictions(examples_of(data), preds, {"a": 0.5, "b": 0.5}).metrics
    assert (m["best_exact"], m["best_exact_thresh"]) == (100.0, 0.5)
    # best_threshold directly, with the order argument
    qs = score_predictions(examples_of(data), preds, {"a": 0.5, "b": 0.5}).questions
    assert best_threshold(qs, "exact", na_probs_order=["b", "a"]) == (50.0, 0.0)
    assert best_threshold(qs, "exact", na_probs_order=["a", "b"]) == (100.0, 0.5)


def test_v2_multiple_gold_answers_take_the_max():
    data = squad_dataset([("m", ["Saint Bernadette Soubirous", "Bernadette Soubirous", "a girl"])])
    # vs 1st: P=1, R=2/3 -> 0.8; vs 2nd: exact -> 1; vs 3rd: 0. Max is 1 for both.
    m = score_predictions(examples_of(data), {"m": "Bernadette Soubirous"}, version_2=True).metrics
    assert (m["exact"], m["f1"]) == (100.0, 100.0)
    # 'Soubirous girl': vs 1st P=1/2, R=1/3 -> 0.4; vs 2nd P=R=1/2 -> 0.5; vs 3rd ('girl') P=1/2, R=1 -> 2/3
    m = score_predictions(examples_of(data), {"m": "Soubirous girl"}, version_2=True).metrics
    assert m["exact"] == 0.0 and m["f1"] == pytest.approx(100 * 2 / 3, abs=TOL)


def test_v2_gold_answers_that_normalise_empty_are_dropped():
    # q_the: the only gold answer 'The' normalises to '' -> gold is [''] (but it still counts as HasAns)
    # q_mix: gold ['the', 'Cat'] -> ['Cat'] only, so an empty prediction does NOT match 'the'
    data = squad_dataset([("q_the", ["The"]), ("q_mix", ["the", "Cat"])])
    m = score_predictions(examples_of(data), {"q_the": "", "q_mix": ""}, version_2=True).metrics
    assert (m["exact"], m["f1"], m["HasAns_total"]) == (50.0, 50.0, 2)
    assert "NoAns_total" not in m
    m = score_predictions(examples_of(data), {"q_the": "an", "q_mix": "CAT."}, version_2=True).metrics
    assert (m["exact"], m["f1"]) == (100.0, 100.0)  # 'an' normalises to '' too
    # v1.1 keeps them: 'a' vs 'the' is an exact match ('' == '') but F1 0 (no common token)
    m = score_predictions(examples_of(data), {"q_the": "a", "q_mix": "a"}, version_2=False).metrics
    assert (m["exact_match"], m["f1"]) == (100.0, 0.0)


def test_version_detection_and_keys():
    answerable = examples_of(squad_dataset([("x", ["cat"])]))
    mixed = examples_of(squad_dataset([("x", ["cat"]), ("y", [])]))
    assert set(score_predictions(answerable, {"x": "cat"}).metrics) == {"exact_match", "f1"}
    assert set(score_predictions(mixed, {"x": "cat", "y": ""}).metrics) == {
        "exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1", "NoAns_total",
    }
    assert set(score_predictions(answerable, {"x": "cat"}, version_2=True).metrics) == {
        "exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total",
    }
    with_na = score_predictions(mixed, {"x": "cat", "y": ""}, {"x": 0.1, "y": 0.9}).metrics
    assert list(with_na)[-4:] == ["best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]


# =============================================================================================
# Missing predictions: spanqa counts them as wrong, with a warning
# =============================================================================================


@pytest.fixture
def spanqa_logs(caplog, monkeypatch):
    """caplog that also sees 'spanqa' records after the CLI has stopped their propagation."""
    logger = logging.getLogger("spanqa")
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setattr(logger, "handlers", [])
    caplog.set_level(logging.WARNING, logger="spanqa")
    return caplog


def test_v2_missing_predictions_count_as_wrong(spanqa_logs):
    data = squad_dataset([("h1", ["cat"]), ("h2", ["dog"]), ("n1", []), ("n2", [])])
    preds = {"h1": "cat", "n2": ""}  # h2 and n1 missing
    report = score_predictions(examples_of(data), preds)
    # exact = (1 + 0 + 0 + 1) / 4: the missing ones are wrong and stay in every total
    assert report.metrics == {
        "exact": 50.0, "f1": 50.0, "total": 4,
        "HasAns_exact": 50.0, "HasAns_f1": 50.0, "HasAns_total": 2,
        "NoAns_exact": 50.0, "NoAns_f1": 50.0, "NoAns_total": 2,
    }
    assert report.missing == 2
    assert {q.id: (q.prediction, q.exact, q.f1) for q in report.questions}["n1"] == (None, 0.0, 0.0)
    warnings = [r.getMessage() for r in spanqa_logs.records if r.levelno == logging.WARNING]
    assert any("2 of 4" in w and "no prediction" in w for w in warnings), warnings
    assert_metrics_match(report.metrics, ref_v2_evaluate(data, preds, missing_as_wrong=True))


def test_v2_missing_predictions_never_flip_and_never_help_best_threshold(spanqa_logs):
    data = squad_dataset([("h1", ["cat"]), ("h2", ["dog"]), ("n1", []), ("n2", [])])
    preds = {"h1": "cat", "n2": ""}
    na = {"h1": 0.2, "h2": 0.1, "n1": 0.9, "n2": 0.4}
    report = score_predictions(examples_of(data), preds, na, na_prob_thresh=0.5)
    # n1 has na 0.9 > 0.5 but no prediction: still wrong. exact = (1 + 0 + 0 + 1) / 4 = 50
    assert report.metrics["exact"] == 50.0 and report.metrics["NoAns_exact"] == 50.0
    # best: start 1 (n2 only; n1 is missing). h2 (0.1) +0 -> 1, h1 (0.2) +1 -> 2 (t=0.2),
    # n2 (0.4) abstains +0, n1 (0.9) +0. best = 2 / 4 = 50 at 0.2
    assert (report.metrics["best_exact"], report.metrics["best_exact_thresh"]) == (50.0, 0.2)
    assert_metrics_match(report.metrics, ref_v2_evaluate(data, preds, na, 0.5, missing_as_wrong=True))


def test_v1_missing_predictions_score_zero_like_the_official_script(spanqa_logs):
    data = squad_dataset([("a", ["Denver Broncos", "Broncos"]), ("b", ["Saint Bernadette Soubirous"]), ("c", ["the"]), ("d", ["x"])])
    preds = {"a": "broncos", "b": "Bernadette Soubirous!", "c": "a"}
    # a: exact 1, F1 1; b: exact 0, F1 P=1 R=2/3 -> 0.8; c: '' == '' exact 1 but F1 0 (v1.1); d missing: 0, 0
    # exact_match = (1 + 0 + 1 + 0) / 4 = 50; f1 = (1 + 0.8 + 0 + 0) / 4 = 45
    report = score_predictions(examples_of(data), preds)
    assert set(report.metrics) == {"exact_match", "f1"}
    assert report.metrics["exact_match"] == pytest.approx(50.0, abs=TOL)
    assert report.metrics["f1"] == pytest.approx(45.0, abs=TOL)
    assert_metrics_match(report.metrics, ref_v1_evaluate(data, preds))
    assert any("1 of 4" in r.getMessage() for r in spanqa_logs.records)


def test_extra_ids_and_missing_na_probs_are_warned_about(spanqa_logs):
    data = squad_dataset([("h", ["cat"]), ("n", [])])
    report = score_predictions(examples_of(data), {"h": "cat", "n": "", "zzz": "dog"}, {"h": 0.7})
    messages = " | ".join(r.getMessage() for r in spanqa_logs.records)
    assert "1 predictions have ids that are not in the gold data" in messages
    assert "1 questions have no no-answer probability" in messages
    assert report.metrics["total"] == 2  # the extra id is ignored
    # n takes na_prob 0.0: start 1 (n abstains); n (0.0) +0, h (0.7) +1 -> 2 at 0.7: best 100
    assert (report.metrics["best_exact"], report.metrics["best_exact_thresh"]) == (100.0, 0.7)


# =============================================================================================
# Property tests: spanqa == the scalar reference on random data
# =============================================================================================


@HYPO
@given(st.data())
def test_property_v2_without_na_probs(data):
    dataset = data.draw(gold_sets())
    preds = data.draw(predictions_for(dataset, allow_missing=False))
    thresh = data.draw(st.sampled_from(THRESHOLDS))
    report = score_predictions(examples_of(dataset), preds, version_2=True, na_prob_thresh=thresh)
    assert_metrics_match(report.metrics, ref_v2_evaluate(dataset, preds, na_prob_thresh=thresh))
    exact_raw, f1_raw = ref_get_raw_scores(dataset, preds)
    for q in report.questions:
        assert q.exact == exact_raw[q.id] and abs(q.f1 - f1_raw[q.id]) <= TOL


@HYPO
@given(st.data())
def test_property_v2_with_na_probs(data):
    dataset = data.draw(gold_sets())
    preds = data.draw(predictions_for(dataset, allow_missing=False))
    na = data.draw(na_probs_for(dataset, partial=False))
    thresh = data.draw(st.sampled_from(THRESHOLDS))
    report = score_predictions(examples_of(dataset), preds, na, version_2=True, na_prob_thresh=thresh)
    assert_metrics_match(report.metrics, ref_v2_evaluate(dataset, preds, na, thresh))


@HYPO
@given(st.data())
def test_property_v2_missing_predictions_and_partial_na_probs(data):
    dataset = data.draw(gold_sets())
    preds = data.draw(predictions_for(dataset, allow_missing=True))
    na = data.draw(st.one_of(st.none(), na_probs_for(dataset, partial=True)))
    thresh = data.draw(st.sampled_from(THRESHOLDS))
    report = score_predictions(examples_of(dataset), preds, na, version_2=True, na_prob_thresh=thresh)
    assert_metrics_match(report.metrics, ref_v2_evaluate(dataset, preds, na, thresh, missing_as_wrong=True))
    assert report.missing == sum(qa["id"] not in preds for qa in iter_qas(dataset))


@HYPO
@given(st.data())
def test_property_v1(data):
    dataset = data.draw(gold_sets(handle_impossible=False))
    preds = data.draw(predictions_for(dataset, allow_missing=True))
    report = score_predictions(examples_of(dataset), preds)  # all answerable: detected as v1.1
    assert_metrics_match(report.metrics, ref_v1_evaluate(dataset, preds))


@HYPO
@given(st.text(alphabet=st.sampled_from(list("aAnNtThHeE .,!'-\t\n«»xyz")), max_size=24))
def test_property_normalize_answer_squad(text):
    assert normalize_answer(text) == ref_normalize_answer(text)
    assert f1_score(text, "the cat") == pytest.approx(ref_compute_f1("the cat", text), abs=TOL)


def test_best_threshold_is_fast_on_a_squad_sized_set():
    # ~SQuAD v2 dev size (11,873 questions); a quadratic ordering step took > 15 s here.
    n = 12_000
    examples = [QAExample(f"q{i}", "q", "c", (Answer("cat", 0),) if i % 2 else ()) for i in range(n)]
    preds = {f"q{i}": "cat" if i % 3 else "" for i in range(n)}
    na = {f"q{i}": (i % 7) / 7 for i in range(n)}
    start = time.perf_counter()
    report = score_predictions(examples, preds, na)
    assert time.perf_counter() - start < 5.0
    assert report.metrics["total"] == n


# =============================================================================================
# Multilingual normalisation (MLQA rules)
# =============================================================================================


def test_arabic_article_and_punctuation():
    assert normalize_answer("الكتاب", "ar") == "كتاب"  # the article ال is removed
    assert normalize_answer("الكتاب، الجديد؟", "ar") == "كتاب جديد"  # Arabic comma and question mark too
    assert exact_score("الكتاب", "كتاب", "ar") == 1
    assert exact_score("الكتاب", "كتاب") == 0  # the SQuAD rules know nothing of ال


def test_hindi_danda_removed_and_vowel_signs_kept():
    assert normalize_answer("नई  दिल्ली।", "hi") == "नई दिल्ली"  # । (danda) is punctuation
    assert normalize_answer("दिल्ली", "hi") == "दिल्ली"  # combining vowel signs / virama are not punctuation
    assert exact_score("भारत।", "भारत", "hi") == 1
    assert normalize_answer("भारत।") == "भारत।"  # the SQuAD rules keep non-ASCII punctuation


def test_chinese_is_scored_by_character():
    assert normalize_answer("2008年北京奥运会。", "zh") == "2008 年 北 京 奥 运 会"
    # gold 北京大学 (4 characters), prediction 北京: common 2, P = 1, R = 1/2, F1 = 2/3
    assert f1_score("北京", "北京大学", "zh") == pytest.approx(2 / 3, abs=TOL)
    # gold 2008|年|北|京|奥|运|会 (7 tokens), prediction 北京奥运会 (5): P = 1, R = 5/7, F1 = 5/6
    assert f1_score("北京奥运会", "2008年北京奥运会", "zh") == pytest.approx(5 / 6, abs=TOL)
    assert exact_score("北京，大学。", "北京大学", "zh") == 1  # full-width comma and 。 removed
    # The SQuAD rules see one token each: no overlap
    assert f1_score("北京", "北京大学") == 0.0


def test_greek_articles_and_punctuation():
    assert normalize_answer("Η Αθήνα", "el") == "αθήνα"
    assert normalize_answer("το σπίτι του Οδυσσέα", "el") == "σπίτι οδυσσέα"
    assert normalize_answer("Αθήνα\u037e", "el") == "αθήνα"  # Greek question mark
    assert normalize_answer("Αθήνα\u0387 Σπάρτη·", "el") == "αθήνα σπάρτη"  # ano teleia and middle dot
    assert normalize_answer("τοίχος", "el") == "τοίχος"  # article letters inside a word are kept
    assert exact_score("Η Αθήνα;", "Αθήνα", "el") == 1


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("«the cat»", "en", "cat"),
        ("the “quoted” word — here…", "en", "quoted word here"),
        ("¿Dónde está el Niño?", "es", "dónde está niño"),
        ("„Der Hund“", "de", "hund"),
        ("東京、大阪。", "zh", "東 京 大 阪"),
        ("cái nhà của tôi", "vi", "nhà tôi"),
        ("Le chat et la souris", "fr", "chat et souris"),
    ],
)
def test_unicode_punctuation_and_articles(text, lang, expected):
    assert normalize_answer(text, lang) == expected


def test_chinese_range_is_mlqa_s():
    # 東 (U+6771) and 京 are both inside MLQA's [\u4e00-\u9fa5]; 、 and 。 are punctuation.
    assert normalize_answer("東京", "zh") == "東 京"
    assert normalize_answer("東京", "zh") == ref_mlqa_normalize("東京", "zh")


def test_unknown_language_is_a_config_error_with_a_hint():
    with pytest.raises(ConfigError, match=r"unknown language 'ara'.*did you mean 'ar'"):
        normalize_answer("x", "ara")
    with pytest.raises(ConfigError, match="did you mean 'ar'"):
        score_predictions(examples_of(squad_dataset([("a", ["x"])])), {"a": "x"}, lang="ara")
    with pytest.raises(ConfigError, match="did you mean 'squad'"):
        score_predictions(examples_of(squad_dataset([("a", ["x"])])), {"a": "x"}, lang="sqaud")
    assert {"en", "ar", "hi", "zh", "el", "es", "de"} <= set(LANGUAGES)


MLQA_FRAGMENTS = list("aAnNtThHeE .,!¿?«»“”—…、。，·\t") + [
    "the ", "an ", "el ", "los ", "der ", "das ", "của ", "là ", "ال", "كتاب", "؟", "،", "नई", "दिल्ली", "।",
    "北", "京", "大学", "2008", "年", "ü", "İ", "Ω",
]
MLQA_TEXT = st.lists(st.sampled_from(MLQA_FRAGMENTS), max_size=12).map("".join)
_mlqa_rng = random.Random(99)
MLQA_POOL = ["".join(_mlqa_rng.choice(MLQA_FRAGMENTS) for _ in range(_mlqa_rng.randint(1, 8))) for _ in range(400)]


@HYPO
@given(MLQA_TEXT, MLQA_TEXT, st.sampled_from(MLQA_LANGS))
def test_property_mlqa_normalisation_matches_reference(pred, gold, lang):
    assert normalize_answer(pred, lang) == ref_mlqa_normalize(pred, lang)
    assert exact_score(pred, gold, lang) == int(ref_mlqa_exact(pred, gold, lang))
    assert abs(f1_score(pred, gold, lang, v2=False) - ref_mlqa_f1(pred, gold, lang)) <= TOL


@HYPO
@given(st.data())
def test_property_v1_scores_with_lang_match_mlqa(data):
    lang = data.draw(st.sampled_from(MLQA_LANGS))
    n = data.draw(st.integers(1, 5))
    gold_texts = st.sampled_from([t for t in MLQA_POOL if t.strip()])
    questions = [(f"q{i}", data.draw(st.lists(gold_texts, min_size=1, max_size=3))) for i in range(n)]
    dataset = squad_dataset(questions)
    preds = {f"q{i}": data.draw(st.sampled_from(MLQA_POOL)) for i in range(n) if data.draw(st.booleans()) or i == 0}
    report = score_predictions(examples_of(dataset), preds, lang=lang)
    want = ref_v1_evaluate(
        dataset, preds, exact_fn=lambda p, g: ref_mlqa_exact(p, g, lang), f1_fn=lambda p, g: ref_mlqa_f1(p, g, lang)
    )
    assert_metrics_match(report.metrics, want)


def test_question_score_dataclass_round_trip():
    report = score_predictions(examples_of(HAND_V2), HAND_V2_PREDS, HAND_NA)
    d = report.to_dict()
    assert d["missing"] == 0 and d["metrics"] == report.metrics
    assert d["questions"][0] == {"id": "q1", "prediction": "the denver broncos!", "exact": 1.0, "f1": 1.0, "has_answer": True, "na_prob": 0.1}
    assert isinstance(report.questions[0], QuestionScore)
