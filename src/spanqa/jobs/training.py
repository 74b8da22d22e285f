"""Fine-tuning on :class:`transformers.Trainer`, evaluated with the real SQuAD metrics.

The Trainer is used as is (so ``accelerate launch``, ``torchrun``, DeepSpeed,
FSDP, mixed precision, checkpointing and logging integrations all work); spanqa
adds its own arguments (:mod:`spanqa.jobs.arguments`), the QA evaluator passed as
``compute_metrics``, ``spanqa.json`` in every saved folder (through the
Trainer's save hook) and, at the end, the evaluation, model card and Hub push.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from transformers import PrinterCallback, ProgressCallback, Trainer

from spanqa.core.config import SpanQAConfig
from spanqa.core.errors import ConfigError, ModelError, first_line
from spanqa.core.io import share_files, write_json
from spanqa.core.version import __version__
from spanqa.jobs.arguments import SpanQATrainingArguments, TrainDataArguments, build_training_arguments, load_config_file
from spanqa.jobs.feature_cache import cached_features, default_cache_dir
from spanqa.jobs.modelcard import SpanQAModelCardData, build_model_card, push_model_folder, write_model_card
from spanqa.jobs.scoring import score_decoded
from spanqa.runtime.console import details_hidden, quiet_libraries
from spanqa.runtime.devices import attention_kernels, pad_multiple
from spanqa.stages.data import DataSource, QADataset, QAExample, read_dataset
from spanqa.stages.decode import DecodeConfig, decode
from spanqa.stages.distractors import with_distractors
from spanqa.stages.features import Features

if TYPE_CHECKING:  # pragma: no cover
    from spanqa.jobs.report import ReportFiles

__all__ = [
    "SpanQATrainer",
    "RunProgress",
    "SpanQATrainingArguments",
    "TrainDataArguments",
    "QAEvaluator",
    "TrainResult",
    "train",
    "sample_data_path",
    "find_resumable_checkpoint",
    "load_config_file",
    "build_training_arguments",
    "card_data",
]

logger = logging.getLogger(__name__)
details = logging.getLogger(f"{__name__}.details")
"""A run's details (the picked learning rate, the tuned no-answer threshold): shown with ``set_verbose(True)``."""

RUN_DETAILS = (
    details.name,
    "spanqa.stages.distractors",
    "spanqa.jobs.feature_cache",
    "spanqa.jobs.evaluate",
    "spanqa.reading.index",
    "spanqa.jobs.report",
)
"""The loggers whose INFO lines a training run leaves to ``--verbose``: the steps it composes say what they did
(windows read from the cache, the temporary index of the eval paragraphs, each tuned setting saved), and the
run's own lines and the command's summary already give what matters."""

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



class RunProgress(ProgressCallback):
    """The Trainer's progress bar, and one line per evaluation instead of its printed log dicts.

    ``epoch 1.00  step 12  loss 4.21  EM 35.1  F1 48.9`` on stdout (the latest training loss,
    the evaluation's exact match and F1); without evaluation, one such line per training log. No
    evaluation bar: evaluation is short beside training, and its line follows at once. Replaces
    transformers' ``ProgressCallback`` (or, with ``disable_tqdm``, ``PrinterCallback``: then there is no bar).

    Args:
        bar: Draw the training bar.
    """

    def __init__(self, bar: bool = True) -> None:
        super().__init__()
        self.bar = bar
        self.loss: float | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar:
            super().on_train_begin(args, state, control, **kwargs)
        self.current_step = 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.training_bar is not None:
            super().on_step_end(args, state, control, **kwargs)

    def on_prediction_step(self, args: Any, state: Any, control: Any, eval_dataloader: Any = None, **kwargs: Any) -> None:
        return None  # no evaluation bar

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.training_bar is not None:
            super().on_train_end(args, state, control, **kwargs)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        if isinstance(logs.get("loss"), (int, float)):
            self.loss = float(logs["loss"])
        line = self.line(state.global_step, logs, evaluating=args.eval_strategy != "no")
        if line:
            from tqdm.auto import tqdm

            tqdm.write(line)  # above the bar, which is redrawn under it

    def line(self, step: int, logs: Mapping[str, Any], *, evaluating: bool) -> str | None:
        """The line for one of the Trainer's logs: an evaluation's, a training log's when nothing evaluates, else none."""
        scores = [(label, logs.get(f"eval_{key}")) for label, key in (("EM", "exact"), ("F1", "f1"))]
        scores = [(label, value) for label, value in scores if isinstance(value, (int, float))]
        if not scores and isinstance(logs.get("eval_loss"), (int, float)):
            scores = [("eval loss", logs["eval_loss"])]
        training_log = "loss" in logs and not any(key.startswith("eval_") for key in logs)
        if not scores and not (training_log and not evaluating):
            return None
        parts = [f"epoch {logs['epoch']:.2f}"] if isinstance(logs.get("epoch"), (int, float)) else []
        parts.append(f"step {step}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:#.3g}")
        parts += [f"{label} {value:#.3g}" if label == "eval loss" else f"{label} {value:.1f}" for label, value in scores]
        return "  ".join(parts)


