"""Windows, labels and offsets: the answer cut back from the labels is the gold answer."""

from __future__ import annotations

import string
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from conftest import XQUAD, build_sentencepiece, needs_shared
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanqa.core.config import SPECIAL_TOKEN_ROOM, WindowConfig
from spanqa.core.errors import ConfigError, SpanQAError
from spanqa.stages.data import Answer, QAExample, load_examples, splits_word
from spanqa.stages.decode import _tidy
from spanqa.stages.features import build_features, context_first

# --------------------------------------------------------------------------- generators

NON_ASCII = ["café", "Straße", "москва", "αθήνα", "naïve", "Zürich", "Ålesund", "señor", "Øre", "Ελλάδα", "Київ", "façade", "東京大学", "😀ok", "ñandú"]
PREFIXES = ["", "", "", "(", '"', "«", "'"]
SUFFIXES = ["", "", "", "", ",", ".", ")", "!", "?", ";", ":", "'s", '"', "»", "%"]
SEPARATORS = [" ", " ", " ", " ", "  ", "\n", " \t "]


@st.composite
def words(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["ascii", "ascii", "ascii", "digits", "number", "non_ascii", "mixed"]))
    if kind == "ascii":
        core = draw(st.text(alphabet=string.ascii_letters, min_size=1, max_size=12))
    elif kind == "digits":
        core = draw(st.text(alphabet=string.digits, min_size=1, max_size=6))
    elif kind == "number":
        core = f"{draw(st.integers(0, 999))}{draw(st.sampled_from([',', '.']))}{draw(st.integers(0, 999)):03d}"
    elif kind == "non_ascii":
        core = draw(st.sampled_from(NON_ASCII))
    else:
        core = draw(st.text(alphabet=string.ascii_lowercase + "éüßøñçжыδλ0123456789", min_size=1, max_size=10))
    return draw(st.sampled_from(PREFIXES)) + core + draw(st.sampled_from(SUFFIXES))


@st.composite
def qa_cases(draw: st.DrawFn) -> tuple[QAExample, WindowConfig]:
    """A context of random words, a word-aligned answer, a question, and valid window settings."""
    n_words = draw(st.integers(3, 90))
    tokens = [draw(words()) for _ in range(n_words)]
    seps = [draw(st.sampled_from(SEPARATORS)) for _ in range(n_words - 1)]
    lead = draw(st.sampled_from(["", "", " ", "\n"]))
    starts = []
    context = lead
    for i, word in enumerate(tokens):
        starts.append(len(context))
        context += word + (seps[i] if i < n_words - 1 else "")
    first = draw(st.integers(0, n_words - 1))
    last = draw(st.integers(first, min(n_words - 1, first + 3)))
    answer_start = starts[first]
    answer_text = context[answer_start : starts[last] + len(tokens[last])]
    question = " ".join(draw(words()) for _ in range(draw(st.integers(1, 40)))) + "?"
    max_length = draw(st.integers(48, 128))
    max_question_tokens = draw(st.integers(4, max_length - SPECIAL_TOKEN_ROOM - 16))
    room = max_length - max_question_tokens - SPECIAL_TOKEN_ROOM
    stride = draw(st.integers(0, room - 1))
    example = QAExample(id="q", question=question, context=context, answers=(Answer(answer_text, answer_start),))
    return example, WindowConfig(max_length=max_length, stride=stride, max_question_tokens=max_question_tokens)


# --------------------------------------------------------------------------- helpers


def _context_rows(features, i: int) -> np.ndarray:
    return np.flatnonzero(features.offsets[i, :, 0] >= 0)


def _window_holds(features, i: int, context: str, start: int, end: int) -> bool:
    """Independent of the labels: every non-space answer character is covered by a context token of window i."""
    covered = np.zeros(len(context) + 1, dtype=bool)
    for t in _context_rows(features, i):
        a, b = features.offsets[i, t]
        covered[a:b] = True
    needed = [k for k in range(start, end) if not context[k].isspace()]
    return all(covered[k] for k in needed)


def _answer_token_count(tokenizer, context: str, start: int, end: int) -> int:
    """Tokens from the first one ending after ``start`` to the last one starting before ``end`` (empty ones included)."""
    offsets = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    first = min(k for k, (a, b) in enumerate(offsets) if b > start)
    last = max(k for k, (a, b) in enumerate(offsets) if a < end)
    return last - first + 1


