#!/usr/bin/env python
"""``spanqa index`` at scale: build an index of 100,000 passages, then time questions against it.

The corpus is synthetic and deterministic (``--seed``): one JSONL row per document, 150-200
words of pseudo-English drawn from a 30,000-word vocabulary with a Zipf distribution (the most
frequent words are English stopwords, the rest made-up words, some with -s/-ed/-ing endings for
the stemmer), in sentences. Every document fits in one passage (at most 200 words), so
``--passages`` documents make that many passages. The questions (``--queries``) are made of
words of random documents ("what W1 W2 of the W3 W4?").

Two measured processes, each started by a small helper so that its peak RSS
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``) is its own, not this script's:

* build: ``build_index([corpus], out, embedding_model=...)``; prints its seconds (the whole
  process, imports included, and ``build_index`` alone) and peak RSS;
* query: ``Index.load`` then ``Index.search(question, k=10)`` per question after 5 untimed
  warm-up questions; prints load seconds, query p50/p99 in ms per method and the peak RSS.

With ``--embedding-model MODEL`` (default ``none``) a second, smaller index of the first
``--embedding-passages`` documents (default 2,000) is built with embeddings, and its fused
queries are timed: embedding 100,000 passages with MiniLM takes about half an hour on two CPU
cores. ``--embedding-passages 0`` embeds the whole corpus.

Targets (the issue's, for 100,000 passages, BM25 only): build <= 120 s, peak RSS <= 2048 MB,
BM25 query p99 <= 100 ms; PASS/FAIL is printed for each.

    python bench/index_scale.py                                     # 100,000 passages, BM25
    python bench/index_scale.py --passages 20000 --queries 100
    python bench/index_scale.py --embedding-model minilm --embedding-passages 2000 --json figures.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from eval_memory import measure  # noqa: E402  (one helper process per measured run)
from train_speed import machine  # noqa: E402  (the machine, printed first)

TARGETS = {"build_seconds": 120.0, "build_rss_mb": 2048.0, "bm25_p99_ms": 100.0}
VOCABULARY = 30_000
ZIPF_S = 1.0  # Zipf-Mandelbrot exponent and offset: roughly English word frequencies
ZIPF_Q = 2.7
STOPWORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but have an they you were her she there "
    "been one all we their has would when if more will who its"
).split()
WARMUP = 5


# --------------------------------------------------------------------------- the synthetic corpus


def vocabulary(size: int, seed: int) -> list[str]:
    """``size`` distinct words, most frequent first: English stopwords, then made-up words."""
    rng = random.Random(seed)
    onsets = "b c d f g h j k l m n p r s t v w z br ch cl dr fl gr pl pr sh st th tr".split()
    vowels = "a e i o u ai ea io ou".split()
    endings = ["", "", "", "", "s", "ed", "ing", "er", "ly", "tion"]
    words, seen = list(STOPWORDS), set(STOPWORDS)
    while len(words) < size:
        word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(1, 3)))
        word += rng.choice(["", "n", "r", "s", "t", "l", "m"]) + rng.choice(endings)
        if len(word) > 2 and word not in seen:
            seen.add(word)
            words.append(word)
    return words


def write_corpus(path: Path, passages: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Write ``passages`` documents to ``path`` (JSONL, a ``text`` column); the vocabulary, word ids and document offsets."""
    words = vocabulary(VOCABULARY, seed)
    rng = np.random.default_rng(seed)
    weights = 1.0 / (np.arange(1, VOCABULARY + 1) + ZIPF_Q) ** ZIPF_S
    lengths = rng.integers(150, 201, size=passages)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = rng.choice(VOCABULARY, size=int(offsets[-1]), p=weights / weights.sum()).astype(np.int32)
    table = np.array(words, dtype=object)
    with open(path, "w", encoding="utf-8") as handle:
        for d in range(passages):
            doc = table[ids[offsets[d] : offsets[d + 1]]].tolist()
            for end in range(int(rng.integers(8, 20)), len(doc), 14):  # sentences: a full stop, a capital after it
                doc[end - 1] += "."
                doc[end] = doc[end].capitalize()
            doc[0], doc[-1] = doc[0].capitalize(), doc[-1].rstrip(".") + "."
            handle.write(json.dumps({"text": " ".join(doc)}) + "\n")
    return words, ids, offsets


def make_questions(words: list[str], ids: np.ndarray, offsets: np.ndarray, count: int, seed: int) -> list[str]:
    """``count`` questions, each of four content words of one random document."""
    rng = random.Random(seed + 1)
    stop = set(range(len(STOPWORDS)))
    questions = []
    for _ in range(count):
        d = rng.randrange(len(offsets) - 1)
        content = [int(i) for i in ids[offsets[d] : offsets[d + 1]] if int(i) not in stop]
        w = [words[i] for i in rng.sample(content, 4)]
        questions.append(f"what {w[0]} {w[1]} of the {w[2]} {w[3]}?")
    return questions


# --------------------------------------------------------------------------- the measured child processes


def child_build(corpus: str, out: str, embedding_model: str, result: str) -> None:
    from spanqa.reading.index import build_index

    started = time.perf_counter()
    index = build_index([corpus], out, embedding_model=None if embedding_model.lower() == "none" else embedding_model)
    seconds = time.perf_counter() - started
    Path(result).write_text(json.dumps({"build_index_seconds": seconds, "passages": int(index.manifest["passages"])}), encoding="utf-8")