def use_run_progress(trainer: Trainer) -> None:
    """Swap transformers' ``ProgressCallback`` / ``PrinterCallback`` for :class:`RunProgress` (a notebook's table stays)."""
    replaced = [cb for cb in trainer.callback_handler.callbacks if type(cb) in (ProgressCallback, PrinterCallback)]
    for callback in replaced:
        trainer.remove_callback(callback)
    if replaced:
        trainer.add_callback(RunProgress(bar=not any(type(cb) is PrinterCallback for cb in replaced)))


class SpanQATrainer(Trainer):
    """:class:`~transformers.Trainer` that saves ``spanqa.json`` with every model and keeps evaluation in order.

    Every checkpoint folder and the final model carry the run's settings
    (window, version 2, threshold), so ``Reader.from_pretrained(checkpoint)``
    answers as the run does. transformers applies
    ``train_sampling_strategy="group_by_length"`` to evaluation too, which
    shuffles windows; QA decoding maps logits back to windows by position, so
    evaluation stays sequential (distributed runs keep Trainer's own ordered sharding).

    Args:
        spanqa_config: The settings saved as ``spanqa.json`` beside the weights.
        *args, **kwargs: What :class:`~transformers.Trainer` takes.
    """

    def __init__(self, *args: Any, spanqa_config: SpanQAConfig | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spanqa_config = spanqa_config or SpanQAConfig()

    def _save(self, output_dir: str | None = None, state_dict: dict[str, Any] | None = None) -> None:
        # The hook Trainer calls for checkpoints and save_model alike, on every rank.
        super()._save(output_dir, state_dict)
        if self.args.should_save:
            folder = output_dir or self.args.output_dir or "."
            self.spanqa_config.save(folder)
            share_files(folder)

    def compute_loss_context_manager(self) -> contextlib.ExitStack:
        # Training and evaluation steps both run under it: keep attention off kernels that re-plan per length.
        stack = super().compute_loss_context_manager()
        stack.enter_context(attention_kernels(self.args.device))
        return stack

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
            finished = isinstance(json.loads(state.read_text(encoding="utf-8")), dict)
        except (OSError, ValueError):
            finished = False
        if not finished:
            logger.warning("skipping incomplete or damaged checkpoint %s (its trainer_state.json is not a JSON object)", path)
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


def train(
    model: str = TrainDataArguments.model,
    train_data: str | Path | DataSource | QADataset | None = None,
    eval_data: str | Path | DataSource | QADataset | None = None,
    *,
    args: SpanQATrainingArguments | None = None,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: list[Any] | None = None,
    **training_settings: Any,
) -> TrainResult:
    """Fine-tune ``model`` for extractive QA and save it, evaluated, in ``args.output_dir``.

    Args:
        model: Model alias (``minilm``), folder or hub id.
        train_data: Training data: a file or hub name, a :class:`DataSource` (a flat file's
            columns, no-answer marker, mismatch policy, split) or a loaded dataset; default: the
            sample data shipped with spanqa.
        eval_data: Evaluation data, in the same forms; default: the sample dev data when ``train_data`` is not given.
        args: Training arguments; ``training_settings`` are applied on top.
        resume: Continue from the latest finished checkpoint in the output folder.
        overwrite: Replace an earlier run in the output folder (its whole content).
        callbacks: Extra :class:`transformers.TrainerCallback` objects.
        **training_settings: Any :class:`SpanQATrainingArguments` field by name or alias
            (``num_train_epochs=3``, ``epochs=3``), typed by the command line's parser.

    Returns:
        Where the model went, its metrics and settings, and the training history.
    """
    _refuse_data_options(training_settings)
    args = build_training_arguments(training_settings, base=args) if training_settings or args is None else args
    run = _plan_run(model, train_data, eval_data, args, resume=resume, overwrite=overwrite)
    with quiet_libraries(), details_hidden(*RUN_DETAILS):  # the libraries' notes and bars, and the steps' details, only with set_verbose(True)
        trainer = _build_trainer(run, callbacks)
        started = time.monotonic()
        trainer.train(resume_from_checkpoint=str(run.checkpoint) if run.checkpoint else None)
        seconds = time.monotonic() - started

        _save_final(trainer, run.output_dir)
        metrics: dict[str, Any] = {}
        config = trainer.spanqa_config
        if trainer.is_world_process_zero():
            metrics, config = _finish_run(run, trainer, seconds)
        trainer.accelerator.wait_for_everyone()
    return TrainResult(
        output_dir=run.output_dir,
        metrics=metrics,
        config=config,
        train_examples=len(run.train_examples),
        eval_examples=len(run.eval_set) if run.eval_set else 0,
        global_step=trainer.state.global_step,
        training_seconds=seconds,
        history=[dict(entry) for entry in trainer.state.log_history],
    )


@dataclass
class _Run:
    """What a training run works with, settled before anything trains."""

    model: str
    args: SpanQATrainingArguments
    output_dir: Path
    push: bool
    checkpoint: Path | None
    train_source: DataSource
    train_set: QADataset
    eval_source: DataSource | None
    eval_set: QADataset | None
    train_examples: list[QAExample] = field(default_factory=list)


def _refuse_data_options(settings: Mapping[str, Any]) -> None:
    """The data options that were train() parameters before they went into DataSource."""
    moved = sorted(set(settings) & {"columns", "no_answer_marker", "on_mismatch", "train_split", "eval_split"})
    if moved:
        raise ConfigError(
            f"{moved[0]!r} describes the data: pass train_data/eval_data as DataSource.of(path, columns=..., "
            "no_answer_marker=..., on_mismatch=..., split=...)"
        )


def _plan_run(
    model: str,
    train_data: str | Path | DataSource | QADataset | None,
    eval_data: str | Path | DataSource | QADataset | None,
    args: SpanQATrainingArguments,
    *,
    resume: bool,
    overwrite: bool,
) -> _Run:
    """Check the settings and the output folder, then read the data: every mistake fails before a model loads."""
    args.spanqa_config()  # validates the window and decoding settings before anything is loaded
    output_dir = Path(args.output_dir or "spanqa-model")
    push = args.push_to_hub
    if push:
        # Trainer would push at every save, before spanqa.json, metrics and the card exist: push once, at the end.
        args = replace(args, push_to_hub=False)
    checkpoint = _prepare_output_dir(output_dir, resume=resume, overwrite=overwrite, is_main=args.process_index == 0)
    if train_data is None:
        train_data = sample_data_path("train")
        if eval_data is None:
            eval_data = sample_data_path("dev")
    train_source, train_set = read_dataset(train_data)
    eval_source, eval_set = read_dataset(eval_data) if eval_data is not None else (None, None)
    run = _Run(model, args, output_dir, push, checkpoint, train_source, train_set, eval_source, eval_set)
    run.train_examples = [ex for ex in train_set.examples if not (args.skip_impossible and ex.is_impossible)]
    if not run.train_examples:
        raise ConfigError(f"{train_set.source}: no answerable questions to train on")
    return run


def _handle_impossible(run: _Run) -> bool:
    """Whether the model may answer "no answer": as set, else as the data says (the eval data, or training data kept whole)."""
    if run.args.handle_impossible is not None:
        return run.args.handle_impossible
    return (run.eval_set.version_2 if run.eval_set is not None else False) or (run.train_set.version_2 and not run.args.skip_impossible)


def _build_trainer(run: _Run, callbacks: list[Any] | None) -> SpanQATrainer:
    """The model (seeded, with the learning rate for its size), its windows, the QA evaluator and the Trainer."""
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, enable_full_determinism, set_seed

    from spanqa.runtime.models import load_qa_model, load_tokenizer

    args, window = run.args, run.args.window
    tokenizer = load_tokenizer(run.model)
    # A base encoder gets a freshly initialised QA head when it loads, before Trainer seeds
    # anything: seed first, or the same command trains a different model each run.
    (enable_full_determinism if args.full_determinism else set_seed)(args.seed)
    qa_model = load_qa_model(run.model, attention_dropout=args.attention_dropout, for_training=True)
    window.check_model_limit(tokenizer, getattr(qa_model.config, "max_position_embeddings", None))
    if args.learning_rate is None:
        args = run.args = replace(args, learning_rate=_auto_learning_rate(qa_model.num_parameters()))
        millions = qa_model.num_parameters() / 1e6
        details.info("learning rate %.0e (picked for a model of %.0fM parameters; set learning_rate to override)", args.learning_rate, millions)
    cache_dir = default_cache_dir() if args.cache_features else None
    train_features = cached_features(with_distractors(run.train_examples, args.distractors), tokenizer, window, cache_dir)
    spanqa_config = args.spanqa_config(handle_impossible=_handle_impossible(run), data_fingerprint=run.train_set.fingerprint())
    evaluator, eval_dataset = None, None
    if run.eval_set is not None:
        eval_features = cached_features(run.eval_set.examples, tokenizer, window, cache_dir)
        eval_dataset = eval_features.to_dataset(with_labels=True)
        evaluator = QAEvaluator(run.eval_set.examples, eval_features, spanqa_config.decode_config(), spanqa_config.handle_impossible, args.eval_lang)
    else:
        logger.warning("no evaluation data: training without EM/F1 and keeping the last checkpoint")
        save_strategy = "epoch" if args.save_strategy == "best" else args.save_strategy
        args = run.args = replace(args, eval_strategy="no", load_best_model_at_end=False, save_strategy=save_strategy)
    callbacks = list(callbacks or [])
    if args.early_stopping_patience and run.eval_set is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
    trainer = SpanQATrainer(
        model=qa_model,
        args=args,
        train_dataset=train_features.to_dataset(with_labels=True),
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_multiple(args.device)),
        compute_metrics=evaluator,
        callbacks=callbacks,
        spanqa_config=spanqa_config,
    )
    use_run_progress(trainer)
    return trainer