def check_windows(tokenizer, example: QAExample, config: WindowConfig) -> None:
    features = build_features([example], tokenizer, config)
    context = example.context
    answer = example.answers[0]
    text = answer.text.strip()
    a_start = answer.start + len(answer.text) - len(answer.text.lstrip())
    a_end = a_start + len(text)
    holding = 0
    previous = None
    for i in range(len(features)):
        ids = features.input_ids[i]
        assert len(ids) <= config.max_length
        cls = int(features.cls_index[i])
        if tokenizer.cls_token_id is not None:
            assert ids[cls] == tokenizer.cls_token_id
        rows = _context_rows(features, i)
        assert len(rows) > 0, "every window keeps some context"
        s, e = int(features.start_positions[i]), int(features.end_positions[i])
        if _window_holds(features, i, context, a_start, a_end):
            holding += 1
            assert s in rows and e in rows and e >= s
            cut = context[features.offsets[i, s, 0] : features.offsets[i, e, 1]]
            assert cut.strip() == text, (cut, text, i)
        else:
            assert s == e == cls, (s, e, cls)
        # Neighbouring windows share exactly `stride` context tokens.
        spans = [tuple(features.offsets[i, t]) for t in rows]
        if previous is not None and config.stride:
            assert previous[-config.stride :] == spans[: config.stride]
        previous = spans
    assert sorted(set(features.example_index.tolist())) == [0]
    if _answer_token_count(tokenizer, context, a_start, a_end) <= config.stride + 1:
        assert holding >= 1, "an answer no longer than stride + 1 tokens fits in some window"


# --------------------------------------------------------------------------- property tests


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=qa_cases())
def test_labels_cut_back_to_the_answer(any_tokenizer, case):
    example, config = case
    check_windows(any_tokenizer, example, config)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=qa_cases())
def test_labels_cut_back_to_the_answer_context_first(left_padding_tokenizer, case):
    assert context_first(left_padding_tokenizer)
    example, config = case
    check_windows(left_padding_tokenizer, example, config)


def test_answer_always_found_with_generous_stride(any_tokenizer):
    words_ = ("alpha beta gamma café Straße москва αθήνα delta 1,234 (epsilon) zeta. " * 20).split(" ")
    context = " ".join(w for w in words_ if w)
    answers = ["Straße москва", "(epsilon)", "1,234", "αθήνα"]
    examples = []
    for k, ans in enumerate(answers):
        start = context.index(ans, 300 + 97 * k)
        examples.append(QAExample(id=str(k), question="Where is it?", context=context, answers=(Answer(ans, start),)))
    features = build_features(examples, any_tokenizer, WindowConfig(max_length=64, stride=24, max_question_tokens=16))
    for k, ex in enumerate(examples):
        windows = np.flatnonzero(features.example_index == k)
        assert len(windows) > 3
        labelled = [i for i in windows if features.start_positions[i] != features.cls_index[i]]
        assert labelled
        for i in labelled:
            cut = ex.context[features.offsets[i, features.start_positions[i], 0] : features.offsets[i, features.end_positions[i], 1]]
            assert cut.strip() == ex.answers[0].text


def test_unanswerable_points_at_cls(any_tokenizer):
    ex = QAExample(id="x", question="Who?", context="Nobody knows the answer to this one. " * 30)
    features = build_features([ex], any_tokenizer, WindowConfig(max_length=64, stride=16, max_question_tokens=16))
    assert len(features) > 1
    np.testing.assert_array_equal(features.start_positions, features.cls_index)
    np.testing.assert_array_equal(features.end_positions, features.cls_index)


# --------------------------------------------------------------------------- WindowConfig


def test_window_config_defaults_are_valid():
    config = WindowConfig()
    assert (config.max_length, config.stride, config.max_question_tokens) == (384, 128, 64)
    WindowConfig(max_length=16, stride=0, max_question_tokens=1)


def test_stride_not_smaller_than_room_is_refused_with_explanation():
    with pytest.raises(ConfigError) as info:
        WindowConfig(max_length=128, stride=100, max_question_tokens=64)
    message = str(info.value)
    room = 128 - 64 - SPECIAL_TOKEN_ROOM
    assert "stride (100)" in message and str(room) in message and "overlap" in message
    with pytest.raises(ConfigError):
        WindowConfig(max_length=128, stride=room, max_question_tokens=64)
    WindowConfig(max_length=128, stride=room - 1, max_question_tokens=64)


