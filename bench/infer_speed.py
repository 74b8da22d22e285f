#!/usr/bin/env python
"""Inference speed end to end: the notebook's predict loop against spanqa's Reader (PyTorch, ONNX fp32, ONNX int8).

Every arm goes from examples to answer texts (tokenization, model, decoding) over the
same questions with the same model and the same 384/128 windows, and is timed as a whole:

* recipe: the Hugging Face notebook (``bench/reference_recipe.py``): windows padded to 384,
  batches of 32 through the PyTorch model, the n-best double loop;
* spanqa torch: ``Reader.from_pretrained`` with the PyTorch backend in its default precision
  (length-sorted batches padded per batch, the vectorised decoder; on the CPU bf16 weights through
  oneDNN where the CPU computes bf16 natively, else fp32 through oneDNN); ``torch-fp32`` the same
  with ``--dtype fp32`` (the linear layers through oneDNN: the exact reference of the "= ref" column);
  ``torch-blas`` fp32 with the model's layers as loaded (spanqa before oneDNN; the reference when it
  runs); ``torch-bf16`` ``--dtype bf16``; ``torch-autocast`` bf16 autocast over the model as
  loaded (what ``--dtype bf16`` was before the weights were converted);
* spanqa onnx / onnx-int8: the same Reader on ``spanqa export --onnx [--int8]`` folders
  (export time not counted).

spanqa's arms run in the windows per forward pass their backend chooses by default (8 for ONNX
Runtime on the CPU, 32 for PyTorch), or ``--batch-size``; ``ARM:N`` runs one arm at N windows per
pass (``onnx-int8:32``), so two batch sizes compare within one run. The recipe always runs 32.

Every arm is loaded once, then timed ``--runs`` times, the arms interleaved within each run so
that a noisy machine slows them alike. Prints the machine (CPU model and the flags that decide
the fast kernels), each run's questions/s and ratio to that run's recipe, the median ratio, the
median ratio in this process's CPU time ("cpu": less moved by other load than wall time),
EM/F1 on all questions and on the XQuAD-en eval split (articles 37-48), and how many answers
equal the fp32 reference's.

    python bench/infer_speed.py --model my-xquad-model          # a model fine-tuned by spanqa train
    python bench/infer_speed.py --model M --arms recipe,torch --runs 3   # some arms only
    python bench/infer_speed.py --model M --arms recipe,onnx-int8,onnx-int8:32   # int8 at 8 and 32 windows per pass
    python bench/infer_speed.py --model M --data dev.json --questions 50 --runs 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import reference_recipe  # noqa: E402  (the notebook recipe and the official v1.1 scoring)
from train_speed import XQUAD_EN, data_file, machine  # noqa: E402

ARMS = ("recipe", "torch-blas", "torch-fp32", "torch-autocast", "torch", "torch-bf16", "onnx", "onnx-int8")
REFERENCES = ("torch-blas", "torch-fp32", "torch")  # the first of these that runs gives the "= ref" column
RECIPE_BATCH = 32  # the notebook's batch


def arm_parts(arm: str) -> tuple[str, int | None]:
    """``"onnx-int8:32"`` -> ``("onnx-int8", 32)``; ``"torch"`` -> ``("torch", None)``."""
    base, _, batch = arm.partition(":")
    if base not in ARMS or (batch and (not batch.isdigit() or int(batch) < 1)):
        raise ValueError(arm)
    return base, int(batch) if batch else None


@dataclass
class Result:
    arm: str
    questions: int
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # this process's CPU time: less moved by other load than wall time
    answers: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def questions_per_second(self) -> list[float]:
        return [self.questions / s if s else 0.0 for s in self.seconds]


Timed = Callable[[], tuple[float, dict[str, str]]]
"""One timed pass of an arm over all questions: (seconds, answer text by question id)."""


def recipe_arm(model: str, examples: list[Any], batch_size: int, max_length: int, stride: int) -> Timed:
    """The notebook's predict loop: windows padded to ``max_length``, the model in fixed batches, the n-best double loop."""
    import numpy as np
    import torch
    from transformers import AutoModelForQuestionAnswering

    from spanqa.runtime.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(model)
    qa_model = AutoModelForQuestionAnswering.from_pretrained(resolve_model(model)).eval()
    rows = [{"id": ex.id, "question": ex.question, "context": ex.context} for ex in examples]

    def timed() -> tuple[float, dict[str, str]]:
        started = time.perf_counter()
        tokenized, features = reference_recipe.prepare_validation_features(
            tokenizer, [r["id"] for r in rows], [r["question"] for r in rows], [r["context"] for r in rows], max_length, stride
        )
        names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenized]
        starts, ends = [], []
        with torch.inference_mode():
            for lo in range(0, len(features), batch_size):
                batch = {n: torch.tensor(tokenized[n][lo : lo + batch_size]) for n in names}
                out = qa_model(**batch)
                starts.append(out.start_logits.numpy())
                ends.append(out.end_logits.numpy())
        predicted = reference_recipe.reference_postprocess(rows, features, np.concatenate(starts), np.concatenate(ends), drop_blank=False)
        return time.perf_counter() - started, {qid: p["text"] for qid, p in predicted.items()}

    return timed