def _finish_run(run: _Run, trainer: SpanQATrainer, seconds: float) -> tuple[dict[str, Any], SpanQAConfig]:
    """On the main process, after the final save: evaluation, settings, report, model card, clean-up and push.

    Returns:
        The final metrics (none without evaluation data) and the settings saved with the model.
    """
    output_dir = run.output_dir
    metrics: dict[str, Any] = {}
    config = trainer.spanqa_config
    if run.eval_set is not None and run.eval_source is not None:
        metrics = _final_evaluation(output_dir, run.eval_set, run.eval_source, config.handle_impossible, run.args)
        config = SpanQAConfig.load(output_dir)  # with the tuned threshold and temperature
    settings = _run_settings(run)
    write_json(output_dir / "train_config.json", settings)
    # The log history (loss, dev EM/F1 per evaluation) outlives the checkpoints deleted below: the report draws it.
    write_json(output_dir / "trainer_state.json", asdict(trainer.state))
    report = None
    if run.eval_set is not None:
        from spanqa.jobs.report import write_report_or_warn

        report = write_report_or_warn(output_dir)
    write_model_card(output_dir, build_model_card(card_data(output_dir, settings, metrics, config, trainer.state.global_step, seconds, report)))
    if not run.args.keep_checkpoints:
        for path in output_dir.glob("checkpoint-*"):
            shutil.rmtree(path, ignore_errors=True)
    if run.push:
        args = run.args
        url = push_model_folder(
            output_dir, args.hub_model_id or output_dir.name, token=args.hub_token, private=args.hub_private_repo, revision=args.hub_revision
        )
        logger.info("pushed %s to the Hub: %s", output_dir, url)
    return metrics, config


