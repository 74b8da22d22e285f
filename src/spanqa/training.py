"""Fine-tuning on :class:`transformers.Trainer`, evaluated with the real SQuAD metrics.

The Trainer is used as is (so ``accelerate launch``, ``torchrun``, DeepSpeed,
FSDP, mixed precision, checkpointing and logging integrations all work); spanqa
adds its own arguments (:class:`SpanQATrainingArguments`), the QA evaluator
passed as ``compute_metrics`` and the saved outputs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from transformers import Trainer, TrainingArguments

from .config import SpanQAConfig
from .data import ColumnMapping, MismatchPolicy, QADataset, QAExample, load_examples
from .decode import DecodeConfig, decode
from .errors import ConfigError, did_you_mean
from .features import Features, WindowConfig, build_features
from .io import atomic_open, write_json

__all__ = [
    "SpanQATrainer",
    "SpanQATrainingArguments",
    "QAEvaluator",
    "TrainResult",
    "train",
    "sample_data_path",
    "find_resumable_checkpoint",
    "load_config_file",
]

logger = logging.getLogger(__name__)


@dataclass
class SpanQATrainingArguments(TrainingArguments):
    """:class:`~transformers.TrainingArguments` plus extractive-QA settings.

    Defaults differ from Trainer's where measurement showed better QA results for
    small encoders on small data (all-MiniLM-L6 on XQuAD-en: F1 18.5 with the
    notebook recipe, 44 with these): lr 2e-4, 8 epochs, 10% warmup, evaluation
    and checkpoints each epoch, the best F1 kept.
    """

    output_dir: str | None = field(default="spanqa-model", metadata={"help": "Where the model, checkpoints and metrics go."})
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate (spanqa picks a smaller one for large models unless set)."})
    num_train_epochs: float = field(default=8.0, metadata={"help": "Passes over the training data."})
    warmup_steps: float = field(default=0.1, metadata={"help": "Warmup: a ratio in [0, 1) of all steps, or a number of steps."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Training windows per device per step."})
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "Evaluation windows per device."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to compute EM/F1: 'no', 'steps' or 'epoch'."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save a checkpoint: 'no', 'steps', 'epoch' or 'best'."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Keep the checkpoint with the best metric_for_best_model."})
    metric_for_best_model: str | None = field(default="f1", metadata={"help": "Metric that picks the best checkpoint."})
    greater_is_better: bool | None = field(default=True, metadata={"help": "Whether a larger metric_for_best_model is better."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Most checkpoints kept on disk (the best is always kept)."})
    logging_steps: float = field(default=10, metadata={"help": "Log the loss every N steps."})
    label_names: list[str] | None = field(default_factory=lambda: ["start_positions", "end_positions"], metadata={"help": "Label fields."})
    train_sampling_strategy: str = field(
        default="group_by_length",
        metadata={"help": "Batches of similar window lengths pad less: 'group_by_length' (default), 'random', 'sequential'."},
    )

    max_length: int = field(default=384, metadata={"help": "Window length in tokens (question + context + special tokens)."})
    stride: int = field(default=128, metadata={"help": "Tokens shared by neighbouring windows of a long context."})
    max_question_tokens: int = field(default=64, metadata={"help": "Longer questions are cut to this many tokens."})
    max_answer_length: int = field(default=30, metadata={"help": "Longest answer considered, in tokens."})
    n_best: int = field(default=20, metadata={"help": "Candidate answers kept per question."})
    skip_impossible: bool = field(default=False, metadata={"help": "Train only on answerable questions (the XLM-R/UQA recipe)."})
    version_2: bool | None = field(default=None, metadata={"help": "Allow 'no answer' (SQuAD v2); default: detected from the data."})
    eval_lang: str = field(default="squad", metadata={"help": "Answer normalisation for EM/F1: 'squad' or a language code."})
    early_stopping_patience: int | None = field(default=None, metadata={"help": "Stop after N evaluations without F1 improving."})
    keep_checkpoints: bool = field(default=False, metadata={"help": "Keep checkpoint folders after a successful run."})
    tune_null_threshold: bool = field(
        default=True,
        metadata={"help": "On v2 data, tune the no-answer threshold for F1 on the eval data and save it in spanqa.json."},
    )
    attention_dropout: float | None = field(
        default=0.0,
        metadata={
            "help": "Attention-probability dropout while fine-tuning. 0 lets PyTorch use its fused attention "
            "kernels (2-4x faster steps on CPU); None keeps the model's own value."
        },
    )

    def __post_init__(self) -> None:
        import torch

        if not torch.accelerator.is_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator; avoids a warning per epoch
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                # Under torchrun on CPU-only machines accelerate runs each process alone (no DDP)
                # unless told the device is the CPU; then it uses gloo and really shards the data.
                self.use_cpu = True
        super().__post_init__()

    @property
    def window(self) -> WindowConfig:
        return WindowConfig(self.max_length, self.stride, self.max_question_tokens)


SPANQA_FIELDS = frozenset(f.name for f in fields(SpanQATrainingArguments)) - frozenset(f.name for f in fields(TrainingArguments))


class QAEvaluator:
    """EM/F1 from a Trainer's gathered logits, through the core decode and metrics.

    Passed to Trainer as ``compute_metrics``: it holds the evaluation examples
    and their windows, so the Trainer itself needs no QA-specific changes.
    """

    def __init__(self, examples: list[QAExample], features: Features, decode_config: DecodeConfig, version_2: bool, lang: str = "squad") -> None:
        self.examples = examples
        self.features = features
        self.decode_config = decode_config
        self.version_2 = version_2
        self.lang = lang

    def __call__(self, eval_prediction: Any) -> dict[str, float]:
        from .evaluate import score_decoded

        start_logits, end_logits = eval_prediction.predictions[:2]
        self._check_order(eval_prediction.label_ids)
        predictions = decode(self.examples, self.features, np.asarray(start_logits), np.asarray(end_logits), self.decode_config)
        report = score_decoded(self.examples, predictions, version_2=self.version_2, lang=self.lang)
        return {k: float(v) for k, v in report.metrics.items()}


    def _check_order(self, label_ids: Any) -> None:
        """Logits are matched to windows by position; the gathered labels prove the order held."""
        if label_ids is None:
            return
        starts = np.asarray(label_ids[0] if isinstance(label_ids, (tuple, list)) else label_ids).reshape(-1)
        if starts.shape[0] != len(self.features) or not np.array_equal(starts, self.features.start_positions):
            raise RuntimeError(
                "evaluation predictions are not in the order of the evaluation windows "
                f"({starts.shape[0]} rows for {len(self.features)} windows); the eval sampler must be sequential"
            )


class SpanQATrainer(Trainer):
    """:class:`~transformers.Trainer` whose evaluation keeps the dataset order.

    transformers applies ``train_sampling_strategy="group_by_length"`` to
    evaluation too, which shuffles windows; QA decoding maps logits back to
    windows by position, so evaluation stays sequential (distributed runs keep
    Trainer's own ordered sharding).
    """

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_eval_sampler(eval_dataset)
        from torch.utils.data import SequentialSampler

        if eval_dataset is None or self.args.world_size > 1:
            return None
        return SequentialSampler(eval_dataset)


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    output_dir: Path
    metrics: dict[str, Any]
    config: SpanQAConfig
    train_examples: int
    eval_examples: int
    global_step: int
    training_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def sample_data_path(split: str) -> Path:
    """The small sample dataset shipped with spanqa (written for it; SQuAD v2 JSON)."""
    from importlib import resources

    return Path(str(resources.files("spanqa") / "sample_data" / f"{split}.json"))


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON file of :func:`train` parameters and TrainingArguments fields."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as err:  # yaml and json raise different types
        raise ConfigError(f"{path}: cannot parse ({str(err).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key == "training" and isinstance(value, dict):  # optional section for TrainingArguments fields
            flat.update(value)
        else:
            flat[key] = value
    return flat


_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def find_resumable_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest checkpoint whose save finished (its trainer_state.json, written last, parses)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    found = sorted(
        ((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name))),
        reverse=True,
    )
    for _, path in found:
        state = path / "trainer_state.json"
        try:
            json.loads(state.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            logger.warning("skipping incomplete checkpoint %s", path)
            continue
        return path
    return None


def _auto_learning_rate(num_parameters: int) -> float:
    """Small encoders want a larger rate; base/large models diverge with it."""
    if num_parameters <= 40_000_000:
        return 2e-4
    if num_parameters <= 150_000_000:
        return 5e-5
    return 2e-5


TRAIN_PARAMETERS = frozenset(
    {"model", "train_data", "eval_data", "columns", "no_answer_marker", "on_mismatch", "train_split", "eval_split", "resume", "overwrite"}
)


def build_training_arguments(settings: Mapping[str, Any]) -> SpanQATrainingArguments:
    """SpanQATrainingArguments from a flat mapping, rejecting unknown names with a hint."""
    known = {f.name for f in fields(SpanQATrainingArguments) if f.init}
    for key in settings:
        if key not in known:
            raise ConfigError(f"unknown training setting {key!r}{did_you_mean(key, known | TRAIN_PARAMETERS)}")
    try:
        return SpanQATrainingArguments(**settings)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"invalid training settings: {str(err).strip().splitlines()[0]}") from None


def train(
    model: str = "minilm",
    train_data: str | Path | QADataset | None = None,
    eval_data: str | Path | QADataset | None = None,
    *,
    args: SpanQATrainingArguments | None = None,
    columns: ColumnMapping | Mapping[str, str] | None = None,
    no_answer_marker: str | None = None,
    on_mismatch: MismatchPolicy = "repair",
    train_split: str | None = None,
    eval_split: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: list[Any] | None = None,
    **training_settings: Any,
) -> TrainResult:
    """Fine-tune ``model`` for extractive QA and save it, evaluated, in ``args.output_dir``.

    With no data it trains on the sample dataset shipped with spanqa. Any
    TrainingArguments field can be given as a keyword (``num_train_epochs=3``)
    or through ``args``; ``callbacks`` are extra :class:`transformers.TrainerCallback` objects.
    """
    import time

    if args is None:
        args = build_training_arguments(training_settings)
        explicit = set(training_settings)
    else:
        if training_settings:
            args = build_training_arguments({**_explicit_fields(args), **training_settings})
        explicit = set(_explicit_fields(args)) | set(training_settings)
    window = args.window  # validates max_length / stride before anything is loaded
    DecodeConfig(n_best=args.n_best, max_answer_length=args.max_answer_length)
    output_dir = Path(args.output_dir or "spanqa-model")
    checkpoint = _prepare_output_dir(output_dir, resume=resume, overwrite=overwrite, is_main=args.process_index == 0)

    column_map = columns if isinstance(columns, ColumnMapping) else ColumnMapping.from_mapping(columns)
    if no_answer_marker:
        column_map = replace(column_map, no_answer_marker=no_answer_marker)
    mapping = {k: v for k, v in vars(column_map).items() if v is not None}
    if train_data is None:
        train_data = sample_data_path("train")
        if eval_data is None:
            eval_data = sample_data_path("dev")
    train_set = _as_dataset(train_data, mapping, on_mismatch, train_split)
    eval_set = _as_dataset(eval_data, mapping, on_mismatch, eval_split) if eval_data is not None else None

    from transformers import enable_full_determinism, set_seed

    from .models import load_qa_model, load_tokenizer

    tokenizer = load_tokenizer(model)
    # A base encoder gets a freshly initialised QA head when it loads, before Trainer seeds
    # anything: seed first, or the same command trains a different model each run.
    (enable_full_determinism if args.full_determinism else set_seed)(args.seed)
    qa_model = load_qa_model(model, attention_dropout=args.attention_dropout)
    window.check_model_limit(tokenizer, getattr(qa_model.config, "max_position_embeddings", None))
    if "learning_rate" not in explicit:
        args = replace(args, learning_rate=_auto_learning_rate(qa_model.num_parameters()))
        logger.info("learning rate %.0e (picked for a model of %.0fM parameters; set learning_rate to override)", args.learning_rate, qa_model.num_parameters() / 1e6)

    version_2 = args.version_2
    if version_2 is None:
        version_2 = (eval_set.version_2 if eval_set is not None else False) or (train_set.version_2 and not args.skip_impossible)
    train_examples = [ex for ex in train_set.examples if not (args.skip_impossible and ex.is_impossible)]
    if not train_examples:
        raise ConfigError(f"{train_set.source}: no answerable questions to train on")
    train_features = build_features(train_examples, tokenizer, window)
    decode_config = DecodeConfig(n_best=args.n_best, max_answer_length=args.max_answer_length, allow_impossible=version_2)

    evaluator = None
    eval_dataset = None
    if eval_set is not None:
        eval_features = build_features(eval_set.examples, tokenizer, window)
        eval_dataset = eval_features.to_dataset(with_labels=True)
        evaluator = QAEvaluator(eval_set.examples, eval_features, decode_config, version_2, args.eval_lang)
    else:
        logger.warning("no evaluation data: training without EM/F1 and keeping the last checkpoint")
        save_strategy = "epoch" if args.save_strategy == "best" else args.save_strategy
        args = replace(args, eval_strategy="no", load_best_model_at_end=False, save_strategy=save_strategy)

    from transformers import DataCollatorWithPadding, EarlyStoppingCallback

    callbacks = list(callbacks or [])
    if args.early_stopping_patience and eval_set is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
    trainer = SpanQATrainer(
        model=qa_model,
        args=args,
        train_dataset=train_features.to_dataset(with_labels=True),
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=evaluator,
        callbacks=callbacks,
    )
    started = time.monotonic()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.monotonic() - started

    spanqa_config = SpanQAConfig(
        max_length=args.max_length,
        stride=args.stride,
        max_question_tokens=args.max_question_tokens,
        max_answer_length=args.max_answer_length,
        n_best=args.n_best,
        null_threshold=0.0,
        version_2=version_2,
        data_fingerprint=train_set.fingerprint(),
    )
    metrics: dict[str, Any] = {}
    if trainer.is_world_process_zero():
        _save_final(trainer, output_dir)
        if eval_set is not None:
            metrics = _final_evaluation(trainer, tokenizer, spanqa_config, eval_set, decode_config, args, output_dir)
        spanqa_config.save(output_dir)
        settings = {
            "model": model,
            "train_data": train_set.source,
            "eval_data": eval_set.source if eval_set else None,
            "columns": mapping,
            "on_mismatch": on_mismatch,
            "train_examples": len(train_examples),
            "eval_examples": len(eval_set) if eval_set else 0,
            "training": _serialisable(args.to_dict()),
        }
        write_json(output_dir / "train_config.json", settings)
        _write_model_card(output_dir, settings, metrics, spanqa_config, trainer.state.global_step, seconds)
        if not args.keep_checkpoints:
            for path in output_dir.glob("checkpoint-*"):
                shutil.rmtree(path, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    history = [dict(entry) for entry in trainer.state.log_history]
    return TrainResult(
        output_dir=output_dir,
        metrics=metrics,
        config=spanqa_config,
        train_examples=len(train_examples),
        eval_examples=len(eval_set) if eval_set else 0,
        global_step=trainer.state.global_step,
        training_seconds=seconds,
        history=history,
    )


def _explicit_fields(args: SpanQATrainingArguments) -> dict[str, Any]:
    """Fields of ``args`` that differ from the defaults: what the caller chose."""
    defaults = SpanQATrainingArguments()
    return {f.name: getattr(args, f.name) for f in fields(args) if f.init and getattr(args, f.name) != getattr(defaults, f.name)}


def _as_dataset(source: str | Path | QADataset, columns: Mapping[str, str], on_mismatch: MismatchPolicy, split: str | None) -> QADataset:
    if isinstance(source, QADataset):
        return source
    return load_examples(source, columns=columns, on_mismatch=on_mismatch, split=split)


def _prepare_output_dir(output_dir: Path, *, resume: bool, overwrite: bool, is_main: bool) -> Path | None:
    """Refuse to mix runs: an earlier run is resumed, explicitly overwritten, or left alone."""
    checkpoint = find_resumable_checkpoint(output_dir)
    if resume:
        if checkpoint is None:
            logger.warning("--resume: no finished checkpoint in %s; starting from scratch", output_dir)
        else:
            logger.info("resuming from %s", checkpoint)
        return checkpoint
    has_run = output_dir.is_dir() and (
        any((output_dir / name).exists() for name in ("config.json", "spanqa.json"))
        or any(output_dir.glob("checkpoint-*"))
    )
    if has_run and not overwrite:
        raise ConfigError(
            f"{output_dir} already holds a model or checkpoints; pass --resume to continue that run, "
            "--overwrite to replace it, or choose another --output-dir"
        )
    if has_run and overwrite and is_main:
        for path in output_dir.glob("checkpoint-*"):
            shutil.rmtree(path, ignore_errors=True)
    return None


def _save_final(trainer: Any, output_dir: Path) -> None:
    """Save the model and tokenizer beside a temp folder, then move each file into place atomically."""
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".final-", dir=output_dir))
    try:
        trainer.save_model(str(staging))
        for item in staging.iterdir():
            if item.is_file():
                os.replace(item, output_dir / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _final_evaluation(
    trainer: Any,
    tokenizer: Any,
    config: SpanQAConfig,
    eval_set: QADataset,
    decode_config: DecodeConfig,
    args: SpanQATrainingArguments,
    output_dir: Path,
) -> dict[str, Any]:
    """Score the kept model exactly as ``spanqa evaluate`` will, and write the prediction files.

    On v2 data the null threshold that maximises F1 is tuned here and saved,
    and the headline metrics are those at the tuned threshold.
    """
    from .evaluate import evaluate
    from .reader import Reader

    model = trainer.accelerator.unwrap_model(trainer.model)
    reader = Reader(model, tokenizer, config, device=str(next(model.parameters()).device), batch_size=args.per_device_eval_batch_size)
    version_2 = decode_config.allow_impossible
    result = evaluate(
        reader,
        eval_set,
        output_dir=output_dir / "eval",
        version_2=version_2,
        lang=args.eval_lang,
        tune_threshold=version_2 and args.tune_null_threshold,
    )
    if result.tuning is not None:
        config.null_threshold = result.tuning.threshold
        t = result.tuning
        if t.threshold == t.default_threshold:
            logger.info("no-answer threshold: the default %g is already the best on the eval data (F1 %.2f)", t.threshold, t.tuned_metrics["f1"])
        else:
            logger.info(
                "no-answer threshold tuned on the eval data: %.4f (F1 %.2f -> %.2f)",
                t.threshold, t.default_metrics["f1"], t.tuned_metrics["f1"],
            )
    metrics = result.metrics
    write_json(output_dir / "metrics.json", metrics)
    model.train()
    return metrics


def _serialisable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _write_model_card(
    output_dir: Path,
    settings: Mapping[str, Any],
    metrics: Mapping[str, float],
    config: SpanQAConfig,
    steps: int,
    seconds: float,
) -> None:
    from . import __version__

    training = settings["training"]
    base = settings["model"]
    rows = "\n".join(f"| {k} | {v:.2f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items() if not isinstance(v, dict))
    default = metrics.get("default_threshold")
    if isinstance(default, dict):
        rows += (
            f"\n\nScores above use the no-answer threshold tuned on the evaluation data ({config.null_threshold:.4f}, "
            f"saved in `spanqa.json`). At the default threshold {default['null_threshold']:g}: "
            f"EM {default['exact']:.2f}, F1 {default['f1']:.2f}."
        )
    hyper = {
        "learning_rate": training.get("learning_rate"),
        "num_train_epochs": training.get("num_train_epochs"),
        "per_device_train_batch_size": training.get("per_device_train_batch_size"),
        "gradient_accumulation_steps": training.get("gradient_accumulation_steps"),
        "warmup_steps": training.get("warmup_steps"),
        "weight_decay": training.get("weight_decay"),
        "seed": training.get("seed"),
        "bf16": training.get("bf16"),
        "fp16": training.get("fp16"),
        "max_length": config.max_length,
        "stride": config.stride,
        "max_answer_length": config.max_answer_length,
        "skip_impossible": training.get("skip_impossible"),
    }
    hyper_rows = "\n".join(f"| {k} | {v} |" for k, v in hyper.items())
    headline = ", ".join(f"{k} {metrics[k]:.2f}" for k in ("exact", "exact_match", "f1") if k in metrics) or "not evaluated"
    card = f"""---
library_name: transformers
pipeline_tag: question-answering
tags:
- spanqa
- extractive-qa
- question-answering
base_model: {base}
---

# Extractive QA model fine-tuned with spanqa

Fine-tuned from `{base}` for extractive question answering (SQuAD {'v2.0, with "no answer"' if config.version_2 else 'v1.1'} style)
with [spanqa](https://pypi.org/project/spanqa/) {__version__}: {steps} steps in {seconds / 60:.1f} minutes.

Evaluation: {headline}.

## Use

```python
from spanqa import Reader

reader = Reader.from_pretrained("{output_dir.name}")
```

The weights load with `transformers.AutoModelForQuestionAnswering.from_pretrained`; `spanqa.json`
holds the window length, stride, answer length and no-answer threshold used for evaluation.

## Data

- training: `{settings['train_data']}` ({settings['train_examples']} questions; data fingerprint `{config.data_fingerprint}`)
- evaluation: `{settings['eval_data']}` ({settings['eval_examples']} questions)

## Results (official SQuAD definitions)

| metric | value |
| --- | --- |
{rows if rows else '| (no evaluation data) | |'}

## Hyper-parameters

| setting | value |
| --- | --- |
{hyper_rows}

All settings: `train_config.json`.
"""
    with atomic_open(output_dir / "README.md") as handle:
        handle.write(card)
