"""``spanqa.json``: the settings a model was trained and tuned with, saved beside its weights."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .decode import DecodeConfig
from .errors import ConfigError
from .features import WindowConfig
from .io import write_json

__all__ = ["SpanQAConfig", "CONFIG_NAME"]

CONFIG_NAME = "spanqa.json"


@dataclass
class SpanQAConfig:
    """Everything inference needs besides the weights, so a model answers as it was evaluated."""

    max_length: int = 384
    stride: int = 128
    max_question_tokens: int = 64
    max_answer_length: int = 30
    n_best: int = 20
    null_threshold: float = 0.0
    version_2: bool = False
    spanqa_version: str = ""
    data_fingerprint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def window(self) -> WindowConfig:
        return WindowConfig(self.max_length, self.stride, self.max_question_tokens)

    def decode_config(self, **overrides: Any) -> DecodeConfig:
        settings: dict[str, Any] = {
            "n_best": self.n_best,
            "max_answer_length": self.max_answer_length,
            "null_threshold": self.null_threshold,
            "allow_impossible": self.version_2,
        }
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return DecodeConfig(**settings)

    def save(self, folder: str | Path) -> Path:
        from . import __version__

        self.spanqa_version = __version__
        path = Path(folder) / CONFIG_NAME
        write_json(path, asdict(self))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> SpanQAConfig:
        """The saved settings, or defaults for a model spanqa did not train."""
        path = Path(folder) / CONFIG_NAME
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err.msg})") from None
        known = {f.name for f in fields(cls)}
        extra = {k: v for k, v in data.items() if k not in known}
        config = cls(**{k: v for k, v in data.items() if k in known})
        config.extra.update(extra)
        return config