def _run_settings(run: _Run) -> dict[str, Any]:
    """What ``train_config.json`` records: the model, the data and how it was read, every training argument."""
    described = run.train_source.describe()
    return {
        "model": run.model,
        "train_data": run.train_set.source,
        "eval_data": run.eval_set.source if run.eval_set else None,
        "columns": described["columns"],
        "on_mismatch": described["on_mismatch"],
        "train_examples": len(run.train_examples),
        "eval_examples": len(run.eval_set) if run.eval_set else 0,
        "training": _serialisable({**run.args.to_dict(), "push_to_hub": run.push}),
    }


def check_checkpoint(checkpoint: Path) -> None:
    """Read every file a resume loads, before training starts; a damaged or unsafe one is refused by name.

    Pickled files (optimizer, scheduler, RNG states) are read with ``weights_only=True``, so a
    checkpoint crafted to run code when unpickled is refused too.

    Raises:
        ModelError: naming the file and the checkpoint.
    """
    import torch
    from safetensors import SafetensorError, safe_open
    from transformers.trainer_pt_utils import safe_globals

    def refuse(file: Path, why: str) -> ModelError:
        return ModelError(
            f"refused to resume from {checkpoint}: {file.name} {why}; delete that checkpoint to resume from an earlier one, "
            "or start over with --overwrite"
        )

    for file in sorted(checkpoint.iterdir()):
        try:
            if file.suffix == ".safetensors":
                with safe_open(str(file), framework="pt") as weights:
                    weights.keys()
            elif file.suffix in (".pt", ".pth"):  # optimizer, scheduler, scaler, RNG states (not training_args.bin)
                with safe_globals():  # the numpy types the Trainer allows in RNG states, as it loads them
                    torch.load(file, map_location="cpu", weights_only=True)
            elif file.suffix == ".json" and not isinstance(json.loads(file.read_text(encoding="utf-8")), (dict, list)):
                raise refuse(file, "is not a JSON object")
        except ModelError:
            raise
        except (SafetensorError, pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError) as err:
            raise refuse(file, f"cannot be read safely ({first_line(err)})") from None


