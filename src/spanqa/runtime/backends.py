"""Where the model runs: PyTorch or ONNX Runtime behind one small interface.

A backend takes a padded batch of windows as numpy arrays and returns the start
and end logits as float32 numpy arrays of shape (batch, sequence). Everything
before (windows, padding, length-sorted batches) and after (decoding) is shared,
so every backend gives the same answers up to floating-point noise.

>>> backend = OnnxBackend("my-model-onnx")
>>> start, end = backend({"input_ids": ids, "attention_mask": mask})
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, get_args, runtime_checkable

import numpy as np

from spanqa.core.errors import ConfigError, ModelError, did_you_mean, first_line
from spanqa.runtime.devices import attention_kernels, cpu_has_fast_bf16, cpu_has_vnni, cuda_has_bf16, usable_cores

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PreTrainedModel

__all__ = [
    "Backend",
    "BackendName",
    "Precision",
    "TorchBackend",
    "OnnxBackend",
    "ONNX_FILE",
    "MODEL_INPUTS",
    "DEFAULT_BATCH_SIZE",
    "ONNX_CPU_BATCH_SIZE",
    "backend_batch_size",
    "check_batch_size",
    "choose_backend",
    "warn_if_int8_may_saturate",
    "default_precision",
    "evaluation_precision",
    "import_onnxruntime",
    "pick_device",
]

logger = logging.getLogger(__name__)

BackendName = Literal["auto", "torch", "onnx"]
Precision = Literal["bf16", "fp16", "fp32"]
BACKENDS: tuple[str, ...] = get_args(BackendName)
PRECISIONS: tuple[str, ...] = get_args(Precision)

ONNX_FILE = "model.onnx"
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
"""The inputs an extractive-QA encoder may take, in the order the ONNX export declares them."""

ONNX_INSTALL_HINT = 'pip install "spanqa[onnx]"'  # the README's spelling

DEFAULT_BATCH_SIZE = 32
"""Windows per forward pass unless the backend prefers another number (PyTorch, and ONNX Runtime on a GPU)."""
ONNX_CPU_BATCH_SIZE = 8
"""Windows per forward pass for ONNX Runtime on the CPU.

Its CPU kernels run each op over the whole batch before the next op starts, so every op reads and
writes the batch's activations whole; probably why smaller batches run faster per window: the
feed-forward activations of 32 windows of 300 tokens (MiniLM-L6: 1,536 floats a token) take 59 MB,
more than a CPU's last-level cache, of 8 windows 15 MB.
Measured on a 2-core AMD EPYC over 300 XQuAD-en questions (``bench/infer_speed.py --arms
onnx,onnx:32,onnx-int8,onnx-int8:32``, two runs): 8 windows per pass gave the fp32 export 1.20x and
1.15x the questions/s of 32, the int8 export 1.10x and 1.08x (over all 1,190: 1.05x and 1.12x);
4 windows were no faster than 8.
PyTorch (oneDNN, bf16 or fp32) ran alike at 8, 16 and 32."""


@runtime_checkable
class Backend(Protocol):
    """Runs the model on one padded batch of windows.

    Attributes:
        input_names: The inputs the model takes (a subset of :data:`MODEL_INPUTS`);
            other arrays of a batch are not passed on.
        device: Where it runs (a ``torch.device`` for PyTorch, ``"cpu"``/``"cuda"`` for ONNX Runtime).
        max_positions: The model's position-embedding limit, or None when unknown.

    A backend may also set ``batch_size``, the windows per forward pass that suit it (see
    :func:`backend_batch_size`); without it, :data:`DEFAULT_BATCH_SIZE`.
    """

    input_names: tuple[str, ...]
    max_positions: int | None

    @property
    def device(self) -> Any: ...

    def __call__(self, batch: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits, float32 numpy arrays of shape (batch, sequence)."""
        ...


