#!/usr/bin/env python
"""Peak memory of ``spanqa evaluate`` at 1x and 10x the questions: does it stay flat as data grows?

The 1x file holds the first ``--questions`` questions of XQuAD-en (300 by default: MiniLM on two
CPU cores answers about 20 questions a second, so all 11,900 of a 10x XQuAD would take ~10
minutes; ``--questions 0`` uses every question); the 10x file holds the same questions ten
times over with new ids (``{id}-r0`` ... ``{id}-r9``). Both are written to a temporary folder.

Each run is the command line, ``python -m spanqa evaluate --model M --data F --output-dir D``,
in a fresh process. Its peak resident memory is ``getrusage(RUSAGE_CHILDREN).ru_maxrss``, read by
a small helper process that starts the run and waits for it: RUSAGE_CHILDREN is the largest peak
over all of a process's waited-for children, so each measurement gets its own helper and the two
cannot contaminate each other (nor can this script's own memory).

Prints the machine, the peak RSS of each run in MiB, the ratio 10x / 1x (the aim: at most 1.2),
and the wall time of each run.

    python bench/eval_memory.py                                   # minilm, 300 and 3,000 questions
    python bench/eval_memory.py --questions 0                     # all of XQuAD-en: 1,190 and 11,900 (slow on a CPU)
    python bench/eval_memory.py --model path/to/model --data dev.json --questions 50 --max-length 256
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from train_speed import data_file, machine  # noqa: E402  (the machine, printed first; the default data)

COPIES = 10

# The helper: runs one command, waits for it, reports its peak RSS (KiB on Linux) and wall time.
HELPER = """
import json, resource, subprocess, sys, time
command = json.loads(sys.argv[1])
with open(sys.argv[2], "wb") as log:
    started = time.perf_counter()
    rc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - started
print(json.dumps({"rc": rc, "seconds": seconds, "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def write_data(source: Path, questions: int, folder: Path) -> tuple[Path, Path, int]:
    """The 1x file (the first ``questions`` questions; 0: all) and the 10x file (each repeated with new ids)."""
    from spanqa import load_examples, save_examples

    examples = load_examples(source).examples
    if questions:
        examples = examples[:questions]
    one, ten = folder / "questions-1x.json", folder / f"questions-{COPIES}x.json"
    save_examples(examples, one)
    save_examples([replace(ex, id=f"{ex.id}-r{k}") for k in range(COPIES) for ex in examples], ten)
    return one, ten, len(examples)


def measure(command: list[str], log: Path) -> dict[str, float]:
    """Run ``command`` under a fresh helper process; its peak RSS and wall time."""
    done = subprocess.run([sys.executable, "-c", HELPER, json.dumps(command), str(log)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: the measuring helper failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"error: {' '.join(command)} exited with {result['rc']}:\n{tail}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="Model folder or alias (default: minilm).")
    parser.add_argument("--data", type=Path, default=None, help="SQuAD-style data (default: ../shared/data/xquad/xquad.en.json).")
    parser.add_argument("--questions", type=int, default=300, help="Questions in the 1x run (0: all); the 10x run has ten times as many.")
    parser.add_argument("--max-length", type=int, default=None, help="Window length for spanqa evaluate (default: the model's spanqa.json, else 384).")
    parser.add_argument("--batch-size", type=int, default=None, help="Windows per forward pass (default: spanqa evaluate's).")
    args = parser.parse_args(argv)
    if args.questions < 0:
        parser.error("--questions must be >= 0")
    data = data_file(args.data)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory(prefix="spanqa-eval-memory-") as tmp:
        folder = Path(tmp)
        one, ten, n = write_data(data, args.questions, folder)
        options = [] if args.max_length is None else ["--max-length", str(args.max_length)]
        options += [] if args.batch_size is None else ["--batch-size", str(args.batch_size)]
        print(
            f"model {args.model}; data {data.name}, {'first ' if args.questions and n == args.questions else ''}{n} questions; "
            f"1x = {n} questions, {COPIES}x = {COPIES * n} questions (ids {{id}}-r0..r{COPIES - 1}); "
            f"max_length {args.max_length or 'the model default'}",
            flush=True,
        )
        # Warm the file cache (Python, torch, transformers) so the first run's wall time is not a cold start.
        subprocess.run([sys.executable, "-c", "import torch, transformers, spanqa.interfaces.cli, spanqa.jobs.evaluate"], capture_output=True)
        results = {}
        for name, path, count in (("1x", one, n), (f"{COPIES}x", ten, COPIES * n)):
            output = folder / f"out-{name}"
            command = [sys.executable, "-m", "spanqa", "evaluate", "--model", args.model, "--data", str(path), "--output-dir", str(output), *options]
            results[name] = result = measure(command, folder / f"{name}.log")
            print(f"{name} ({count} questions): peak RSS {result['maxrss_kib'] / 1024:.1f} MiB, wall {result['seconds']:.1f} s", flush=True)
    low, high = results["1x"]["maxrss_kib"], results[f"{COPIES}x"]["maxrss_kib"]
    ratio = high / low
    print(f"peak RSS {COPIES}x / 1x: {ratio:.3f} (+{(high - low) / 1024:.1f} MiB; acceptance <= 1.2: {'yes' if ratio <= 1.2 else 'no'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
