"""Open-domain evaluation (`spanqa evaluate --index`): gold-passage recall, answer recall, end-to-end EM/F1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spanqa.interfaces.cli import app
from spanqa.jobs.opendomain import WEIGHT_GRID, evaluate_open_domain, fit_retrieval_weight, retrieval_recall
from spanqa.reading.index import build_index
from spanqa.reading.reader import Reader
from spanqa.stages.data import load_examples

runner = CliRunner()

CONTEXTS = [
    "The Danube flows through Vienna and Budapest before it reaches the Black Sea.",
    "Sourdough bread rises because wild yeast and lactic bacteria ferment the dough.",
    "Mount Everest, on the border of Nepal and China, is the highest mountain on Earth.",
]
QUESTIONS = [
    ("Which river flows through Vienna?", "Danube"),
    ("What makes sourdough bread rise?", "wild yeast"),
    ("Which is the highest mountain?", "Mount Everest"),
]


@pytest.fixture()
def squad_file(tmp_path: Path) -> Path:
    data = {"version": "1.1", "data": [
        {"title": f"T{i}", "paragraphs": [{"context": c, "qas": [{"id": f"q{i}", "question": q, "answers": [{"text": a, "answer_start": c.index(a)}]}]}]}
        for i, (c, (q, a)) in enumerate(zip(CONTEXTS, QUESTIONS))
    ]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_recall_counts_the_gold_passage_and_any_passage_with_the_answer(squad_file: Path, tmp_path: Path) -> None:
    examples = load_examples(squad_file).examples
    index = build_index([squad_file], tmp_path / "ix")
    recall = retrieval_recall(index, examples, ks=(1, 3))
    assert recall == {"bm25": {"recall@1": 1.0, "recall@3": 1.0, "answer_recall@1": 1.0, "answer_recall@3": 1.0}}

    # A collection that holds the answers in other words is no gold passage, but still holds the answer text.
    (tmp_path / "other.txt").write_text("Facts: the Danube is long. Wild yeast is alive. Mount Everest is high.", encoding="utf-8")
    other = build_index([tmp_path / "other.txt"], tmp_path / "other")
    recall = retrieval_recall(other, examples, ks=(1,))
    assert recall["bm25"]["recall@1"] == 0.0 and recall["bm25"]["answer_recall@1"] == 1.0


def test_end_to_end_scores_match_the_reader_over_retrieved_passages(squad_file: Path, tmp_path: Path, tiny_bert_dir: Path) -> None:
    examples = load_examples(squad_file).examples
    index = build_index([squad_file], tmp_path / "ix")
    reader = Reader.from_pretrained(str(tiny_bert_dir), device="cpu")
    result = evaluate_open_domain(reader, index, examples, passages=1, ks=(1,))
    # With one passage, retrieved first and gold for every question, end-to-end is the gold-passage reading.
    gold = {ex.id: reader(ex.question, ex.context, handle_impossible=False).answers[0].text for ex in examples}
    assert result.predictions == gold
    assert result.method == "bm25" and result.questions == 3 and 0.0 <= result.end_to_end["f1"] <= 100.0


def test_evaluation_searches_each_question_once_per_method_and_reads_what_ask_reads(
    squad_file: Path, tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spanqa.reading.index import Index
    from spanqa.reading.indexed import answer_from_index

    examples = load_examples(squad_file).examples
    index = build_index([squad_file], tmp_path / "ix")
    reader = Reader.from_pretrained(str(tiny_bert_dir), device="cpu")
    asked = {ex.id: answer_from_index(reader, index, ex.question, passages=2, handle_impossible=False) for ex in examples}
    searches: list[tuple[str, int, str | None]] = []
    search = Index.search

    def counted(self: Index, question: str, k: int = 10, method: str | None = None):  # type: ignore[no-untyped-def]
        searches.append((question, k, method))
        return search(self, question, k, method)

    monkeypatch.setattr(Index, "search", counted)
    result = evaluate_open_domain(reader, index, examples, passages=2, ks=(1, 3))
    # recall's search, deep enough for 10 passages, reused for reading
    assert sorted(searches) == sorted((ex.question, 10, "bm25") for ex in examples)
    assert result.predictions == {qid: found.answer.text if found.answer else "" for qid, found in asked.items()}


def test_evaluate_index_cli(squad_file: Path, tmp_path: Path, tiny_bert_dir: Path) -> None:
    assert runner.invoke(app, ["index", str(squad_file), "--out", str(tmp_path / "ix")]).exit_code == 0
    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(tiny_bert_dir), "--data", str(squad_file), "--device", "cpu", "--output-dir", str(out)]
    result = runner.invoke(app, [*args, "--index", str(tmp_path / "ix"), "--passages", "2"])
    assert result.exit_code == 0, result.output
    found = json.loads((out / "metrics.json").read_text())["open_domain"]
    assert found["retrieval"]["bm25"]["recall@1"] == 1.0 and found["passages"] == 2 and found["method"] == "bm25"
    assert set(found["end_to_end"]) >= {"exact_match", "f1"}
    answers = json.loads((out / "open_domain_predictions.json").read_text())
    assert set(answers) == {"q0", "q1", "q2"} and all(isinstance(text, str) for text in answers.values())
    assert "bm25   recall@1 1.000  recall@5 1.000  recall@20 1.000" in result.stderr
    assert "gold passage: EM" in result.stderr and "index (bm25,  2 passages): EM" in result.stderr
    assert "index (bm25,  1 passage ): EM" in result.stderr and "index (bm25, 10 passages): EM" in result.stderr
    assert set(found["by_passages"]) == {"1", "2", "3", "10"} and found["fitted"]["retrieval_weight"] in WEIGHT_GRID
    assert "retrieval weight fitted on these questions" in result.stderr

    result = runner.invoke(app, [*args, "--overwrite", "--index", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "not a spanqa index" in result.stderr


def test_passage_counts_are_read_once_and_ranked_for_each_count(squad_file: Path, tmp_path: Path, tiny_bert_dir: Path) -> None:
    examples = load_examples(squad_file).examples
    index = build_index([squad_file], tmp_path / "ix")
    reader = Reader.from_pretrained(str(tiny_bert_dir), device="cpu")
    result = evaluate_open_domain(reader, index, examples, passages=2, ks=(1,))
    one = evaluate_open_domain(reader, index, examples, passages=1, ks=(1,))
    assert sorted(result.by_passages) == [1, 2, 3, 10] and one.fitted is None
    # The scores for one passage are those of a run that reads only one.
    assert result.by_passages[1]["f1"] == pytest.approx(one.end_to_end["f1"])
    assert result.by_passages[2]["f1"] == pytest.approx(result.end_to_end["f1"])
    assert result.fitted is not None and set(result.fitted.tried) == set(WEIGHT_GRID)


def test_fit_retrieval_weight_takes_the_best_and_the_smallest_of_equals() -> None:
    assert fit_retrieval_weight(lambda w: -abs(w - 2.0), grid=(0.0, 1.0, 2.0, 3.0)).weight == 2.0
    assert fit_retrieval_weight(lambda w: 50.0, grid=(0.0, 1.0, 2.0)).weight == 0.0


def test_evaluate_index_save_stores_the_fitted_weight(squad_file: Path, tmp_path: Path, tiny_bert_dir: Path) -> None:
    import shutil

    from spanqa.core.config import SpanQAConfig

    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    SpanQAConfig(retrieval_weight=123.0).save(model)
    assert runner.invoke(app, ["index", str(squad_file), "--out", str(tmp_path / "ix")]).exit_code == 0
    args = ["evaluate", "-m", str(model), "-d", str(squad_file), "--device", "cpu", "-o", str(tmp_path / "ev"), "--index", str(tmp_path / "ix")]
    result = runner.invoke(app, [*args, "--save"])
    assert result.exit_code == 0, result.output
    assert SpanQAConfig.load(model).retrieval_weight in WEIGHT_GRID


def test_fit_passage_ranking_asks_the_datas_own_paragraphs_and_saves_the_weight(squad_file: Path, tmp_path: Path, tiny_bert_dir: Path) -> None:
    import shutil

    from spanqa.core.config import SpanQAConfig
    from spanqa.jobs.evaluate import fit_passage_ranking, predict_dataset, save_tuned_settings, score_evaluation

    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    SpanQAConfig(retrieval_weight=123.0).save(model)
    reader = Reader.from_pretrained(str(model), device="cpu")
    evaluation = score_evaluation(predict_dataset(reader, load_examples(squad_file)))
    fitted = fit_passage_ranking(evaluation, questions=2)
    assert fitted.open_domain is not None and fitted.open_domain.questions == 2  # a sample of the questions
    assert sorted(fitted.open_domain.by_passages) == [1, 3, 10] and "open_domain" in fitted.metrics
    save_tuned_settings(fitted, model)
    assert SpanQAConfig.load(model).retrieval_weight in WEIGHT_GRID
    # Two paragraphs are nothing to rank across: the evaluation is left as it is.
    dataset = load_examples(squad_file)
    two = score_evaluation(predict_dataset(reader, dataset.subset(dataset.examples[:2])))
    assert fit_passage_ranking(two).open_domain is None
