"""Distractor passages for training: the closest other paragraphs, labelled "no answer", so span
scores compare across passages; and the ranking across passages that uses them."""

from __future__ import annotations

import numpy as np
import pytest

from spanqa.core.errors import ConfigError
from spanqa.stages.data import Answer, QAExample
from spanqa.stages.decode import answer_scores, passage_offsets
from spanqa.stages.distractors import DISTRACTOR_MARK, with_distractors

PARAGRAPHS = [
    "The Danube flows through Vienna and Budapest before it reaches the Black Sea.",
    "Vienna has many coffee houses; the Danube canal runs through the old town of Vienna.",
    "Sourdough bread rises because wild yeast and lactic bacteria ferment the dough.",
    "Mount Everest is the highest mountain on Earth, on the border of Nepal and China.",
    "Budapest lies on the Danube; its bridges join Buda and Pest.",
]


def example(i: int, question: str, answer: str) -> QAExample:
    context = PARAGRAPHS[i]
    return QAExample(f"q{i}", question, context, (Answer(answer, context.index(answer)),))


def others() -> list[QAExample]:
    """Questions on the other paragraphs, which make them part of the training data."""
    return [
        example(1, "What runs through the old town?", "the Danube canal"),
        example(3, "Highest mountain?", "Mount Everest"),
        example(4, "What joins Buda and Pest?", "its bridges"),
    ]


def test_each_question_gets_its_closest_other_paragraphs_without_an_answer() -> None:
    examples = [example(0, "Which sea does the Danube reach after Vienna?", "the Black Sea"), example(2, "What makes sourdough rise?", "wild yeast"), *others()]
    out = with_distractors(examples, 2)
    assert out[: len(examples)] == examples and len(out) == 3 * len(examples)
    danube = [ex for ex in out[2:] if ex.id.startswith(f"q0{DISTRACTOR_MARK}")]
    assert [ex.id for ex in danube] == [f"q0{DISTRACTOR_MARK}0", f"q0{DISTRACTOR_MARK}1"]
    # The two other Danube/Vienna paragraphs are the closest, never the question's own.
    assert {ex.context for ex in danube} == {PARAGRAPHS[1], PARAGRAPHS[4]}
    assert all(ex.is_impossible for ex in out[len(examples) :]) and all(ex.question == examples[0].question for ex in danube)
    assert all(ex.context != examples[0].context for ex in danube)


def test_a_paragraph_holding_the_answer_text_is_no_distractor() -> None:
    examples = [example(0, "Which city on the Danube does the river reach after Vienna?", "Budapest"), *others()]
    contexts = {ex.context for ex in with_distractors(examples, 3) if ex.id.startswith(f"q0{DISTRACTOR_MARK}")}
    assert PARAGRAPHS[4] not in contexts and PARAGRAPHS[0] not in contexts and contexts


def test_no_distractors_for_zero_one_paragraph_or_unanswerable_questions() -> None:
    examples = [example(0, "Which sea?", "the Black Sea"), example(2, "What makes sourdough rise?", "wild yeast")]
    assert with_distractors(examples, 0) == examples
    single = [examples[0], QAExample("other", "Which city?", PARAGRAPHS[0], (Answer("Vienna", PARAGRAPHS[0].index("Vienna")),))]
    assert with_distractors(single, 2) == single
    unanswerable = QAExample("u", "Who?", PARAGRAPHS[3])
    assert not any(ex.id.startswith(f"u{DISTRACTOR_MARK}") for ex in with_distractors([*examples, unanswerable], 2))
    with pytest.raises(ValueError, match="0 or more"):
        with_distractors(examples, -1)


def test_distractors_setting_is_checked() -> None:
    from spanqa.jobs.arguments import SpanQATrainingArguments

    with pytest.raises(ConfigError, match="--distractors"):
        SpanQATrainingArguments(output_dir="x", distractors=-1)
    from spanqa.jobs.arguments import DISTRACTORS

    assert SpanQATrainingArguments(output_dir="x").distractors == DISTRACTORS


def test_one_passage_offsets_change_neither_probabilities_nor_the_no_answer_rule() -> None:
    logits, null = np.array([3.0, 1.0, -2.0]), 2.5
    offset = passage_offsets([null])[0]
    before = answer_scores(logits, null, 1.7)
    after = answer_scores(logits + offset, 0.0, 1.7)
    np.testing.assert_allclose(before[0], after[0]) and np.testing.assert_allclose(before[1], after[1])
    assert passage_offsets([null], [5.0], retrieval_weight=3.0)[0] == offset  # one passage: nothing to standardise


def test_passage_offsets_fuse_the_standardised_retrieval_score() -> None:
    offsets = passage_offsets([1.0, 1.0, -np.inf], [3.0, 1.0, 2.0], retrieval_weight=2.0)
    z = (np.array([3.0, 1.0, 2.0]) - 2.0) / np.std([3.0, 1.0, 2.0])
    np.testing.assert_allclose(offsets, np.array([-1.0, -1.0, 0.0]) + 2.0 * z)
    np.testing.assert_allclose(passage_offsets([1.0, 2.0], [4.0, 4.0], 5.0), [-1.0, -2.0])  # equal scores say nothing


def test_ranking_across_documents_uses_each_documents_null_and_retrieval_scores(reader) -> None:  # type: ignore[no-untyped-def]
    from spanqa.reading.results import QARequest

    docs = [PARAGRAPHS[0], PARAGRAPHS[2]]
    request = QARequest("Which river flows through Vienna?", documents=docs, document_scores=[0.0, 10.0])
    read = reader.read_texts([request])[0]
    plain = reader.rank(request, read, retrieval_weight=0.0)
    expected = max(((span.logit - p.null_score, d) for d, p in enumerate(read) for span in p.candidates))
    assert plain.answers[0].document == expected[1]
    # A heavy retrieval weight makes the retriever's choice win.
    assert reader.rank(request, read, retrieval_weight=1000.0).answers[0].document == 1
    unscored = QARequest(request.question, documents=docs)
    assert reader(request.question, documents=docs).answers[0].document == reader.rank(unscored, read).answers[0].document
    with pytest.raises(Exception, match="document scores"):
        QARequest("q?", documents=docs, document_scores=[1.0])


@pytest.mark.parametrize("distractors", [None, 0, 2])
def test_training_reads_distractor_windows_when_asked(tiny_bert_dir, sample_train, tmp_path, monkeypatch, distractors) -> None:  # type: ignore[no-untyped-def]
    import spanqa.jobs.training as training

    seen: list[list[QAExample]] = []
    build = training.cached_features

    def recorded(examples, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(list(examples))
        return build(examples, *args, **kwargs)

    monkeypatch.setattr(training, "cached_features", recorded)
    chosen = {} if distractors is None else {"distractors": distractors}
    settings = {"max_length": 128, "stride": 32, "per_device_train_batch_size": 8, "cache_features": False, "report_to": "none"}
    training.train(str(tiny_bert_dir), sample_train, output_dir=str(tmp_path / "m"), max_steps=1, **settings, **chosen)
    trained = seen[0]
    extra = [ex for ex in trained if DISTRACTOR_MARK in ex.id]
    from spanqa.jobs.arguments import DISTRACTORS

    if (DISTRACTORS if distractors is None else distractors) == 0:
        assert extra == []
    else:
        originals = [ex for ex in trained if DISTRACTOR_MARK not in ex.id]
        assert extra and all(ex.is_impossible for ex in extra) and len(extra) <= 2 * len(originals)
