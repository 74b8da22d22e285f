"""spanqa.pipeline: every call form and argument of transformers 4.x's question-answering pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from spanqa import QuestionAnsweringPipeline, build_features, pipeline
from spanqa.core.errors import ConfigError
from spanqa.runtime.models import load_qa_model, load_tokenizer
from spanqa.stages.data import QAExample

CONTEXT = "The footballers played at Wembley Stadium in 1966, winning the championship against West Germany."
OTHER = "Jane Austen wrote the novel in a small house in Chawton."
KEYS = {"score", "start", "end", "answer"}


@pytest.fixture(scope="module")
def qa(tiny_bert_dir) -> QuestionAnsweringPipeline:
    return pipeline("question-answering", model=tiny_bert_dir, device="cpu")


def _is_answer(result, context: str = CONTEXT) -> bool:
    return set(result) == KEYS and context[result["start"] : result["end"]] == result["answer"] and 0.0 <= result["score"] <= 1.0


def _same(results, expected) -> bool:
    """The same answers, with scores equal up to the float noise of another batch's padding."""
    return len(results) == len(expected) and all(
        (r["answer"], r["start"], r["end"]) == (e["answer"], e["start"], e["end"]) and np.isclose(r["score"], e["score"], atol=1e-6)
        for r, e in zip(results, expected)
    )


def test_keyword_strings_give_one_dict(qa):
    result = qa(question="Where did they play?", context=CONTEXT)
    assert isinstance(result, dict) and _is_answer(result)


def test_every_single_input_form_gives_the_same_answer(qa):
    expected = qa(question="Where did they play?", context=CONTEXT)

    class SquadExample:  # what transformers.SquadExample exposes
        question_text, context_text = "Where did they play?", CONTEXT

    forms = [
        qa("Where did they play?", CONTEXT),
        qa({"question": "Where did they play?", "context": CONTEXT}),
        qa(SquadExample()),
        qa(X={"question": "Where did they play?", "context": CONTEXT}),
        qa(data={"question": "Where did they play?", "context": CONTEXT}),
    ]
    assert all(form == expected for form in forms)


def test_lists_give_one_result_per_input(qa):
    pairs = [("Where did they play?", CONTEXT), ("Who wrote it?", OTHER)]
    by_keywords = qa(question=[q for q, _ in pairs], context=[c for _, c in pairs])
    by_dicts = qa([{"question": q, "context": c} for q, c in pairs])
    singles = [qa(question=q, context=c) for q, c in pairs]
    assert _same(by_keywords, singles) and _same(by_dicts, singles)
    assert _is_answer(by_dicts[1], OTHER)
    many = qa(question=["Where did they play?", "When?"], context=CONTEXT)  # one text, several questions
    assert len(many) == 2 and all(_is_answer(r) for r in many)
    assert _same([qa([{"question": "Where did they play?", "context": CONTEXT}])], [singles[0]])  # a list of one gives one result, as in 4.x
    assert qa(question=[], context=[]) == [] and qa([]) == []  # empty lists: no results, as in 4.x


def test_top_k_gives_ranked_lists(qa):
    top = qa(question="Where did they play?", context=CONTEXT, top_k=3)
    assert isinstance(top, list) and len(top) == 3 and all(_is_answer(r) for r in top)
    assert [r["score"] for r in top] == sorted((r["score"] for r in top), reverse=True)
    nested = qa([{"question": "Where did they play?", "context": CONTEXT}] * 2, top_k=2)
    assert len(nested) == 2 and all(isinstance(r, list) and len(r) == 2 for r in nested)
    with pytest.warns(FutureWarning, match="top_k"):
        assert qa(question="Where did they play?", context=CONTEXT, topk=3) == top  # 4.x's old name


