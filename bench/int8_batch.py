#!/usr/bin/env python
"""Int8 ONNX exports: do answers depend on the batch, how close are they to fp32, how fast are they.

Exports one model several ways (export time not counted) and measures each with spanqa's Reader:

* fp32: ``spanqa export --onnx`` (ONNX Runtime's transformer fusions: attention, GELU, LayerNorm);
* fp32-noopt: ``--no-optimize`` (no fusions), to check the fusions change no answer;
* int8-dynamic: what ``--int8`` did before static quantization: ``quantize_dynamic`` of the fp32
  export (int8 weights per channel, asymmetric; activations scaled per batch at run time);
* int8-static: ``spanqa export --onnx --int8`` as it is now (activation scales calibrated on the
  model's training data, per-channel smoothing).

For each arm: (a) the first ``--first`` questions of ``--eval`` answered one at a time
(``Reader.answer_batch([one])``) and all together as one request batch with the same Reader (its
windows length-sorted into batches of ``--batch-size``): how many top answers and top scores
(|diff| > 1e-4) differ; (b) how many top answers over ``--data`` equal the fp32 export's;
(c) EM/F1 on ``--eval`` (``spanqa.evaluate``, what ``spanqa evaluate MODEL EVAL`` runs);
(d) questions/s over ``--data``, ``--runs`` times with the arms interleaved, so that load on a
shared machine slows them alike. Prints the machine first and PASS/FAIL against issue 27's targets.

    python bench/int8_batch.py --model M --eval eval.json            # M: a model fine-tuned by spanqa train
    python bench/int8_batch.py --model M --eval eval.json --arms fp32,int8-static --runs 1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from train_speed import XQUAD_EN, data_file, machine  # noqa: E402

ARMS = ("fp32", "fp32-noopt", "int8-dynamic", "int8-static")
SCORE_TOLERANCE = 1e-4
TARGET_AGREEMENT = 0.97  # top answer equal to fp32's on at least this share of --data
TARGET_F1 = 1.0  # eval F1 within this of fp32's


@dataclass
class Arm:
    name: str
    folder: Path
    seconds: list[float] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    differ_text: int = 0
    differ_score: int = 0
    max_score_diff: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


def export_arm(name: str, model: str, work: Path) -> Path:
    """The arm's export folder (see the module docstring)."""
    from spanqa.jobs.export import export_onnx

    out = work / name
    if name == "fp32":
        return export_onnx(model, out)
    if name == "fp32-noopt":
        return export_onnx(model, out, optimize=False)
    if name == "int8-static":
        return export_onnx(model, out, int8=True)
    return dynamic_int8(model, out, work)


