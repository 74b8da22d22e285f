"""Export a QA model to ONNX (optionally int8) for fast CPU inference with ONNX Runtime.

The output folder is self-contained: ``model.onnx``, the tokenizer files,
``config.json`` and ``spanqa.json``, so ``Reader.from_pretrained(folder)`` and
every command (``evaluate``, ``predict``, ``ask``, ``serve``) load it like the
PyTorch model, with the same windows and decoding.

``int8=True`` quantizes statically: activation scales are fixed by calibration on the
model's own windows (:class:`Int8Options`), so an answer never depends on what else is in
its batch.

>>> export_onnx("my-model", "my-model-onnx", int8=True)
PosixPath('my-model-onnx')
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spanqa.core.config import SpanQAConfig
from spanqa.core.errors import ConfigError, DataError, ModelError, first_line
from spanqa.core.io import atomic_folder, check_output_folder, share_files
from spanqa.runtime.backends import MODEL_INPUTS, ONNX_FILE, ONNX_INSTALL_HINT, import_onnxruntime
from spanqa.runtime.devices import usable_cores
from spanqa.runtime.models import load_qa_model, load_tokenizer, resolve_model
from spanqa.stages.data import QADataset, load_examples
from spanqa.stages.features import build_features

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["Int8Options", "export_onnx"]

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
    int8_options: Int8Options | None = None,
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
        int8: Quantize to int8 (static: weights and activations, activation scales calibrated
            on the model's windows; see :class:`Int8Options`): about 4x smaller and ~1.9x fp32's
            speed on CPUs; answers may differ slightly from fp32 but never depend on the batch.
        int8_options: Calibration data and window count (only with ``int8``); default: :class:`Int8Options`.
        opset: ONNX opset version.
        optimize: Fuse attention, LayerNorm and GELU with ONNX Runtime's transformer optimizer.
        overwrite: Replace ``out`` if it exists and is not empty.

    Returns:
        The output folder.

    Raises:
        ModelError: onnx or onnxruntime missing, or the model cannot be exported.
        ConfigError: ``out`` exists and is not empty (without ``overwrite``), or is the model itself;
            ``int8_options`` without ``int8``.
        DataError: the calibration data cannot be read.
    """
    import_onnxruntime()
    _import_onnx()
    source = resolve_model(str(model))
    target = Path(out).expanduser()
    _check_target(target, source, overwrite)
    if int8_options is not None and not int8:
        raise ConfigError("calibration settings apply to int8 exports; add --int8 (int8=True)")
    tokenizer = load_tokenizer(source)
    calibration = _calibration(source, tokenizer, int8_options or Int8Options()) if int8 else None
    # Eager attention: its MatMul/Softmax pattern is the one ONNX Runtime's optimizer fuses into
    # its Attention kernel (see _export_graph); the weights and results are the same as with SDPA.
    qa_model = load_qa_model(source, attn_implementation="eager").eval()
    _check_size(qa_model)
    # Staged beside OUT and swapped in whole (atomic_folder): a failure removes the staging folder, and
    # the staging of a killed run (model-sized) is removed by the next export to OUT (in _check_target).
    with atomic_folder(target) as staging:
        onnx_file, quantization = _build_graph(qa_model, tokenizer, staging, calibration=calibration, opset=opset, optimize=optimize)
        onnx_file.rename(staging / ONNX_FILE)
        tokenizer.save_pretrained(staging)
        qa_model.config.save_pretrained(staging)
        settings: dict[str, Any] = {"format": "onnx", "int8": int8, "opset": opset, "optimized": optimize, "source": str(model)}
        if quantization:
            settings["quantization"] = quantization
        _save_settings(source, staging, settings)
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