def test_max_answer_len_limits_the_tokens(qa):
    offsets = qa.tokenizer(CONTEXT, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    results = qa(question="Where did they play?", context=CONTEXT, top_k=10, max_answer_len=2, align_to_words=False)
    for result in results:  # the context tokens each answer covers
        assert sum(1 for s, e in offsets if s < result["end"] and e > result["start"]) <= 2
    longer = qa(question="Where did they play?", context=CONTEXT, top_k=10, max_answer_len=6, align_to_words=False)
    assert max(r["end"] - r["start"] for r in longer) > max(r["end"] - r["start"] for r in results)


def test_window_arguments_reach_the_windows(qa):
    long_context = " ".join([CONTEXT] * 40)
    short = qa(question="Where did they play?", context=long_context, max_seq_len=64, doc_stride=16, max_question_len=8)
    assert _is_answer(short, long_context)
    assert qa.reader.config.max_length == 384  # per call: the pipeline's reader keeps its settings
    with pytest.raises(ConfigError, match="stride"):
        qa(question="Where?", context=long_context, max_seq_len=64, doc_stride=60, max_question_len=8)


def test_handle_impossible_answer_adds_the_empty_answer(qa):
    results = qa(question="Where did they play?", context=CONTEXT, top_k=50, handle_impossible_answer=True)
    empty = [r for r in results if r["answer"] == ""]
    assert len(empty) == 1 and empty[0]["start"] == empty[0]["end"] == 0
    spans = [r for r in results if r["answer"]]
    assert all(_is_answer(r) for r in spans)
    assert all(r["answer"] for r in qa(question="Where did they play?", context=CONTEXT, top_k=50))  # off by default, as in 4.x


def test_align_to_words_gives_whole_words(tiny_bert_dir, qa):
    # Word pieces: the tiny tokenizer splits rare words, so token-level spans can end inside a word.
    context = "Thermodynamicists photographed unbelievably extraordinary hippopotamuses yesterday."
    aligned = qa(question="What?", context=context, top_k=30, max_answer_len=5)
    words = [(m.start(), m.end()) for m in __import__("re").finditer(r"\w+|[^\w\s]", context)]
    starts, ends = {s for s, _ in words}, {e for _, e in words}
    assert all(r["start"] in starts and r["end"] in ends for r in aligned)
    loose = qa(question="What?", context=context, top_k=30, max_answer_len=5, align_to_words=False)
    assert any(r["start"] not in starts or r["end"] not in ends for r in loose)  # the option changes something


def test_word_edges_cover_each_token(tiny_bert_dir):
    tokenizer = load_tokenizer(tiny_bert_dir)
    example = QAExample(id="x", question="What?", context="Unbelievably, hippopotamuses swim.")
    features = build_features([example], tokenizer, word_edges=True)
    offsets, edges = features.offsets[0], features.word_edges[0]
    context_tokens = offsets[:, 0] >= 0
    assert (edges[context_tokens, 0] <= offsets[context_tokens, 0]).all() and (edges[context_tokens, 1] >= offsets[context_tokens, 1]).all()
    spans = {tuple(e) for e in edges[context_tokens].tolist()}
    assert {example.context[s:e] for s, e in spans} == {"Unbelievably", ",", "hippopotamuses", "swim", "."}
    assert (edges[~context_tokens] == -1).all()


def test_batch_size_and_device_forms(tiny_bert_dir):
    for device in (-1, "cpu", __import__("torch").device("cpu")):
        qa = pipeline("question-answering", model=tiny_bert_dir, device=device, batch_size=2)
        assert str(qa.reader.device) == "cpu"
    expected = qa(question="Where did they play?", context=CONTEXT)
    assert qa(question="Where did they play?", context=CONTEXT, batch_size=1) == expected


def test_model_and_tokenizer_objects_and_readers(tiny_bert_dir, reader):
    model, tokenizer = load_qa_model(tiny_bert_dir), load_tokenizer(tiny_bert_dir)
    from_objects = pipeline("question-answering", model=model, tokenizer=tokenizer, device="cpu")
    from_reader = pipeline("question-answering", model=reader)
    a = from_objects(question="Where did they play?", context=CONTEXT)
    b = from_reader(question="Where did they play?", context=CONTEXT)
    assert (a["start"], a["end"]) == (b["start"], b["end"]) and np.isclose(a["score"], b["score"], atol=1e-4)
    with pytest.raises(ConfigError, match="needs its tokenizer"):
        pipeline("question-answering", model=model)


def test_call_defaults_from_the_constructor(tiny_bert_dir):
    qa = pipeline("question-answering", model=tiny_bert_dir, device="cpu", top_k=2)
    assert len(qa(question="Where did they play?", context=CONTEXT)) == 2
    assert isinstance(qa(question="Where did they play?", context=CONTEXT, top_k=1), dict)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(question="Where?", context="   "), "context is empty"),
        (dict(question="Where?", context=CONTEXT, top_k="3"), "top_k must be a positive integer"),
        (dict(question="Where?", context=CONTEXT, max_answer_len=-1), "max_answer_len must be a positive integer"),
        (dict(question="Where?", context=CONTEXT, doc_stride=-1), "doc_stride must be a non-negative integer"),
        (dict(question="Where?", context=CONTEXT, max_seq_len=2.5), "max_seq_len must be a positive integer"),
        (dict(question="Where?", context=CONTEXT, max_question_len=0), "max_question_len must be a positive integer"),
        (dict(question="Where?", context=CONTEXT, handle_impossible_answer="yes"), "handle_impossible_answer must be True or False"),
        (dict(question="Where?", context=CONTEXT, align_to_words=1), "align_to_words must be True or False"),
        (dict(question="Where?", context=CONTEXT, batch_size=0), "batch_size must be a positive integer"),
        (dict(question="Where?", context=CONTEXT, scores="4x"), "scores must be one of 'transformers', 'spanqa'"),
        (dict(question="Where?", context=CONTEXT, max_answer_length=3), "unknown question-answering pipeline argument 'max_answer_length'"),
    ],
)
def test_wrong_arguments_name_themselves(qa, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        qa(**kwargs)


# Every input form transformers 4.57's pipeline refuses, with the kind of error it raised there (probed on
# 4.57.x: KeyError for a dict without a key, ValueError for the rest). spanqa raises the same kind
# (PipelineInputError is a ValueError; MissingInputKey also a KeyError), with a message naming the input.
REFUSED_BY_4X = {
    "dict without context": (([{"question": "Who?"}],), {}, KeyError, "inputs\\[0\\]: missing 'context'"),
    "dict without question": (({"context": CONTEXT},), {}, KeyError, "input: missing 'question'"),
    "dict question None": (({"question": None, "context": CONTEXT},), {}, ValueError, "question'\\] cannot be None"),
    "dict empty question": (({"question": "", "context": CONTEXT},), {}, ValueError, "question'\\] is empty"),
    "dict empty context": (({"question": "Who?", "context": ""},), {}, ValueError, "context'\\] is empty"),
    "list item not a dict": (([{"question": "Who?", "context": CONTEXT}, "text"],), {}, ValueError, "inputs\\[1\\]: expected a dict"),
    "number": ((42,), {}, ValueError, "got int"),
    "a string alone": (("Who?",), {}, ValueError, "a string alone is a question without its context"),
    "three strings": (("a", "b", "c"), {}, ValueError, "inputs\\[0\\]: expected a dict"),
    "no inputs": ((), {}, ValueError, "no inputs"),
    "question only": ((), dict(question="Who?"), ValueError, "missing context"),
    "context only": ((), dict(context=CONTEXT), ValueError, "missing question"),
    "empty question": ((), dict(question="", context=CONTEXT), ValueError, "question is empty"),
    "lists of other lengths": ((), dict(question=["Who?", "When?"], context=["Ada wrote it in 1843."]), ValueError, "differ in length \\(2 and 1\\)"),
    "string question, list of contexts": ((), dict(question="Who?", context=[CONTEXT, OTHER]), ValueError, "got str and list"),
    "number question": ((), dict(question=5, context=CONTEXT), ValueError, "got int and str"),
    "tuple of questions": ((), dict(question=("Who?", "When?"), context=CONTEXT), ValueError, "got tuple and str"),
    "None in the questions": ((), dict(question=["Who?", None], context=CONTEXT), ValueError, "question\\[1\\] cannot be None"),
    "number in the questions": ((), dict(question=["Who?", 5], context=CONTEXT), ValueError, "question\\[1\\] must be a string"),
    "number in the contexts": ((), dict(question=["Who?", "When?"], context=[CONTEXT, 3]), ValueError, "context\\[1\\] must be a string"),
    "top_k 0": ((), dict(question="Who?", context=CONTEXT, top_k=0), ValueError, "top_k must be a positive integer"),
    "max_answer_len 0": ((), dict(question="Who?", context=CONTEXT, max_answer_len=0), ValueError, "max_answer_len must be a positive integer"),
    "doc_stride over max_seq_len": ((), dict(question="Who?", context=CONTEXT, doc_stride=500), ValueError, "doc_stride \\(500\\) is larger"),
}


@pytest.mark.parametrize("form", REFUSED_BY_4X)
def test_every_input_form_4x_refused_is_refused_with_its_kind_of_error(qa, form):
    args, kwargs, kind, message = REFUSED_BY_4X[form]
    with pytest.raises(kind, match=message) as raised:
        qa(*args, **kwargs)
    assert isinstance(raised.value, ConfigError)  # and spanqa's own kind: one except clause catches every refusal


def test_other_tasks_and_mixed_forms_are_refused(tiny_bert_dir, qa):
    with pytest.raises(ConfigError, match="question-answering task only"):
        pipeline("text-classification", model=tiny_bert_dir)
    with pytest.raises(ConfigError, match="one way"):
        qa({"question": "Where?", "context": CONTEXT}, question="Where?", context=CONTEXT)
    with pytest.raises(ConfigError, match="torch_dtype"):
        pipeline("question-answering", model=tiny_bert_dir, torch_dtype="int4")


def test_num_workers_is_accepted_with_a_warning(qa, caplog):
    with caplog.at_level("WARNING", logger="spanqa"):
        qa(question="Where did they play?", context=CONTEXT, num_workers=4)
    assert "num_workers has no effect" in caplog.text


def test_scores_are_4x_numbers_by_default_and_spanqa_probabilities_on_request(qa):
    """transformers: 4.x's p(start) x p(end) within a window (stages.pipeline_decode); spanqa: the reader's calibrated probability."""
    as_4x = qa(question="Where did they play?", context=CONTEXT, top_k=3)
    calibrated = qa(question="Where did they play?", context=CONTEXT, top_k=3, scores="spanqa")
    assert [(r["start"], r["end"]) for r in as_4x] != [] and all(_is_answer(r) for r in as_4x + calibrated)
    assert [r["score"] for r in as_4x] != pytest.approx([r["score"] for r in calibrated], abs=1e-3)
    with_null = qa(question="Where did they play?", context=CONTEXT, top_k=50, scores="spanqa", handle_impossible_answer=True)
    assert sum(r["score"] for r in with_null) <= 1.0 + 1e-6  # shares of one distribution (spans and "no answer")
    by_default = pipeline("question-answering", model=qa.reader, scores="spanqa")
    assert by_default(question="Where did they play?", context=CONTEXT, top_k=3) == calibrated


def test_the_model_runs_in_float32_unless_a_dtype_is_given(tiny_bert_dir):
    """As 4.x loaded models; spanqa's own CPU default elsewhere may be bf16."""
    assert pipeline("question-answering", model=tiny_bert_dir, device="cpu").reader.backend.dtype == "fp32"
    halved = pipeline("question-answering", model=tiny_bert_dir, device="cpu", torch_dtype="bfloat16")
    assert halved.reader.backend.dtype == "bf16"


def test_4x_scores_ignore_max_question_len_as_4x_did(qa):
    """4.x's fast-tokenizer path never cut questions: before, a 64-token cut changed 279 of 1,190 XQuAD-ru answers."""
    question = " ".join(["Which footballers played at Wembley Stadium in the final against West Germany?"] * 6)
    short_limit = qa(question=question, context=CONTEXT, max_question_len=8, top_k=3)
    long_limit = qa(question=question, context=CONTEXT, max_question_len=200, top_k=3)
    assert short_limit == long_limit
    cut = qa(question=question, context=CONTEXT, max_question_len=8, top_k=3, scores="spanqa")
    whole = qa(question=question, context=CONTEXT, max_question_len=200, top_k=3, scores="spanqa")
    assert [r["score"] for r in cut] != [r["score"] for r in whole]  # spanqa's scores cut the question as asked
