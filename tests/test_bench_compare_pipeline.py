"""bench/compare_pipeline.py: the replay of both span choices and the categories of differences, on synthetic windows.

No venv, no model: each window is a handful of tokens with hand-set logits.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import compare_pipeline as cp  # noqa: E402

LOW = -5.0


def window(tokens: list[tuple[int, int, int]], start: dict[int, float], end: dict[int, float], ids: tuple[int, ...] | None = None) -> cp.Window:
    """[CLS] q [SEP] context tokens [SEP]; ``tokens`` are (char start, char end, word) of the context
    tokens; ``start``/``end`` set logits by context-token index (others LOW)."""
    n = len(tokens)
    size = n + 4
    s, e = np.full(size, LOW), np.full(size, LOW)
    for i, v in start.items():
        s[3 + i] = v
    for i, v in end.items():
        e[3 + i] = v
    context = np.zeros(size, dtype=bool)
    context[3 : 3 + n] = True
    chars = np.full((size, 2), -1)
    words = np.full((size, 2), -1)
    for i, (a, b, _) in enumerate(tokens):
        chars[3 + i] = (a, b)
    for i, (_, _, w) in enumerate(tokens):
        same = [t for t in tokens if t[2] == w]
        words[3 + i] = (min(t[0] for t in same), max(t[1] for t in same))
    return cp.Window(s, e, context, chars, words, input_ids=ids or tuple(range(size)))


def ans(context: str, start: int, end: int) -> dict:
    return {"answer": context[start:end], "start": start, "end": end, "score": 0.5}


def best(windows, context, rule=cp.FOURX, max_answer_len=15):
    top = cp.simulate(windows, context, rule, max_answer_len)[0]
    return context[top.start : top.end]


# "Denver Broncos won": Broncos is two tokens (bronco, ##s) of one word.
BRONCOS = "Denver Broncos won"
BRONCOS_TOKENS = [(0, 6, 0), (7, 13, 1), (13, 14, 1), (15, 18, 2)]


def broncos(shift: float = 0.0) -> cp.Window:
    return window(BRONCOS_TOKENS, {0: 3.0, 1: 2.7 + shift, 2: 2.7 + shift}, {0: 3.0, 1: 2.7 + shift, 2: 2.7 + shift})


def test_compare_splits_on_start_and_end():
    contexts = {"a": "x y", "b": "x y", "c": "x y"}
    hf = {"a": ans("x y", 0, 1), "b": ans("x y", 0, 1), "c": ans("x y", 2, 3)}
    ours = {"a": ans("x y", 0, 1), "b": ans("x y", 0, 3), "c": ans("x y", 2, 3)}
    assert cp.compare(contexts, hf, ours) == (["a", "c"], ["b"])


def test_replay_of_each_rule_on_one_window():
    win = broncos()
    # spanqa: the best start + end pair, widened to words: Denver (3 + 3 beats 3 + 2.7 and 2.7 + 2.7).
    assert best([win], BRONCOS, cp.SPANQA) == "Denver"
    # 4.x adds up the three token pairs that widen to "Broncos" (and two to "Denver Broncos").
    ranked = cp.simulate([win], BRONCOS, cp.FOURX)
    assert BRONCOS[ranked[0].start : ranked[0].end] == "Broncos" and len(ranked[0].parts) == 3
    assert abs(sum(p[-1] for p in ranked[0].parts) - ranked[0].score) < 1e-9
    # Without word alignment the token pairs stay apart.
    assert best([win], BRONCOS, cp.Rule(add_up=True, align=False)) in ("Denver", "Denver Bronco")


def test_replay_keeps_max_answer_len():
    context = " ".join(f"w{i:02d}" for i in range(20))
    tokens = [(4 * i, 4 * i + 3, i) for i in range(20)]
    win = window(tokens, {0: 6.0, 5: 1.0}, {19: 6.0, 6: 1.0})
    top = cp.simulate([win], context, cp.FOURX, max_answer_len=15)[0]
    assert top.parts[0][2] - top.parts[0][1] < 15  # the 20-token pair (0, 19) is never a candidate
    assert (top.start, top.end) != (0, len(context))
    assert best([win], context, cp.SPANQA, max_answer_len=20) == context


def test_whitespace_only_difference_is_tidy():
    context = "the  Broncos "
    category, _ = cp.categorise(context, ans(context, 4, 12), ans(context, 5, 13), None, None)
    assert category == cp.TIDY


def test_other_windows_are_named():
    win = broncos()
    other = cp.Window(win.start, win.end, win.context, win.chars, win.words, input_ids=(9,) * len(win.start))
    category, _ = cp.categorise(BRONCOS, ans(BRONCOS, 7, 14), ans(BRONCOS, 0, 6), [win], [other])
    assert category == cp.WINDOWS


def test_word_alignment_sum():
    win = broncos()
    category, why = cp.categorise(BRONCOS, ans(BRONCOS, 7, 14), ans(BRONCOS, 0, 6), [win], [win])
    assert category == cp.WORD_SUM, why
    assert "switch M" in why


def test_cross_window_normalisation():
    context = "alpha beta gamma delta"
    a = window([(0, 5, 0), (6, 10, 1)], {0: 5.0}, {0: 5.0}, ids=(1, 2))
    b = window([(11, 16, 2), (17, 22, 3)], {0: 6.0, 1: 5.5}, {0: 6.0, 1: 5.5}, ids=(3, 4))
    assert best([a, b], context) == "alpha"  # one sure answer in its window: p ~ 1
    assert best([a, b], context, cp.SPANQA) == "gamma"  # 6 + 6 beats 5 + 5
    category, why = cp.categorise(context, ans(context, 0, 5), ans(context, 11, 16), [a, b], [a, b])
    assert category == cp.NORM, why
    assert "window(s) [0]" in why and "spanqa's from window(s) [1]" in why


def test_same_answer_added_up_over_overlapping_windows():
    context = "alpha beta gamma"
    tokens = [(0, 5, 0), (6, 10, 1), (11, 16, 2)]
    # beta sits in both windows (the overlap); gamma only in the second and wins on logits.
    a = window(tokens[:2], {0: 0.0, 1: 4.0}, {0: 0.0, 1: 4.0}, ids=(1, 2))
    b = window(tokens[1:], {0: 4.0, 1: 4.3}, {0: 4.0, 1: 4.3}, ids=(2, 3))
    assert best([a, b], context) == "beta" and best([a, b], context, cp.SPANQA) == "gamma"
    category, why = cp.categorise(context, ans(context, 6, 10), ans(context, 11, 16), [a, b], [a, b])
    # Both 4.x rules are needed to explain it: per-window scores and the overlap's parts added up.
    assert category == f"{cp.NORM} + {cp.OVERLAP}" and "switch N+M" in why, why


def test_overlap_sum_alone():
    context = "alpha beta gamma delta"
    pair = [(0, 5, 0), (6, 10, 1)]
    # beta in two windows at 4.8 + 4.8 each (p = 0.57 x 0.57 there); gamma once at 5 + 5 (p = 0.67 x 0.67).
    a = window(pair, {0: 4.5, 1: 4.8}, {0: 4.5, 1: 4.8}, ids=(1, 2))
    b = window([(11, 16, 2), (17, 22, 3)], {0: 5.0, 1: 4.31}, {0: 5.0, 1: 4.31}, ids=(3, 4))
    c = window(pair, {0: 4.5, 1: 4.8}, {0: 4.5, 1: 4.8}, ids=(1, 2))
    hf, ours = ans(context, 6, 10), ans(context, 11, 16)
    assert best([a, b, c], context) == "beta" and best([a, b, c], context, cp.SPANQA) == "gamma"
    category, why = cp.categorise(context, hf, ours, [a, b, c], [a, b, c])
    assert category == cp.OVERLAP and "switch M" in why, why


def test_same_text_elsewhere():
    context = "Newton passed to Newton"
    a = window([(0, 6, 0), (7, 13, 1)], {0: 4.0, 1: 0.0}, {0: 4.0, 1: 0.0}, ids=(1, 2))
    b = window([(14, 16, 2), (17, 23, 3)], {0: 0.0, 1: 4.5}, {0: 0.0, 1: 4.5}, ids=(3, 4))
    hf, ours = ans(context, 0, 6), ans(context, 17, 23)
    assert cp.simulate([a, b], context)[0].start == 0  # 4.x keeps the first window's Newton
    category, why = cp.categorise(context, hf, ours, [a, b], [a, b])
    assert category == cp.ELSEWHERE, why


def test_tie():
    context = "alpha beta"
    win = window([(0, 5, 0), (6, 10, 1)], {0: 5.0, 1: 5.0}, {0: 5.0, 1: 5.0})
    category, _ = cp.categorise(context, ans(context, 0, 5), ans(context, 6, 10), [win], [win])
    assert category == cp.TIE


def test_numerics_from_the_logits():
    context = "alpha beta"
    theirs = window([(0, 5, 0), (6, 10, 1)], {0: 5.0, 1: 4.999}, {0: 5.0, 1: 4.999})
    mine = window([(0, 5, 0), (6, 10, 1)], {0: 4.999, 1: 5.0}, {0: 4.999, 1: 5.0})
    category, why = cp.categorise(context, ans(context, 0, 5), ans(context, 6, 10), [theirs], [mine])
    assert category == cp.NUMERICS and "switch X" in why


def test_numerics_from_four_x_batching_and_replay_checked():
    context = "alpha beta"
    win = window([(0, 5, 0), (6, 10, 1)], {0: 5.0, 1: 1.0}, {0: 5.0, 1: 1.0})
    # 4.x's batched run said beta; its one-window-per-forward run (replayed) says alpha, as spanqa.
    category, _ = cp.categorise(context, ans(context, 6, 10), ans(context, 0, 5), [win], [win], hf_unbatched=ans(context, 0, 5))
    assert category == cp.NUMERICS
    # A replay that disagrees with 4.x's own postprocess is a bug of the replay: never explained away.
    category, why = cp.categorise(context, ans(context, 6, 10), ans(context, 0, 5), [win], [win], hf_unbatched=ans(context, 6, 10))
    assert category == cp.UNEXPLAINED and "postprocess" in why


def test_unexplained_when_no_rule_gives_spanqas_answer():
    context = "alpha beta gamma"
    win = window([(0, 5, 0), (6, 10, 1), (11, 16, 2)], {0: 5.0, 1: -3.0, 2: 1.0}, {0: 5.0, 1: -3.0, 2: 1.0})
    category, _ = cp.categorise(context, ans(context, 0, 5), ans(context, 6, 10), [win], [win])
    assert category == cp.UNEXPLAINED
    assert cp.categorise(context, ans(context, 0, 5), ans(context, 6, 10), None, None)[0] == cp.UNEXPLAINED


def test_counts_put_unexplained_last():
    combined = f"{cp.NORM} + {cp.UNEXPLAINED}"
    counts = cp.count_categories([cp.UNEXPLAINED, cp.UNEXPLAINED, cp.NORM, cp.TIE, cp.NORM, cp.NORM, combined])
    assert counts == [(cp.NORM, 3), (cp.TIE, 1), (cp.UNEXPLAINED, 2), (combined, 1)]


@pytest.mark.parametrize("switches", [(), ("N",), ("M", "W"), ("N", "M", "W", "S", "X")])
def test_switches_build_rules_and_windows(switches):
    rule = cp._rule_for(switches)
    assert rule.per_window == ("N" not in switches) and rule.add_up == ("M" not in switches)
    assert (rule.top is None) == ("S" in switches)
    theirs, mine = broncos(), broncos(shift=0.5)
    mine = cp.Window(mine.start, mine.end, mine.context, mine.chars, mine.words + 100, input_ids=mine.input_ids)
    (got,) = cp._windows_for(switches, [theirs], [mine])
    assert np.array_equal(got.start, (mine if "X" in switches else theirs).start)
    assert np.array_equal(got.words, (mine if "W" in switches else theirs).words)