def _build_graph(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, work: Path, *, calibration: _Calibration | None, opset: int, optimize: bool
) -> tuple[Path, dict[str, Any] | None]:
    """Export, optionally optimize, optionally quantize (with ``calibration``).

    Returns:
        The last stage's file (the others are removed), and how it was quantized (None for fp32).

    Fusion comes first: the int8 graph keeps the fused LayerNorm, GELU and embedding ops in float
    and quantizes the fused Attention's QKV projection as one QAttention op.
    """
    current = _export_graph(model, tokenizer, work / "exported.onnx", opset)
    if optimize:
        current = _replace_stage(current, _optimize(current, work / "optimized.onnx", model.config))
    if calibration is None:
        return current, None
    quantized, summary = _quantize(current, work / "int8.onnx", calibration)
    return _replace_stage(current, quantized), summary


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


# --------------------------------------------------------------------------- int8: calibration data

_SEED = 0
"""Draws the calibration windows and token samples: the same model and data give the same export."""
SAMPLE_DATA = "train"
"""The shipped sample split that calibrates when the model records no readable data (what ``spanqa train`` trains on by default)."""


@dataclass(frozen=True)
class Int8Options:
    """How an int8 export is calibrated.

    Attributes:
        calibration_data: A data file in any layout :func:`~spanqa.stages.data.load_examples` reads,
            or a hub dataset. None: the data the model was trained on (else evaluated on) as its
            ``train_config.json`` records, when that file can be read here; else spanqa's sample data.
        calibration_windows: At most this many model windows (drawn at random, seed 0) calibrate.
            A min-max range clips whatever later windows exceed it, so more windows clip less; 512
            windows of MiniLM-L6 calibrate in about 20 s on 2 cores.
    """

    calibration_data: str | Path | None = None
    calibration_windows: int = 512

    def check(self) -> None:
        """Raise a ConfigError for a window count that is not a positive integer."""
        count = self.calibration_windows
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"calibration windows must be a positive integer, got {count!r}")


@dataclass
class _Calibration:
    """The windows that calibrate an int8 export, and where they came from (recorded in ``spanqa.json``)."""

    windows: list[dict[str, np.ndarray]]
    source: str
    examples: int


def _calibration(source: str, tokenizer: PreTrainedTokenizerBase, options: Int8Options) -> _Calibration:
    """Read the calibration data and cut it into the model's own windows (its saved window settings).

    Read before the model loads, so a bad ``--calibration-data`` fails at once.

    Args:
        source: The resolved model folder (or hub id), for its ``train_config.json`` and window settings.
        tokenizer: The model's tokenizer.
        options: The calibration data and window count.

    Raises:
        DataError: the given calibration data cannot be read, or holds no questions.
    """
    options.check()
    if options.calibration_data is not None:
        try:
            data = load_examples(str(options.calibration_data), require_answers=False)
        except (DataError, OSError) as err:
            raise DataError(f"calibration data {first_line(err)}") from None
    else:
        data = _recorded_data(source) or load_examples(Path(str(resources.files("spanqa") / "sample_data" / f"{SAMPLE_DATA}.json")))
    if not data.examples:
        raise DataError(f"calibration data {data.source}: no questions to calibrate on")
    rng = np.random.default_rng(_SEED)
    examples = data.examples
    if len(examples) > 2 * options.calibration_windows:  # each example gives at least one window: tokenize no more than needed
        examples = [examples[i] for i in sorted(rng.choice(len(examples), 2 * options.calibration_windows, replace=False))]
    config = SpanQAConfig.load(source) if Path(source).is_dir() else SpanQAConfig()
    rows = build_features(examples, tokenizer, config.window).model_inputs()
    if len(rows) > options.calibration_windows:
        rows = [rows[i] for i in sorted(rng.choice(len(rows), options.calibration_windows, replace=False))]
    names = _input_names(tokenizer)
    windows = [{name: np.asarray(row[name], dtype=np.int64) for name in names} for row in rows]
    logger.info("calibrating int8 on %d windows of %s", len(windows), data.source)
    return _Calibration(windows, data.source, len(examples))


