"""Evaluation end to end: prediction files, metrics, and agreement with the Hugging Face reference recipe."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from reference_recipe import prepare_train_features, prepare_validation_features, ref_v1_evaluate, reference_postprocess

from spanqa import Reader, SpanQAConfig
from spanqa.core.errors import ConfigError
from spanqa.jobs.evaluate import evaluate
from spanqa.stages.data import load_examples
from spanqa.stages.metrics import score_predictions

MAX_LENGTH, STRIDE = 128, 32

# --------------------------------------------------------------------------- data (reference recipe: bench/reference_recipe.py)


def squad_records(path: Path, answerable_only: bool = False) -> list[dict]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    records = []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                if answerable_only and (qa.get("is_impossible") or not qa["answers"]):
                    continue
                records.append({"id": qa["id"], "question": qa["question"], "context": paragraph["context"], "answers": qa["answers"]})
    return records


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dev_v1(tmp_path_factory, sample_dev) -> Path:
    """The sample dev set's answerable questions as a SQuAD v1.1 file."""
    data = json.loads(Path(sample_dev).read_text(encoding="utf-8"))
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            paragraph["qas"] = [
                {k: v for k, v in qa.items() if k != "is_impossible"} for qa in paragraph["qas"] if not qa.get("is_impossible") and qa["answers"]
            ]
    data["version"] = "1.1"
    path = tmp_path_factory.mktemp("data") / "dev-v1.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained_elsewhere(tmp_path_factory, tiny_bert_dir, sample_train) -> Path:
    """The tiny BERT fine-tuned by a plain torch loop on notebook-style features (no spanqa code)."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    folder = tmp_path_factory.mktemp("elsewhere") / "tiny-bert-qa"
    shutil.copytree(tiny_bert_dir, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForQuestionAnswering.from_pretrained(folder)
    records = squad_records(sample_train, answerable_only=True)
    answers = [{"text": r["answers"][0]["text"], "answer_start": r["answers"][0]["answer_start"]} for r in records]
    features = prepare_train_features(tokenizer, [r["question"] for r in records], [r["context"] for r in records], answers, MAX_LENGTH, STRIDE)
    columns = ["input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions"]
    tensors = {c: torch.tensor(features[c]) for c in columns}
    n = len(tensors["input_ids"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: more threads only fight over a small, busy CPU
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(n, generator=generator)
    cursor = 0
    for _ in range(150):
        if cursor + 16 > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        rows = order[cursor : cursor + 16]
        cursor += 16
        loss = model(**{c: t[rows] for c, t in tensors.items()}).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    torch.set_num_threads(threads)
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- tests


def test_evaluate_writes_files_and_consistent_metrics(tiny_bert_dir, sample_dev, tmp_path):
    out = tmp_path / "eval"
    result = evaluate(tiny_bert_dir, sample_dev, output_dir=out, max_length=MAX_LENGTH, stride=STRIDE)
    names = ("predictions.json", "nbest_predictions.json", "null_odds.json", "metrics.json")
    files = {name: json.loads((out / name).read_text(encoding="utf-8")) for name in names}
    examples = load_examples(sample_dev).examples
    ids = {ex.id for ex in examples}
    predictions, nbest, null_odds, metrics = (files[k] for k in ("predictions.json", "nbest_predictions.json", "null_odds.json", "metrics.json"))
    assert set(predictions) == ids and set(nbest) == ids and set(null_odds) == ids
    assert all(isinstance(v, str) for v in predictions.values())
    assert all(isinstance(v, float) for v in null_odds.values())
    by_id = {ex.id: ex for ex in examples}
    for qid, candidates in nbest.items():
        assert candidates, qid
        probs = [c["probability"] for c in candidates]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6
        for c in candidates:
            assert by_id[qid].context[c["start"] : c["end"]] == c["text"]
        if predictions[qid]:
            assert predictions[qid] == candidates[0]["text"]
    assert metrics == pytest.approx(result.metrics)
    # The metrics are those of the written files, scored with the official definitions.
    rescored = score_predictions(examples, predictions, null_odds, version_2=True, na_prob_thresh=float("inf"))
    assert rescored.metrics == pytest.approx(metrics)
    plain = score_predictions(examples, predictions, version_2=True)
    for key in ("exact", "f1", "total", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1"):
        assert plain.metrics[key] == pytest.approx(metrics[key]), key
    assert {"best_exact", "best_f1", "best_exact_thresh", "best_f1_thresh"} <= set(metrics)


def test_same_scores_as_reference_recipe(trained_elsewhere, dev_v1, tmp_path):
    """A checkpoint trained elsewhere: spanqa evaluate == notebook features + n-best post-processing + official v1.1 score."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    ours = evaluate(trained_elsewhere, dev_v1, output_dir=tmp_path / "eval", max_length=MAX_LENGTH, stride=STRIDE, version_2=False)

    tokenizer = AutoTokenizer.from_pretrained(trained_elsewhere)
    model = AutoModelForQuestionAnswering.from_pretrained(trained_elsewhere).eval()
    records = squad_records(dev_v1)
    tokenized, features = prepare_validation_features(
        tokenizer, [r["id"] for r in records], [r["question"] for r in records], [r["context"] for r in records], MAX_LENGTH, STRIDE
    )
    starts, ends = [], []
    with torch.no_grad():
        for lo in range(0, len(features), 32):
            batch = {k: torch.tensor(tokenized[k][lo : lo + 32]) for k in ("input_ids", "token_type_ids", "attention_mask")}
            out = model(**batch)
            starts.append(out.start_logits.numpy())
            ends.append(out.end_logits.numpy())
    reference = reference_postprocess(records, features, np.concatenate(starts), np.concatenate(ends), n_best_size=20, max_answer_length=30)
    ref_predictions = {qid: r["text"] for qid, r in reference.items()}
    theirs = ref_v1_evaluate([{"paragraphs": [{"qas": records}]}], ref_predictions)  # official v1.1 score

    print(f"\nspanqa EM {ours.metrics['exact_match']:.2f} F1 {ours.metrics['f1']:.2f}; reference EM {theirs['exact_match']:.2f} F1 {theirs['f1']:.2f}")
    assert theirs["f1"] > 0.0, "the checkpoint learnt something, so the comparison means something"
    written = json.loads((tmp_path / "eval" / "predictions.json").read_text(encoding="utf-8"))
    differ = [qid for qid, text in ref_predictions.items() if written[qid] != text.strip()]
    # The reference pads every window to max_length, spanqa pads per batch: float rounding may
    # flip one near-tied answer of this barely trained model, and only by that question's share.
    assert len(differ) <= 1, differ
    share = 100.0 * len(differ) / len(records)
    assert ours.metrics["exact_match"] == pytest.approx(theirs["exact_match"], abs=share + 1e-9)
    assert ours.metrics["f1"] == pytest.approx(theirs["f1"], abs=share + 1e-9)