def test_max_length_too_small():
    with pytest.raises(ConfigError, match="max_length must be at least 16"):
        WindowConfig(max_length=8, stride=0)
    with pytest.raises(ConfigError, match="no room for context"):
        WindowConfig(max_length=64, stride=0, max_question_tokens=64)


def test_negative_stride_and_question_limit():
    with pytest.raises(ConfigError, match="stride must be >= 0"):
        WindowConfig(max_length=384, stride=-1)
    with pytest.raises(ConfigError, match="max_question_tokens"):
        WindowConfig(max_question_tokens=0)


def test_config_error_is_a_user_error():
    with pytest.raises(SpanQAError):
        WindowConfig(stride=-5)
    with pytest.raises(ValueError):
        WindowConfig(stride=-5)


def test_model_limit(any_tokenizer):
    WindowConfig(max_length=512).check_model_limit(any_tokenizer)
    with pytest.raises(ConfigError, match="exceeds the model's limit"):
        WindowConfig(max_length=1024, stride=128).check_model_limit(any_tokenizer)


def test_no_examples_is_an_error(any_tokenizer):
    with pytest.raises(ConfigError, match="no examples"):
        build_features([], any_tokenizer)


# --------------------------------------------------------------------------- windows


def test_long_question_is_cut(any_tokenizer):
    question = " ".join(f"word{i % 17} café" for i in range(150)) + "?"  # hundreds of tokens
    assert len(any_tokenizer(question, add_special_tokens=False)["input_ids"]) >= 300
    context = "The library was founded in 1850 by Ada. " * 20
    ex = QAExample(id="long", question=question, context=context, answers=(Answer("1850", context.index("1850")),))
    config = WindowConfig(max_length=128, stride=32, max_question_tokens=48)
    features = build_features([ex], any_tokenizer, config)
    assert len(features) >= 2
    covered = set()
    for i in range(len(features)):
        n = len(features.input_ids[i])
        rows = _context_rows(features, i)
        assert n <= 128
        assert n - len(rows) <= config.max_question_tokens + SPECIAL_TOKEN_ROOM
        assert len(rows) >= 128 - config.max_question_tokens - SPECIAL_TOKEN_ROOM - 1 or i == len(features) - 1
        for t in rows:
            covered.update(range(*features.offsets[i, t]))
    assert covered >= {k for k, c in enumerate(context.rstrip()) if not c.isspace()}
    labelled = [i for i in range(len(features)) if features.start_positions[i] != features.cls_index[i]]
    assert labelled


@pytest.mark.parametrize("max_question_tokens", range(4, 16))
def test_question_cut_inside_a_character_still_fits(any_tokenizer, max_question_tokens):
    """Byte-level BPE splits 東 into byte tokens sharing one offset; a cut there must not overflow the limit.

    Otherwise a stride WindowConfig accepted (room - 1) makes the Rust tokenizer panic.
    """
    question = "東京大学の😀図書館は何年に建てられましたか" * 3
    config = WindowConfig(max_length=48, stride=48 - max_question_tokens - SPECIAL_TOKEN_ROOM - 1, max_question_tokens=max_question_tokens)
    ex = QAExample(id="cjk", question=question, context="The library was built in 1850. " * 12)
    features = build_features([ex], any_tokenizer, config)
    assert len(features) >= 2
    for i in range(len(features)):
        assert len(features.input_ids[i]) - len(_context_rows(features, i)) <= max_question_tokens + SPECIAL_TOKEN_ROOM


def test_token_type_ids_only_for_bert_style(any_tokenizer):
    ex = QAExample(id="t", question="What?", context="Some context here. " * 5, answers=(Answer("Some", 0),))
    features = build_features([ex], any_tokenizer, WindowConfig(max_length=64, stride=16, max_question_tokens=16))
    uses_types = "token_type_ids" in any_tokenizer.model_input_names
    row = features.model_inputs(with_labels=True)[0]
    assert set(row) >= {"input_ids", "attention_mask", "start_positions", "end_positions"}
    if uses_types:
        assert features.token_type_ids is not None and "token_type_ids" in row
        types = np.asarray(features.token_type_ids[0])
        rows = _context_rows(features, 0)
        assert (types[rows] == 1).all() and types[0] == 0
    else:
        assert features.token_type_ids is None and "token_type_ids" not in row
        assert "token_type_ids" not in features.to_dataset().column_names