def _recorded_data(source: str) -> QADataset | None:
    """The model's training (else evaluation) data as ``train_config.json`` records it, if a local file here holds it.

    A relative path was relative to the folder ``spanqa train`` ran in: found from the output folder it
    was given, else tried from here and beside the model. Hub datasets are not fetched (export works offline).

    Args:
        source: The resolved model folder.
    """
    folder = Path(source)
    try:
        settings = json.loads((folder / "train_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(settings, dict):
        return None
    given = (settings.get("training") or {}).get("output_dir")
    ran_in = folder.resolve().parents[len(Path(given).parts) - 1] if isinstance(given, str) and given and not Path(given).is_absolute() else None
    for key in ("train_data", "eval_data"):
        recorded = settings.get(key)
        if not isinstance(recorded, str) or not recorded:
            continue
        bases = [Path(), folder] if ran_in is None else [ran_in, Path(), folder]
        found = next(((base / recorded).resolve() for base in bases if (base / recorded).is_file()), None)
        if found is None:
            continue
        try:
            return load_examples(str(found), columns=settings.get("columns") or None, on_mismatch=settings.get("on_mismatch") or "repair")
        except (DataError, OSError) as err:
            logger.warning("cannot read the model's %s for calibration (%s); trying the next source", key, first_line(err))
    return None


# --------------------------------------------------------------------------- int8: quantization

# Smoothing strengths tried for each op (None: no smoothing); each op keeps the one with the least output error.
_ALPHAS = (None, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_SAMPLE_TOKENS = 2048
"""Activation rows (tokens) kept per quantized op to choose its smoothing strength."""
MS_DOMAIN = "com.microsoft"


@dataclass
class _Activation:
    """What calibration saw of one activation: its range per channel (last axis) and a sample of its rows."""

    low: np.ndarray
    high: np.ndarray
    rows: list[np.ndarray] = field(default_factory=list)

    def add(self, value: np.ndarray, take: int, rng: np.random.Generator) -> None:
        flat = value.reshape(-1, value.shape[-1])
        self.low, self.high = np.minimum(self.low, flat.min(0)), np.maximum(self.high, flat.max(0))
        self.rows.append(flat[rng.choice(len(flat), min(take, len(flat)), replace=False)])


def _quantize(path: Path, dst: Path, calibration: _Calibration) -> tuple[Path, dict[str, Any]]:
    """Static int8: activation scales fixed by calibration, so a window's answer never depends on its batch.

    ``quantize_dynamic`` (what export did before) scales activations by the range of the whole batch at
    run time: the same question got other scores, and often another top answer, depending on the other
    windows of its batch. Here each MatMul and fused Attention op reads its input through a
    QuantizeLinear with a constant scale into the same int8 kernels (MatMulIntegerToFloat, QAttention).
    ONNX Runtime's ``quantize_static`` (1.32) was measured first. QDQ format on the fused graph quantizes
    weights only (it cannot calibrate the outputs of the fused com.microsoft ops; ONNX Runtime runs the
    result as MatMulNBits): 99.4% of fp32's answers but 1.1-1.2x fp32's speed; on the unfused graph it
    keeps no Attention fusion and runs QDQ pairs: 1.2x. QOperator format raised an error on both graphs.

    Measured on MiniLM-L6 fine-tuned on XQuAD-en articles 1-36, all 1,190 XQuAD-en questions
    (bench/int8_batch.py): per-tensor min-max scales kept 94.9% of fp32's top answers (dynamic: 95.2%);
    clipping the range (percentiles 99.99/99.999, or 0.8 of the max) lost more, as transformer activations
    carry a few large, meaningful channels. What closes the gap is SmoothQuant's per-channel smoothing:
    input channel j is divided by ``s_j`` (a Mul before the QuantizeLinear) and weight row j multiplied by
    it, ``s_j = max|x_j|^alpha / max|w_j|^(1 - alpha)``, alpha chosen per op by the least output error on
    calibration tokens (one alpha of 0.8 for all ops: 97.1%; per op: 97.6%, F1 49.52 against fp32's
    49.60, 1.9x fp32's questions/s where dynamic int8 runs 2.0x). Keeping the QA head float changed no
    answer. Weights are int8 per output channel, asymmetric (see :func:`_weight_int8`); the embedding
    tables are stored int8 (weight-only, as before).

    Args:
        path: The float (fused) graph.
        dst: Where the int8 graph goes.
        calibration: The windows that calibrate it.

    Returns:
        ``dst``, and how it was quantized (saved in ``spanqa.json``).
    """
    embeddings = _quantize_embeddings(path, dst.with_name("embeddings.onnx"))
    onnx = _import_onnx()
    model = onnx.load(str(embeddings))
    targets = _targets(model)
    stats = _calibrate(embeddings, sorted({node.input[0] for node, _ in targets}), calibration.windows)
    smoothed = _rewrite(model, targets, stats)
    onnx.save(model, str(dst))
    embeddings.unlink()
    logger.info("int8: %d ops (%d smoothed)", len(targets), smoothed)
    summary = {
        "method": "static",
        "activations": "uint8, one scale per tensor (calibrated min-max) after per-channel smoothing",
        "weights": "int8, one scale per output channel, asymmetric",
        "ops": {"int8": len(targets), "smoothed": smoothed},
        "calibration": {"data": calibration.source, "examples": calibration.examples, "windows": len(calibration.windows)},
    }
    return dst, summary


def _quantize_embeddings(path: Path, dst: Path) -> Path:
    """The fused embedding lookup with int8 tables (weight-only: what the lookup returns does not depend on the batch)."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger():
        quantize_dynamic(
            str(path),
            str(dst),
            op_types_to_quantize=["EmbedLayerNormalization"],
            weight_type=QuantType.QUInt8,
            # ONNX shape inference does not know the fused com.microsoft ops (Attention, SkipLayerNormalization),
            # so their outputs have no inferred type; every such tensor in these graphs is float32.
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )
    return dst


def _targets(model: Any) -> list[tuple[Any, np.ndarray]]:
    """The ops to quantize with their float weights: MatMul by a 2-D weight, and fused Attention
    (the QKV projection) where QAttention can take its place.

    Args:
        model: The float ONNX graph (an ``onnx.ModelProto``).
    """
    from onnx import numpy_helper

    weights = {init.name: init for init in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if len(node.input) < 2 or node.input[1] not in weights or node.input[0] in weights:
            continue
        weight = numpy_helper.to_array(weights[node.input[1]])
        if weight.ndim != 2 or weight.dtype != np.float32:
            continue
        plain_matmul = node.op_type == "MatMul" and node.domain in ("", "ai.onnx")
        # QAttention needs the QKV bias and takes no attention bias or sequence-length inputs, nor separate Q/K/V sizes.
        attention = node.op_type == "Attention" and node.domain == MS_DOMAIN and 2 < len(node.input) <= 5 and bool(node.input[2])
        attention = attention and not any(a.name == "qkv_hidden_sizes" for a in node.attribute)
        if plain_matmul or attention:
            found.append((node, weight))
    return found


def _calibrate(path: Path, names: list[str], windows: list[dict[str, np.ndarray]]) -> dict[str, _Activation]:
    """Run the float graph over the calibration windows, recording each named activation.

    Windows of one length run together (no padding, so only real tokens are measured); the rest one by one.

    Args:
        path: The float graph.
        names: The activations to record (the inputs of the ops to quantize).
        windows: Unpadded windows by input name.
    """
    from onnx import TensorProto, helper

    onnx = _import_onnx()
    ort = import_onnxruntime()
    model = onnx.load(str(path))
    outputs = {o.name for o in model.graph.output}
    model.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in names if name not in outputs)
    options = ort.SessionOptions()
    options.intra_op_num_threads = usable_cores()
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]
    by_length: dict[int, list[dict[str, np.ndarray]]] = {}
    for window in windows:
        by_length.setdefault(len(window["input_ids"]), []).append(window)
    stats = {name: _Activation(np.full(1, np.inf, np.float32), np.full(1, -np.inf, np.float32)) for name in names}
    take = -(-_SAMPLE_TOKENS // len(windows))  # rows per window, so the sample spreads over all of them
    rng = np.random.default_rng(_SEED)
    for group in by_length.values():
        for lo in range(0, len(group), 16):
            batch = group[lo : lo + 16]
            values = session.run(names, {name: np.stack([w[name] for w in batch]) for name in inputs})
            for name, value in zip(names, values):
                stats[name].add(value, take * len(batch), rng)
    return stats


def _rewrite(model: Any, targets: list[tuple[Any, np.ndarray]], stats: dict[str, _Activation]) -> int:
    """Put a QuantizeLinear and an int8 op in place of each target; returns how many of them were smoothed.

    Args:
        model: The float graph, changed in place.
        targets: The ops to quantize, with their float weights (:func:`_targets`).
        stats: What calibration saw of each target's input.
    """
    from onnx import helper

    graph = model.graph
    replaced: dict[str, list[Any]] = {}
    smoothed = 0
    for index, (node, weight) in enumerate(targets):
        smooth, error = _choose_smoothing(stats[node.input[0]], weight)
        logger.debug("%s: int8 output error %.1e of its mean square", node.name or node.op_type, error)
        smoothed += smooth is not None
        nodes, initializers = _int8_op(node, weight, stats[node.input[0]], smooth, f"int8_{index}")
        graph.initializer.extend(initializers)
        replaced[node.output[0]] = nodes
    new_nodes = [n for node in graph.node for n in replaced.get(node.output[0], [node])]
    del graph.node[:]
    graph.node.extend(new_nodes)
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return smoothed


def _int8_op(node: Any, weight: np.ndarray, activation: _Activation, smooth: np.ndarray | None, prefix: str) -> tuple[list[Any], list[Any]]:
    """QuantizeLinear(input) then MatMulIntegerToFloat (for MatMul) or QAttention (for Attention), with their constants.

    Args:
        node: The float op.
        weight: Its weight (input 1), rows = input channels.
        activation: What calibration saw of its input.
        smooth: Per-channel smoothing factors, or None.
        prefix: A unique prefix for the new tensor names.
    """
    from onnx import helper, numpy_helper

    scale, zero = _activation_scale(activation, smooth)
    q_weight, w_scale, w_zero = _weight_int8(weight if smooth is None else weight * smooth[:, None])
    constants: dict[str, np.ndarray] = {
        "scale": np.asarray(scale, np.float32), "zero": np.asarray(zero, np.uint8), "weight": q_weight, "w_scale": w_scale, "w_zero": w_zero,
    }
    if smooth is not None:
        constants["unsmooth"] = (1 / smooth).astype(np.float32)
    names = {key: f"{prefix}_{key}" for key in constants}
    initializers = [numpy_helper.from_array(value, names[key]) for key, value in constants.items()]
    quantized, source, nodes = f"{prefix}_input", node.input[0], []
    if smooth is not None:
        # A Mul, not a per-channel QuantizeLinear scale: ONNX Runtime's per-axis QuantizeLinear runs
        # element by element (3/4 of the model's time on MiniLM), its per-tensor one is vectorized.
        nodes.append(helper.make_node("Mul", [source, names["unsmooth"]], [f"{prefix}_smoothed"], name=f"{prefix}_smooth"))
        source = f"{prefix}_smoothed"
    nodes.append(helper.make_node("QuantizeLinear", [source, names["scale"], names["zero"]], [quantized], name=f"{prefix}_quantize"))
    if node.op_type == "MatMul":
        inputs = [quantized, names["weight"], names["scale"], names["w_scale"], names["zero"], names["w_zero"]]
        op = helper.make_node("MatMulIntegerToFloat", inputs, list(node.output), name=f"{prefix}_matmul", domain=MS_DOMAIN)
    else:
        optional = [*node.input, "", ""]
        inputs = [quantized, names["weight"], node.input[2], names["scale"], names["w_scale"], optional[3], names["zero"], names["w_zero"], optional[4]]
        op = helper.make_node("QAttention", inputs, list(node.output), name=f"{prefix}_attention", domain=MS_DOMAIN)
        op.attribute.extend(node.attribute)
    return [*nodes, op], initializers


def _activation_scale(activation: _Activation, smooth: np.ndarray | None) -> tuple[float, int]:
    """uint8 scale and zero point covering the (smoothed) calibrated range and 0, as ONNX Runtime computes them."""
    low, high = (activation.low, activation.high) if smooth is None else (activation.low / smooth, activation.high / smooth)
    lo, hi = min(float(low.min()), 0.0), max(float(high.max()), 0.0)
    scale = (hi - lo) / 255 or 1.0
    return scale, int(np.clip(np.round(-lo / scale), 0, 255))


def _weight_int8(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int8 weights, one scale and zero point per output channel (column), asymmetric.

    As the dynamic export measured (MiniLM-L6 on XQuAD-en, AVX-512 VNNI): int8 weights (U8S8 kernels)
    ran ~1.35x faster than uint8 (U8U8); symmetric int8 weights lost 4.3 F1 points where asymmetric
    ones with a scale per output channel kept uint8's accuracy; 7-bit weights (``reduce_range``, for
    CPUs without VNNI) lost 8 points.
    """
    low, high = np.minimum(weight.min(0), 0.0), np.maximum(weight.max(0), 0.0)
    scale = ((high - low) / 255).astype(np.float32)
    scale[scale == 0] = 1.0
    int8 = np.iinfo(np.int8)
    zero = np.clip(np.round(int8.min - low / scale), int8.min, int8.max)
    quantized = np.clip(np.round(weight / scale) + zero, int8.min, int8.max)
    return quantized.astype(np.int8), scale, zero.astype(np.int8)


def _choose_smoothing(activation: _Activation, weight: np.ndarray) -> tuple[np.ndarray | None, float]:
    """The smoothing factors (or None) whose int8 op best reproduces the float op on the calibration sample,
    and that op's output error relative to the output's mean square.

    The error is measured end to end on the op's output: activation rounding, weight rounding, and
    how smoothing trades one for the other (moving a channel's outliers into its weight row widens
    that row's share of each weight column's range).

    Args:
        activation: What calibration saw of the op's input (its per-channel range and sampled rows).
        weight: The op's float weight, rows = input channels.
    """
    x = np.concatenate(activation.rows).astype(np.float32)
    want = x @ weight
    best, best_error = None, np.inf
    amax = np.maximum(np.abs(activation.low), np.abs(activation.high)).clip(1e-5)
    wmax = np.abs(weight).max(1).clip(1e-5)
    for alpha in _ALPHAS:
        smooth = None if alpha is None else (amax**alpha / wmax ** (1 - alpha)).astype(np.float32)
        scale, zero = _activation_scale(activation, smooth)
        x_q = np.clip(np.round(x / (scale if smooth is None else scale * smooth)) + zero, 0, 255) - zero
        q_weight, w_scale, w_zero = _weight_int8(weight if smooth is None else weight * smooth[:, None])
        got = (x_q * scale) @ ((q_weight.astype(np.float32) - w_zero) * w_scale)
        error = float(np.mean((got - want) ** 2))
        if error < best_error:
            best, best_error = smooth, error
    return best, best_error / max(float(np.mean(want**2)), 1e-30)


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
