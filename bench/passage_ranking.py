"""How answers should be ranked across retrieved passages: each rule's EM/F1 with 1, 3 and 10 passages.

Reads every question's 10 BM25 passages once, then ranks each passage's best span by

* ``raw``: its logit (spanqa 0.2.0: scores of different passages compared as they are),
* ``minus-null``: its logit minus its passage's null score (what the model says about "not here"),
* ``raw+W`` / ``minus-null+W``: plus W times the passage's BM25 score standardised over the
  question's passages (spanqa's ``retrieval_weight``).

    python bench/passage_ranking.py MODEL INDEX EVAL.json

On XQuAD-en (the README's "Reading more passages helps" tables) MODEL is ``spanqa train``'s output
for articles 1-36, INDEX ``spanqa index xquad.en.json``, EVAL articles 37-48. Prints the machine
first; the scores do not depend on it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import machine  # noqa: E402

WEIGHTS = (0.0, 1.0, 2.0, 4.0, 8.0, 12.0)
COUNTS = (1, 3, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("index")
    parser.add_argument("eval")
    args = parser.parse_args()
    print(machine())

    from spanqa.reading.index import Index
    from spanqa.reading.reader import Reader
    from spanqa.stages.data import QAExample, load_examples
    from spanqa.stages.metrics import headline_exact_match, score_predictions

    index, reader = Index.load(args.index), Reader.from_pretrained(args.model, device="cpu")
    examples = load_examples(args.eval).examples
    hits = [index.search(ex.question, max(COUNTS)) for ex in examples]
    flat = [QAExample(id=f"{i}:{j}", question=ex.question, context=hit.passage.text) for i, ex in enumerate(examples) for j, hit in enumerate(hits[i])]
    read = reader.predict_examples(flat, reader.config.decode_config(handle_impossible=False))
    ends = np.cumsum([len(found) for found in hits])  # a small index may hold fewer than 10 passages
    per_question = [read[end - len(found) : end] for end, found in zip(ends, hits)]
    bm25 = [np.array([hit.score for hit in found]) for found in hits]

    def scores(relative: bool, weight: float) -> str:
        cells = []
        for count in COUNTS:
            answers = {}
            for ex, passages, found in zip(examples, per_question, bm25):
                first = found[:count]
                z = (first - first.mean()) / first.std() if len(first) > 1 and first.std() > 0 else np.zeros(len(first))
                ranked = [
                    (p.candidates[0].logit - (p.null_score if relative else 0.0) + weight * z[j], p.candidates[0].text)
                    for j, p in enumerate(passages[:count])
                    if p.candidates
                ]
                best = max(ranked, default=(0.0, ""))
                answers[ex.id] = best[1]
            metrics = score_predictions(examples, answers).metrics
            exact = headline_exact_match(metrics)
            cells.append(f"{count}: {exact:.2f}/{metrics['f1']:.2f}")
        return " | ".join(cells)

    for weight in WEIGHTS:
        for relative in (False, True):
            print(f"{'minus-null' if relative else 'raw':>10}+{weight:<4g} {scores(relative, weight)}")


if __name__ == "__main__":
    main()
