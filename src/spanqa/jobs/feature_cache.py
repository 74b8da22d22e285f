"""Tokenized windows cached on disk, so a second training run on the same data starts at once.

The key is a hash of everything the windows depend on: the examples' content, the
tokenizer (its whole ``tokenizer.json`` and padding side), the window settings and
spanqa's version. A changed byte anywhere gives a new key; nothing is ever reused stale.
Files are written atomically, so runs (or torchrun ranks) writing the same key at once
are harmless.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spanqa.core.io import atomic_open
from spanqa.core.version import __version__
from spanqa.stages.data import QAExample, examples_fingerprint
from spanqa.stages.features import Features, WindowConfig, build_features

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase

__all__ = ["default_cache_dir", "features_key", "cached_features"]

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$SPANQA_CACHE``, else ``$XDG_CACHE_HOME/spanqa`` (``~/.cache/spanqa``), plus ``features/``."""
    root = os.environ.get("SPANQA_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spanqa"
    return Path(root) / "features"


def features_key(examples: Sequence[QAExample], tokenizer: PreTrainedTokenizerBase, window: WindowConfig) -> str:
    """The hash that names the cached windows of ``examples``.

    Args:
        examples: The examples, in order.
        tokenizer: A fast tokenizer.
        window: Window settings.
    """
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    parts = [
        __version__,
        examples_fingerprint(examples),
        backend.to_str() if backend is not None else repr(tokenizer),
        str(getattr(tokenizer, "padding_side", "")),
        ",".join(getattr(tokenizer, "model_input_names", [])),
        f"{window.max_length}/{window.stride}/{window.max_question_tokens}",
    ]
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def _save(features: Features, path: Path) -> None:
    lengths = features.lengths
    arrays = {
        "lengths": lengths,
        "input_ids": np.fromiter((t for row in features.input_ids for t in row), dtype=np.int64, count=int(lengths.sum())),
        "example_index": features.example_index,
        "offsets": features.offsets,
        "cls_index": features.cls_index,
        "start_positions": features.start_positions,
        "end_positions": features.end_positions,
    }
    if features.token_type_ids is not None:
        arrays["token_type_ids"] = np.fromiter((t for row in features.token_type_ids for t in row), dtype=np.int8, count=int(lengths.sum()))
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub reads **kwargs as allow_pickle


def _load(path: Path) -> Features:
    with np.load(path) as data:
        bounds = np.cumsum(data["lengths"])[:-1]
        input_ids = [row.tolist() for row in np.split(data["input_ids"], bounds)]
        types = [row.tolist() for row in np.split(data["token_type_ids"], bounds)] if "token_type_ids" in data else None
        return Features(
            input_ids=input_ids,
            attention_mask=[[1] * len(row) for row in input_ids],  # windows are unpadded
            token_type_ids=types,
            example_index=data["example_index"],
            offsets=data["offsets"],
            cls_index=data["cls_index"],
            start_positions=data["start_positions"],
            end_positions=data["end_positions"],
        )


def cached_features(
    examples: Sequence[QAExample], tokenizer: PreTrainedTokenizerBase, window: WindowConfig, cache_dir: str | Path | None
) -> Features:
    """:func:`~spanqa.stages.features.build_features`, read from ``cache_dir`` when these exact windows were built before.

    Args:
        examples: The examples, in order.
        tokenizer: A fast tokenizer.
        window: Window settings.
        cache_dir: The cache folder; None builds without caching.
    """
    if cache_dir is None:
        return build_features(examples, tokenizer, window)
    path = Path(cache_dir) / f"{features_key(examples, tokenizer, window)}.npz"
    if path.is_file():
        try:
            features = _load(path)
            logger.info("tokenized windows read from the cache (%s)", path)
            return features
        except (OSError, ValueError, KeyError) as err:  # a damaged file is rebuilt, never trusted
            logger.warning("ignoring unreadable cached windows %s (%s)", path, err)
    features = build_features(examples, tokenizer, window)
    try:
        _save(features, path)
    except OSError as err:  # a read-only or full cache never stops training
        logger.warning("could not cache tokenized windows in %s (%s)", path.parent, err)
    return features
