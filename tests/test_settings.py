"""Settings declared once and parsed by HfArgumentParser; saving through the Trainer; the bugs a review found."""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import fields
from pathlib import Path

import pytest
from typer.testing import CliRunner

import spanqa
from spanqa import (
    DecodeConfig,
    Reader,
    SpanQAConfig,
    WindowConfig,
    load_examples,
)
from spanqa.core.config import DEFAULTS
from spanqa.core.errors import ConfigError
from spanqa.interfaces.cli import app
from spanqa.jobs.arguments import (
    SpanQATrainingArguments,
    build_training_arguments,
    parse_train_args,
)
from spanqa.jobs.training import train

FAST = {
    "max_length": 128, "stride": 32, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 16, "logging_steps": 5,
    "learning_rate": 1e-3, "seed": 7,
}
SRC = Path(spanqa.__file__).parent
runner = CliRunner()


# ---------------------------------------------------------------- each setting declared once


@pytest.mark.parametrize("pattern", [r"\b384\b", r"\b128\b"])
def test_window_defaults_are_written_only_in_the_config(pattern):
    hits = [
        f"{path.name}:{n}"
        for path in sorted(SRC.rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(pattern, line)
    ]
    assert len(hits) == 1 and hits[0].startswith("config.py:"), hits


def test_every_default_follows_the_config():
    assert WindowConfig() == SpanQAConfig().window
    assert DecodeConfig(handle_impossible=False) == SpanQAConfig().decode_config()
    args = SpanQATrainingArguments(output_dir="x")
    for name in ("max_length", "stride", "max_question_tokens", "max_answer_length", "n_best"):
        assert getattr(args, name) == getattr(DEFAULTS, name), name


def test_one_no_answer_rule_everywhere():
    from spanqa.stages.decode import abstains

    assert abstains(2.0, 1.0, 0.5) and not abstains(2.0, 1.0, 1.0) and not abstains(1.0, 2.0, 0.0)
    rule = re.compile(r"null_(score|odds)\s*(-\s*\w+\s*)?>\s*\w*threshold")
    written = [(path.name, len(rule.findall(path.read_text(encoding="utf-8")))) for path in sorted(SRC.rglob("*.py"))]
    assert [(name, n) for name, n in written if n] == [("decode.py", 1)]  # inside abstains()
    softmax = [path.name for path in sorted(SRC.rglob("*.py")) if "np.exp(" in path.read_text(encoding="utf-8")]
    # normalize_scores (and its shares); pipeline_decode is transformers 4.x's own per-window float32 softmax,
    # reproduced on purpose for the pipeline's scores="transformers" (its numbers, not spanqa's rule).
    assert softmax == ["decode.py", "pipeline_decode.py"]


# ---------------------------------------------------------------- HfArgumentParser


def test_yaml_file_and_command_line_give_typed_values(tiny_bert_dir, sample_train, sample_dev, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            model: {tiny_bert_dir}
            train: {sample_train}
            eval: {sample_dev}
            max_length: 128
            stride: 32
            learning_rate: 1e-4
            max_steps: 1
            eval_strategy: no
            save_strategy: no
            """
        )
    )
    for extra, expected in (([], 1e-4), (["--learning_rate", "3e-4"], 3e-4)):
        out = tmp_path / f"model-{len(extra)}"
        res = runner.invoke(app, ["train", "--config", str(config), "--output-dir", str(out), *extra], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        training = json.loads((out / "train_config.json").read_text())["training"]
        assert isinstance(training["learning_rate"], float) and training["learning_rate"] == expected
        assert training["eval_strategy"] == "no" and training["save_strategy"] == "no"  # not YAML 1.1's False


def test_parser_types_values_from_every_source(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"learning_rate": "1e-4", "epochs": 2, "report_to": ["none"], "save_total_limit": None}))
    data, args = parse_train_args(["--config", str(config), "--batch-size", "4", "--version-2", "-m", "some/model"])
    assert args.learning_rate == 1e-4 and args.num_train_epochs == 2.0 and args.per_device_train_batch_size == 4
    assert args.handle_impossible is True and args.save_total_limit is None and data.model == "some/model"
    assert build_training_arguments({"learning_rate": "2e-5", "warmup": 0}).learning_rate == 2e-5
    # version_2, the old name of handle_impossible, still works: on the command line, in a file, as a keyword.
    old_name = tmp_path / "old.yaml"
    old_name.write_text("version_2: false\n")
    assert parse_train_args(["--config", str(old_name)])[1].handle_impossible is False
    assert parse_train_args(["--handle-impossible"])[1].handle_impossible is True
    assert build_training_arguments({"version_2": True}).handle_impossible is True
    with pytest.raises(ConfigError, match="invalid float value: 'abc'"):
        parse_train_args(["--learning_rate", "abc"])
    with pytest.raises(ConfigError, match="did you mean '--num_train_epochs'"):
        parse_train_args(["--num_train_epoch", "3"])


def test_help_all_lists_every_training_argument():
    from transformers import TrainingArguments

    res = runner.invoke(app, ["train", "--help-all"])
    assert res.exit_code == 0
    missing = [f.name for f in fields(TrainingArguments) if f.init and f"--{f.name}" not in res.output]
    assert not missing
    res = runner.invoke(app, ["train", "--help"])  # the short help: spanqa's settings and the usual ones
    assert res.exit_code == 0
    for alias in ("--epochs", "--batch-size", "--lr", "--train", "--eval", "--config", "--overwrite", "--resume", "--help-all"):
        assert alias in res.output


# ---------------------------------------------------------------- saving through the Trainer


@pytest.fixture(scope="module")
def kept_run(tiny_bert_dir, tmp_path_factory):
    from conftest import sample_path

    out = tmp_path_factory.mktemp("run") / "model"
    result = train(
        str(tiny_bert_dir), sample_path("train"), sample_path("dev"), output_dir=str(out), num_train_epochs=2,
        keep_checkpoints=True, tune_null_threshold=False, **FAST,
    )
    return out, result


def test_every_checkpoint_carries_the_runs_settings(kept_run):
    out, _ = kept_run
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert checkpoints
    for folder in checkpoints:
        saved = SpanQAConfig.load(folder)
        assert (folder / "spanqa.json").is_file(), folder
        assert saved.handle_impossible is True and saved.max_length == 128 and saved.stride == 32


def test_best_checkpoint_abstains_exactly_as_the_final_model(kept_run, sample_dev):
    out, _ = kept_run
    best = json.loads((max(out.glob("checkpoint-*")) / "trainer_state.json").read_text())["best_model_checkpoint"]
    examples = load_examples(sample_dev).examples
    final = [p.is_impossible for p in Reader.from_pretrained(out).predict_examples(examples)]
    from_checkpoint = [p.is_impossible for p in Reader.from_pretrained(best).predict_examples(examples)]
    assert any(final), "the model abstains on some unanswerable question"
    assert from_checkpoint == final


def test_push_to_hub_happens_once_after_every_file_exists(tiny_bert_dir, sample_train, sample_dev, tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import ModelCard
    from huggingface_hub.utils import validate_repo_id
    from transformers import Trainer

    uploads: list[dict] = []

    def create_repo(self, repo_id, **kwargs):
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        uploads.append({
            "repo_id": repo_id,
            "files": sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()),
            "card": (folder / "README.md").read_text(),
            "spanqa": json.loads((folder / "spanqa.json").read_text()),
            "metrics": json.loads((folder / "metrics.json").read_text()),
        })
        return "https://huggingface.co/me/model/commit/1"

    def refuse(*args, **kwargs):
        raise AssertionError("Trainer must not push by itself")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(Trainer, "push_to_hub", refuse)
    monkeypatch.setattr(Trainer, "init_hf_repo", refuse)
    out = tmp_path / "model"
    train(str(tiny_bert_dir), sample_train, sample_dev, output_dir=str(out), num_train_epochs=1, push_to_hub=True, hub_model_id="me/model", **FAST)

    assert len(uploads) == 1
    upload = uploads[0]
    assert upload["repo_id"] == "me/model"
    assert {"spanqa.json", "metrics.json", "README.md", "model.safetensors", "config.json"} <= set(upload["files"])
    assert not any(name.startswith("checkpoint-") for name in upload["files"])
    assert upload["spanqa"]["handle_impossible"] is True and upload["metrics"]["f1"] >= 0
    card = ModelCard(upload["card"])
    assert card.data.pipeline_tag == "question-answering"
    assert card.data.base_model is None  # a local folder is not a hub id
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results["F1"] == pytest.approx(upload["metrics"]["f1"], abs=1e-3)
    for name in card.data.datasets or []:
        validate_repo_id(name)
    settings = json.loads((out / "train_config.json").read_text())
    assert settings["training"]["push_to_hub"] is True


# ---------------------------------------------------------------- mixed precision


@pytest.mark.parametrize("fast_bf16, expected", [(True, (True, False)), (False, (False, False))])
def test_mixed_precision_follows_what_the_cpu_runs_fast(fast_bf16, expected, monkeypatch):
    import torch

    import spanqa.runtime.devices as devices

    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: fast_bf16)
    _, args = parse_train_args([])
    assert (args.bf16, args.fp16) == expected
    _, args = parse_train_args(["--no-mixed-precision"])
    assert (args.bf16, args.fp16) == (False, False)
    _, args = parse_train_args(["--bf16"])
    assert (args.bf16, args.fp16) == (True, False)


def test_gpu_precision_and_attention_choices(monkeypatch):
    import torch

    import spanqa.runtime.devices as devices

    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert devices.auto_mixed_precision(use_cpu=False) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert devices.auto_mixed_precision(use_cpu=False) == "fp16"  # pre-Ampere: fp16 with loss scaling
    assert devices.pad_multiple("cuda:0") == 8 and devices.pad_multiple("cpu") is None
    with devices.attention_kernels("cpu"):
        pass  # a no-op off CUDA


# ---------------------------------------------------------------- server settings from the command line


def test_serve_settings_from_the_command_line_and_environment(monkeypatch):
    import spanqa.interfaces.serve as serve

    calls: list[dict] = []
    monkeypatch.setattr(serve, "run_server", lambda model, **kwargs: calls.append({"model": model, **kwargs}))
    monkeypatch.setenv("SPANQA_SERVE_MAX_WAIT_MS", "2")
    res = runner.invoke(app, ["serve", "my-model", "--max-batch", "7", "--threads=1", "--backend", "onnx"])
    assert res.exit_code == 0, res.output
    settings = calls[0]["settings"]
    assert (settings.max_batch, settings.threads, settings.max_wait_ms) == (7, 1, 2.0)  # command line, environment
    assert calls[0]["load"].backend == "onnx" and calls[0]["model"] == "my-model"
    res = runner.invoke(app, ["serve", "my-model", "--max-bach", "7"])
    assert res.exit_code == 1 and "--max-batch" in res.output  # a usage error (one error: line), suggesting the option
    res = runner.invoke(app, ["serve", "--list-settings"])
    assert res.exit_code == 0 and "SPANQA_SERVE_MAX_BATCH" in res.output


def test_null_on_the_command_line_means_none_and_beats_the_file(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("attention_dropout: 0.1\nsave_total_limit: 3\n")
    _, args = parse_train_args(["--config", str(config)])
    assert (args.attention_dropout, args.save_total_limit) == (0.1, 3)
    _, args = parse_train_args(["--config", str(config), "--attention_dropout", "null", "--save_total_limit=None"])
    assert (args.attention_dropout, args.save_total_limit) == (None, None)
