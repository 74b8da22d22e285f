"""Training on HF Trainer with tiny random models: outputs, resume after SIGKILL, options, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import SUBJQA, XQUAD, needs_shared
from typer.testing import CliRunner

from spanqa import evaluate
from spanqa.core.io import atomic_open
from spanqa.interfaces.cli import app
from spanqa.jobs.training import SpanQATrainingArguments, find_resumable_checkpoint, train

FAST = dict(
    max_length=128,
    stride=32,
    per_device_train_batch_size=8,
    per_device_eval_batch_size=16,
    logging_steps=5,
    learning_rate=1e-3,
    seed=7,
)
runner = CliRunner()


def _run(args: list[str]):
    return runner.invoke(app, args, catch_exceptions=False)


def test_train_saves_standard_layout_and_evaluate_reproduces_metrics(tiny_bert_dir, sample_train, sample_dev, tmp_path):
    out = tmp_path / "model"
    result = train(str(tiny_bert_dir), sample_train, sample_dev, output_dir=str(out), num_train_epochs=2, **FAST)

    for name in ("model.safetensors", "config.json", "tokenizer.json", "spanqa.json", "metrics.json", "train_config.json", "README.md"):
        assert (out / name).is_file(), name
    assert not list(out.glob("checkpoint-*")), "checkpoints are removed after a successful run"
    assert not list(out.glob(".final-*")), "no staging folder left behind"

    from transformers import AutoModelForQuestionAnswering

    model = AutoModelForQuestionAnswering.from_pretrained(out)
    assert model.config.model_type == "bert"

    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(result.metrics))
    assert {"exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1"} <= set(saved)
    again = evaluate(str(out), sample_dev, output_dir=tmp_path / "eval")
    for key in ("exact", "f1", "HasAns_exact", "NoAns_exact"):
        assert again.metrics[key] == pytest.approx(saved[key], abs=1e-9), key

    config = json.loads((out / "spanqa.json").read_text())
    assert config["null_threshold"] == saved["null_threshold"]  # tuned on the dev data (v2), applied by evaluate
    assert saved["default_threshold"]["null_threshold"] == 0.0
    # The retrieval weight fitted over the dev data's own paragraphs (9 of them) is what spanqa.json keeps.
    assert sorted(saved["open_domain"]["by_passages"]) == ["1", "10", "3"]
    assert config["retrieval_weight"] == saved["open_domain"]["fitted"]["retrieval_weight"]
    assert saved["f1"] >= saved["default_threshold"]["f1"]
    assert config["max_length"] == 128 and config["stride"] == 32 and config["handle_impossible"] is True
    assert config["spanqa_version"] and config["data_fingerprint"]
    settings = json.loads((out / "train_config.json").read_text())
    assert settings["training"]["num_train_epochs"] == 2
    assert settings["training"]["learning_rate"] == 1e-3
    card = (out / "README.md").read_text()
    assert "pipeline_tag: question-answering" in card and f"{saved['f1']:.2f}" in card
    # Evaluation ran every epoch through the QA evaluator (EM/F1, not only loss).
    assert sum("eval_f1" in entry for entry in result.history) == 2


def test_trainer_evaluation_matches_final_reader_evaluation(tiny_roberta_dir, sample_train, sample_dev, tmp_path):
    # fp32 on both sides: under mixed precision the Trainer evaluates in bf16 autocast and the final
    # evaluation (like `spanqa evaluate`) in fp32, so the figures may differ in the last digits.
    result = train(
        str(tiny_roberta_dir), sample_train, sample_dev, output_dir=str(tmp_path / "m"), num_train_epochs=1, mixed_precision=False, **FAST
    )
    last_eval = [entry for entry in result.history if "eval_f1" in entry][-1]
    assert last_eval["eval_f1"] == pytest.approx(result.metrics["f1"], abs=1e-6)
    assert last_eval["eval_exact"] == pytest.approx(result.metrics["exact"], abs=1e-6)


def test_output_dir_with_earlier_run_is_protected(tiny_bert_dir, sample_train, sample_dev, tmp_path):
    out = tmp_path / "model"
    train(str(tiny_bert_dir), sample_train, sample_dev, output_dir=str(out), max_steps=2, **FAST)
    before = (out / "model.safetensors").read_bytes()
    res = runner.invoke(app, ["train", "--model", str(tiny_bert_dir), "--output-dir", str(out), "--max-steps", "2"])
    assert res.exit_code == 1
    assert "already holds a model" in res.output and "--overwrite" in res.output
    assert (out / "model.safetensors").read_bytes() == before


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from transformers import TrainerCallback
    from spanqa.jobs.training import train

    class KillAfterCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step >= {kill_at}:
                os.kill(os.getpid(), signal.SIGKILL)

    train({model!r}, {train_data!r}, {eval_data!r}, output_dir={out!r}, callbacks=[KillAfterCheckpoint()],
          **{settings!r})
    """
)


