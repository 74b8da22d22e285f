"""The server's settings: limits, micro-batching and parallelism, from defaults, ``SPANQA_SERVE_*`` and explicit values.

Each setting is declared once, as a field of :class:`ServeSettings` (name, default, description); the
``spanqa serve`` command line makes an option of each. This module needs pydantic only, so the
command line can read the fields without importing the web stack.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from spanqa.core.errors import ConfigError, did_you_mean, first_line
from spanqa.runtime.devices import usable_cores

__all__ = ["ServeSettings", "serve_settings", "resolve_threads", "usable_cores", "ENV_PREFIX", "MiB"]

MiB = 1024 * 1024
ENV_PREFIX = "SPANQA_SERVE_"


class ServeSettings(BaseSettings):
    """Limits, micro-batching and parallelism of the HTTP server.

    Each field can be set from the environment as ``SPANQA_SERVE_<FIELD>``
    (``SPANQA_SERVE_MAX_BATCH=64``); keyword arguments beat the environment.
    An invalid value raises :class:`~spanqa.core.errors.ConfigError`.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="forbid", use_attribute_docstrings=True
    )

    max_body_bytes: int = Field(1 * MiB, gt=0)
    """Largest request body in bytes; bigger ones get 413 (checked on Content-Length and on the bytes read)."""
    max_context_chars: int = Field(200_000, gt=0)
    """Longest context or document in characters (a 20,000-word document fits); longer gets 413."""
    max_question_chars: int = Field(2_000, gt=0)
    """Longest question in characters; longer gets 413."""
    max_batch: int = Field(32, gt=0)
    """Most questions in one {"questions": [...]} request; more gets 422."""
    max_documents: int = Field(100, gt=0)
    """Most documents ranked for one question; more gets 422."""
    max_top_k: int = Field(100, gt=0)
    """Largest top_k a request may ask for."""
    max_answer_length: int = Field(512, gt=0)
    """Largest per-request max_answer_length (tokens)."""
    passages: int = Field(10, gt=0)
    """With --index: retrieved passages the model reads per question without a context (a request's `passages`: up to max_documents)."""
    request_timeout_s: float = Field(30.0, gt=0, allow_inf_nan=False)
    """Seconds a request may wait for its answers (queue + model); then 504, and work nobody waits for any more is dropped."""
    body_timeout_s: float = Field(20.0, gt=0, allow_inf_nan=False)
    """Seconds a client may take to send a request body after its headers; then 408 and the connection is closed."""
    keep_alive_timeout_s: float = Field(5.0, gt=0, allow_inf_nan=False)
    """Seconds an idle keep-alive connection stays open after a response (uvicorn's timeout_keep_alive)."""
    max_wait_ms: float = Field(5.0, ge=0, allow_inf_nan=False)
    """Milliseconds the batcher waits for more requests after the first one arrives."""
    max_batch_items: int = Field(32, gt=0)
    """Most questions answered in one micro-batch (a bigger single request runs alone)."""
    max_queue_items: int = Field(4096, gt=0)
    """Most questions waiting for the model; beyond it requests get 503 at once."""
    max_request_windows: int = Field(512, gt=0)
    """Most model windows (max_length tokens each) one request may need, all its questions and texts together; more gets 413."""
    max_batch_windows: int = Field(8, gt=0)
    """Most windows one micro-batch step reads: a bigger request is read over several steps, smaller ones answered in between."""
    max_active_windows: int = Field(4096, gt=0)
    """Most windows built and held at once across requests (memory); requests not yet started wait while it is reached."""
    workers: int = Field(1, gt=0)
    """Micro-batches run at once, each in its own thread (1: one batch at a time on all the threads)."""
    threads: int | None = Field(None, gt=0)
    """Intra-op CPU threads per worker (torch.set_num_threads); default (auto): the usable cores divided among the workers."""
    header_timeout_s: float = Field(10.0, gt=0, le=30, allow_inf_nan=False)
    """Seconds a connection may take to send a request's headers (after connecting or a response); then it is closed."""
    max_connections: int = Field(1000, gt=0)
    """Most open connections; at the cap the longest-idle one is closed for a new one (all busy: 503)."""
    max_requests: int = Field(256, gt=0)
    """Most requests handled at once; more get 503 at once."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as err:
            raise ConfigError(_settings_error(err, explicit=set(values))) from None
        except SettingsError as err:  # pragma: no cover - only complex fields are parsed by pydantic-settings itself
            raise ConfigError(first_line(err)) from None

    @field_validator("*", mode="before")  # every setting is a number
    @classmethod
    def _no_bools(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("a boolean is not a number")
        return value

    @field_validator("threads", mode="before")
    @classmethod
    def _auto_threads(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("", "auto"):
            return None
        return value


# What each setting must be, for error messages: every plain int setting is declared with gt=0.
_REQUIREMENTS = {
    **{name: "a positive integer" for name, info in ServeSettings.model_fields.items() if info.annotation is int},
    "threads": "a positive integer or 'auto'",
    **{name: "a finite number of seconds > 0" for name in ("request_timeout_s", "body_timeout_s", "keep_alive_timeout_s")},
    "max_wait_ms": "a finite number of milliseconds >= 0",
    "header_timeout_s": "a finite number of seconds > 0 and <= 30",
}


def _settings_error(err: ValidationError, explicit: set[str]) -> str:
    """One line naming each bad setting: the variable ``SPANQA_SERVE_X`` if it came from the environment."""
    problems = []
    for item in err.errors(include_url=False):
        loc = item.get("loc") or ("?",)
        field = str(loc[0])
        value = item.get("input")
        if item.get("type") == "extra_forbidden":
            problems.append(f"{field}: unknown setting{did_you_mean(field, ServeSettings.model_fields)}")
            continue
        where = field if field in explicit else f"{ENV_PREFIX}{field.upper()}"
        requirement = _REQUIREMENTS.get(field)
        if requirement:
            problems.append(f"{where}: must be {requirement}, got {value!r}")
        else:  # pragma: no cover - every field has a requirement
            problems.append(f"{where}: {item.get('msg', 'invalid value')}, got {value!r}")
    return "; ".join(problems) or "invalid serve settings"


def serve_settings(**overrides: Any) -> ServeSettings:
    """Settings from the defaults, ``SPANQA_SERVE_*`` environment variables and ``overrides``, in increasing precedence.

    ``None`` overrides are ignored (an unset command-line option). Raises
    :class:`~spanqa.core.errors.ConfigError` for an invalid value, an unknown
    setting, or an unknown ``SPANQA_SERVE_*`` variable (a misspelt one would
    otherwise be ignored silently).
    """
    fields = ServeSettings.model_fields
    values = {name: value for name, value in overrides.items() if value is not None}
    for name in values:
        if name not in fields:
            raise ConfigError(f"{name}: unknown serve setting{did_you_mean(name, fields)}")
    known = {ENV_PREFIX + name.upper() for name in fields}
    for key in os.environ:
        if key.upper().startswith(ENV_PREFIX) and key.upper() not in known:
            raise ConfigError(f"{key}: unknown setting{did_you_mean(key.upper(), sorted(known))}; the settings are {', '.join(sorted(known))}")
    return ServeSettings(**values)


def resolve_threads(settings: ServeSettings) -> int:
    """Intra-op threads per worker: ``settings.threads``, or by default the usable cores divided among the workers.

    The default never exceeds torch's own setting (``torch.get_num_threads()``),
    so ``OMP_NUM_THREADS`` or an earlier ``torch.set_num_threads`` still caps it.

    Why one worker on all cores by default: requests are already micro-batched,
    and one forward pass over a batch of 2B windows on all cores keeps the
    matrix multiplications larger (better vectorised, the weights read once)
    than two passes of B windows on half the cores each; while a batch runs,
    new requests queue up and become the next, bigger batch. A lone request
    also gets its answer soonest with every core on it. More workers pay off
    mainly on many-core machines, where a small model's pass cannot use all
    cores and the single-threaded tokenising and decoding of one batch can
    overlap another's forward pass: set ``workers`` (e.g. 2-4, cores/workers
    threads each) and measure with ``bench/load_serve.py``.
    """
    if settings.threads is not None:
        return settings.threads
    share = max(1, usable_cores() // settings.workers)
    try:
        import torch

        return max(1, min(share, torch.get_num_threads()))
    except ImportError:  # pragma: no cover - torch is a dependency
        return share