def test_roberta_style_tokenizers_have_no_token_types():
    from conftest import build_byte_bpe

    for tok in (build_byte_bpe(), build_sentencepiece()):
        ex = QAExample(id="t", question="What?", context="Some context here.", answers=(Answer("Some", 0),))
        assert build_features([ex], tok, WindowConfig(64, 16, 16)).token_type_ids is None


def test_windows_overlap_by_stride(any_tokenizer):
    context = " ".join(f"token{i}" for i in range(400))
    ex = QAExample(id="o", question="Which token?", context=context)
    for stride in (0, 1, 17, 40):
        config = WindowConfig(max_length=96, stride=stride, max_question_tokens=16)
        features = build_features([ex], any_tokenizer, config)
        assert len(features) > 3
        spans = [[tuple(features.offsets[i, t]) for t in _context_rows(features, i)] for i in range(len(features))]
        for a, b in zip(spans, spans[1:]):
            if stride:
                assert a[-stride:] == b[:stride]
            assert b[stride] > a[-1]  # no more overlap than stride
        # Together the windows cover the whole context in order.
        assert spans[0][0][0] == 0 and spans[-1][-1][1] == len(context)


def test_features_select_and_lengths(any_tokenizer):
    examples = [
        QAExample(id=str(k), question="Where?", context=f"Place number {k} is here. " * (5 + 10 * k), answers=(Answer("Place", 0),))
        for k in range(3)
    ]
    features = build_features(examples, any_tokenizer, WindowConfig(64, 16, 16))
    assert features.lengths.tolist() == [len(ids) for ids in features.input_ids]
    pick = [len(features) - 1, 0]
    sub = features.select(pick)
    assert len(sub) == 2 and sub.input_ids[0] == features.input_ids[-1]
    np.testing.assert_array_equal(sub.offsets, features.offsets[pick])
    np.testing.assert_array_equal(sub.example_index, features.example_index[pick])


# --------------------------------------------------------------------------- shared data round trip

XQUAD_FILES = sorted(XQUAD.glob("xquad.*.json")) if XQUAD.exists() else []


def _round_trip(examples, tokenizer, config: WindowConfig) -> dict[str, object]:
    """Classify each gold answer by what its labels cut back from the context.

    exact: the cut (whitespace trimmed, then trailing combining marks kept as the
    decoder does) equals the answer; raw_exact counts those equal even without
    keeping marks. boundary: the gold answer starts or ends inside a token (e.g.
    gold '2,70' in token '700'), and the cut is the answer plus characters of
    its first / last token only.
    """
    features = build_features(examples, tokenizer, config)
    counts = {"exact": 0, "raw_exact": 0, "boundary": 0, "other": 0, "missing": 0}
    problems: list[tuple[str, str, str]] = []
    labelled: dict[int, list[int]] = {}
    for i in np.flatnonzero(features.start_positions != features.cls_index):
        labelled.setdefault(int(features.example_index[i]), []).append(int(i))
    boundary_cases: list[tuple[str, str, str, int, int, int, int]] = []
    for k, ex in enumerate(examples):
        if not ex.answers:
            continue
        windows = labelled.get(k)
        if not windows:
            counts["missing"] += 1
            problems.append((ex.id, ex.answers[0].text, "<no window>"))
            continue
        gold = ex.answers[0]
        text = gold.text.strip()
        a_start = gold.start + len(gold.text) - len(gold.text.lstrip())
        a_end = a_start + len(text)
        verdicts = set()
        raw_ok = True
        for i in windows:
            s, e = features.start_positions[i], features.end_positions[i]
            (s0, s1), (e0, e1) = features.offsets[i, s], features.offsets[i, e]
            raw_ok &= ex.context[s0:e1].strip() == text
            c0, c1 = _tidy(ex.context, int(s0), int(e1))
            if ex.context[c0:c1] == text:
                verdicts.add("exact")
            elif (
                c0 <= a_start
                and c1 >= a_end
                and (c0 == a_start or s0 < a_start < s1)
                and (c1 == a_end or e0 < a_end < e1)
            ):
                verdicts.add("boundary")
            else:
                verdicts.add("other")
                problems.append((ex.id, text, ex.context[c0:c1]))
        verdict = "other" if "other" in verdicts else "boundary" if "boundary" in verdicts else "exact"
        counts[verdict] += 1
        counts["raw_exact"] += int(raw_ok)
        if verdict == "boundary":
            boundary_cases.append((ex.id, ex.context, text, c0, c1, a_start, a_end))
    counts["total"] = sum(1 for ex in examples if ex.answers)
    counts["windows"] = len(features)
    return {"counts": counts, "problems": problems, "boundary_cases": boundary_cases}