def reader_arm(arm: str, folder: str, examples: list[Any], batch_size: int | None, backend: str, dtype: str | None = None) -> Timed:
    """spanqa's Reader, examples to answers, on one backend (``torch-blas``/``torch-autocast``: the PyTorch model as loaded)."""
    from spanqa import Reader, SpanQAConfig
    from spanqa.runtime.models import load_qa_model, load_tokenizer, resolve_model

    if arm in ("torch-blas", "torch-autocast"):  # a model the caller passes is run as it is: no oneDNN layers, no bf16 weights
        path = resolve_model(folder)
        config = SpanQAConfig.load(path) if Path(path).is_dir() else SpanQAConfig()
        reader = Reader(load_qa_model(path), load_tokenizer(path), config, batch_size=batch_size, dtype=dtype)  # type: ignore[arg-type]
    else:
        reader = Reader.from_pretrained(folder, backend=backend, batch_size=batch_size, dtype=dtype)  # type: ignore[arg-type]
    reader.predict_examples(examples[:8])  # load lazily-built state (and the ONNX session) outside the timing

    def timed() -> tuple[float, dict[str, str]]:
        started = time.perf_counter()
        predictions = reader.predict_examples(examples)
        return time.perf_counter() - started, {p.id: p.text for p in predictions}

    return timed