def _holds_run(output_dir: Path) -> bool:
    return output_dir.is_dir() and (
        any((output_dir / name).exists() for name in ("config.json", "spanqa.json", "train_config.json", "metrics.json"))
        or any(output_dir.glob("checkpoint-*"))
    )


def _prepare_output_dir(output_dir: Path, *, resume: bool, overwrite: bool, is_main: bool) -> Path | None:
    """Refuse to mix runs: an earlier run is resumed, explicitly overwritten (all of it), or left alone."""
    checkpoint = find_resumable_checkpoint(output_dir)
    has_run = _holds_run(output_dir)
    if resume:
        if checkpoint is None and has_run and not overwrite:
            damaged = any(output_dir.glob("checkpoint-*"))
            raise ConfigError(
                f"--resume: {output_dir} holds a run with "
                + ("checkpoints, but none is readable (see the warnings above)" if damaged else "no checkpoint to continue from (finished, or saved none)")
                + "; pass --overwrite to train again from scratch there, or choose another --output-dir"
            )
        if checkpoint is None:
            logger.warning("--resume: no finished checkpoint in %s; starting from scratch", output_dir)
            overwrite = True  # nothing to keep
        else:
            check_checkpoint(checkpoint)
            logger.info("resuming from %s", checkpoint)
            return checkpoint
    if has_run and not overwrite:
        raise ConfigError(
            f"{output_dir} already holds a model or checkpoints; pass --resume to continue that run, "
            "--overwrite to replace it, or choose another --output-dir"
        )
    if has_run and overwrite and is_main:
        # Replace means all of it: an earlier run's metrics.json or eval/ must not sit beside the new model.
        for path in output_dir.iterdir():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    return None


_STAGING = ".final-save"