@pytest.fixture(scope="module")
def round_trip_tokenizers():
    from spanqa.runtime.models import load_tokenizer

    return {"minilm-wordpiece": load_tokenizer("minilm"), "sentencepiece": build_sentencepiece(multilingual=True)}


@pytest.mark.shared
@needs_shared(XQUAD)
def test_xquad_answers_round_trip_from_labels(round_trip_tokenizers):
    """Every XQuAD gold answer, in every language, cut back exactly from its labels' offsets.

    The only allowance: a gold answer that starts or ends *inside a word* of its
    text (XQuAD typos such as 'Tentakel' in 'neTentakel', or SQuAD's truncated
    '2,70' in '2,700') cannot be a token boundary for a tokenizer that keeps
    that word whole, or has a piece across it (the SentencePiece's 'تم' in
    'تمكتوبة' when the answer starts at its second letter); the labels must
    then be the tokens that cover it. Any other inexact answer fails.
    """
    assert XQUAD_FILES, f"no xquad.*.json in {XQUAD}"
    config = WindowConfig(max_length=384, stride=128)
    lines = [f"{'language':<8} {'tokenizer':<17} {'answers':>7} {'exact':>6} {'raw':>6} {'in-word':>7} {'other':>5} {'miss':>4}"]
    failures = []
    in_word_cases = []
    for path in XQUAD_FILES:
        lang = Path(path).name.split(".")[1]
        examples = load_examples(path).examples
        for name, tokenizer in round_trip_tokenizers.items():
            result = _round_trip(examples, tokenizer, config)
            c = result["counts"]
            lines.append(
                f"{lang:<8} {name:<17} {c['total']:>7} {c['exact']:>6} {c['raw_exact']:>6} {c['boundary']:>7} {c['other']:>5} {c['missing']:>4}"
            )
            assert c["exact"] + c["boundary"] + c["other"] + c["missing"] == c["total"]
            if c["other"] or c["missing"]:
                failures.append((lang, name, result["problems"][:5]))
            for ex_id, context, text, c0, c1, a_start, a_end in result["boundary_cases"]:
                in_word = (c0 == a_start or splits_word(context, a_start)) and (c1 == a_end or splits_word(context, a_end))
                in_word_cases.append(f"{lang} {name}: gold {text!r} inside {context[c0:c1]!r}")
                if not in_word:
                    failures.append((lang, name, [(ex_id, text, context[c0:c1])]))
    print("\nXQuAD gold answers cut back from the labels (max_length 384, stride 128):")
    print("\n".join(lines))
    print("answers that start or end inside a word of their text:\n  " + "\n  ".join(in_word_cases or ["none"]))
    assert not failures, failures


# --------------------------------------------------------------------------- combining marks at answer edges


def _decode_labels(examples, features) -> list[str]:
    """What the decoder answers when each window's logits point (only) at its labels."""
    from spanqa.stages.decode import DecodeConfig, decode

    rows = np.arange(len(features))
    start = np.full(features.offsets.shape[:2], -10.0)
    end = np.full(features.offsets.shape[:2], -10.0)
    start[rows, features.start_positions] = 10.0
    end[rows, features.end_positions] = 10.0
    return [p.text for p in decode(examples, features, start, end, DecodeConfig(max_answer_length=64))]


def _labelled(features, k: int) -> list[int]:
    return [int(i) for i in np.flatnonzero(features.example_index == k) if features.start_positions[i] != features.cls_index[i]]


MARKED_ENDINGS = [
    ("We met at the cafe\u0301", "cafe\u0301"),  # decomposed é: BERT's accent stripping drops the U+0301
    ("He greeted everyone: नमस्ते", "नमस्ते"),  # ends in U+0947, a vowel sign BERT strips
    ("He greeted everyone: नमस्ते", "नमस्ते"[-3:]),  # starts on a mark (U+094D) after its base
    ("A cafe\u0301 opened, then a cafe\u0301\u0302", "cafe\u0301\u0302"),  # several marks
]