ARM_DTYPES = {"torch-blas": "fp32", "torch-fp32": "fp32", "torch-autocast": "bf16", "torch": None, "torch-bf16": "bf16"}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def scores(examples: list[Any], answers: dict[str, str]) -> tuple[float, float]:
    """Official SQuAD v1.1 EM/F1 of ``answers`` over ``examples`` (the answerable ones: v1.1 has no "no answer")."""
    dataset = [
        {"paragraphs": [{"context": ex.context, "qas": [{"id": ex.id, "answers": [{"text": a.text} for a in ex.answers]}]}]}
        for ex in examples
        if ex.answers
    ]
    result = reference_recipe.ref_v1_evaluate(dataset, answers)
    return result["exact_match"], result["f1"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A QA model folder (fine-tuned, e.g. by spanqa train on XQuAD-en articles 1-36).")
    parser.add_argument("--data", type=Path, default=None, help="Questions with gold answers (default: all of XQuAD-en).")
    parser.add_argument("--questions", type=int, default=0, help="Use the first N questions (0: all).")
    parser.add_argument("--arms", default="recipe,torch,torch-fp32,onnx,onnx-int8", help=f"Comma-separated, from {', '.join(ARMS)}.")
    parser.add_argument("--runs", type=int, default=2, help="Time every arm this many times, the arms interleaved in each run.")
    parser.add_argument("--batch-size", type=int, default=None, help="Windows per pass of spanqa's arms (default: each backend's own).")
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--stride", type=int, default=128)
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    try:
        parts = {arm: arm_parts(arm) for arm in arms}
    except ValueError as bad:
        parser.error(f"--arms: {bad} is not one of {', '.join(ARMS)} (optionally :N, windows per pass)")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.data = data_file(args.data)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from spanqa import SpanQAConfig, load_examples
    from spanqa.stages.data import split_by_title

    print(machine(), flush=True)
    dataset = load_examples(args.data)
    examples = dataset.examples[: args.questions] if args.questions else dataset.examples
    eval_ids = {ex.id for ex in split_by_title(dataset, 36)[1].examples} if args.data == XQUAD_EN else set()
    config = SpanQAConfig.load(args.model) if Path(args.model).is_dir() else SpanQAConfig()
    if (config.max_length, config.stride) != (args.max_length, args.stride):
        print(f"note: the model's spanqa.json windows are {config.max_length}/{config.stride}; the recipe uses {args.max_length}/{args.stride}")
    batch = args.batch_size or "each backend's default"
    print(f"model {args.model}; {len(examples)} questions from {args.data.name}; batch: recipe {RECIPE_BATCH}, spanqa {batch}", flush=True)

    timers: dict[str, Timed] = {}
    results = {arm: Result(arm, len(examples)) for arm in arms}
    with tempfile.TemporaryDirectory(prefix="spanqa-infer-speed-") as tmp:
        exported: dict[str, Path] = {}
        for arm in arms:
            base, size = parts[arm]
            size = size or args.batch_size
            if base == "recipe":
                timers[arm] = recipe_arm(args.model, examples, size or RECIPE_BATCH, args.max_length, args.stride)
            elif base in ARM_DTYPES:
                timers[arm] = reader_arm(base, args.model, examples, size, "torch", ARM_DTYPES[base])
            else:
                from spanqa.jobs.export import export_onnx

                if base not in exported:
                    exported[base] = export_onnx(args.model, Path(tmp) / base, int8=base == "onnx-int8")
                timers[arm] = reader_arm(base, str(exported[base]), examples, size, "onnx")
        for run in range(args.runs):
            for arm in arms:  # interleaved: noise on a shared machine hits every arm of a run alike
                cpu = time.process_time()
                seconds, answers = timers[arm]()
                results[arm].cpu_seconds.append(time.process_time() - cpu)
                results[arm].seconds.append(seconds)
                results[arm].answers = results[arm].answers or answers
            line = " | ".join(f"{arm} {results[arm].questions_per_second[run]:.2f} q/s" + _ratio(results, arm, run) for arm in arms)
            print(f"run {run + 1}: {line}", flush=True)
    return report(args, examples, eval_ids, list(results.values()))


def _ratio(results: dict[str, Result], arm: str, run: int) -> str:
    recipe = results.get("recipe")
    if recipe is None or arm == "recipe" or not recipe.questions_per_second[run]:
        return ""
    return f" {results[arm].questions_per_second[run] / recipe.questions_per_second[run]:.2f}x"


def report(args: argparse.Namespace, examples: list[Any], eval_ids: set[str], results: list[Result]) -> int:
    """The table: questions/s and ratio to the recipe per run and their median, scores, answers equal to the reference."""
    baseline = next((r for r in results if r.arm == "recipe"), None)
    reference = next((r for name in REFERENCES for r in results if r.arm == name), None)
    eval_examples = [ex for ex in examples if ex.id in eval_ids]
    runs = args.runs
    header = f"\n{'arm':<15} {'q/s per run':>{8 * runs}} {'vs recipe per run':>{8 * runs}} {'median':>7} {'cpu':>6} {'EM':>6} {'F1':>6}"
    header += f" {'eval EM':>7} {'eval F1':>7}" if eval_examples else ""
    header += f"  = {reference.arm}" if reference else ""
    print(header)
    rows = []
    for result in results:
        qps = result.questions_per_second
        ratios = [q / b if b else float("nan") for q, b in zip(qps, baseline.questions_per_second)] if baseline else [float("nan")] * runs
        # the same ratio in this process's CPU time, which other load on the machine moves less than wall time
        cpu_ratio = median([b / c if c else float("nan") for b, c in zip(baseline.cpu_seconds, result.cpu_seconds)]) if baseline else float("nan")
        em, f1 = scores(examples, result.answers)
        line = f"{result.arm:<15} {''.join(f'{q:>8.2f}' for q in qps)} {''.join(f'{r:>7.2f}x' for r in ratios)} {median(ratios):>6.2f}x"
        line += f" {cpu_ratio:>5.2f}x {em:>6.2f} {f1:>6.2f}"
        row: dict[str, Any] = {
            "arm": result.arm, "seconds": result.seconds, "cpu_seconds": result.cpu_seconds, "questions_per_second": qps, "vs_recipe": ratios,
            "median_vs_recipe": median(ratios), "cpu_time_vs_recipe": cpu_ratio, "em": em, "f1": f1,
        }  # fmt: skip
        if eval_examples:
            eval_em, eval_f1 = scores(eval_examples, result.answers)
            line += f" {eval_em:>7.2f} {eval_f1:>7.2f}"
            row.update(eval_em=eval_em, eval_f1=eval_f1)
        if reference:
            same = sum(result.answers.get(k) == v for k, v in reference.answers.items())
            line += f" {same:>4}/{len(reference.answers)}"
            row[f"same_as_{reference.arm}"] = same
        print(line)
        rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
