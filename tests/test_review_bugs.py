"""The bugs a review found (issue 13, item 5): each test fails on the code before its fix."""

from __future__ import annotations

import json

import pytest

from spanqa import Reader, SpanQAConfig, evaluate, load_examples
from spanqa.errors import ConfigError
from spanqa.training import SpanQATrainingArguments, train

FAST = {
    "max_length": 128, "stride": 32, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 16, "logging_steps": 5,
    "learning_rate": 1e-3, "seed": 7,
}
DEFAULT_MAX_LENGTH = SpanQAConfig().max_length


def test_overwrite_replaces_the_whole_earlier_run(tiny_bert_dir, sample_train, sample_dev, tmp_path):
    out = tmp_path / "model"
    train(str(tiny_bert_dir), sample_train, sample_dev, output_dir=str(out), max_steps=1, **FAST)
    assert (out / "metrics.json").is_file() and (out / "eval").is_dir()
    train(str(tiny_bert_dir), sample_train, output_dir=str(out), max_steps=1, overwrite=True, **FAST)  # no eval data this time
    assert not (out / "metrics.json").exists() and not (out / "eval").exists()
    assert (out / "model.safetensors").is_file()


def test_explicit_learning_rate_equal_to_the_small_model_default_is_kept(tiny_bert_dir, sample_train, tmp_path, monkeypatch):
    from spanqa import training

    monkeypatch.setattr(training, "_auto_learning_rate", lambda n: 5e-5)  # as for a model over 40M parameters
    settings = {**FAST, "learning_rate": 2e-4}
    train(str(tiny_bert_dir), sample_train, output_dir=str(tmp_path / "a"), max_steps=1, **settings)
    assert json.loads((tmp_path / "a" / "train_config.json").read_text())["training"]["learning_rate"] == 2e-4
    args = SpanQATrainingArguments(output_dir=str(tmp_path / "c"), max_steps=1, **settings)  # the same, as an object
    train(str(tiny_bert_dir), sample_train, args=args)
    assert json.loads((tmp_path / "c" / "train_config.json").read_text())["training"]["learning_rate"] == 2e-4
    unset = {k: v for k, v in FAST.items() if k != "learning_rate"}
    train(str(tiny_bert_dir), sample_train, output_dir=str(tmp_path / "b"), max_steps=1, **unset)
    assert json.loads((tmp_path / "b" / "train_config.json").read_text())["training"]["learning_rate"] == 5e-5


def test_evaluate_applies_overrides_to_a_given_reader(tiny_bert_dir, sample_dev):
    reader = Reader.from_pretrained(tiny_bert_dir)
    overrides = {"max_length": 48, "stride": 8, "max_question_tokens": 16}
    via_reader = evaluate(reader, sample_dev, max_length=96, stride=16)
    via_name = evaluate(str(tiny_bert_dir), sample_dev, max_length=96, stride=16)
    default = evaluate(reader, sample_dev)
    assert [p.candidates for p in via_reader.predictions] == [p.candidates for p in via_name.predictions]
    assert [p.candidates for p in via_reader.predictions] != [p.candidates for p in default.predictions]
    assert reader.config.max_length == DEFAULT_MAX_LENGTH  # the given reader is left as it was
    assert Reader.from_pretrained(tiny_bert_dir, **overrides).config.max_question_tokens == 16


def test_save_threshold_alone_tunes_and_saves(tiny_bert_dir, sample_dev, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    result = evaluate(str(model), sample_dev, save_threshold=True)
    assert result.tuning is not None
    assert SpanQAConfig.load(model).null_threshold == result.tuning.threshold


def test_threshold_preconditions_are_checked_before_predicting(tiny_bert_dir, sample_dev, tmp_path, monkeypatch):
    from spanqa.data import save_examples

    v1 = tmp_path / "v1.json"
    save_examples([ex for ex in load_examples(sample_dev).examples if ex.answers], v1)
    reader = Reader.from_pretrained(tiny_bert_dir)

    def boom(*args, **kwargs):
        raise AssertionError("predicted before checking the options")

    monkeypatch.setattr(Reader, "predict_examples", boom)
    with pytest.raises(ConfigError, match="needs SQuAD v2 style data"):
        evaluate(reader, v1, tune_threshold=True)
    with pytest.raises(ConfigError, match="needs a local model folder"):
        evaluate(reader, sample_dev, save_threshold=True)
