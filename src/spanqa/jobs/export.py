"""Export a QA model to ONNX (optionally int8) for fast CPU inference with ONNX Runtime.

The output folder is self-contained: ``model.onnx``, the tokenizer files,
``config.json`` and ``spanqa.json``, so ``Reader.from_pretrained(folder)`` and
every command (``evaluate``, ``predict``, ``ask``, ``serve``) load it like the
PyTorch model, with the same windows and decoding.

>>> export_onnx("my-model", "my-model-onnx", int8=True)
PosixPath('my-model-onnx')
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spanqa.core.config import SpanQAConfig
from spanqa.core.errors import ConfigError, ModelError, first_line
from spanqa.core.io import atomic_folder, check_output_folder, share_files
from spanqa.runtime.backends import MODEL_INPUTS, ONNX_FILE, ONNX_INSTALL_HINT, import_onnxruntime
from spanqa.runtime.models import load_qa_model, load_tokenizer, resolve_model

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["export_onnx"]

logger = logging.getLogger(__name__)

MAX_ONNX_BYTES = 2**31 - 1
"""protobuf's limit on one file; larger models would need ONNX external data, which export does not write."""

# The dummy batch the graph is traced with: two rows of different lengths, so the padding mask is a
# real input of the graph (with no padding to trace, code that skips an all-ones mask would drop it).
_DUMMY_QUESTIONS = ["Who keeps the lighthouse on Gull Point?", "When?"]
_DUMMY_CONTEXTS = ["The lighthouse on Gull Point has been kept by Marta Ilves since 1902.", "In 1902."]


def export_onnx(
    model: str | Path,
    out: str | Path,
    *,
    int8: bool = False,
    opset: int = 17,
    optimize: bool = True,
    overwrite: bool = False,
) -> Path:
    """Export a QA model to ``OUT/model.onnx`` with its tokenizer, ``config.json`` and ``spanqa.json``.

    The graph takes ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the
    tokenizer produces them) of any batch size and length, and returns ``start_logits``
    and ``end_logits``. The folder is built beside ``out`` and renamed into place, so
    ``out`` never holds a half-written export; a failed or killed export leaves no staging
    folder behind once the next export to ``out`` starts.

    Args:
        model: Model folder, alias (``minilm``) or hub id of a PyTorch QA model.
        out: The folder to create.
        int8: Quantize the weights to int8 (dynamic quantization): about 4x smaller and
            faster on CPUs, answers may differ slightly from fp32.
        opset: ONNX opset version.
        optimize: Fuse attention, LayerNorm and GELU with ONNX Runtime's transformer optimizer.
        overwrite: Replace ``out`` if it exists and is not empty.

    Returns:
        The output folder.

    Raises:
        ModelError: onnx or onnxruntime missing, or the model cannot be exported.
        ConfigError: ``out`` exists and is not empty (without ``overwrite``), or is the model itself.
    """
    import_onnxruntime()
    _import_onnx()
    source = resolve_model(str(model))
    target = Path(out).expanduser()
    _check_target(target, source, overwrite)
    tokenizer = load_tokenizer(source)
    # Eager attention: its MatMul/Softmax pattern is the one ONNX Runtime's optimizer fuses into
    # its Attention kernel (see _export_graph); the weights and results are the same as with SDPA.
    qa_model = load_qa_model(source, attn_implementation="eager").eval()
    _check_size(qa_model)
    # Staged beside OUT and swapped in whole (atomic_folder): a failure removes the staging folder, and
    # the staging of a killed run (model-sized) is removed by the next export to OUT (in _check_target).
    with atomic_folder(target) as staging:
        onnx_file = _build_graph(qa_model, tokenizer, staging, int8=int8, opset=opset, optimize=optimize)
        onnx_file.rename(staging / ONNX_FILE)
        tokenizer.save_pretrained(staging)
        qa_model.config.save_pretrained(staging)
        _save_settings(source, staging, {"format": "onnx", "int8": int8, "opset": opset, "optimized": optimize, "source": str(model)})
        share_files(staging)
    logger.info("exported %s to %s (%s, %.1f MB)", model, target / ONNX_FILE, "int8" if int8 else "fp32", (target / ONNX_FILE).stat().st_size / 1e6)
    return target


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ModelError(f"ONNX export needs the onnx package: {ONNX_INSTALL_HINT}") from None
    return onnx


def _check_target(target: Path, source: str, overwrite: bool) -> None:
    """Refuse an output that would clobber work: the model itself, a file, or a non-empty folder."""
    src = Path(source).resolve()
    if src.exists() and (src == target.resolve() or target.resolve() in src.parents):
        raise ConfigError(f"{target}: would replace the model being exported ({source}); choose another output folder")
    check_output_folder(target, overwrite, what="export", error=ConfigError)


def _check_size(model: PreTrainedModel) -> None:
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    if size > MAX_ONNX_BYTES:
        raise ModelError(f"the model has {size / 2**30:.1f} GiB of weights; ONNX files are limited to 2 GiB and export does not write external data")


