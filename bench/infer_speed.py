#!/usr/bin/env python
"""Inference speed end to end: the notebook's predict loop against spanqa's Reader (PyTorch, ONNX fp32, ONNX int8).

Every arm goes from examples to answer texts (tokenization, model, decoding) over the
same questions with the same model and the same 384/128 windows, and is timed as a whole:

* recipe: the Hugging Face notebook (``bench/reference_recipe.py``): windows padded to 384,
  batches of 32 through the PyTorch model, the n-best double loop;
* spanqa torch: ``Reader`` with the PyTorch backend (length-sorted batches padded per batch,
  the vectorised decoder, on the CPU the linear layers through oneDNN); ``torch-blas`` is the same
  with the model's layers as loaded (spanqa before oneDNN; its answers are the reference of the
  "= ref" column when it runs); ``torch-bf16`` the same under bf16 autocast (``--dtype bf16``);
* spanqa onnx / onnx-int8: the same Reader on ``spanqa export --onnx [--int8]`` folders
  (export time not counted).

Prints the machine, questions/s of each arm, the ratio to the recipe, EM/F1 on all questions
and on the XQuAD-en eval split (articles 37-48), and how many answers equal spanqa torch's.

    python bench/infer_speed.py --model my-xquad-model          # a model fine-tuned by spanqa train
    python bench/infer_speed.py --model M --arms recipe,torch    # some arms only
    python bench/infer_speed.py --model M --data dev.json --questions 50   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import reference_recipe  # noqa: E402  (the notebook recipe and the official v1.1 scoring)
from train_speed import XQUAD_EN, data_file, machine  # noqa: E402

ARMS = ("recipe", "torch-blas", "torch", "torch-bf16", "onnx", "onnx-int8")


@dataclass
class Result:
    arm: str
    seconds: float
    questions: int
    answers: dict[str, str] = field(repr=False)

    @property
    def questions_per_second(self) -> float:
        return self.questions / self.seconds if self.seconds else 0.0


def run_recipe(model: str, examples: list[Any], batch_size: int, max_length: int, stride: int) -> Result:
    """The notebook's predict loop: windows padded to ``max_length``, the model in fixed batches, the n-best double loop."""
    import numpy as np
    import torch
    from transformers import AutoModelForQuestionAnswering

    from spanqa.runtime.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(model)
    qa_model = AutoModelForQuestionAnswering.from_pretrained(resolve_model(model)).eval()
    rows = [{"id": ex.id, "question": ex.question, "context": ex.context} for ex in examples]
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
    seconds = time.perf_counter() - started
    return Result("recipe", seconds, len(rows), {qid: p["text"] for qid, p in predicted.items()})


def run_reader(arm: str, folder: str, examples: list[Any], batch_size: int, backend: str, dtype: str | None = None) -> Result:
    """spanqa's Reader, examples to answers, on one backend (``torch-blas``: the PyTorch model as loaded)."""
    from spanqa import Reader, SpanQAConfig
    from spanqa.runtime.models import load_qa_model, load_tokenizer, resolve_model

    if arm == "torch-blas":
        path = resolve_model(folder)
        config = SpanQAConfig.load(path) if Path(path).is_dir() else SpanQAConfig()
        reader = Reader(load_qa_model(path), load_tokenizer(path), config, batch_size=batch_size)
    else:
        reader = Reader.from_pretrained(folder, backend=backend, batch_size=batch_size, dtype=dtype)
    reader.predict_examples(examples[:8])  # load lazily-built state (and the ONNX session) outside the timing
    started = time.perf_counter()
    predictions = reader.predict_examples(examples)
    seconds = time.perf_counter() - started
    return Result(arm, seconds, len(examples), {p.id: p.text for p in predictions})


def scores(examples: list[Any], answers: dict[str, str]) -> tuple[float, float]:
    """Official SQuAD v1.1 EM/F1 of ``answers`` over ``examples``."""
    dataset = [
        {"paragraphs": [{"context": ex.context, "qas": [{"id": ex.id, "answers": [{"text": a.text} for a in ex.answers]}]}]} for ex in examples
    ]
    result = reference_recipe.ref_v1_evaluate(dataset, answers)
    return result["exact_match"], result["f1"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A QA model folder (fine-tuned, e.g. by spanqa train on XQuAD-en articles 1-36).")
    parser.add_argument("--data", type=Path, default=None, help="Questions with gold answers (default: all of XQuAD-en).")
    parser.add_argument("--questions", type=int, default=0, help="Use the first N questions (0: all).")
    parser.add_argument("--arms", default="recipe,torch,onnx,onnx-int8", help=f"Comma-separated, from {', '.join(ARMS)}.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--stride", type=int, default=128)
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if any(a not in ARMS for a in arms):
        parser.error(f"--arms: choose from {', '.join(ARMS)}")
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
    print(f"model {args.model}; {len(examples)} questions from {args.data.name}; batch {args.batch_size}", flush=True)

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="spanqa-infer-speed-") as tmp:
        for arm in arms:
            if arm == "recipe":
                results.append(run_recipe(args.model, examples, args.batch_size, args.max_length, args.stride))
            elif arm in ("torch-blas", "torch", "torch-bf16"):
                results.append(run_reader(arm, args.model, examples, args.batch_size, "torch", "bf16" if arm == "torch-bf16" else None))
            else:
                from spanqa.jobs.export import export_onnx

                folder = export_onnx(args.model, Path(tmp) / arm, int8=arm == "onnx-int8")
                results.append(run_reader(arm, str(folder), examples, args.batch_size, "onnx"))
            print(f"{arm}: {results[-1].questions_per_second:.2f} questions/s", flush=True)

    baseline = next((r for r in results if r.arm == "recipe"), None)
    reference = next((r for r in results if r.arm == "torch-blas"), None) or next((r for r in results if r.arm == "torch"), None)
    eval_examples = [ex for ex in examples if ex.id in eval_ids]
    header = f"\n{'arm':<10} {'seconds':>8} {'q/s':>7} {'vs recipe':>9} {'EM':>6} {'F1':>6}"
    header += f" {'eval EM':>7} {'eval F1':>7}" if eval_examples else ""
    header += f"  = {reference.arm}" if reference else ""
    print(header)
    rows = []
    for result in results:
        ratio = result.questions_per_second / baseline.questions_per_second if baseline else float("nan")
        em, f1 = scores(examples, result.answers)
        line = f"{result.arm:<10} {result.seconds:>8.1f} {result.questions_per_second:>7.2f} {ratio:>8.2f}x {em:>6.2f} {f1:>6.2f}"
        row: dict[str, Any] = {"arm": result.arm, "seconds": result.seconds, "questions_per_second": result.questions_per_second, "em": em, "f1": f1}
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