def pick_device(device: str | None = None) -> torch.device:
    """The torch device to run on: ``device`` when given, else CUDA when available, else the CPU.

    Args:
        device: ``cpu``, ``cuda``, ``cuda:1``, ``mps``, or None.
    """
    import torch

    if device:
        return _check_device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _check_device(name: str) -> torch.device:
    """``torch.device(name)`` if this machine has it, else a ConfigError saying what it has."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N or mps{did_you_mean(name, ('cpu', 'cuda', 'mps'))}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch is a CPU-only build" if torch.version.cuda is None else "torch sees no CUDA GPU"
            raise ConfigError(f"device {name!r}: {build}; use device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: there are {torch.cuda.device_count()} CUDA GPUs (cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r}: Apple's MPS is not available on this machine; use device cpu")
    elif device.type not in ("cpu", "cuda", "mps") and not hasattr(torch, device.type):
        raise ConfigError(f"device {name!r}: this torch has no {device.type} support; use cpu, cuda or mps")
    return device


def default_precision(device: torch.device) -> Precision:
    """bf16 where the hardware computes it natively, fp32 elsewhere; ``dtype="fp32"`` is exact anywhere.

    * CUDA GPUs from Ampere on: bf16 (autocast).
    * CPUs with AVX-512 BF16 or AMX (:func:`~spanqa.runtime.devices.cpu_has_fast_bf16`): bf16. A model
      the backend owns (``Reader.from_pretrained``) has its weights converted to bf16 once, its
      linear layers run through oneDNN and its QA head in fp32 (see :class:`TorchBackend`).
      Measured on a 2-core AMD EPYC with AVX-512 BF16 (``bench/infer_speed.py``: a MiniLM-L6
      fine-tuned on XQuAD-en articles 1-36, all 1,190 XQuAD-en questions, eight runs on a busy
      shared machine): 1.40x-1.66x the questions/s of fp32 through oneDNN in the same run in seven
      of the eight (median of all eight 1.46x; in the other fp32 ran in a quiet spell), and
      1.56x-1.62x in four runs over 300 questions on a quieter machine (4.7x-4.9x the notebook
      recipe); bf16 autocast was no faster than fp32 (0.78x-1.01x). The same top answer for 1,185
      of the 1,190 (autocast: 1,182); with ``spanqa evaluate --dtype bf16`` on the 265 questions of
      articles 37-48, EM/F1 33.21/50.03 against fp32's 32.83/49.60 (4 answers changed, each a
      near-tie in fp32: its top two spans within 0.006 in probability). bf16 scores move by up to
      0.01 with the other windows of a batch (padding changes the kernels' blocking); top answers
      did not (0 of 120 alone against batched).
      Evaluation stays fp32 on the CPU: :func:`evaluation_precision`.
    * Other CPUs emulate bf16 and gain nothing: fp32 (linear layers through oneDNN).

    Args:
        device: The device the model runs on.
    """
    if device.type == "cuda":
        return "bf16" if cuda_has_bf16() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"


def evaluation_precision(device: str | None) -> Precision | None:
    """The precision evaluation runs in when none is asked for: fp32 on the CPU, the device's default elsewhere.

    Evaluation scores are compared across runs, machines and releases, so on the CPU they stay the
    exact fp32 ones whatever the CPU: bf16 moved a MiniLM's EM/F1 on 265 XQuAD-en questions by
    +0.38/+0.43 (4 near-tied answers; figures in :func:`default_precision`), more than the 0.3 that
    a comparison of two models should be able to trust.
    GPUs evaluate in their bf16 default, as before. ``spanqa evaluate --dtype bf16`` asks for bf16.

    Args:
        device: The device asked for (None: CUDA when available, else the CPU).
    """
    return "fp32" if pick_device(device).type == "cpu" else None


def backend_batch_size(backend: Any) -> int:
    """The windows per forward pass that suit ``backend``: its ``batch_size`` if it sets one, else :data:`DEFAULT_BATCH_SIZE`.

    Args:
        backend: A :class:`Backend`.
    """
    size = getattr(backend, "batch_size", None)
    return check_batch_size(size) if size is not None else DEFAULT_BATCH_SIZE


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` if it is a positive integer (windows per forward pass), else a ConfigError."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size (windows per forward pass) must be a positive integer, got {batch_size!r}")
    return batch_size


def check_precision(dtype: str | None) -> Precision | None:
    """``dtype`` if it names a precision spanqa knows, else a ConfigError.

    Args:
        dtype: ``bf16``, ``fp16``, ``fp32`` or None (the device's default).
    """
    if dtype is None or dtype in PRECISIONS:
        return cast(Precision, dtype)
    raise ConfigError(f"unknown dtype {dtype!r}; choose one of {', '.join(PRECISIONS)}{did_you_mean(dtype, PRECISIONS)}")


def _forward_inputs(model: Any) -> tuple[str, ...]:
    """The :data:`MODEL_INPUTS` that ``model.forward`` accepts (all of them when it takes ``**kwargs``)."""
    params = inspect.signature(model.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return MODEL_INPUTS
    return tuple(name for name in MODEL_INPUTS if name in params)


class TorchBackend:
    """A PyTorch ``...ForQuestionAnswering`` model (or any module returning ``start_logits``/``end_logits``).

    Args:
        model: The model; it is moved to ``device`` and put in eval mode.
        device: ``cpu``, ``cuda``, ``cuda:1``, ``mps``; default: CUDA when available.
        dtype: ``bf16`` or ``fp16`` run under ``torch.autocast`` (except bf16 on the CPU with
            ``onednn``, below); ``fp32`` runs as loaded; default: :func:`default_precision`, bf16
            where the hardware computes it natively (Ampere GPUs, CPUs with AVX-512 BF16 or AMX), else fp32.
        onednn: The backend owns ``model`` and may rewrite it for the CPU (``Reader.from_pretrained``
            sets it). In fp32 the model's ``nn.Linear`` layers run through oneDNN (weights
            reordered once), faster than the default BLAS path, markedly so on AMD CPUs. In bf16
            the weights are converted to bf16 once instead of autocasting every call, the QA head
            stays fp32 (its input is cast up, so the logits are not rounded to bf16), and the
            linear layers run through oneDNN's bf16 kernels. Each step is undone if the converted
            model fails or disagrees with the one before on a probe batch (bf16 then falls back to
            autocast). Without ``onednn`` the model is left as passed.
    """

    def __init__(
        self, model: PreTrainedModel, device: str | torch.device | None = None, dtype: Precision | None = None, *, onednn: bool = False
    ) -> None:
        self._device = pick_device(str(device) if device is not None else None)
        self.model = model.to(self._device).eval()  # type: ignore[arg-type]  # to() takes a device too
        self.dtype: Precision = check_precision(dtype) or default_precision(self._device)
        self.input_names = _forward_inputs(model)
        self.max_positions: int | None = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        owned_cpu = onednn and self._device.type == "cpu"
        self.bf16_weights = owned_cpu and self.dtype == "bf16" and _use_bf16_weights(self.model, self.input_names)
        """Whether the model's weights were converted to bf16 (the CPU default on native-bf16 CPUs), so no autocast."""
        self.onednn = owned_cpu and (self.dtype == "fp32" or self.bf16_weights) and _use_onednn_linears(self.model, self.input_names)

    @property
    def device(self) -> torch.device:
        return self._device

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.dtype == "fp32" or self.bf16_weights:
            return contextlib.nullcontext()
        return torch.autocast(self._device.type, dtype=torch.bfloat16 if self.dtype == "bf16" else torch.float16)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits (float32, on the CPU) of one padded batch.

        Args:
            batch: Padded integer arrays by input name; names the model does not take are ignored.
        """
        import torch

        tensors = {
            name: torch.from_numpy(np.asarray(batch[name], dtype=np.int64)).to(self._device) for name in self.input_names if name in batch
        }
        with torch.inference_mode(), attention_kernels(self._device), self._autocast():
            out = self.model(**tensors)
        return out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()


def _onednn_linear_class() -> type | None:
    """A ``nn.Linear`` stand-in that runs through oneDNN, or None when this torch lacks the op."""
    import torch

    ops = torch.ops.mkldnn
    if not (torch.backends.mkldnn.is_available() and hasattr(ops, "_linear_pointwise") and hasattr(ops, "_reorder_linear_weight")):
        return None

    class OneDnnLinear(torch.nn.Module):
        """``nn.Linear`` with its weight reordered once for oneDNN's inner product (fp32 or bf16).

        The op is the one torch.compile's inductor emits for frozen CPU linears; it takes dense
        activations, so nothing is converted per call (``torch.utils.mkldnn.MkldnnLinear``
        converts input and output each time).
        """

        def __init__(self, linear: torch.nn.Linear, activation: str = "none") -> None:
            super().__init__()
            self.register_buffer("weight", ops._reorder_linear_weight(linear.weight.detach(), None))
            self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())
            self.activation = activation  # "gelu": the exact (erf) GELU applied inside the same op
            self.algorithm = "none" if activation == "gelu" else ""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return ops._linear_pointwise(x, self.weight, self.bias, self.activation, [], self.algorithm)

    return OneDnnLinear


def _probe_batch(model: Any, input_names: tuple[str, ...]) -> dict[str, Any]:
    """Two short windows of token ids the model's vocabulary has, for checking a rewritten model."""
    import torch

    vocab = getattr(getattr(model, "config", None), "vocab_size", None) or 100
    ids = torch.arange(1, 17).remainder(vocab).reshape(2, 8)
    probe = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    return {name: tensor for name, tensor in probe.items() if name in input_names}


def _probe_logits(model: Any, probe: Mapping[str, Any]) -> tuple[Any, Any]:
    import torch

    with torch.inference_mode():
        out = model(**probe)
    return out["start_logits"].float(), out["end_logits"].float()


def _close(got: tuple[Any, Any], want: tuple[Any, Any], tolerance: float) -> bool:
    """Whether both logit tensors agree within ``tolerance`` of their scale (at least 1)."""
    import torch

    scale = max(1.0, max(float(w.abs().max()) for w in want))
    return all(bool(torch.isfinite(g).all()) and float((g - w).abs().max()) <= tolerance * scale for g, w in zip(got, want))


def _use_onednn_linears(model: Any, input_names: tuple[str, ...]) -> bool:
    """Swap ``model``'s fp32 or bf16 ``nn.Linear`` layers for oneDNN ones if that gives the same logits on a probe batch.

    The same GEMMs through oneDNN instead of MKL's sgemm (which takes a slow path on AMD CPUs):
    1.6x per layer, 1.3x end to end on MiniLM-L6 on the 2-core EPYC, logits equal up to float
    noise. bf16 layers (:func:`_use_bf16_weights`) gain too: their weights are packed once for
    oneDNN's bf16 kernels instead of per call. Undone, and False returned, when this torch lacks
    the op or the model's code cannot run with the new layers (e.g. it reads a layer's ``weight`` dtype).
    """
    import torch

    linear_class = _onednn_linear_class()
    layers = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is torch.nn.Linear and child.weight.dtype in (torch.float32, torch.bfloat16) and child.weight.device.type == "cpu"
    ]
    if linear_class is None or not layers:
        return False
    # fp32 layers give the same logits up to float noise; bf16 ones up to bf16 rounding (oneDNN's kernels
    # round their outputs where the BLAS path may not), far below what the bf16 weights themselves move.
    tolerance = 1e-4 if all(child.weight.dtype == torch.float32 for _, _, child in layers) else 1e-2
    probe = _probe_batch(model, input_names)
    try:
        before = _probe_logits(model, probe)
        for parent, name, child in layers:
            setattr(parent, name, linear_class(child))
        same = _close(_probe_logits(model, probe), before, tolerance)
    except Exception:  # each architecture's own forward may not take them; keep the model as loaded
        same = False
    if not same:
        for parent, name, child in layers:
            setattr(parent, name, child)
    elif tolerance == 1e-4:
        _fuse_gelu(model, linear_class, {(id(parent), name): child for parent, name, child in layers}, probe, before)
    return same


