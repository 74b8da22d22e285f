#!/usr/bin/env python
"""Why spanqa's index uses bm25s: BM25 recall and speed of bm25s and tantivy on the same passages.

Splits XQuAD-en's paragraphs into passages as ``spanqa index`` does, indexes them with bm25s
(English stopwords; without and with English stemming, as spanqa) and with tantivy (its ``en_stem``
tokenizer), asks the questions
of the held-out articles (37-48), and prints recall@1/5/20 of the gold passage
(:func:`spanqa.jobs.opendomain.is_gold_passage`), build time and milliseconds per query.
Needs ``pip install tantivy`` (not a spanqa dependency).

    python bench/bm25_engines.py [--data ../shared/data/xquad/xquad.en.json] [--repeat 2]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KS = (1, 5, 20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/xquad/xquad.en.json")
    parser.add_argument("--train-articles", type=int, default=36)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)

    import bm25s
    import numpy as np
    import Stemmer
    import tantivy

    from spanqa.jobs.opendomain import is_gold_passage
    from spanqa.reading.index import Hit, build_index
    from spanqa.stages.data import load_examples, split_by_title

    dataset = load_examples(args.data)
    questions = [ex for ex in split_by_title(dataset, args.train_articles)[1].examples if ex.answers]
    with tempfile.TemporaryDirectory() as tmp:
        passages = build_index([args.data], Path(tmp) / "ix").passages
        texts = [p.text for p in passages]
        print(f"{len(passages)} passages, {len(questions)} questions; bm25s {bm25s.__version__}, tantivy {getattr(tantivy, '__version__', '?')}")
        print("engine           build s  ms/query  " + "  ".join(f"R@{k:<4}" for k in KS))
        for run in range(args.repeat):
            # bm25s without stemming (spanqa's index format 1), and with English stemming, as spanqa.index builds and queries it
            for name, stemmer in (("bm25s", None), ("bm25s+stem", Stemmer.Stemmer("english"))):
                started = time.perf_counter()
                retriever = bm25s.BM25()
                retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
                built = time.perf_counter() - started
                started = time.perf_counter()
                rankings = []
                for ex in questions:
                    tokens = bm25s.tokenize(ex.question, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)[0]
                    scores = np.asarray(retriever.get_scores(tokens))
                    rankings.append(list(np.argsort(-scores, kind="stable")[: max(KS)]))
                _print(f"{name} #{run + 1}", built, time.perf_counter() - started, rankings, questions, passages, Hit, is_gold_passage)

            # tantivy with its English stemming tokenizer
            started = time.perf_counter()
            schema_builder = tantivy.SchemaBuilder()
            schema_builder.add_text_field("text", stored=False, tokenizer_name="en_stem")
            schema_builder.add_integer_field("row", stored=True, indexed=True)
            schema = schema_builder.build()
            index = tantivy.Index(schema, path=None)
            writer = index.writer(heap_size=50_000_000, num_threads=1)
            for row, text in enumerate(texts):
                writer.add_document(tantivy.Document(text=text, row=row))
            writer.commit()
            writer.wait_merging_threads()
            index.reload()
            built = time.perf_counter() - started
            searcher = index.searcher()
            started = time.perf_counter()
            rankings = []
            for ex in questions:
                words = re.findall(r"\w+", ex.question)  # the query language's operators and quotes out
                query = index.parse_query(" ".join(words), ["text"])
                found = searcher.search(query, max(KS)).hits
                rankings.append([searcher.doc(address)["row"][0] for _, address in found])
            _print(f"tantivy #{run + 1}", built, time.perf_counter() - started, rankings, questions, passages, Hit, is_gold_passage)
    return 0


def _print(name, built, seconds, rankings, questions, passages, hit_type, is_gold) -> None:  # type: ignore[no-untyped-def]
    ranks = []
    for ex, ranking in zip(questions, rankings):
        ranks.append(next((r for r, i in enumerate(ranking) if is_gold(ex, hit_type(passages[i], 0.0))), max(KS)))
    recalls = [sum(r < k for r in ranks) / len(ranks) for k in KS]
    print(f"{name:<16} {built:6.2f}  {1000 * seconds / len(questions):7.2f}  " + "  ".join(f"{r:.3f}" for r in recalls))


if __name__ == "__main__":
    sys.exit(main())
