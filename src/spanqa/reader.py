"""A fine-tuned QA model with its saved settings: examples in, ranked spans out.

Evaluation, batch prediction and serving all answer through :class:`Reader`,
which runs the one pipeline: features -> model (length-sorted batches, each
padded to its own longest window) -> decode.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import SpanQAConfig
from .data import QAExample
from .decode import DecodeConfig, ExamplePrediction, SpanDecoder
from .features import Features, WindowConfig, build_features
from .models import load_qa_model, load_tokenizer, resolve_model

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["Reader", "pick_device"]

logger = logging.getLogger(__name__)


def pick_device(device: str | None = None) -> torch.device:
    import torch

    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


class Reader:
    """Extractive QA inference for one model.

    >>> reader = Reader.from_pretrained("path/to/model")
    >>> predictions = reader.predict_examples(examples)
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: SpanQAConfig | None = None,
        *,
        device: str | None = None,
        batch_size: int = 32,
    ) -> None:
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.config = config or SpanQAConfig()
        self.batch_size = batch_size
        self.config.window.check_model_limit(tokenizer, getattr(model.config, "max_position_embeddings", None))

    @classmethod
    def from_pretrained(cls, name: str | Path, *, device: str | None = None, batch_size: int = 32, **overrides: Any) -> Reader:
        """Load a model folder, alias or hub id; ``overrides`` replace saved ``spanqa.json`` values."""
        path = resolve_model(str(name))
        config = SpanQAConfig.load(path) if Path(path).is_dir() else SpanQAConfig()
        for key, value in overrides.items():
            if value is not None:
                if not hasattr(config, key):
                    raise TypeError(f"unknown Reader setting {key!r}")
                setattr(config, key, value)
        config.window  # validates max_length / stride now, before loading weights
        tokenizer = load_tokenizer(path)
        model = load_qa_model(path)
        return cls(model, tokenizer, config, device=device, batch_size=batch_size)

    def features(self, examples: Sequence[QAExample], window: WindowConfig | None = None) -> Features:
        return build_features(examples, self.tokenizer, window or self.config.window)

    def logits(self, features: Features, batch_size: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(window indices, start logits, end logits)`` in length-sorted batches."""
        import torch

        size = batch_size or self.batch_size
        order = np.argsort(-features.lengths, kind="stable")
        for lo in range(0, len(order), size):
            rows = order[lo : lo + size]
            batch = self.tokenizer.pad(features.model_inputs(rows), return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with torch.inference_mode():
                out = self.model(**batch)
            yield rows, out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()

    def predict_examples(
        self,
        examples: Sequence[QAExample],
        decode_config: DecodeConfig | None = None,
        *,
        chunk_size: int = 512,
        progress: bool = False,
    ) -> list[ExamplePrediction]:
        """Predictions for examples, processed in chunks so memory stays bounded."""
        config = decode_config or self.config.decode_config()
        bar = _progress(len(examples), progress)
        out: list[ExamplePrediction] = []
        for lo in range(0, len(examples), chunk_size):
            chunk = examples[lo : lo + chunk_size]
            features = self.features(chunk)
            decoder = SpanDecoder(chunk, features, config)
            for rows, start, end in self.logits(features):
                decoder.add(rows, start, end)
            out.extend(decoder.finalize())
            bar.update(len(chunk))
        bar.close()
        return out


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="question", desc="predicting")
