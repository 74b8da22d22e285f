"""What the machine runs fast: the mixed precision and attention kernels spanqa picks, and why.

Measured, not guessed (figures in ``bench/train_speed.py``'s output and the README):

* CPUs with AVX-512 BF16 or AMX run MiniLM training steps about 2x faster under
  bf16 autocast than in fp32; CPUs without them emulate bf16 and gain nothing.
  For inference on them, weights converted to bf16 once answer 1.4x-1.7x as fast as fp32,
  where autocast gains nothing (``spanqa.runtime.backends.default_precision``).
* On CUDA, PyTorch picks its cuDNN attention backend for bf16/fp16 on Hopper, which
  builds an execution plan for every new sequence length; per-batch padding makes
  nearly every batch a new length, and bf16 ran 3x *slower* than fp32 (issue 14's
  H100 table). The flash / memory-efficient kernels do not re-plan, and padding to a
  multiple of 8 keeps tensor-core shapes and few distinct lengths.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, Literal

__all__ = [
    "cpu_has_fast_bf16",
    "cpu_has_vnni",
    "cuda_has_bf16",
    "auto_mixed_precision",
    "attention_kernels",
    "pad_multiple",
    "release_freed_memory",
    "usable_cores",
]

Precision = Literal["bf16", "fp16"]

CPUINFO = "/proc/cpuinfo"
"""Where Linux lists the CPU's flags (AVX-VNNI is not among the flags torch reports)."""


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AVX-512 BF16 or AMX), not by emulation."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def cpu_has_vnni() -> bool:
    """Whether this CPU multiplies int8 without saturating: x86 with VNNI (AVX-512 VNNI or AVX-VNNI),
    or not x86 at all (ARM's int8 dot products accumulate in 32 bits too).

    x86 CPUs without VNNI multiply uint8 by int8 in 16-bit pair sums (``vpmaddubsw``), which saturate
    for large values: ONNX Runtime advises 7-bit weights there ("reduce_range") for that reason.
    """
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "x86", "i386", "i686"):
        return True
    import torch

    if getattr(torch.cpu, "_is_vnni_supported", lambda: False)():  # AVX-512 VNNI
        return True
    try:
        with open(CPUINFO, encoding="utf-8") as info:
            flags = next((line for line in info if line.startswith("flags")), "")
    except OSError:  # not Linux: AVX-VNNI cannot be told from here
        return False
    return "avx_vnni" in flags.split()


def cuda_has_bf16() -> bool:
    """Whether the CUDA GPU computes bf16 natively (Ampere and later), not by emulation."""
    import torch

    return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def auto_mixed_precision(use_cpu: bool) -> Precision | None:
    """The mixed precision that makes training faster on this machine, or None for fp32.

    Args:
        use_cpu: Whether training runs on the CPU even though an accelerator may exist.
    """
    import torch

    if os.environ.get("ACCELERATE_MIXED_PRECISION"):  # `accelerate launch --mixed_precision` decided already
        return None
    if use_cpu or not torch.accelerator.is_available():
        return "bf16" if cpu_has_fast_bf16() else None
    if torch.cuda.is_available():
        # Ampere and later compute bf16 natively; older GPUs have fp16 tensor cores only (with loss scaling).
        return "bf16" if cuda_has_bf16() else "fp16"
    return None  # MPS, XPU, ...: not measured, so left in fp32


def _device_type(device: Any) -> str:
    return getattr(device, "type", str(device).split(":")[0])


@contextlib.contextmanager
def attention_kernels(device: Any) -> Iterator[None]:
    """Scaled-dot-product attention without the cuDNN backend on CUDA (it re-plans for every new length).

    Args:
        device: The device the model runs on (a ``torch.device`` or its name).
    """
    if _device_type(device) != "cuda":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        yield


def pad_multiple(device: Any) -> int | None:
    """Pad batches to a multiple of 8 on accelerators (tensor-core shapes, few distinct lengths); not on the
    CPU, where it only adds work (measured: 16x201 -> 16x208 was 3% slower).

    Args:
        device: The device the model runs on.
    """
    return None if _device_type(device) == "cpu" else 8


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity mask (which containers and ``taskset`` narrow), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


@functools.cache
def _libc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up once (``find_library`` runs ``ldconfig``); None elsewhere."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl and other C libraries have no malloc_trim
        return None
    return trim


def release_freed_memory() -> None:
    """Hand memory freed by the last chunk back to the operating system (glibc only; elsewhere a no-op).

    Batches padded to their own length make the CPU activation buffers a different size
    every batch; glibc serves them from its heap and keeps what is freed, so a long
    evaluation's resident memory grew with the data (bench/eval_memory.py: 750 -> 1,120 MiB
    from 300 to 3,000 questions; 1.06x with glibc's mmap threshold lowered). Trimming
    after each batch keeps the peak flat at a negligible cost.
    """
    trim = _libc_malloc_trim()
    if trim is not None:
        trim(0)