def _save_final(trainer: SpanQATrainer, output_dir: Path) -> None:
    """Save the model (with ``spanqa.json``) into a staging folder, then move each file into place.

    Every rank calls ``save_model``: DeepSpeed ZeRO-3 and FSDP gather the weights
    collectively, so a save on the main process alone would hang or write a shard.
    """
    staging = output_dir / _STAGING
    if trainer.is_world_process_zero():
        shutil.rmtree(staging, ignore_errors=True)
    trainer.save_model(str(staging))
    if trainer.is_world_process_zero():
        for item in staging.iterdir():
            if item.is_file():
                item.replace(output_dir / item.name)
        shutil.rmtree(staging, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()


def _final_evaluation(
    output_dir: Path, eval_set: QADataset, eval_source: DataSource, handle_impossible: bool, args: SpanQATrainingArguments
) -> dict[str, Any]:
    """Score the saved model as ``spanqa evaluate`` does (loaded from disk), writing ``eval/`` and ``metrics.json``.

    The evaluation steps of :mod:`spanqa.jobs.evaluate`, composed: on v2 data the null threshold that
    maximises F1 is tuned and the headline metrics are those at it; the score temperature is fitted
    (it changes no answer), and the retrieval weight over the eval data's own paragraphs
    (:func:`~spanqa.jobs.evaluate.fit_passage_ranking`); all are saved in ``spanqa.json``. How ``eval_set`` was read
    (``eval_source``) goes into ``eval/evaluation.json`` for ``spanqa report``.
    """
    from spanqa.jobs.evaluate import (
        calibrate_scores,
        evaluation_settings,
        fit_passage_ranking,
        predict_dataset,
        save_tuned_settings,
        score_evaluation,
        tune_threshold,
        write_evaluation,
    )
    from spanqa.jobs.evaluation_files import check_evaluation_folder
    from spanqa.reading.reader import Reader
    from spanqa.runtime.backends import evaluation_precision
    from spanqa.runtime.options import LoadOptions

    check_evaluation_folder(output_dir / "eval", overwrite=True)  # before predicting: a refusal costs no work
    device = str(args.device)  # the final scores are fp32 on the CPU, as `spanqa evaluate` gives them
    reader = Reader.from_pretrained(output_dir, LoadOptions(device=device, dtype=evaluation_precision(device), batch_size=args.per_device_eval_batch_size))
    evaluation = score_evaluation(predict_dataset(reader, eval_set, version_2=handle_impossible, lang=args.eval_lang))
    if handle_impossible and args.tune_null_threshold:
        evaluation = tune_threshold(evaluation)
        _log_tuning(evaluation.tuning)
    # The scores users see should mean what they say; the temperature changes no answer.
    evaluation = calibrate_scores(evaluation)
    # How reading several passages ranks (ask --index): fitted on the eval data's own paragraphs.
    evaluation = fit_passage_ranking(evaluation)
    save_tuned_settings(evaluation, output_dir)
    # This run's own eval folder: replacing the model folder was allowed already.
    write_evaluation(evaluation, output_dir / "eval", overwrite=True, settings=evaluation_settings(output_dir, evaluation, eval_source))
    write_json(output_dir / "metrics.json", evaluation.metrics)
    return evaluation.metrics


def _log_tuning(tuning: Any) -> None:
    if tuning is None:
        return
    # A detail beside the command's summary (its dev scores are at the tuned threshold); spanqa.json, metrics.json and the card keep it.
    if tuning.threshold == tuning.default_threshold:
        details.info("no-answer threshold: the default %g is already the best on the eval data (F1 %.2f)", tuning.threshold, tuning.tuned_metrics["f1"])
    else:
        details.info(
            "no-answer threshold tuned on the eval data: %.4f (F1 %.2f -> %.2f)",
            tuning.threshold, tuning.default_metrics["f1"], tuning.tuned_metrics["f1"],
        )


def _serialisable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


_CARD_HYPERPARAMETERS = (
    "learning_rate", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
    "warmup_steps", "weight_decay", "seed", "bf16", "fp16", "skip_impossible",
)


def card_data(
    output_dir: Path,
    settings: Mapping[str, Any],
    metrics: Mapping[str, Any],
    config: SpanQAConfig,
    steps: int,
    seconds: float,
    report: ReportFiles | None = None,
) -> SpanQAModelCardData:
    """What the model card of a finished run says, from the run's result.

    Args:
        output_dir: The model folder (its name is the model's name in the card).
        settings: What ``train_config.json`` records.
        metrics: The final metrics.
        config: The settings saved with the model (``spanqa.json``).
        steps: Optimiser steps taken.
        seconds: Training time.
        report: The run's report, whose figure and tables the card shows.
    """
    from spanqa.jobs.report import breakdown_markdown

    training = settings["training"]
    hyper = {name: training.get(name) for name in _CARD_HYPERPARAMETERS}
    hyper.update(max_length=config.max_length, stride=config.stride, max_answer_length=config.max_answer_length)
    return SpanQAModelCardData(
        model_name=output_dir.name,
        base_model=settings["model"],
        train_source=settings["train_data"],
        train_examples=settings["train_examples"],
        eval_source=settings["eval_data"],
        eval_examples=settings["eval_examples"],
        metrics=metrics,
        handle_impossible=config.handle_impossible,
        null_threshold=config.null_threshold,
        hyperparameters=hyper,
        steps=steps,
        seconds=seconds,
        data_fingerprint=config.data_fingerprint,
        spanqa_version=__version__,
        curve_figure=_relative(report.figures.get("training"), output_dir) if report else None,
        breakdown=breakdown_markdown(report.report.breakdowns) if report else None,
        report_file=_relative(report.html, output_dir) if report else None,
    )


def _relative(path: Path | None, folder: Path) -> str | None:
    """``path`` relative to ``folder`` (how a model card links files beside it), or None when it is not inside."""
    if path is None:
        return None
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return None