def test_bert_normaliser_drops_trailing_marks_from_offsets(wordpiece_tokenizer):
    """The premise of the tests below: the last token ends before a stripped trailing mark."""
    context = "We met at the cafe\u0301"
    offsets = wordpiece_tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert offsets[-1][1] == len(context) - 1


@pytest.mark.parametrize(("context", "answer"), MARKED_ENDINGS)
def test_answer_ending_in_a_mark_at_the_end_of_the_context_is_labelled(any_tokenizer, context, answer):
    """Not CLS ("no answer") when the tokenizer drops the mark; the decoder puts the marks back."""
    start = context.rindex(answer)
    ex = QAExample(id="m", question="Where did they meet?", context=context, answers=(Answer(answer, start),))
    features = build_features([ex], any_tokenizer, WindowConfig(max_length=64, stride=16, max_question_tokens=16))
    assert _labelled(features, 0), "the answer's window is labelled 'no answer'"
    (decoded,) = _decode_labels([ex], features)
    whole = start  # an answer starting on a mark comes back with the mark's base: the decoder keeps them together
    while unicodedata.category(context[whole]).startswith("M"):
        whole -= 1
    assert context.endswith(decoded) and decoded.endswith(context[whole:]), (decoded, answer)


@pytest.mark.parametrize(("context", "answer"), [("We met at the cafe\u0301 today.", "\u0301 today"), ("He said नमस्ते twice.", "े twice")])
def test_answer_starting_on_a_mark_is_labelled_from_its_base(any_tokenizer, context, answer):
    """A gold start inside a grapheme (on a mark) labels the base's token: the decoded answer holds the whole gold text."""
    start = context.index(answer)
    ex = QAExample(id="m", question="When?", context=context, answers=(Answer(answer, start),))
    features = build_features([ex], any_tokenizer, WindowConfig(max_length=64, stride=16, max_question_tokens=16))
    assert _labelled(features, 0)
    (decoded,) = _decode_labels([ex], features)
    assert answer.strip() in decoded and context[start - 1] + answer in decoded, decoded


def test_marked_answer_in_a_long_context_is_labelled_in_its_last_window(wordpiece_tokenizer):
    context = " ".join(f"word{i}" for i in range(120)) + " the cafe\u0301"
    ex = QAExample(id="m", question="Where?", context=context, answers=(Answer("cafe\u0301", len(context) - 5),))
    features = build_features([ex], wordpiece_tokenizer, WindowConfig(max_length=64, stride=16, max_question_tokens=16))
    assert len(features) > 3
    assert _labelled(features, 0) == [len(features) - 1]
    assert _decode_labels([ex], features) == ["cafe\u0301"]


@pytest.mark.integration
def test_thai_answer_ending_in_marks_with_the_default_tokenizer():
    """The default model's (uncased BERT) tokenizer strips Thai vowel and tone marks (both Mn)."""
    from spanqa.runtime.models import load_tokenizer

    context = "เขาบอกว่าไปที่นี่"
    ex = QAExample(id="th", question="ไปไหน", context=context, answers=(Answer("ที่นี่", context.index("ที่นี่")),))
    features = build_features([ex], load_tokenizer("minilm"))
    assert _labelled(features, 0)
    assert _decode_labels([ex], features)[0].endswith("ที่นี่")


@pytest.mark.shared
@pytest.mark.integration
@needs_shared(XQUAD)
@pytest.mark.parametrize("language", ["th", "hi", "ar"])
def test_xquad_answers_are_labelled_in_some_window(language):
    """XQuAD is v1 (every question answerable): no answer may be labelled "no answer" in all its windows.

    Six XQuAD-th answers end in a Thai mark at the very end of their context, which
    the default (uncased BERT) tokenizer strips; Hindi and Arabic answers often end in marks.
    """
    from spanqa.runtime.models import load_tokenizer

    path = XQUAD / f"xquad.{language}.json"
    if not path.exists():
        pytest.skip(f"{path} not found")
    examples = load_examples(path).examples
    features = build_features(examples, load_tokenizer("minilm"))
    labelled = np.zeros(len(examples), dtype=bool)
    np.logical_or.at(labelled, features.example_index, features.start_positions != features.cls_index)
    assert labelled.all(), [(examples[k].id, examples[k].answers[0].text) for k in np.flatnonzero(~labelled)]