def test_cli_evaluate_writes_files(tiny_bert_dir, sample_dev, tmp_path):
    from typer.testing import CliRunner

    from spanqa.interfaces.cli import app

    out = tmp_path / "cli-eval"
    result = CliRunner().invoke(
        app, ["evaluate", "--model", str(tiny_bert_dir), "--data", str(sample_dev), "--output-dir", str(out), "--max-length", "128", "--stride", "32"]
    )
    assert result.exit_code == 0, result.output
    for name in ("predictions.json", "nbest_predictions.json", "null_odds.json", "metrics.json"):
        json.loads((out / name).read_text(encoding="utf-8"))
    assert json.loads(result.stdout[result.stdout.index("{") :])["total"] == 41


def test_cli_missing_model_folder_is_one_error_line(sample_dev, tmp_path):
    missing = tmp_path / "no-such-model"
    proc = subprocess.run(
        [sys.executable, "-c", "from spanqa.interfaces.cli import main; main()", "evaluate", "--model", str(missing), "--data", str(sample_dev),
         "--output-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert str(missing) in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- no-answer threshold


def _prediction(qid: str, text: str, null_odds: float):
    from spanqa.stages.decode import ExamplePrediction, Span

    span = Span(text=text, start=0, end=len(text), logit=1.0, start_logit=0.5, end_logit=0.5)
    return ExamplePrediction(id=qid, text=text if null_odds <= 0 else "", candidates=[span], null_score=1.0 + null_odds, best_score=1.0)


def _examples(golds: dict[str, str | None]):
    from spanqa.stages.data import Answer, QAExample

    context = "red green blue"
    return [
        QAExample(qid, "Which?", context, (Answer(gold, context.index(gold)),) if gold else ())
        for qid, gold in golds.items()
    ]


def test_tuned_threshold_maximises_f1_and_reports_both():
    from spanqa.jobs.evaluate import tune_null_threshold

    golds = {"a": None, "b": None, "c": "red", "d": "green"}
    # Null odds: the unanswerable a, b above the answerable c, d; d (0.5) abstains at the default 0.
    predictions = [_prediction("a", "blue", 1.0), _prediction("b", "blue", 2.0), _prediction("c", "red", -1.0), _prediction("d", "green", 0.5)]
    tuning = tune_null_threshold(_examples(golds), predictions)
    assert tuning.default_threshold == 0.0
    assert tuning.default_metrics["f1"] == pytest.approx(75.0)  # c right, a and b abstained, d missed
    assert tuning.threshold == pytest.approx(0.5)  # the official search: the last question worth answering
    assert tuning.tuned_metrics["f1"] == pytest.approx(100.0)
    assert tuning.tuned_metrics["HasAns_f1"] == pytest.approx(100.0) and tuning.tuned_metrics["NoAns_f1"] == pytest.approx(100.0)


def test_a_tie_keeps_the_default_threshold():
    from spanqa.jobs.evaluate import tune_null_threshold

    # The default already gets both right; the search's first best point (-1.0, answering only b)
    # scores the same, which is no reason to move.
    predictions = [_prediction("a", "blue", 0.5), _prediction("b", "red", -1.0)]
    tuning = tune_null_threshold(_examples({"a": None, "b": "red"}), predictions)
    assert tuning.default_metrics["f1"] == pytest.approx(100.0)
    assert tuning.threshold == 0.0
    assert tuning.tuned_metrics == tuning.default_metrics


def test_cli_tunes_saves_and_then_applies_the_threshold(tiny_bert_dir, sample_dev, tmp_path):
    from typer.testing import CliRunner

    from spanqa.interfaces.cli import app

    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    (model / "spanqa.json").unlink(missing_ok=True)
    runner = CliRunner()
    args = ["evaluate", "--model", str(model), "--data", str(sample_dev), "--max-length", "128", "--stride", "32"]
    result = runner.invoke(app, [*args, "--output-dir", str(tmp_path / "tuned"), "--tune-threshold", "--save-threshold"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "tuned" / "metrics.json").read_text())
    assert metrics["default_threshold"]["null_threshold"] == 0.0
    assert metrics["f1"] >= metrics["default_threshold"]["f1"]
    for key in ("exact", "f1", "HasAns_f1", "NoAns_f1"):
        assert key in metrics and key in metrics["default_threshold"]
    saved = json.loads((model / "spanqa.json").read_text())["null_threshold"]
    assert saved == pytest.approx(metrics["null_threshold"])
    # A later evaluation (and so Reader, predict, serve) applies the saved threshold by itself.
    result = runner.invoke(app, [*args, "--output-dir", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["f1"] == pytest.approx(metrics["f1"], abs=1e-9)
    # --tune-threshold on data without unanswerable questions is a one-line user error.
    v1 = tmp_path / "v1.json"
    data = json.loads(sample_dev.read_text())
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            paragraph["qas"] = [q for q in paragraph["qas"] if q.get("answers")]
            for q in paragraph["qas"]:
                q.pop("is_impossible", None)
    data["version"] = "1.1"
    v1.write_text(json.dumps(data))
    result = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(v1), "--tune-threshold", "--output-dir", str(tmp_path / "v1")])
    assert result.exit_code == 1 and "--tune-threshold needs SQuAD v2" in result.output


# --------------------------------------------------------------------------- the steps, one by one


def test_the_steps_composed_by_hand_give_what_evaluate_gives(tiny_bert_dir, sample_dev, tmp_path):
    from spanqa import Reader
    from spanqa.jobs.evaluate import (
        EvaluationSteps,
        calibrate_scores,
        evaluation_settings,
        predict_dataset,
        score_evaluation,
        tune_threshold,
        write_evaluation,
    )

    steps = EvaluationSteps(tune_threshold=True, calibrate=True)
    whole = evaluate(tiny_bert_dir, sample_dev, settings={"max_length": MAX_LENGTH, "stride": STRIDE}, steps=steps, output_dir=tmp_path / "a")

    from spanqa.runtime.backends import evaluation_precision

    # in the precision evaluate loads a model in (fp32 on the CPU, where the default may be bf16)
    reader = Reader.from_pretrained(tiny_bert_dir, max_length=MAX_LENGTH, stride=STRIDE, dtype=evaluation_precision(None))
    dataset = load_examples(sample_dev)
    scored = score_evaluation(predict_dataset(reader, dataset))
    assert scored.tuning is None and "default_threshold" not in scored.metrics
    done = calibrate_scores(tune_threshold(scored))
    write_evaluation(done, tmp_path / "b", settings=evaluation_settings(tiny_bert_dir, done))

    assert done.metrics == whole.metrics
    assert {"default_threshold", "calibration", "null_threshold"} <= set(done.metrics)
    assert [p.text for p in done.predictions] == [p.text for p in whole.predictions]
    for name in ("predictions.json", "metrics.json", "evaluation.json", "null_odds.json"):
        assert json.loads((tmp_path / "a" / name).read_text()) == json.loads((tmp_path / "b" / name).read_text()), name


def test_keywords_are_sorted_into_their_options_and_unknown_ones_refused(tiny_bert_dir, dev_v1):
    from spanqa.core.errors import ConfigError
    from spanqa.jobs.evaluate import Evaluation, tune_threshold

    with pytest.raises(TypeError, match="save_threshold"):
        evaluate(tiny_bert_dir, dev_v1, save_threshold=True)  # a command-line shortcut, not a library option
    # Load options, window settings, steps and data options, all as keywords.
    result = evaluate(tiny_bert_dir, dev_v1, device="cpu", batch_size=8, max_length=MAX_LENGTH, stride=STRIDE, lang="squad", on_mismatch="trust")
    assert {"exact_match", "f1"} <= set(result.metrics) and "HasAns_f1" not in result.metrics  # v1.1 data, v1.1 keys
    with pytest.raises(ConfigError, match="--tune-threshold needs SQuAD v2"):
        tune_threshold(Evaluation(reader=None, dataset=load_examples(dev_v1), version_2=False))  # type: ignore[arg-type]


def test_evaluate_applies_overrides_to_a_given_reader(tiny_bert_dir, sample_dev, reader):
    overrides = {"max_length": 48, "stride": 8, "max_question_tokens": 16}
    via_reader = evaluate(reader, sample_dev, max_length=96, stride=16)
    via_name = evaluate(str(tiny_bert_dir), sample_dev, max_length=96, stride=16)
    default = evaluate(reader, sample_dev)
    assert [p.candidates for p in via_reader.predictions] == [p.candidates for p in via_name.predictions]
    assert [p.candidates for p in via_reader.predictions] != [p.candidates for p in default.predictions]
    assert reader.config.max_length == SpanQAConfig().max_length  # the given reader is left as it was
    assert Reader.from_pretrained(tiny_bert_dir, **overrides).config.max_question_tokens == 16


def test_tune_and_save_stores_the_tuned_threshold(tiny_bert_dir, sample_dev, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    result = evaluate(str(model), sample_dev, tune_threshold=True, save=True)
    assert result.tuning is not None
    assert SpanQAConfig.load(model).null_threshold == result.tuning.threshold


def test_threshold_preconditions_are_checked_before_predicting(reader, sample_dev, tmp_path, monkeypatch):
    from spanqa.stages.data import save_examples

    v1 = tmp_path / "v1.json"
    save_examples([ex for ex in load_examples(sample_dev).examples if ex.answers], v1)

    def boom(*args, **kwargs):
        raise AssertionError("predicted before checking the options")

    monkeypatch.setattr(Reader, "predict_examples", boom)
    with pytest.raises(ConfigError, match="needs SQuAD v2 style data"):
        evaluate(reader, v1, tune_threshold=True)
    with pytest.raises(ConfigError, match="needs a local model folder"):
        evaluate(reader, sample_dev, save=True)