def test_sigkill_after_checkpoint_then_resume_matches_uninterrupted_run(tiny_bert_dir, sample_train, sample_dev, tmp_path):
    settings = dict(FAST, num_train_epochs=4, keep_checkpoints=False)
    reference = train(str(tiny_bert_dir), sample_train, sample_dev, output_dir=str(tmp_path / "ref"), **settings)

    out = tmp_path / "killed"
    script = KILLER.format(kill_at=30, model=str(tiny_bert_dir), train_data=str(sample_train), eval_data=str(sample_dev), out=str(out), settings=settings)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    checkpoint = find_resumable_checkpoint(out)
    assert checkpoint is not None, list(out.iterdir())
    assert 30 <= int(checkpoint.name.split("-")[1]) < reference.global_step
    assert not (out / "metrics.json").exists() and not (out / "model.safetensors").exists()
    assert not [p for p in out.rglob("*.tmp")], "no half-written temporary files"

    resumed = train(str(tiny_bert_dir), sample_train, sample_dev, output_dir=str(out), resume=True, **settings)
    assert resumed.global_step == reference.global_step
    assert abs(resumed.metrics["f1"] - reference.metrics["f1"]) <= 0.5
    assert abs(resumed.metrics["exact"] - reference.metrics["exact"]) <= 0.5


def test_incomplete_checkpoint_is_not_resumed(tmp_path):
    good = tmp_path / "checkpoint-10"
    good.mkdir()
    (good / "trainer_state.json").write_text("{}")
    partial = tmp_path / "checkpoint-20"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"partial")
    assert find_resumable_checkpoint(tmp_path) == good


def test_atomic_open_keeps_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text('{"f1": 50}')
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write('{"f1": ')
            raise RuntimeError("killed mid-write")
    assert target.read_text() == '{"f1": 50}'
    assert list(tmp_path.iterdir()) == [target]


