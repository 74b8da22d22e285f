#!/usr/bin/env python
"""Training speed: the Hugging Face notebook recipe against ``spanqa train``, measured in one run.

The baseline is the question-answering notebook as people copy it: a fast tokenizer
with ``padding="max_length"`` (384/128 windows, ``bench/reference_recipe.py``), HF
``Trainer`` with ``default_data_collator``, fp16 on a GPU and fp32 on a CPU, batch 16.
spanqa trains through ``spanqa.train`` with its defaults. Both get the same data, model,
seed, epochs, batch size and learning rate; each is timed around ``Trainer.train`` only
(no evaluation inside), then scored on the same eval questions: the recipe with its own
post-processing and the official v1.1 script, spanqa with ``spanqa evaluate``'s path.

Prints the machine, samples/s (training windows per second) of each arm, the ratio to the
recipe, and EM/F1 of each.

    python bench/train_speed.py                          # MiniLM, XQuAD-en articles 1-36 -> 37-48 (subsets on CPU)
    python bench/train_speed.py --size base              # a random BERT-base-size model: throughput only
    python bench/train_speed.py --variants default,fp32,bf16,fp16 --train-questions 0   # GPU: every precision, all data
    python bench/train_speed.py --model tiny-folder --train a.json --eval b.json --steps 2   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import reference_recipe  # noqa: E402  (the notebook recipe and the official v1.1 scoring)

XQUAD_EN = ROOT.parent / "shared" / "data" / "xquad" / "xquad.en.json"
VARIANTS = {  # spanqa arms: extra train() settings
    "default": {},
    "fp32": {"mixed_precision": False},
    "bf16": {"bf16": True},
    "fp16": {"fp16": True},
}


# --------------------------------------------------------------------------- the machine


CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "avx_vnni")
"""The CPU features that decide which kernels run fast: fp32 (AVX2/AVX-512), bf16 (AVX-512 BF16, AMX) and int8 (VNNI, AMX)."""


def machine() -> str:
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            info = handle.read().splitlines()
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
        flags = set(next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), []))
    except OSError:
        pass
    from spanqa.runtime.devices import cpu_has_fast_bf16

    lines = [
        f"CPU: {cpu}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}, "
        f"native bf16 {'yes' if cpu_has_fast_bf16() else 'no'}",
        f"CPU flags: {' '.join(f for f in CPU_FLAGS if f in flags) or 'none'} (not: {' '.join(f for f in CPU_FLAGS if f not in flags) or 'none'})"
        if flags
        else "CPU flags: unknown (no /proc/cpuinfo)",
        f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}",
        f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- data and model


def subset(path: Path, questions: int, out: Path, seed: int) -> Path:
    """The first ``questions`` answerable questions of a data file in file order (0: all), saved to ``out``.

    The notebook recipe is SQuAD v1.1 (every question answerable), so unanswerable ones are left out.
    """
    from spanqa import load_examples, save_examples

    examples = [ex for ex in load_examples(path).examples if ex.answers]
    if questions:
        examples = examples[:questions]
    save_examples(examples, out)
    return out


def data_file(given: Path | None) -> Path:
    """``given``, else XQuAD-en from ../shared/data; exits with a clear message when the file is missing."""
    path = given or XQUAD_EN
    if not path.exists():
        raise SystemExit(
            f"error: {path} not found; give --data FILE (a SQuAD-style JSON)" if given
            else f"error: XQuAD-en not found at {path} (shared data beside the repository); give --data FILE"
        )
    return path


def xquad_split(workdir: Path) -> tuple[Path, Path]:
    """XQuAD-en articles 1-36 (train) and 37-48 (eval), the README's split."""
    from spanqa.stages.data import load_examples, save_examples, split_by_title

    if not XQUAD_EN.exists():
        raise SystemExit(f"error: {XQUAD_EN} not found; give --train and --eval")
    head, tail = split_by_title(load_examples(XQUAD_EN), 36)
    save_examples(head.examples, workdir / "xquad-train.json")
    save_examples(tail.examples, workdir / "xquad-eval.json")
    return workdir / "xquad-train.json", workdir / "xquad-eval.json"


