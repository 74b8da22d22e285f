#!/usr/bin/env python
"""Coverage against precision as ``score_threshold`` rises: how "only answer when confident" behaves.

Answers every question once (the model's own no-answer rule applies, as in ``spanqa predict``),
keeps the shown answer's score, then for each threshold counts the questions still answered
(coverage) and how many of those answers are exactly right (precision; on v2 data answering an
unanswerable question is wrong). Raising the threshold only removes answers, so coverage falls
monotonically; the script says whether precision rose monotonically too.

    python bench/score_threshold.py --model subjqa-model --data ../shared/data/subjqa/electronics/test.csv \\
        --columns context=review,answer_text=human_ans_spans,answer_start=human_ans_indices --no-answer-marker ANSWERNOTFOUND
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from train_speed import machine  # noqa: E402

THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A QA model folder (its spanqa.json: temperature, null threshold).")
    parser.add_argument("--data", type=Path, required=True, help="Questions with gold answers (any layout spanqa reads).")
    parser.add_argument("--columns", default=None, help="Column mapping for flat files (as on the command line).")
    parser.add_argument("--no-answer-marker", default=None)
    parser.add_argument("--thresholds", default=",".join(str(t) for t in THRESHOLDS), help="Comma-separated score thresholds.")
    parser.add_argument(
        "--always-answer",
        action="store_true",
        help="Switch the model's no-answer rule off: the score threshold alone decides (the answers then share all the probability).",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from spanqa import AnswerOptions, QARequest, Reader, load_examples
    from spanqa.stages.data import parse_columns
    from spanqa.stages.metrics import exact_score

    print(machine(), flush=True)
    columns = parse_columns(args.columns)
    if args.no_answer_marker:
        columns["no_answer_marker"] = args.no_answer_marker
    dataset = load_examples(args.data, columns=columns)
    reader = Reader.from_pretrained(args.model)
    handle = False if args.always_answer else None
    results = reader.answer_batch([QARequest(ex.question, ex.context, options=AnswerOptions(handle_impossible=handle), id=ex.id) for ex in dataset.examples])
    rows = []
    for ex, result in zip(dataset.examples, results):
        answer = result.answer
        golds = [a.text for a in ex.answers] or [""]
        text = answer.text if answer else ""
        rows.append((answer.score if answer else None, max(exact_score(text, g) for g in golds)))
    n = len(rows)
    print(
        f"model {args.model} (temperature {reader.config.temperature:.3f}, no-answer threshold "
        f"{reader.config.null_threshold:g} on the null odds{', switched off' if args.always_answer else ''}); {n} questions from {args.data}, "
        f"{sum(not ex.answers for ex in dataset.examples)} unanswerable"
    )
    print("\n| score_threshold | answered | coverage | precision (EM of answered) |\n| --- | --- | --- | --- |")
    precisions = []
    for threshold in (float(t) for t in args.thresholds.split(",")):
        answered = [correct for score, correct in rows if score is not None and score >= threshold]
        precision = 100.0 * sum(answered) / len(answered) if answered else float("nan")
        precisions.append(precision)
        print(f"| {threshold:.2f} | {len(answered)} | {100.0 * len(answered) / n:.1f}% | {precision:.1f}% |")
    finite = [p for p in precisions if p == p]
    rising = all(b >= a for a, b in zip(finite, finite[1:]))
    print(f"\nprecision rises monotonically with the threshold: {'yes' if rising else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