GELU_AFTER_LINEAR = (("dense", "intermediate_act_fn"), ("lin1", "activation"))
"""Children (linear, activation) that a block applies one after the other: the BERT family's
``...Intermediate`` (BERT, RoBERTa, XLM-R, ELECTRA, DeBERTa) and DistilBERT's ``FFN``."""


def _is_exact_gelu(module: Any) -> bool:
    """Whether ``module`` is the erf GELU (transformers' ``gelu``, ``nn.GELU()``), not the tanh approximation."""
    import torch

    if type(module) is torch.nn.GELU:
        return module.approximate == "none"
    return type(module).__name__ == "GELUActivation" and getattr(module, "act", None) is torch.nn.functional.gelu


def _fuse_gelu(model: Any, linear_class: type, originals: Mapping[tuple[int, str], Any], probe: Mapping[str, Any], before: tuple[Any, Any]) -> None:
    """Fold the exact GELU after an fp32 oneDNN linear into the linear's own op: one pass over its
    output instead of two, bit-identical (MiniLM's 1536-wide layer: 176 -> 139 ms a batch on the
    2-core EPYC; about 1.05x end to end, logits bit-identical on 300 XQuAD questions). Undone if the
    logits change on the probe batch.
    (For bf16 layers oneDNN's fused GELU is no faster and rounds once less, so they stay as they are.)
    """
    import torch

    swaps = []  # (parent, child name, before, after)
    for parent in model.modules():
        for linear_name, activation_name in GELU_AFTER_LINEAR:
            linear, activation = originals.get((id(parent), linear_name)), getattr(parent, activation_name, None)
            if linear is not None and linear.weight.dtype == torch.float32 and _is_exact_gelu(activation):
                swaps.append((parent, linear_name, getattr(parent, linear_name), linear_class(linear, activation="gelu")))
                swaps.append((parent, activation_name, activation, torch.nn.Identity()))
    if not swaps:
        return
    try:
        for parent, name, _, after in swaps:
            setattr(parent, name, after)
        same = _close(_probe_logits(model, probe), before, 1e-4)
    except Exception:  # a block that applies them otherwise: keep them apart
        same = False
    if not same:
        for parent, name, previous, _ in swaps:
            setattr(parent, name, previous)