def dynamic_int8(model: str, out: Path, work: Path) -> Path:
    """The fp32 export quantized as ``spanqa export --int8`` did before static quantization (git history of jobs/export.py)."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from spanqa.jobs.export import export_onnx

    fp32 = work / "fp32" if (work / "fp32" / "model.onnx").is_file() else export_onnx(model, work / "fp32-for-dynamic")
    shutil.copytree(fp32, out)
    logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process, which the fused ops do not need
    quantize_dynamic(
        str(fp32 / "model.onnx"),
        str(out / "model.onnx"),
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"WeightSymmetric": False, "DefaultTensorType": TensorProto.FLOAT},
    )
    return out


def batch_consistency(arm: Arm, reader: Any, examples: list[Any]) -> None:
    """(a): each question alone, then all of them as one batch, with the same reader."""
    requests = [(ex.question, ex.context) for ex in examples]
    alone = [reader.answer_batch([request])[0] for request in requests]
    together = reader.answer_batch(requests)
    for one, many in zip(alone, together):
        a = (one.answers[0].text, one.answers[0].score) if one.answers else ("", 0.0)
        b = (many.answers[0].text, many.answers[0].score) if many.answers else ("", 0.0)
        arm.differ_text += a[0] != b[0]
        arm.differ_score += abs(a[1] - b[1]) > SCORE_TOLERANCE
        arm.max_score_diff = max(arm.max_score_diff, abs(a[1] - b[1]))


def describe_batches(reader: Any, examples: list[Any]) -> str:
    """How the batched case runs: windows, forward passes and the largest pass."""
    import numpy as np

    from spanqa.reading.reader import length_batches

    lengths = np.sort(reader.features(examples).lengths)[::-1]
    passes = length_batches(lengths, reader.batch_size)
    return f"{len(lengths)} windows in {len(passes)} passes of up to {max(hi - lo for lo, hi in passes)} windows (batch size {reader.batch_size})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="A PyTorch QA model folder (spanqa train output), alias or hub id.")
    parser.add_argument("--eval", type=Path, required=True, help="Evaluation data: (a) its first --first questions, (c) EM/F1.")
    parser.add_argument("--data", type=Path, default=None, help=f"Questions for (b) agreement and (d) speed (default: {XQUAD_EN}).")
    parser.add_argument("--first", type=int, default=120, help="Questions of --eval answered alone and batched.")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"Comma-separated, from {', '.join(ARMS)}; fp32 is always run.")
    parser.add_argument("--runs", type=int, default=2, help="Timed passes over --data per arm.")
    parser.add_argument("--batch-size", type=int, default=32, help="Windows per forward pass.")
    parser.add_argument("--workdir", type=Path, default=None, help="Keep the exports here (default: a temporary folder).")
    args = parser.parse_args(argv)
    names = ["fp32", *[a for a in args.arms.split(",") if a and a != "fp32"]]
    if any(a not in ARMS for a in names):
        parser.error(f"--arms: choose from {', '.join(ARMS)}")
    args.data = data_file(args.data)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    print(machine(), flush=True)
    import onnxruntime

    print(f"onnxruntime {onnxruntime.__version__}; model {args.model}; batch size {args.batch_size}", flush=True)
    with tempfile.TemporaryDirectory(prefix="spanqa-int8-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        arms = [Arm(name, export_arm(name, args.model, work)) for name in names]
        return measure(args, arms)


def measure(args: argparse.Namespace, arms: list[Arm]) -> int:
    from spanqa import Reader, evaluate, load_examples

    first = load_examples(args.eval).examples[: args.first]
    questions = load_examples(args.data).examples
    readers = {arm.name: Reader.from_pretrained(arm.folder, batch_size=args.batch_size) for arm in arms}
    print(f"(a) {len(first)} questions of {args.eval.name} batched: {describe_batches(readers['fp32'], first)}", flush=True)
    for arm in arms:
        batch_consistency(arm, readers[arm.name], first)
        arm.metrics = evaluate(readers[arm.name], args.eval).metrics
    for run in range(args.runs):
        for arm in arms:  # interleaved: noise on a shared machine hits every arm of a run alike
            start = time.perf_counter()
            answers = [p.text for p in readers[arm.name].predict_examples(questions)]
            arm.seconds.append(time.perf_counter() - start)
            arm.answers = arm.answers or answers
        line = " | ".join(f"{arm.name} {len(questions) / arm.seconds[run]:.1f} q/s" for arm in arms)
        print(f"run {run + 1} over {len(questions)} questions of {args.data.name}: {line}", flush=True)
    return report(args, arms, len(first), len(questions))


def report(args: argparse.Namespace, arms: list[Arm], first: int, total: int) -> int:
    """The table, then PASS/FAIL for the int8 arms (and whether the fusions change answers)."""
    fp32 = arms[0]
    speed = {arm.name: [total / s for s in arm.seconds] for arm in arms}
    print(f"\n{'arm':13s} | differ alone/batched (top, score) | max |score diff| | = fp32 top answer | EM    | F1    | q/s (runs)       | x fp32")
    for arm in arms:
        same = sum(a == b for a, b in zip(arm.answers, fp32.answers))
        ratio = statistics.median(a / b for a, b in zip(speed[arm.name], speed["fp32"]))
        runs = ", ".join(f"{q:.1f}" for q in speed[arm.name])
        print(
            f"{arm.name:13s} | {arm.differ_text:3d} / {first}, {arm.differ_score:3d} / {first}"
            f"{'':12s} | {arm.max_score_diff:.1e}{'':8s} | {same:4d} / {total} {same / total:6.1%} | "
            f"{arm.metrics['exact_match']:5.2f} | {arm.metrics['f1']:5.2f} | {runs:16s} | {ratio:.2f}x"
        )
    failed = 0
    for arm in arms:
        same = sum(a == b for a, b in zip(arm.answers, fp32.answers)) / total
        f1_gap = arm.metrics["f1"] - fp32.metrics["f1"]
        if arm.name == "fp32-noopt":
            print(f"fusions: fp32 optimized vs unoptimized: {same:.2%} the same top answers, F1 {f1_gap:+.2f}, {arm.differ_text} batch differences")
            continue
        if not arm.name.startswith("int8"):
            continue
        checks = {
            f"same top answer and score alone and batched ({first} questions)": arm.differ_text == 0 and arm.differ_score == 0,
            f"top answer = fp32 on >= {TARGET_AGREEMENT:.0%} ({same:.2%})": same >= TARGET_AGREEMENT,
            f"F1 within {TARGET_F1} of fp32 ({f1_gap:+.2f})": abs(f1_gap) <= TARGET_F1,
        }
        for what, ok in checks.items():
            print(f"{'PASS' if ok else 'FAIL'} {arm.name}: {what}")
            failed += not ok and arm.name == "int8-static"
    print(json.dumps({arm.name: {"q/s": speed[arm.name], "f1": arm.metrics["f1"]} for arm in arms}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
