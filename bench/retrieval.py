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

if TYPE_CHECKING:  # pragma: no cover
    from spanqa.data import QADataset, QAExample
    from spanqa.index import Index

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

    from spanqa.data import load_examples, split_by_title
    from spanqa.index import build_index

    dataset = load_examples(args.data)
    questions = [ex for ex in split_by_title(dataset, args.train_articles)[1].examples if ex.answers]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        index = build_index([args.data], Path(tmp) / "ix", embedding_model=None if args.bm25_only else args.embedding_model)
        print(f"indexed {index.manifest['documents']} paragraphs as {len(index.passages)} passages in {time.perf_counter() - started:.1f} s")
        doc_of = _document_ids(dataset, str(args.data))
        methods = ("bm25",) if args.bm25_only else ("bm25", "dense", "fused")
        print(f"{len(questions)} questions of articles {args.train_articles + 1}+")
        print("method  " + "  ".join(f"R@{k:<4}" for k in KS) + "  ms/question")
        for method in methods:
            started = time.perf_counter()
            found = [_first_hit(index, ex, doc_of[ex.context], method) for ex in questions]
            ms = 1000 * (time.perf_counter() - started) / len(questions)
            recalls = [sum(rank is not None and rank < k for rank in found) / len(found) for k in KS]
            print(f"{method:<7} " + "  ".join(f"{r:.3f}" for r in recalls) + f"  {ms:.1f}")
        if args.reader:
            _read(args.reader, index, questions, args.passages, "bm25" if args.bm25_only else "fused")
    return 0


def _read(model: str, index: Index, questions: list[QAExample], passages: int, method: str) -> None:
    """End-to-end EM/F1 (retrieve, then read) beside the gold-passage EM/F1, and the time per question once loaded."""
    import statistics

    from spanqa import Reader
    from spanqa.index import answer_from_index
    from spanqa.metrics import score_predictions

    reader = Reader.from_pretrained(model)
    gold = {ex.id: reader(ex.question, ex.context).answers[0].text for ex in questions}
    answer_from_index(reader, index, questions[0].question, passages=passages)  # warm-up, untimed
    seconds, open_domain = [], {}
    for ex in questions:
        started = time.perf_counter()
        found = answer_from_index(reader, index, ex.question, passages=passages)  # the index's own method: fused when it has embeddings
        seconds.append(time.perf_counter() - started)
        open_domain[ex.id] = found.answers[0].text if found.answers else ""
    for name, predictions in (("gold passage", gold), (f"index ({method}, {passages} passages)", open_domain)):
        metrics = score_predictions(questions, predictions, version_2=False).metrics
        print(f"reader {model}, {name}: EM {metrics['exact_match']:.2f} F1 {metrics['f1']:.2f}")
    print(
        f"retrieve + read per question, model loaded: mean {statistics.mean(seconds):.3f} s, "
        f"median {statistics.median(seconds):.3f} s, max {max(seconds):.3f} s (acceptance < 2 s)"
    )


def _document_ids(dataset: QADataset, path: str) -> dict[str, str]:
    """Each distinct context's document id, numbered as ``spanqa.index`` numbers SQuAD contexts."""
    ids: dict[str, str] = {}
    for ex in dataset.examples:
        ids.setdefault(ex.context, f"{path}#{len(ids) + 1}")
    return ids


def _first_hit(index: Index, example: QAExample, doc_id: str, method: str) -> int | None:
    """The rank (0-based) of the first of the top passages that covers the gold answer, or None."""
    answer = example.answers[0]
    for rank, hit in enumerate(index.search(example.question, max(KS), method=method)):
        p = hit.passage
        if p.doc_id == doc_id and p.start <= answer.start and answer.end <= p.end:
            return rank
    return None


if __name__ == "__main__":
    sys.exit(main())
