"""How a model is loaded and run: the load options, declared once and passed whole.

Every command that loads a model (``ask``, ``predict`` on either engine, ``evaluate``, ``serve``,
``report``), the pipeline and the Haystack component build one :class:`LoadOptions` and hand it
to :meth:`~spanqa.reading.reader.Reader.from_pretrained`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from spanqa.core.errors import ConfigError, did_you_mean
from spanqa.runtime.backends import BACKENDS, BackendName, Precision, check_batch_size, check_precision

__all__ = ["LoadOptions", "LOAD_OPTION_NAMES"]


@dataclass(frozen=True)
class LoadOptions:
    """Where and how a model runs.

    Each field's ``metadata["help"]`` is its one-line description: every command that loads a model
    takes the fields as options (``--device``, ``--backend``, ``--dtype``, ``--batch-size``).

    Attributes:
        device: ``cpu``, ``cuda``, ``cuda:1``, ``mps``; None: CUDA when available for PyTorch, the CPU for ONNX.
        backend: ``auto`` (ONNX Runtime for a ``spanqa export`` folder, else PyTorch), ``torch`` or ``onnx``.
        dtype: PyTorch precision, ``bf16``, ``fp16`` or ``fp32``; None: bf16 where the hardware computes
            it natively (GPUs from Ampere on, CPUs with AVX-512 BF16 or AMX), else fp32; evaluation
            runs fp32 on the CPU (:func:`~spanqa.runtime.backends.evaluation_precision`). ONNX models
            run in the precision they were exported in.
        batch_size: Windows per forward pass; None: what suits the backend, 8 for ONNX Runtime on the CPU
            (:data:`~spanqa.runtime.backends.ONNX_CPU_BATCH_SIZE`), else 32.

    Raises:
        ConfigError: an unknown backend or dtype, or a batch size that is not a positive integer.
    """

    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, mps (default: cuda if available)."})
    backend: BackendName = field(
        default="auto", metadata={"help": "What runs the model: auto (ONNX Runtime for a `spanqa export` folder, else PyTorch), torch or onnx."}
    )
    dtype: Precision | None = field(
        default=None,
        metadata={"help": "PyTorch precision: bf16, fp16 or fp32 (default: bf16 on GPUs and CPUs that compute it natively, else fp32; evaluate: fp32 on CPU)."},
    )
    batch_size: int | None = field(default=None, metadata={"help": "Windows per forward pass (default: 8 for ONNX models on the CPU, else 32)."})

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}{did_you_mean(str(self.backend), BACKENDS)}")
        check_precision(self.dtype)
        if self.batch_size is not None:
            check_batch_size(self.batch_size)

    def updated(self, **overrides: Any) -> LoadOptions:
        """A copy with ``overrides`` applied; None values keep this object's value.

        Args:
            **overrides: :class:`LoadOptions` fields.
        """
        unknown = set(overrides) - LOAD_OPTION_NAMES
        if unknown:
            raise TypeError(f"unknown load option(s) {', '.join(sorted(unknown))}; the options are {', '.join(sorted(LOAD_OPTION_NAMES))}")
        given = {name: value for name, value in overrides.items() if value is not None}
        return replace(self, **given) if given else self


LOAD_OPTION_NAMES = frozenset(f.name for f in fields(LoadOptions))