def _build_graph(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, work: Path, *, int8: bool, opset: int, optimize: bool) -> Path:
    """Export, optionally optimize, optionally quantize; returns the last stage's file (the others are removed)."""
    current = _export_graph(model, tokenizer, work / "exported.onnx", opset)
    if optimize:
        current = _replace_stage(current, _optimize(current, work / "optimized.onnx", model.config))
    if int8:
        current = _replace_stage(current, _quantize(current, work / "int8.onnx"))
    return current


def _replace_stage(previous: Path, produced: Path) -> Path:
    previous.unlink()
    return produced


def _input_names(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The graph inputs: what the tokenizer produces, in :data:`MODEL_INPUTS` order."""
    produced = set(tokenizer.model_input_names)
    return [name for name in MODEL_INPUTS if name in produced]


def _wrapper(model: PreTrainedModel, names: list[str]) -> torch.nn.Module:
    """A module taking the inputs positionally and returning ``(start_logits, end_logits)``: plain tensors in,
    a plain tuple out, so the graph's inputs and outputs are exactly the named ones."""
    import torch

    class QALogits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.model(**dict(zip(names, inputs)))
            return out.start_logits, out.end_logits

    return QALogits().eval()


def _export_graph(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: Path, opset: int) -> Path:
    """``torch.onnx.export`` with dynamic batch and sequence axes.

    Why the TorchScript exporter (``dynamo=False``, deprecated since torch 2.9 but present in 2.13)
    and not the default dynamo one: both give correct graphs with dynamic shapes for BERT, RoBERTa
    and XLM-R (measured against PyTorch: max |diff| < 1e-7 at other batch sizes and lengths), but
    ONNX Runtime's transformer optimizer fuses attention (and BERT's embeddings) only in the
    TorchScript exporter's graph of eager attention; in the dynamo graph it fuses LayerNorm and
    GELU only. The dynamo exporter also needs the onnxscript package and raises opset 17 to 18.
    """
    import torch

    names = _input_names(tokenizer)
    dummy = tokenizer(_DUMMY_QUESTIONS, _DUMMY_CONTEXTS, padding=True, return_tensors="pt")
    args = tuple(dummy[name] for name in names)
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "start_logits", "end_logits"]}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter warns that it is deprecated and that traced shape arithmetic is
            # constant; the dynamic axes and the parity tests cover what those warnings are about.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _wrapper(model, names),
                args,
                str(path),
                input_names=names,
                output_names=["start_logits", "end_logits"],
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )
    except Exception as err:  # the exporters raise many types; the user needs the first line, the chain keeps the rest
        raise ModelError(f"cannot export {type(model).__name__} to ONNX: {first_line(err)}") from err
    return path


def _config_value(config: PretrainedConfig, *keys: str) -> int:
    for key in keys:
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return 0  # the optimizer then reads it from the graph


def _optimize(path: Path, dst: Path, config: PretrainedConfig) -> Path:
    """ONNX Runtime's transformer optimizer: fuses attention, LayerNorm (+ residual) and GELU.

    Every encoder spanqa trains (BERT, RoBERTa, XLM-R, ELECTRA, DistilBERT, ...) is optimized as
    ``bert``: that is ONNX Runtime's model type for BERT-like encoders (there is no separate RoBERTa
    type); patterns it does not find are left unfused, never changed.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    heads = _config_value(config, "num_attention_heads", "n_heads")
    hidden = _config_value(config, "hidden_size", "dim")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimized = optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
    fused = {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}
    logger.info("fused operators: %s", ", ".join(f"{op} {n}" for op, n in sorted(fused.items())) or "none")
    optimized.save_model_to_file(str(dst))
    return dst


def _quantize(path: Path, dst: Path) -> Path:
    """Dynamic int8 quantization of the weights (activations are quantized per batch at run time).

    Measured on an AVX-512 VNNI CPU with a MiniLM-L6 fine-tuned on XQuAD-en (265 eval questions,
    one thread each, F1 of fp32: 46.0): int8 weights (U8S8 kernels) ran ~1.35x faster than uint8
    weights (U8U8), but the default symmetric int8 weights lost 4.3 F1 points (61% of answers
    unchanged). Asymmetric int8 weights with a scale per output channel keep uint8's accuracy
    (F1 44.4, 82% of answers unchanged) at int8's speed; ``reduce_range`` (7-bit weights, for CPUs
    without VNNI) lost 8 points.
    """
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger():
        quantize_dynamic(
            str(path),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={
                "WeightSymmetric": False,
                # ONNX shape inference does not know the fused com.microsoft ops (Attention, SkipLayerNormalization),
                # so their outputs have no inferred type; every such tensor in these graphs is float32.
                "DefaultTensorType": TensorProto.FLOAT,
            },
        )
    return dst


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Hide the quantizer's advice on the root logger ("consider to run pre-processing"): its shape
    inference adds nothing for the fused ops, whose tensor type is set explicitly above."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _save_settings(source: str, folder: Path, export: dict[str, Any]) -> None:
    """The source model's ``spanqa.json`` (or the defaults), noting how the model was exported."""
    config = SpanQAConfig.load(source) if Path(source).is_dir() else SpanQAConfig()
    config.extra["export"] = export
    config.save(folder)