def _fp32_head_class() -> type:
    import torch

    class Fp32Head(torch.nn.Module):
        """A QA head kept in fp32 inside a bf16 model: its input is cast up, so the logits are not rounded to bf16."""

        def __init__(self, linear: torch.nn.Linear) -> None:
            super().__init__()
            self.linear = linear

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x.float())

    return Fp32Head


def _use_bf16_weights(model: Any, input_names: tuple[str, ...]) -> bool:
    """Convert ``model``'s weights to bf16 once (its ``qa_outputs`` head stays fp32) if it still runs and agrees on a probe batch.

    Faster on the CPU than autocast, which casts every weight on every call (with the oneDNN
    layers 1.4x-1.7x fp32's questions/s where autocast gave 0.8x-1.0x; :func:`default_precision`).
    bf16 keeps about 3 significant digits, so the probe allows 10% of the logits' scale: it
    catches a model that breaks in bf16, not rounding. Undone, and False returned, otherwise.
    """
    import torch

    params = list(model.parameters())
    if not params or any(t.device.type != "cpu" or t.dtype != torch.float32 for t in params):
        return False
    probe = _probe_batch(model, input_names)
    originals = [t.data for t in params]  # model.to() swaps each parameter's data: these are put back if needed
    buffers = [(module, name, buffer) for module in model.modules() for name, buffer in module._buffers.items() if buffer is not None]
    head = getattr(model, "qa_outputs", None)
    wrapped = isinstance(head, torch.nn.Linear) and type(head) is torch.nn.Linear
    head_params = {id(t) for t in head.parameters()} if isinstance(head, torch.nn.Linear) else set()
    try:
        before = _probe_logits(model, probe)
        model.to(torch.bfloat16)
        if wrapped:
            for tensor, original in zip(params, originals):
                if id(tensor) in head_params:
                    tensor.data = original
            model.qa_outputs = _fp32_head_class()(head)
        same = _close(_probe_logits(model, probe), before, 0.1)
    except Exception:  # an architecture whose code needs fp32 weights
        same = False
    if not same:
        if wrapped:
            model.qa_outputs = head
        for tensor, original in zip(params, originals):
            tensor.data = original
        for module, name, buffer in buffers:
            module._buffers[name] = buffer
    return same