def test_config_file_and_command_line_overrides(tiny_bert_dir, sample_train, sample_dev, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            model: {tiny_bert_dir}
            train: {sample_train}
            eval: {sample_dev}
            max_length: 128
            stride: 32
            learning_rate: 0.001
            max_steps: 3
            training:
              lr_scheduler_type: cosine
              logging_steps: 1
            """
        )
    )
    out = tmp_path / "model"
    res = _run(["train", "--config", str(config), "--output-dir", str(out), "--max-steps", "2", "--warmup_steps", "0", "--weight_decay=0.05"])
    assert res.exit_code == 0, res.output
    assert "dev exact=" in res.output and "f1=" in res.output
    training = json.loads((out / "train_config.json").read_text())["training"]
    assert training["max_steps"] == 2  # command line beats the file
    assert training["lr_scheduler_type"] == "cosine"  # from the file's training section
    assert training["learning_rate"] == 0.001
    assert training["warmup_steps"] == 0
    assert training["weight_decay"] == 0.05


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max-length", "256", "--stride", "256"], "stride (256) must be smaller"),
        (["--train", "nope/missing.json"], "file not found"),
        (["--columns", "context=reviw"], "applies only to flat files"),
        (["--learnig_rate", "1e-4"], "did you mean '--learning_rate'"),
        (["--learning_rate", "abc"], "invalid float value: 'abc'"),
        (["--on-mismatch", "fix"], "invalid choice: 'fix'"),
    ],
)
def test_bad_options_fail_before_training_with_one_line(extra, message, tiny_bert_dir, sample_train, sample_dev, tmp_path):
    out = tmp_path / "model"
    args = ["train", "--model", str(tiny_bert_dir), "--output-dir", str(out)]
    if "--train" not in extra:
        args += ["--train", str(sample_train), "--eval", str(sample_dev)]
    res = runner.invoke(app, args + extra)
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], res.output
    assert "Traceback" not in res.output
    assert not out.exists() or not any(out.iterdir()), "nothing was trained or written"


def test_unknown_column_in_csv_fails_before_training(tiny_bert_dir, tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text("question,review,answer,answer_start\nWho?,Ann wrote it.,Ann,0\n")
    res = runner.invoke(app, ["train", "--model", str(tiny_bert_dir), "--train", str(csv), "--columns", "context=reviw", "--output-dir", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert res.output.count("error:") == 1 and "column 'reviw' (for context) not found (did you mean 'review'?)" in res.output
    assert not (tmp_path / "o").exists()


def test_unsupported_model_type_fails_with_one_line(tmp_path, sample_train):
    from transformers import CLIPVisionConfig

    folder = tmp_path / "vision"
    CLIPVisionConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16).save_pretrained(folder)
    from conftest import build_wordpiece

    build_wordpiece().save_pretrained(folder)
    res = runner.invoke(app, ["train", "--model", str(folder), "--train", str(sample_train), "--output-dir", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert res.output.count("error:") == 1 and "question-answering head" in res.output, res.output


def test_skip_impossible_trains_on_answerable_only(tiny_bert_dir, sample_train, sample_dev, tmp_path):
    result = train(str(tiny_bert_dir), sample_train, sample_dev, output_dir=str(tmp_path / "m"), max_steps=2, skip_impossible=True, **FAST)
    data = json.loads(Path(sample_train).read_text())
    answerable = sum(1 for a in data["data"] for p in a["paragraphs"] for q in p["qas"] if q["answers"])
    assert result.train_examples == answerable
    assert result.config.handle_impossible is True  # the dev data still has unanswerable questions


def test_training_arguments_subclass_adds_only_qa_fields():
    from dataclasses import fields

    from transformers import TrainingArguments

    added = {f.name for f in fields(SpanQATrainingArguments)} - {f.name for f in fields(TrainingArguments)}
    assert added == {
        "max_length", "stride", "max_question_tokens", "max_answer_length", "n_best", "skip_impossible", "handle_impossible",
        "eval_lang", "early_stopping_patience", "keep_checkpoints", "attention_dropout", "tune_null_threshold",
        "mixed_precision", "cache_features", "distractors",
    }
    for f in fields(SpanQATrainingArguments):
        if f.name in added:
            assert f.metadata.get("help"), f"{f.name} needs help text"
    args = SpanQATrainingArguments(output_dir="x")
    assert args.warmup_steps == 0.1 and args.metric_for_best_model == "f1"


DISTRIBUTED = textwrap.dedent(
    """
    import hashlib, json, os
    import torch
    from spanqa.jobs.training import train

    from transformers import TrainerCallback

    def digest_of(parameters):
        return hashlib.sha256(b"".join(p.detach().cpu().contiguous().numpy().tobytes() for p in parameters)).hexdigest()

    class RememberWeights(TrainerCallback):
        # The trained weights as each rank holds them in memory when training ends.
        def on_train_end(self, args, state, control, model=None, **kwargs):
            self.digest = digest_of(model.parameters())

    memory = RememberWeights()
    result = train({model!r}, {train_data!r}, {eval_data!r}, output_dir={out!r}, max_steps=4,
                   eval_strategy="no", save_strategy="no", load_best_model_at_end=False, max_length=128, stride=32,
                   per_device_train_batch_size=4, learning_rate=1e-3, seed=3, report_to="none", callbacks=[memory])
    from accelerate.state import PartialState
    from transformers import AutoModelForQuestionAnswering
    rank = int(os.environ["RANK"])
    state = PartialState()  # what the Trainer trained with: data-parallel over both processes
    world = state.num_processes if str(state.distributed_type) == "DistributedType.MULTI_CPU" else 1
    model = AutoModelForQuestionAnswering.from_pretrained({out!r})
    digest = digest_of(model.parameters())
    with open(os.path.join({report!r}, f"rank{{rank}}.json"), "w") as handle:
        json.dump({{"world": world, "step": result.global_step, "digest": digest, "memory": memory.digest}}, handle)
    """
)


def test_torchrun_two_cpu_processes_agree(tiny_bert_dir, sample_train, sample_dev, tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    script = tmp_path / "run.py"
    script.write_text(
        DISTRIBUTED.format(model=str(tiny_bert_dir), train_data=str(sample_train), eval_data=str(sample_dev), out=str(tmp_path / "model"), report=str(report))
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533", str(script)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((report / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 for r in ranks)
    assert ranks[0]["step"] == ranks[1]["step"] == 4
    assert ranks[0]["digest"] == ranks[1]["digest"]
    # Every rank saved (collectively); the saved model loads and equals what rank 0 trained.
    assert ranks[0]["memory"] == ranks[1]["memory"] == ranks[0]["digest"]


@needs_shared(XQUAD)
def test_cli_trains_on_xquad_article_split(tiny_bert_dir, tmp_path):
    from spanqa.stages.data import load_examples, save_examples, split_by_title

    head, tail = split_by_title(load_examples(XQUAD / "xquad.en.json"), 36)
    save_examples(head.examples[:60], tmp_path / "train.json")
    save_examples(tail.examples[:30], tmp_path / "eval.json")
    res = _run(["train", "--model", str(tiny_bert_dir), "--train", str(tmp_path / "train.json"), "--eval", str(tmp_path / "eval.json"),
                "--output-dir", str(tmp_path / "m"), "--max-steps", "2", "--max-length", "256", "--stride", "64"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    # v1.1 data: the v1.1 script's keys, the fitted temperature, and F1 over the eval paragraphs' index by passages read
    assert set(metrics) == {"exact_match", "f1", "calibration", "open_domain"}
    assert "dev F1 from its paragraphs' index by passages read  1: " in res.output


@needs_shared(SUBJQA)
def test_cli_trains_on_subjqa_csv_with_mapping(tiny_bert_dir, tmp_path):
    import pandas as pd

    for split, n in (("train", 80), ("dev", 40)):
        pd.read_csv(SUBJQA / "electronics" / f"{split}.csv").head(n).to_csv(tmp_path / f"{split}.csv", index=False)
    res = _run([
        "train", "--model", str(tiny_bert_dir), "--train", str(tmp_path / "train.csv"), "--eval", str(tmp_path / "dev.csv"),
        "--columns", "context=review,answer_text=human_ans_spans,answer_start=human_ans_indices",
        "--no-answer-marker", "ANSWERNOTFOUND", "--version-2", "--output-dir", str(tmp_path / "m"),
        "--max-steps", "2", "--max-length", "256", "--stride", "64",
    ])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["NoAns_total"] > 0 and metrics["HasAns_total"] > 0


@pytest.mark.integration
def test_default_model_trains_saves_and_reloads(tmp_path):
    """The embedded default (minilm) through the whole path, kept short: a few steps on sample questions."""
    from spanqa.jobs.training import sample_data_path
    from spanqa.stages.data import load_examples

    train_set = load_examples(sample_data_path("train"))
    dev_set = load_examples(sample_data_path("dev"))
    train_set = train_set.subset(train_set.examples[:24])
    dev_set = dev_set.subset(dev_set.examples[:12])
    out = tmp_path / "minilm-qa"
    result = train("minilm", train_set, dev_set, output_dir=str(out), max_steps=3, max_length=192, stride=48, per_device_train_batch_size=8)
    assert result.global_step == 3 and "f1" in result.metrics
    from transformers import AutoModelForQuestionAnswering

    model = AutoModelForQuestionAnswering.from_pretrained(out)
    assert model.config.num_hidden_layers == 6
    again = evaluate(str(out), dev_set)
    assert again.metrics["f1"] == pytest.approx(result.metrics["f1"], abs=1e-9)


def test_evaluation_keeps_window_order_with_length_grouped_training(tiny_bert_dir, sample_dev, tmp_path):
    """transformers shuffles eval batches under group_by_length; spanqa's Trainer must not."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from spanqa.jobs.training import SpanQATrainer
    from spanqa.stages.data import load_examples
    from spanqa.stages.features import WindowConfig, build_features

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    features = build_features(load_examples(sample_dev).examples, tokenizer, WindowConfig(128, 32))
    dataset = features.to_dataset()
    assert len(set(features.lengths.tolist())) > 5, "lengths vary, so grouping would reorder"
    args = SpanQATrainingArguments(output_dir=str(tmp_path), train_sampling_strategy="group_by_length", report_to="none")
    trainer = SpanQATrainer(model=AutoModelForQuestionAnswering.from_pretrained(tiny_bert_dir), args=args, processing_class=tokenizer, eval_dataset=dataset)
    assert list(trainer._get_eval_sampler(dataset)) == list(range(len(dataset)))


def test_evaluator_refuses_predictions_out_of_window_order(tiny_bert_dir, sample_dev):
    from types import SimpleNamespace

    import numpy as np
    from transformers import AutoTokenizer

    from spanqa.jobs.training import QAEvaluator
    from spanqa.stages.data import load_examples
    from spanqa.stages.decode import DecodeConfig
    from spanqa.stages.features import WindowConfig, build_features

    examples = load_examples(sample_dev).examples
    features = build_features(examples, AutoTokenizer.from_pretrained(tiny_bert_dir), WindowConfig(128, 32))
    evaluator = QAEvaluator(examples, features, DecodeConfig(handle_impossible=True), version_2=True)
    logits = np.zeros((len(features), int(features.lengths.max())))
    in_order = SimpleNamespace(predictions=(logits, logits), label_ids=(features.start_positions, features.end_positions))
    assert "f1" in evaluator(in_order)
    shuffled = np.random.default_rng(0).permutation(len(features))
    out_of_order = SimpleNamespace(predictions=(logits, logits), label_ids=(features.start_positions[shuffled], features.end_positions[shuffled]))
    with pytest.raises(RuntimeError, match="not in the order"):
        evaluator(out_of_order)


def _weights_digest(folder: Path) -> str:
    import hashlib

    from safetensors.numpy import load_file

    weights = load_file(str(folder / "model.safetensors"))
    return hashlib.sha256(b"".join(weights[k].tobytes() for k in sorted(weights))).hexdigest()


def test_same_seed_trains_the_same_model_from_a_bare_encoder(bare_encoder_dir, sample_train, tmp_path):
    settings = {**FAST, "max_steps": 2}
    runs = {
        name: train(str(bare_encoder_dir), sample_train, output_dir=str(tmp_path / name), **{**settings, "seed": seed})
        for name, seed in (("a", 7), ("b", 7), ("c", 8))
    }
    assert runs["a"].history  # it trained
    assert _weights_digest(tmp_path / "a") == _weights_digest(tmp_path / "b")
    assert _weights_digest(tmp_path / "a") != _weights_digest(tmp_path / "c")


def test_data_options_travel_with_the_data(tiny_bert_dir, tmp_path):
    from spanqa.core.errors import ConfigError
    from spanqa.stages.data import DataSource

    with pytest.raises(ConfigError, match="'columns' describes the data: pass train_data/eval_data as DataSource"):
        train(str(tiny_bert_dir), "train.csv", columns={"context": "review"}, output_dir=str(tmp_path / "o"))
    csv = tmp_path / "train.csv"
    csv.write_text("question,review,answer,answer_start\nWho?,Ann wrote it.,Ann,0\n")
    with pytest.raises(Exception, match="column 'reviw' \\(for context\\) not found"):
        train(str(tiny_bert_dir), DataSource.of(csv, "context=reviw"), output_dir=str(tmp_path / "o"))
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


# A one-step run with small windows: what the tests below need of training.
ONE_STEP = {
    "max_length": 128, "stride": 32, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 16, "logging_steps": 5,
    "learning_rate": 1e-3, "seed": 7,
}


def test_overwrite_replaces_the_whole_earlier_run(tiny_bert_dir, sample_train, sample_dev, tmp_path):
    out = tmp_path / "model"
    train(str(tiny_bert_dir), sample_train, sample_dev, output_dir=str(out), max_steps=1, **ONE_STEP)
    assert (out / "metrics.json").is_file() and (out / "eval").is_dir()
    train(str(tiny_bert_dir), sample_train, output_dir=str(out), max_steps=1, overwrite=True, **ONE_STEP)  # no eval data this time
    assert not (out / "metrics.json").exists() and not (out / "eval").exists()
    assert (out / "model.safetensors").is_file()


def test_explicit_learning_rate_equal_to_the_small_model_default_is_kept(tiny_bert_dir, sample_train, tmp_path, monkeypatch):
    from spanqa.jobs import training

    monkeypatch.setattr(training, "_auto_learning_rate", lambda n: 5e-5)  # as for a model over 40M parameters
    settings = {**ONE_STEP, "learning_rate": 2e-4}
    train(str(tiny_bert_dir), sample_train, output_dir=str(tmp_path / "a"), max_steps=1, **settings)
    assert json.loads((tmp_path / "a" / "train_config.json").read_text())["training"]["learning_rate"] == 2e-4
    args = SpanQATrainingArguments(output_dir=str(tmp_path / "c"), max_steps=1, **settings)  # the same, as an object
    train(str(tiny_bert_dir), sample_train, args=args)
    assert json.loads((tmp_path / "c" / "train_config.json").read_text())["training"]["learning_rate"] == 2e-4
    unset = {k: v for k, v in ONE_STEP.items() if k != "learning_rate"}
    train(str(tiny_bert_dir), sample_train, output_dir=str(tmp_path / "b"), max_steps=1, **unset)
    assert json.loads((tmp_path / "b" / "train_config.json").read_text())["training"]["learning_rate"] == 5e-5