def base_size_model(workdir: Path, seed: int) -> Path:
    """A randomly initialised BERT-base-size QA model (12 x 768) with MiniLM's tokenizer, saved locally."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    from spanqa.runtime.models import load_tokenizer

    tokenizer = load_tokenizer("minilm")
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    folder = workdir / "bert-base-random"
    BertForQuestionAnswering(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- the two arms


@dataclass
class Arm:
    name: str
    windows: int
    seconds: float
    steps: int
    batch_size: int
    exact: float
    f1: float

    @property
    def samples_per_second(self) -> float:
        return self.steps * self.batch_size / self.seconds if self.seconds else 0.0


def _squad_rows(path: Path) -> list[dict[str, Any]]:
    from spanqa import load_examples

    return [
        {"id": ex.id, "question": ex.question, "context": ex.context, "answers": [{"text": a.text, "answer_start": a.start} for a in ex.answers]}
        for ex in load_examples(path).examples
    ]


def run_recipe(model: str, train_file: Path, eval_file: Path, args: argparse.Namespace, workdir: Path) -> Arm:
    """The notebook: windows padded to 384, Trainer with default_data_collator, fp16 on a GPU, fp32 on a CPU."""
    import datasets
    import numpy as np
    import torch
    from transformers import AutoModelForQuestionAnswering, Trainer, TrainingArguments, default_data_collator, set_seed

    from spanqa.runtime.models import load_tokenizer, resolve_model

    path = resolve_model(model)
    tokenizer = load_tokenizer(model)
    train_rows = _squad_rows(train_file)
    encoded = reference_recipe.prepare_train_features(
        tokenizer,
        [r["question"] for r in train_rows],
        [r["context"] for r in train_rows],
        [r["answers"][0] if r["answers"] else None for r in train_rows],
        args.max_length,
        args.stride,
    )
    train_dataset = datasets.Dataset.from_dict({k: list(v) for k, v in encoded.items()})
    set_seed(args.seed)
    qa_model = AutoModelForQuestionAnswering.from_pretrained(path)
    on_gpu = torch.cuda.is_available() and args.device != "cpu"
    training_args = TrainingArguments(
        output_dir=str(workdir / "recipe"),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=32,
        learning_rate=args.learning_rate,
        num_train_epochs=args.epochs,
        max_steps=args.steps or -1,
        weight_decay=0.01,
        fp16=on_gpu,
        use_cpu=not on_gpu,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        logging_steps=50,
        disable_tqdm=True,
    )
    trainer = Trainer(model=qa_model, args=training_args, train_dataset=train_dataset, data_collator=default_data_collator)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started

    eval_rows = _squad_rows(eval_file)
    tokenized, features = reference_recipe.prepare_validation_features(
        tokenizer, [r["id"] for r in eval_rows], [r["question"] for r in eval_rows], [r["context"] for r in eval_rows],
        args.max_length, args.stride,
    )
    columns = {k: list(v) for k, v in tokenized.items() if k != "offset_mapping"}
    output = trainer.predict(datasets.Dataset.from_dict(columns))
    start_logits, end_logits = (np.asarray(x) for x in output.predictions[:2])
    predicted = reference_recipe.reference_postprocess(eval_rows, features, start_logits, end_logits)
    texts = {qid: p["text"] if isinstance(p, dict) else p for qid, p in predicted.items()}
    dataset = [{"paragraphs": [{"context": r["context"], "qas": [{"id": r["id"], "answers": r["answers"]}]}]} for r in eval_rows]
    scores = reference_recipe.ref_v1_evaluate(dataset, texts)
    return Arm("recipe", len(train_dataset), seconds, trainer.state.global_step, args.batch_size, scores["exact_match"], scores["f1"])


def run_spanqa(name: str, model: str, train_file: Path, eval_file: Path, args: argparse.Namespace, workdir: Path) -> Arm:
    """``spanqa train`` with its defaults plus the shared settings; evaluation only after the timed training."""
    from spanqa import build_features, load_examples, train
    from spanqa.runtime.models import load_tokenizer

    settings: dict[str, Any] = {
        "output_dir": str(workdir / f"spanqa-{name}"),
        "per_device_train_batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "num_train_epochs": args.epochs,
        "max_steps": args.steps or -1,
        "max_length": args.max_length,
        "stride": args.stride,
        "seed": args.seed,
        "eval_strategy": "no",  # timed: training steps only, as for the recipe
        "save_strategy": "no",
        "report_to": "none",
        "logging_steps": 50,
        "disable_tqdm": True,
        **VARIANTS[name],
    }
    if args.device == "cpu":
        settings["use_cpu"] = True
    result = train(model, train_file, eval_file, **settings)
    windows = len(build_features(load_examples(train_file).examples, load_tokenizer(model), result.config.window))
    metrics = result.metrics
    exact = metrics.get("exact", metrics.get("exact_match", 0.0))  # v1 data: the official v1.1 key
    return Arm(f"spanqa {name}", windows, result.training_seconds, result.global_step, args.batch_size, exact, metrics.get("f1", 0.0))


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="Model folder or alias (default: minilm).")
    parser.add_argument("--size", choices=["base"], help="base: a random BERT-base-size model built locally (throughput only).")
    parser.add_argument("--train", type=Path, help="Training data (default: XQuAD-en articles 1-36 from ../shared/data).")
    parser.add_argument("--eval", type=Path, help="Evaluation data (default: XQuAD-en articles 37-48).")
    parser.add_argument("--train-questions", type=int, default=None, help="Use the first N training questions (0: all; default 600 on a CPU, all on a GPU).")
    parser.add_argument("--eval-questions", type=int, default=0, help="Use the first N evaluation questions (0: all).")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=0, help="Stop each arm after N optimizer steps (0: whole epochs).")
    parser.add_argument("--learning-rate", type=float, default=2e-4, help="The same for both arms (spanqa's pick for small models).")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--stride", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--variants", default="default", help=f"spanqa arms, comma-separated, from {', '.join(VARIANTS)}.")
    parser.add_argument("--device", choices=["auto", "cpu"], default="auto")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import logging

    logging.getLogger("spanqa").setLevel(logging.WARNING)
    import torch

    random.seed(args.seed)
    print(machine(), flush=True)
    on_gpu = torch.cuda.is_available() and args.device != "cpu"
    if args.train_questions is None:
        args.train_questions = 0 if on_gpu else 600
    with tempfile.TemporaryDirectory(prefix="spanqa-train-speed-") as tmp:
        workdir = Path(tmp)
        train_file, eval_file = (args.train, args.eval) if args.train and args.eval else xquad_split(workdir)
        train_file = subset(train_file, args.train_questions, workdir / "train.json", args.seed)
        eval_file = subset(eval_file, args.eval_questions, workdir / "eval.json", args.seed)
        model = str(base_size_model(workdir, args.seed)) if args.size == "base" else args.model
        print(
            f"model {args.size + ' (random)' if args.size else model}; train {train_file.name} ({args.train_questions or 'all'} questions), "
            f"eval {args.eval_questions or 'all'} questions; {args.epochs:g} epoch(s){f', {args.steps} steps' if args.steps else ''}, "
            f"batch {args.batch_size}, lr {args.learning_rate:g}, seed {args.seed}, windows {args.max_length}/{args.stride}",
            flush=True,
        )
        arms = [run_recipe(model, train_file, eval_file, args, workdir)]
        print(f"recipe ({'fp16' if on_gpu else 'fp32'}, padded to {args.max_length}): {arms[0].samples_per_second:.2f} samples/s", flush=True)
        for name in variants:
            arms.append(run_spanqa(name, model, train_file, eval_file, args, workdir))
            print(f"{arms[-1].name}: {arms[-1].samples_per_second:.2f} samples/s", flush=True)

    recipe = arms[0]
    print(f"\n{'arm':<16} {'windows':>7} {'steps':>5} {'seconds':>8} {'samples/s':>9} {'vs recipe':>9} {'EM':>6} {'F1':>6}")
    for arm in arms:
        ratio = arm.samples_per_second / recipe.samples_per_second if recipe.samples_per_second else 0.0
        speed = f"{arm.seconds:>8.1f} {arm.samples_per_second:>9.2f} {ratio:>8.2f}x"
        print(f"{arm.name:<16} {arm.windows:>7} {arm.steps:>5} {speed} {arm.exact:>6.2f} {arm.f1:>6.2f}")
    if args.json:
        args.json.write_text(json.dumps([{**vars(a), "samples_per_second": a.samples_per_second} for a in arms], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
