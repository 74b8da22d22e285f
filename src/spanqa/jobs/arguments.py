"""``spanqa train`` settings: declared once as dataclasses, parsed by :class:`transformers.HfArgumentParser`.

The command line, a ``--config`` YAML/JSON file and keyword arguments of
:func:`spanqa.train` all go through the same parser, so every value reaches
:class:`SpanQATrainingArguments` converted to its declared type (``1e-4`` is a
float, ``eval_strategy: no`` the string "no") and every field has ``--help``.
Precedence: defaults < config file < command line.
"""

from __future__ import annotations

import argparse
import enum
import json
import logging
import shutil
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, NoReturn

from transformers import HfArgumentParser, TrainingArguments

from spanqa.core.config import DEFAULTS, SpanQAConfig
from spanqa.core.errors import ConfigError, did_you_mean, first_line
from spanqa.runtime.devices import auto_mixed_precision
from spanqa.runtime.models import DEFAULT_MODEL
from spanqa.stages.features import WindowConfig

__all__ = [
    "SpanQATrainingArguments",
    "TrainDataArguments",
    "train_parser",
    "parse_train_args",
    "build_training_arguments",
    "load_config_file",
    "settings_to_argv",
]

DISTRACTORS = 1
"""Distractor passages per training question by default, measured (README, "Reading more passages
helps"): 1 kept gold-paragraph F1 (49.60 against 49.57 without) and read 10 passages best (50.05
against 47.17); 2 cost 3.8 points of gold F1."""