def child_query(folder: str, questions_file: str, result: str) -> None:
    from spanqa.reading.index import Index

    questions = json.loads(Path(questions_file).read_text(encoding="utf-8"))
    started = time.perf_counter()
    index = Index.load(folder)
    figures: dict[str, Any] = {"load_seconds": time.perf_counter() - started}
    for method in ("bm25", "fused") if "fused" in index.methods else ("bm25",):
        for question in questions[:WARMUP]:
            index.search(question, k=10, method=method)
        ms = []
        for question in questions:
            started = time.perf_counter()
            index.search(question, k=10, method=method)
            ms.append(1000 * (time.perf_counter() - started))
        p50, p99 = np.percentile(ms, [50, 99])
        figures[method] = {"p50_ms": float(p50), "p99_ms": float(p99), "mean_ms": float(np.mean(ms))}
    Path(result).write_text(json.dumps(figures), encoding="utf-8")


def run_child(folder: Path, name: str, label: str, *args: str) -> dict[str, Any]:
    """Run this script's ``name`` child under a fresh helper; its result plus wall seconds and peak RSS (MB)."""
    result = folder / f"{name}-{label}.json"
    measured = measure([sys.executable, __file__, f"--child-{name}", *args, str(result)], folder / f"{name}-{label}.log")
    figures = json.loads(result.read_text(encoding="utf-8"))
    figures.update(process_seconds=measured["seconds"], peak_rss_mb=measured["maxrss_kib"] / 1024)
    return figures


# --------------------------------------------------------------------------- main


def build_and_query(folder: Path, corpus: Path, questions: Path, embedding_model: str, label: str) -> dict[str, Any]:
    build = run_child(folder, "build", label, str(corpus), str(folder / f"ix-{label}"), embedding_model)
    print(
        f"{label}: build {build['process_seconds']:.1f} s (build_index {build['build_index_seconds']:.1f} s), "
        f"peak RSS {build['peak_rss_mb']:.0f} MB, {build['passages']} passages",
        flush=True,
    )
    query = run_child(folder, "query", label, str(folder / f"ix-{label}"), str(questions))
    methods = [m for m in ("bm25", "fused") if m in query]
    print(
        f"{label}: load {query['load_seconds']:.2f} s, query process peak RSS {query['peak_rss_mb']:.0f} MB; "
        + "; ".join(f"{m} p50 {query[m]['p50_ms']:.1f} ms p99 {query[m]['p99_ms']:.1f} ms" for m in methods),
        flush=True,
    )
    return {"build": build, "query": query}


def verdicts(figures: dict[str, Any]) -> dict[str, bool]:
    build, query = figures["build"], figures["query"]
    got = {"build_seconds": build["process_seconds"], "build_rss_mb": build["peak_rss_mb"], "bm25_p99_ms": query["bm25"]["p99_ms"]}
    for key, limit in TARGETS.items():
        print(f"{key:<14} {got[key]:8.1f} (target <= {limit:g}): {'PASS' if got[key] <= limit else 'FAIL'}")
    return {key: got[key] <= limit for key, limit in TARGETS.items()}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child-build":
        child_build(*argv[1:])
        return 0
    if argv and argv[0] == "--child-query":
        child_query(*argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=100_000, help="Documents (one passage each) in the corpus.")
    parser.add_argument("--queries", type=int, default=200, help="Timed questions per method.")
    parser.add_argument("--embedding-model", default="none", help="none (BM25 only), or a model (e.g. minilm) for a fused index of --embedding-passages.")
    parser.add_argument("--embedding-passages", type=int, default=2000, help="Documents of the embedded index (0: all of them).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    args = parser.parse_args(argv)
    if args.passages < 1 or args.queries < 1 or args.embedding_passages < 0:
        parser.error("--passages and --queries must be positive, --embedding-passages >= 0")

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    print(machine(), flush=True)
    figures: dict[str, Any] = {"machine": machine(), "passages": args.passages, "queries": args.queries, "seed": args.seed}
    with tempfile.TemporaryDirectory(prefix="spanqa-index-scale-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        words, ids, offsets = write_corpus(folder / "corpus.jsonl", args.passages, args.seed)
        questions = folder / "questions.json"
        questions.write_text(json.dumps(make_questions(words, ids, offsets, args.queries + WARMUP, args.seed)), encoding="utf-8")
        del ids
        size = (folder / "corpus.jsonl").stat().st_size / 2**20
        print(f"corpus: {args.passages} documents, {offsets[-1]} words, {size:.0f} MiB, written in {time.perf_counter() - started:.1f} s", flush=True)
        figures["bm25"] = build_and_query(folder, folder / "corpus.jsonl", questions, "none", "bm25")
        figures["targets"] = verdicts(figures["bm25"])
        if args.embedding_model.lower() != "none":
            embedded = folder / "corpus.jsonl"
            if args.embedding_passages and args.embedding_passages < args.passages:
                embedded = folder / "embedded.jsonl"
                with open(folder / "corpus.jsonl", encoding="utf-8") as source, open(embedded, "w", encoding="utf-8") as head:
                    head.writelines(line for _, line in zip(range(args.embedding_passages), source))
            figures["embedded"] = build_and_query(folder, embedded, questions, args.embedding_model, "embedded")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0 if all(figures["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
