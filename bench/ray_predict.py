#!/usr/bin/env python
"""Throughput of `spanqa predict --engine ray` with 1 and 2 actors against the local engine.

Answers every question of a data file (XQuAD-en: 1,190) with the local engine (`predict_file`,
the baseline, measured in the same run), then on a local Ray instance with an actor pool of 1
and of 2 Readers (each actor gets its share of the machine's cores), and prints questions per
second, the ratio to the baseline, and whether the output lines are identical. Ray's own start
is not timed; each Ray run's time includes its actors' model loads, as a job's would.

    python bench/ray_predict.py --model MODEL_DIR [--data ../shared/data/xquad/xquad.en.json] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A fine-tuned QA model (a base model's random head differs per load).")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/xquad/xquad.en.json")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=1, help="Runs of each arm (figures of every run are printed).")
    args = parser.parse_args(argv)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from spanqa import LoadOptions, Reader
    from spanqa.jobs.predict import PredictRun, predict_file
    from spanqa.jobs.ray_predict import RayRun, predict_with_ray

    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        print(f"data {args.data}, model {args.model}, {os.cpu_count()} cores, Ray {ray.__version__}")
        for run in range(args.repeat):
            started = time.perf_counter()
            reader = Reader.from_pretrained(args.model, device="cpu")
            total = predict_file(reader, args.data, out / "local.jsonl", run=PredictRun(overwrite=True))
            local_s = time.perf_counter() - started
            local = (out / "local.jsonl").read_text(encoding="utf-8")
            print(f"run {run + 1}: local engine (model load included): {total / local_s:.1f} questions/s ({local_s:.1f} s)")
            for actors in args.actors:
                folder = out / f"ray{actors}"
                started = time.perf_counter()
                predict_with_ray(args.model, args.data, folder, load=LoadOptions(device="cpu"), run=RayRun(num_actors=actors, overwrite=True))
                seconds = time.perf_counter() - started
                lines = "".join(f.read_text(encoding="utf-8") for f in sorted(folder.iterdir()))
                print(
                    f"run {run + 1}: ray, {actors} actor{'s' if actors > 1 else ''}: {total / seconds:.1f} questions/s ({seconds:.1f} s), "
                    f"{local_s / seconds:.2f}x the local engine; lines identical to the local engine's: {lines == local}"
                )
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
