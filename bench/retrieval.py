#!/usr/bin/env python
"""Retrieval recall of ``spanqa index`` on XQuAD-en: does a top-k passage hold the answer?

Indexes every paragraph of the file (240 for XQuAD) as a document, then asks the questions of
the held-out articles (37-48: ``split_by_title(dataset, 36)``, as in the fine-tuning split) and
counts a question as found at k when one of the first k passages comes from the question's
paragraph and covers its first gold answer. Prints recall@1/5/20 for BM25, and for dense
(MiniLM embeddings) and fused (reciprocal rank fusion) retrieval unless --bm25-only.

    python bench/retrieval.py --data ../shared/data/xquad/xquad.en.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from spanqa.stages.data import QADataset

if TYPE_CHECKING:  # pragma: no cover
    from spanqa.reading.index import Index
    from spanqa.stages.data import QAExample

ROOT = Path(__file__).resolve().parents[1]
KS = (1, 5, 20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/xquad/xquad.en.json", help="A SQuAD-layout file.")
    parser.add_argument("--train-articles", type=int, default=36, help="Questions of the articles after these are asked.")
    parser.add_argument("--bm25-only", action="store_true", help="Skip the embeddings (no model load).")
    parser.add_argument("--embedding-model", default="minilm")
    parser.add_argument("--reader", help="Also answer with this QA model: end-to-end EM/F1 over the index beside the gold passage's, and seconds per question.")
    parser.add_argument("--passages", type=int, default=10, help="Passages the reader reads per question (with --reader).")
    args = parser.parse_args(argv)

    from spanqa.jobs.opendomain import RECALL_KS, retrieval_recall
    from spanqa.reading.index import build_index
    from spanqa.stages.data import load_examples, split_by_title

    dataset = load_examples(args.data)
    questions = [ex for ex in split_by_title(dataset, args.train_articles)[1].examples if ex.answers]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        index = build_index([args.data], Path(tmp) / "ix", embedding_model=None if args.bm25_only else args.embedding_model)
        print(f"indexed {index.manifest['documents']} paragraphs as {len(index.passages)} passages in {time.perf_counter() - started:.1f} s")
        print(f"{len(questions)} questions of articles {args.train_articles + 1}+")
        print("method  " + "  ".join(f"R@{k:<4}" for k in RECALL_KS) + "  ms/question")
        for method in index.methods:
            started = time.perf_counter()
            recall = retrieval_recall(index, questions, [method])[method]
            ms = 1000 * (time.perf_counter() - started) / len(questions)
            print(f"{method:<7} " + "  ".join(f"{recall[f'recall@{k}']:.3f}" for k in RECALL_KS) + f"  {ms:.1f}")
        if args.reader:
            _read(args.reader, index, questions, args.passages)
    return 0


def _read(model: str, index: Index, questions: list[QAExample], passages: int) -> None:
    """End-to-end EM/F1 (retrieve, then read) beside the gold-passage EM/F1, and the time per question once loaded."""
    import statistics

    from spanqa import Reader
    from spanqa.jobs.evaluate import evaluate
    from spanqa.jobs.opendomain import evaluate_open_domain
    from spanqa.reading.indexed import answer_from_index

    reader = Reader.from_pretrained(model)
    gold = evaluate(reader, QADataset(questions, source="bench", version_2=False)).metrics
    open_domain = evaluate_open_domain(reader, index, questions, passages=passages, methods=[]).end_to_end
    for name, metrics in (("gold passage", gold), (f"index ({index.default_method}, {passages} passages)", open_domain)):
        print(f"reader {model}, {name}: EM {metrics['exact_match']:.2f} F1 {metrics['f1']:.2f}")
    answer_from_index(reader, index, questions[0].question, passages=passages)  # warm-up, untimed
    seconds = []
    for ex in questions:  # one question at a time, as `spanqa ask --index` answers
        started = time.perf_counter()
        answer_from_index(reader, index, ex.question, passages=passages)
        seconds.append(time.perf_counter() - started)
    print(
        f"retrieve + read per question, model loaded: mean {statistics.mean(seconds):.3f} s, "
        f"median {statistics.median(seconds):.3f} s, max {max(seconds):.3f} s (acceptance < 2 s)"
    )


if __name__ == "__main__":
    sys.exit(main())