def import_onnxruntime() -> Any:
    """``onnxruntime``, or a ModelError that says how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise ModelError(f"ONNX models need onnxruntime: {ONNX_INSTALL_HINT}") from None
    return onnxruntime


class OnnxBackend:
    """An exported ``model.onnx`` (see :func:`spanqa.jobs.export.export_onnx`) run by ONNX Runtime.

    Args:
        folder: The exported folder (``model.onnx`` plus ``config.json``), or the ``.onnx`` file itself.
        threads: Threads per forward pass (``intra_op_num_threads``); default: the cores this process may use.
        device: ``cpu`` (default) or ``cuda``/``cuda:N``, which needs onnxruntime-gpu.
    """

    def __init__(self, folder: str | Path, threads: int | None = None, device: str | None = None) -> None:
        path = Path(folder)
        file = path if path.suffix == ".onnx" else path / ONNX_FILE
        if not file.is_file():
            raise ModelError(f"{folder}: no {ONNX_FILE} in this folder; create one with: spanqa export MODEL {folder} --onnx")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be a positive integer, got {threads}")
        ort = import_onnxruntime()
        self._device = _onnx_device(device)
        self.batch_size = ONNX_CPU_BATCH_SIZE if self._device == "cpu" else DEFAULT_BATCH_SIZE
        """Windows per forward pass that suit this session (see :data:`ONNX_CPU_BATCH_SIZE`)."""
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or usable_cores()
        try:
            self.session = ort.InferenceSession(str(file), options, providers=_providers(ort, self._device))
        except Exception as err:  # onnxruntime raises its own exception types for unreadable or invalid models
            raise ModelError(f"{file}: ONNX Runtime cannot load it: {first_line(err)}") from None
        declared = [i.name for i in self.session.get_inputs()]
        unknown = [name for name in declared if name not in MODEL_INPUTS]
        if unknown:
            raise ModelError(f"{file}: unexpected model inputs {unknown}; spanqa feeds only {', '.join(MODEL_INPUTS)}")
        self.input_names = tuple(declared)
        outputs = {o.name for o in self.session.get_outputs()}
        if not {"start_logits", "end_logits"} <= outputs:
            raise ModelError(f"{file}: outputs {sorted(outputs)}; a QA model has start_logits and end_logits")
        self.max_positions = _max_positions(file.parent / "config.json")

    @property
    def device(self) -> str:
        return self._device

    def __call__(self, batch: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits (float32) of one padded batch.

        Args:
            batch: Padded integer arrays by input name; only the inputs the graph declares are fed
                (as int64; a missing ``token_type_ids`` is all zeros, as the PyTorch models default).
        """
        ids = np.asarray(batch["input_ids"], dtype=np.int64)
        feed = {}
        for name in self.input_names:
            if name in batch:
                feed[name] = np.ascontiguousarray(batch[name], dtype=np.int64)
            elif name == "token_type_ids":
                feed[name] = np.zeros_like(ids)
            else:
                raise ModelError(f"the ONNX model needs {name!r}, which the tokenizer did not produce")
        start, end = self.session.run(["start_logits", "end_logits"], feed)
        return np.asarray(start, dtype=np.float32), np.asarray(end, dtype=np.float32)