@dataclass
class TrainDataArguments:
    """What to fine-tune on: the model, the data, and what to do with an earlier run in the output folder."""

    model: str = field(default=DEFAULT_MODEL, metadata={"aliases": ["-m"], "help": "Model alias (minilm), folder or hub id."})
    train_data: str | None = field(
        default=None, metadata={"aliases": ["--train"], "help": "Training data (default: the sample data shipped with spanqa)."}
    )
    eval_data: str | None = field(default=None, metadata={"aliases": ["--eval"], "help": "Evaluation data for EM/F1 during and after training."})
    columns: str | None = field(
        default=None,
        metadata={
            "aliases": ["-c"],
            "help": "Column mapping for flat files, ROLE=COLUMN pairs separated by commas "
            "(e.g. context=review,answer_text=human_ans_spans,answer_start=human_ans_indices); a mapping in a config file.",
        },
    )
    no_answer_marker: str | None = field(default=None, metadata={"help": "Answer text that means 'no answer' (e.g. ANSWERNOTFOUND)."})
    on_mismatch: Literal["repair", "trust", "skip"] = field(
        default="repair", metadata={"help": "Answers whose text is not at their offset: repair, trust or skip."}
    )
    train_split: str | None = field(default=None, metadata={"help": "Split of a hub training dataset."})
    eval_split: str | None = field(default=None, metadata={"help": "Split of a hub evaluation dataset."})
    resume: bool = field(default=False, metadata={"help": "Continue from the latest finished checkpoint in the output dir."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an earlier run in the output dir (its whole content)."})
    config: str | None = field(
        default=None, metadata={"help": "YAML/JSON file of settings (any option here, by name); the command line overrides it."}
    )


@dataclass
class SpanQATrainingArguments(TrainingArguments):
    """:class:`~transformers.TrainingArguments` plus extractive-QA settings.

    Defaults differ from Trainer's where measurement showed better QA results for
    small encoders on small data (all-MiniLM-L6 on XQuAD-en: F1 18.5 with the
    notebook recipe, 44 with these): lr 2e-4 for small models, 8 epochs, 10% warmup,
    evaluation and checkpoints each epoch, the best F1 kept. Window and decoding
    defaults come from :data:`spanqa.core.config.DEFAULTS`.
    """

    output_dir: str | None = field(default="spanqa-model", metadata={"aliases": ["-o"], "help": "Where the model, checkpoints and metrics go."})
    learning_rate: float | None = field(  # type: ignore[assignment]
        default=None,
        metadata={
            "aliases": ["--lr"],
            "help": "Peak learning rate; unset: picked from the model's size (2e-4 up to 40M parameters, 5e-5 up to 150M, else 2e-5).",
        },
    )
    num_train_epochs: float = field(default=8.0, metadata={"aliases": ["--epochs"], "help": "Passes over the training data."})
    warmup_steps: float = field(default=0.1, metadata={"aliases": ["--warmup"], "help": "Warmup: a ratio in [0, 1) of all steps, or a number of steps."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    per_device_train_batch_size: int = field(
        default=16, metadata={"aliases": ["--batch-size", "--batch_size"], "help": "Training windows per device per step."}
    )
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "Evaluation windows per device."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"aliases": ["--grad-accum", "--grad_accum"], "help": "Steps to accumulate gradients over before an update."}
    )
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

    max_length: int = field(default=DEFAULTS.max_length, metadata={"help": "Window length in tokens (question + context + special tokens)."})
    stride: int = field(default=DEFAULTS.stride, metadata={"help": "Tokens shared by neighbouring windows of a long context."})
    max_question_tokens: int = field(default=DEFAULTS.max_question_tokens, metadata={"help": "Longer questions are cut to this many tokens."})
    max_answer_length: int = field(default=DEFAULTS.max_answer_length, metadata={"help": "Longest answer considered, in tokens."})
    n_best: int = field(default=DEFAULTS.n_best, metadata={"help": "Candidate answers kept per question."})
    distractors: int = field(
        default=DISTRACTORS,
        metadata={
            "help": "No-answer passages per question: its closest other paragraphs of the training data by BM25, which make "
            "the model's own scores comparable across passages (ask --index); 0 trains without them."
        },
    )
    skip_impossible: bool = field(default=False, metadata={"help": "Train only on answerable questions (the XLM-R/UQA recipe)."})
    handle_impossible: bool | None = field(
        default=None,
        # nargs/const go to argparse as they are: a bare --handle-impossible means true, like the other switches.
        metadata={
            "aliases": ["--version_2", "--version-2"],
            "nargs": "?",
            "const": True,
            "help": "Let the model answer 'no answer' (SQuAD v2 style); default: detected from the data. "
            "--version_2 / --version-2 (and version_2 in a config file) is a deprecated alias that still works.",
        },
    )
    eval_lang: str = field(default="squad", metadata={"help": "Answer normalisation for EM/F1: 'squad' or a language code."})
    early_stopping_patience: int | None = field(default=None, metadata={"help": "Stop after N evaluations without F1 improving."})
    keep_checkpoints: bool = field(default=False, metadata={"help": "Keep checkpoint folders after a successful run."})
    tune_null_threshold: bool = field(
        default=True,
        metadata={"help": "On v2 data, tune the no-answer threshold for F1 on the eval data and save it in spanqa.json."},
    )
    cache_features: bool = field(
        default=True,
        metadata={"help": "Keep tokenized windows in $SPANQA_CACHE (default ~/.cache/spanqa) so the next run on the same data starts at once."},
    )
    mixed_precision: bool = field(
        default=True,
        metadata={
            "help": "Unless --bf16 or --fp16 is given, train in the mixed precision that is faster on this machine: bf16 on "
            "GPUs that have it and on CPUs with AVX-512 BF16 or AMX (about 2x), fp16 with loss scaling on older GPUs. "
            "--no-mixed-precision trains in fp32."
        },
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

        self._check_counts()
        if not torch.accelerator.is_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator; avoids a warning per epoch
            # Say the device is the CPU: under torchrun accelerate otherwise runs each process alone
            # (no DDP; with it, gloo really shards the data), and bf16 autocast is refused otherwise.
            self.use_cpu = True
        if self.mixed_precision and not (self.bf16 or self.fp16) and not self.deepspeed:
            # DeepSpeed configs carry their own precision; everywhere else pick what measured faster.
            precision = auto_mixed_precision(use_cpu=self.use_cpu)
            self.bf16, self.fp16 = precision == "bf16", precision == "fp16"
        if str(getattr(self.eval_strategy, "value", self.eval_strategy)) == "no" and self.load_best_model_at_end:
            # Nothing is evaluated, so there is no best checkpoint to keep: the last one is the model.
            self.load_best_model_at_end = False
        super().__post_init__()

    def _check_counts(self) -> None:
        """Sizes and counts TrainingArguments takes on trust (a batch of 0 fails deep in a DataLoader)."""
        positive = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name} must be a positive integer, got {value!r}")
        if not self.num_train_epochs > 0 and self.max_steps <= 0:  # also refuses NaN
            raise ConfigError(f"--num_train_epochs must be a positive number (or set --max_steps), got {self.num_train_epochs!r}")
        if isinstance(self.distractors, bool) or not isinstance(self.distractors, int) or self.distractors < 0:
            raise ConfigError(f"--distractors must be 0 or a positive integer, got {self.distractors!r}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ConfigError(f"--learning_rate must be a positive number, got {self.learning_rate!r}")

    def spanqa_config(self, **settings: Any) -> SpanQAConfig:
        """The window and decoding settings of these arguments as ``spanqa.json`` holds them, validated.

        Args:
            **settings: Other :class:`SpanQAConfig` fields (``handle_impossible``, ``data_fingerprint``).
        """
        return SpanQAConfig(
            max_length=self.max_length,
            stride=self.stride,
            max_question_tokens=self.max_question_tokens,
            max_answer_length=self.max_answer_length,
            n_best=self.n_best,
            **settings,
        ).updated()

    @property
    def window(self) -> WindowConfig:
        return self.spanqa_config().window


logger = logging.getLogger(__name__)

DEPRECATED_OPTIONS = {"--version_2": "--handle_impossible", "--version-2": "--handle-impossible"}
"""Old option names that still work, and the names that replaced them."""

SPANQA_FIELDS = frozenset(f.name for f in fields(SpanQATrainingArguments)) - frozenset(f.name for f in fields(TrainingArguments))


class _Parser(HfArgumentParser):
    """HfArgumentParser whose mistakes are :class:`ConfigError` (one ``error:`` line), not exit status 2,
    and whose ``--help`` is :func:`train_help`: spanqa's settings and the main TrainingArguments,
    grouped; ``--help-all`` adds every other TrainingArguments field."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)

    def format_help(self) -> str:
        return train_help(self)


class _HelpAllAction(argparse.Action):
    """``--help-all``: the help with every TrainingArguments field, then exit (like ``--help``)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, default: Any = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        sys.stdout.write(train_help(parser, all_options=True))
        parser.exit()


def train_parser() -> HfArgumentParser:
    """The parser of ``spanqa train``: :class:`TrainDataArguments` then :class:`SpanQATrainingArguments`."""
    parser = _Parser(
        [TrainDataArguments, SpanQATrainingArguments],  # type: ignore[list-item]  # dataclass types
        prog="spanqa train",
        usage="spanqa train [--model NAME] [--train FILE] [--eval FILE] [--config FILE] [--output_dir DIR] [--name value ...]",
        description="Fine-tune an extractive-QA model; with no options, the embedded default on the sample data.",
        allow_abbrev=False,
    )
    parser.add_argument("--help-all", action=_HelpAllAction, dest=argparse.SUPPRESS, help="Also list every TrainingArguments option.")
    return parser


TRAIN_HELP_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Data", ("model", "train_data", "eval_data", "columns", "no_answer_marker", "on_mismatch", "train_split", "eval_split", "config")),
    ("Output", ("output_dir", "overwrite", "resume", "keep_checkpoints")),
    (
        "Training",
        (
            "num_train_epochs", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "warmup_steps",
            "weight_decay", "seed", "mixed_precision", "attention_dropout", "early_stopping_patience",
        ),
    ),
    (
        "Evaluation and checkpoints",
        (
            "eval_strategy", "save_strategy", "per_device_eval_batch_size", "eval_lang", "tune_null_threshold",
            "metric_for_best_model", "save_total_limit", "logging_steps",
        ),
    ),
    (
        "Windows and answers",
        (
            "max_length", "stride", "max_question_tokens", "max_answer_length", "n_best", "handle_impossible",
            "skip_impossible", "distractors", "cache_features", "train_sampling_strategy",
        ),
    ),
)
"""The options ``spanqa train --help`` shows, by section: every spanqa setting and the TrainingArguments
one sets most often. ``--help-all`` adds the other TrainingArguments fields."""

_METAVARS = {"model": "NAME", "train_data": "FILE", "eval_data": "FILE", "config": "FILE", "output_dir": "DIR", "columns": "MAP"}
_HELP_INDENT, _HELP_COLUMN = 2, 28  # option names from column 2, their help from column 28


def train_help(parser: argparse.ArgumentParser | None = None, *, all_options: bool = False, width: int | None = None) -> str:
    """The text of ``spanqa train --help`` (``--help-all`` with ``all_options``), wrapped to ``width``.

    Args:
        parser: The parser whose options to describe (default: :func:`train_parser`).
        all_options: Also list every TrainingArguments field the sections leave out.
        width: Columns (default: the terminal's, at most 80).
    """
    parser = parser or train_parser()
    if width is None:
        width = min(shutil.get_terminal_size().columns, 80)
    width = max(width, 50)
    actions: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if action.dest != argparse.SUPPRESS and action.option_strings and action.option_strings[0] != f"--no_{action.dest}":
            actions.setdefault(action.dest, action)  # not the --no_NAME twin of a switch that is on by default
    sections = [(title, [actions[name] for name in names if name in actions]) for title, names in TRAIN_HELP_SECTIONS]
    shown = {name for _, names in TRAIN_HELP_SECTIONS for name in names}
    own = [a for name, a in actions.items() if name not in shown and (name in SPANQA_FIELDS or name in _DATA_FIELDS)]
    if own:  # a spanqa setting no section names yet is still shown
        sections.append(("More spanqa settings", own))
    rest = [a for name, a in actions.items() if name not in shown and a not in own and not isinstance(a, argparse._HelpAction)]
    if all_options:
        sections.append(("Other TrainingArguments (see transformers' TrainingArguments)", rest))

    def wrap(text: str, indent: int = 2) -> list[str]:
        return textwrap.wrap(text, width - indent, break_on_hyphens=False) or [""]

    lines = [f"Usage: {line}" if i == 0 else f"         {line}" for i, line in enumerate(wrap(parser.usage or "spanqa train", 9))]
    lines += ["", *("  " + line for line in wrap(parser.description or ""))]
    notes = (
        "Any option can also be set in a --config YAML/JSON file, by name; the command line wins. Names take _ or - "
        "(--output_dir, --output-dir). A switch alone means true, --name false turns it off; --name null unsets a setting."
    )
    lines += ["", *("  " + line for line in wrap(notes))]
    for title, section in sections:
        lines += ["", f"{title}:"]
        for action in section:
            lines += _help_entry(action, width)
    if not all_options:
        names = ", ".join(f"--{a.dest}" for a in rest[:3])
        more = f"spanqa train --help-all also lists the {len(rest)} other TrainingArguments options ({names}, ...)."
        lines += ["", *wrap(more, 0)]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _help_entry(action: argparse.Action, width: int) -> list[str]:
    """One option of the help: its names (the field's own, then short aliases) and metavar, then its help and default."""
    own = f"--{action.dest}"
    names = [own] if own in action.option_strings else []  # the field's name first, as TrainingArguments spells it
    seen = {action.dest} if names else set()
    for option in action.option_strings:
        key = option.lstrip("-").replace("-", "_")
        if option in DEPRECATED_OPTIONS or (option.startswith("--") and key in seen):
            continue  # a deprecated alias its help names, or the -/_ spelling of a name shown
        seen.add(key)
        names.append(option)
    names.sort(key=lambda name: name.startswith("--"))  # -m before --model
    label = ", ".join(names)
    metavar = _metavar(action)
    if metavar:
        label += f" {metavar}"
    help_text = " ".join((action.help or "").replace("%%", "%").split())  # argparse doubles a literal %
    choices = list(action.choices) if action.choices is not None else []
    if choices and metavar == "NAME":
        help_text += f" One of: {', '.join(map(str, choices))}."
    default = _shown_default(action, help_text)
    if default is not None:
        help_text += f" [default: {default}]"
    help_width = width - _HELP_COLUMN
    body = textwrap.wrap(help_text, help_width, break_on_hyphens=False, break_long_words=True) or [""]
    head = " " * _HELP_INDENT + label
    if len(head) + 2 <= _HELP_COLUMN:
        return [head.ljust(_HELP_COLUMN) + body[0], *(" " * _HELP_COLUMN + line for line in body[1:])]
    heads = textwrap.wrap(label, width - _HELP_INDENT, break_on_hyphens=False, subsequent_indent="  ")
    return [" " * _HELP_INDENT + line for line in heads] + [" " * _HELP_COLUMN + line for line in body if line]


def _metavar(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.dest in _METAVARS:
        return _METAVARS[action.dest]
    if action.choices is not None:
        choices = ",".join(map(str, action.choices))
        return f"{{{choices}}}" if len(choices) <= 20 else "NAME"
    if getattr(action.type, "__name__", "") == "string_to_bool":
        return "" if action.nargs == "?" else "BOOL"  # nargs="?": a switch, true when given alone
    kind = {int: "N", float: "NUM"}.get(action.type, "TEXT")  # type: ignore[call-overload]
    return f"{kind} ..." if action.nargs in ("+", "*") else kind


def _shown_default(action: argparse.Action, help_text: str) -> str | None:
    """The default to add to an option's help: none when it is unset, false, or the help already says it."""
    value = action.default
    if value is None or value is False or value == [] or value == argparse.SUPPRESS or action.nargs == 0 or "default" in help_text.lower():
        return None
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return " ".join(map(_token, value))
    return _token(value)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON file of ``spanqa train`` settings, flattened (an optional ``training:`` section is merged).

    YAML scalars are read as text, as on the command line, so the parser converts each to its
    field's type: ``1e-4`` is a float (YAML 1.1 would read a string) and ``no`` stays "no"
    (YAML 1.1 would read false).

    Args:
        path: The ``.yaml``/``.yml``/``.json`` file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader builds only str/list/dict
    except Exception as err:  # yaml and json raise different types
        raise ConfigError(f"{path}: cannot parse ({first_line(err)})") from None
    if data is None or data == "":
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    if path.suffix.lower() != ".json":
        data = _yaml_nulls(data)
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key == "training" and isinstance(value, dict):  # optional section for TrainingArguments fields
            flat.update(value)
        else:
            flat[key] = value
    return flat


_YAML_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


def _yaml_nulls(value: Any) -> Any:
    """YAML's null spellings as None (the text-only loader keeps them as text)."""
    if isinstance(value, dict):
        return {k: _yaml_nulls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_yaml_nulls(v) for v in value]
    return None if value in _YAML_NULLS else value


def _token(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def settings_to_argv(settings: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """``{name: value}`` as command-line tokens, and the names set to None (no token can say None).

    A ``columns`` mapping becomes ``ROLE=COLUMN,...``; other mappings become JSON (TrainingArguments
    parses JSON for its dict fields); lists become several values.

    Args:
        settings: Setting names (field names, their dashed forms or the short aliases) to values.
    """
    argv: list[str] = []
    nulls: list[str] = []
    for name, value in settings.items():
        option = "--" + str(name).removeprefix("--")
        if value is None:
            nulls.append(option)
            continue
        if name == "columns" and isinstance(value, Mapping):
            value = ",".join(f"{role}={column}" for role, column in value.items())
        argv.append(option)
        if isinstance(value, (list, tuple)):
            argv.extend(_token(v) for v in value)
        else:
            argv.append(_token(value))
    return argv, nulls


def _parse(parser: HfArgumentParser, argv: Sequence[str], nulls: Sequence[str] = ()) -> tuple[TrainDataArguments, SpanQATrainingArguments]:
    options = parser._option_string_actions
    parser.set_defaults(**dict.fromkeys(_dests(parser, nulls)))
    try:
        data, args, rest = parser.parse_args_into_dataclasses(args=list(argv), return_remaining_strings=True)
    except (ValueError, TypeError) as err:
        raise _invalid_settings(err) from None
    unknown = [token for token in [*rest, *(n for n in nulls if n not in options)] if token.startswith("-")]
    if unknown:
        name = unknown[0].split("=", 1)[0]
        known = [o for o in options if o.startswith("--")]
        raise ConfigError(f"unknown training setting {name!r}{did_you_mean(name, known)}; see spanqa train --help")
    if rest:
        raise ConfigError(f"unexpected argument {rest[0]!r}; settings look like --name value")
    for old in sorted({token.split("=", 1)[0] for token in [*argv, *nulls]} & DEPRECATED_OPTIONS.keys()):
        logger.warning("%s is deprecated; use %s (the same setting)", old, DEPRECATED_OPTIONS[old])
    return data, args


def parse_train_args(argv: Sequence[str]) -> tuple[TrainDataArguments, SpanQATrainingArguments]:
    """Parse ``spanqa train`` arguments: defaults < ``--config`` file < the rest of ``argv``.

    Args:
        argv: Command-line tokens after ``spanqa train``.
    """
    argv, cli_nulls = _split_nulls(list(argv))
    file_argv: list[str] = []
    nulls: list[str] = []
    for i, token in enumerate(argv):
        if token == "--config" and i + 1 < len(argv):
            file_argv, nulls = settings_to_argv(load_config_file(argv[i + 1]))
        elif token.startswith("--config="):
            file_argv, nulls = settings_to_argv(load_config_file(token.split("=", 1)[1]))
    parser = train_parser()
    data, args = _parse(parser, file_argv + argv, nulls + cli_nulls)
    # `--name null` on the command line beats the file and the defaults (set_defaults alone would lose to the file).
    dests = _dests(parser, cli_nulls)
    none: dict[str, Any] = dict.fromkeys(dests)
    if dests & _DATA_FIELDS:
        data = replace(data, **{k: v for k, v in none.items() if k in _DATA_FIELDS})
    if dests - _DATA_FIELDS:
        try:
            args = replace(args, **{k: v for k, v in none.items() if k not in _DATA_FIELDS})
        except (ValueError, TypeError) as err:
            raise _invalid_settings(err) from None
    return data, args


def _invalid_settings(err: Exception) -> ConfigError:
    """What TrainingArguments' own checks (ValueError, TypeError) said, as one line."""
    return ConfigError(f"invalid training settings: {first_line(err)}")


_DATA_FIELDS = frozenset(f.name for f in fields(TrainDataArguments))


def _dests(parser: HfArgumentParser, options: Sequence[str]) -> set[str]:
    """The fields that these option strings set, aliases resolved (unknown ones are left out)."""
    actions = parser._option_string_actions
    return {actions[o].dest for o in options if o in actions}


_NULL_WORDS = frozenset({"null", "Null", "NULL", "None", "~"})  # not lowercase "none": `--report_to none` is a value


def _split_nulls(argv: list[str]) -> tuple[list[str], list[str]]:
    """Take ``--name null`` / ``--name=None`` out of ``argv``: no parser type reads them, they mean None."""
    kept: list[str] = []
    nulls: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        name, eq, value = token.partition("=")
        if token.startswith("--") and eq and value in _NULL_WORDS:
            nulls.append(name)
        elif token.startswith("--") and not eq and i + 1 < len(argv) and argv[i + 1] in _NULL_WORDS:
            nulls.append(token)
            i += 1
        else:
            kept.append(token)
        i += 1
    return kept, nulls


def build_training_arguments(settings: Mapping[str, Any], base: SpanQATrainingArguments | None = None) -> SpanQATrainingArguments:
    """SpanQATrainingArguments from ``{name: value}`` (Python values or text), typed by the same parser.

    Args:
        settings: TrainingArguments / spanqa field names (or their aliases) to values.
        base: Arguments to start from; only the settings named here change.
    """
    parser = train_parser()
    argv, nulls = settings_to_argv(settings)
    data, args = _parse(parser, argv, nulls)
    given = _dests(parser, [t for t in argv if t.startswith("--")] + nulls)
    misplaced = sorted(given & _DATA_FIELDS)
    if misplaced:
        raise ConfigError(f"{misplaced[0]!r} is a parameter of train(), not a training argument")
    if base is None:
        return args
    try:
        return replace(base, **{dest: getattr(args, dest) for dest in given})
    except (ValueError, TypeError) as err:
        raise _invalid_settings(err) from None