def warn_if_int8_may_saturate(name: str, device: str) -> None:
    """Log a warning when an int8 export runs on an x86 CPU without VNNI.

    spanqa's int8 exports multiply uint8 activations by int8 weights, which ONNX Runtime computes
    with VNNI's 32-bit dot products where the CPU has them (every CPU this was measured on) and
    with saturating 16-bit pair sums where it does not, which can change answers.

    Args:
        name: The model, as the user named it.
        device: Where ONNX Runtime runs it.
    """
    if device != "cpu" or cpu_has_vnni():
        return
    logger.warning(
        "%s is an int8 export and this CPU has no VNNI instructions, where ONNX Runtime's int8 products can "
        "saturate and answers may change: compare with the fp32 export (spanqa export MODEL OUT --onnx) "
        "with spanqa evaluate before relying on it",
        name,
    )


def _onnx_device(device: str | None) -> str:
    """``cpu`` unless CUDA is asked for: ONNX Runtime's CPU build is the one installed by default."""
    if device is None or device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        return device
    raise ConfigError(f"the ONNX backend runs on cpu or cuda, not {device!r}")


def _providers(ort: Any, device: str) -> list[Any]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise ConfigError(f"device {device!r} with the ONNX backend needs onnxruntime-gpu (this onnxruntime has no CUDA provider)")
    index = int(device.partition(":")[2] or 0)
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


def _max_positions(config_file: Path) -> int | None:
    """``max_position_embeddings`` from an exported folder's ``config.json``, if there is one."""
    try:
        value = json.loads(config_file.read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def _has_torch_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json"))


def choose_backend(path: str, backend: str = "auto") -> Literal["torch", "onnx"]:
    """Which backend loads the model at ``path``.

    ``auto`` picks ONNX for a folder that holds ``model.onnx`` and no safetensors weights
    (what ``spanqa export`` writes), PyTorch otherwise.

    Args:
        path: A resolved model folder or hub id.
        backend: ``auto``, ``torch`` or ``onnx``.

    Raises:
        ConfigError: an unknown backend name.
        ModelError: ``onnx`` for a model without ``model.onnx``, or ``torch`` for an ONNX-only folder.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}{did_you_mean(backend, BACKENDS)}")
    folder = Path(path)
    has_onnx = folder.is_dir() and (folder / ONNX_FILE).is_file()
    has_weights = folder.is_dir() and _has_torch_weights(folder)
    if backend == "onnx" and not has_onnx:
        raise ModelError(f"{path}: no {ONNX_FILE} here, so the ONNX backend cannot run it; create one with: spanqa export {path} OUT --onnx")
    if backend == "torch" and has_onnx and not has_weights:
        raise ModelError(f"{path}: holds an ONNX model and no PyTorch weights; use --backend onnx (or auto)")
    if backend == "auto":
        return "onnx" if has_onnx and not has_weights else "torch"
    return "onnx" if backend == "onnx" else "torch"
