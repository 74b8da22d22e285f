#!/usr/bin/env python
"""Train the default 'minilm' model with the plain Hugging Face recipe, then score it twice.

1. Fine-tune with ``transformers.Trainer`` on XQuAD-en articles 1-36, using the
   question-answering notebook's preprocessing (``bench/reference_recipe.py``; no
   spanqa training code), and save the checkpoint to ``--out``.
2. Evaluate articles 37-48 with ``spanqa.evaluate`` and with the notebook's
   reference path (its validation features, ``Trainer.predict``, its n-best
   post-processing with n_best 20 / max_answer_length 30, and the official SQuAD
   v1.1 scoring definitions), and print both EM/F1 and their difference.

Usage::

    python scripts/compare_reference_decode.py --out /tmp/ref-minilm
    python scripts/compare_reference_decode.py --out /tmp/ref-minilm --skip-train   # re-score only
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "xquad" / "xquad.en.json"

sys.path.insert(0, str(ROOT / "bench"))
import reference_recipe  # noqa: E402  (bench/reference_recipe.py: the notebook and official-script oracles)

# --------------------------------------------------------------------------- the reference recipe
# The notebook's preprocessing and post-processing and the official SQuAD v1.1 scoring live once, in
# bench/reference_recipe.py; these wrappers take and give the ``datasets``-style column dicts used here.


def prepare_train_features(examples, tokenizer, max_length, doc_stride):
    """The notebook's ``prepare_train_features`` on a ``datasets.map`` batch (first gold answer; none -> CLS)."""
    answers = [
        {"text": a["text"][0], "answer_start": a["answer_start"][0]} if len(a["answer_start"]) > 0 else None for a in examples["answers"]
    ]
    return reference_recipe.prepare_train_features(tokenizer, examples["question"], examples["context"], answers, max_length, doc_stride)


def prepare_validation_features(examples, tokenizer, max_length, doc_stride):
    """The notebook's ``prepare_validation_features`` on a ``datasets.map`` batch: adds example_id, masks offsets."""
    tokenized, features = reference_recipe.prepare_validation_features(
        tokenizer, examples["id"], examples["question"], examples["context"], max_length, doc_stride
    )
    tokenized["offset_mapping"] = [f["offset_mapping"] for f in features]
    tokenized["example_id"] = [f["example_id"] for f in features]
    return tokenized


def postprocess_qa_predictions(examples, features, all_start_logits, all_end_logits, tokenizer, n_best_size=20, max_answer_length=30):
    """The notebook's post-processing (SQuAD v1: the best valid span among top starts x top ends), id -> text."""
    records = [{"id": qid, "context": context} for qid, context in zip(examples["id"], examples["context"])]
    windows = [
        {"example_id": f["example_id"], "cls_index": f["input_ids"].index(tokenizer.cls_token_id), "offset_mapping": f["offset_mapping"]}
        for f in features
    ]
    predictions = reference_recipe.reference_postprocess(
        records, windows, all_start_logits, all_end_logits, n_best_size, max_answer_length, squad_v2=False, drop_blank=False
    )
    return collections.OrderedDict((qid, p["text"]) for qid, p in predictions.items())


def official_scores(examples, predictions) -> dict[str, float]:
    """The official SQuAD v1.1 EM/F1 of ``predictions`` (id -> text) on the column dict ``examples``."""
    qas = [{"id": qid, "answers": [{"text": t} for t in answers["text"]]} for qid, answers in zip(examples["id"], examples["answers"])]
    return reference_recipe.ref_v1_evaluate([{"paragraphs": [{"qas": qas}]}], predictions)


# --------------------------------------------------------------------------- data


def flatten(articles) -> dict[str, list]:
    columns: dict[str, list] = {"id": [], "title": [], "context": [], "question": [], "answers": []}
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                columns["id"].append(qa["id"])
                columns["title"].append(article["title"])
                columns["context"].append(paragraph["context"])
                columns["question"].append(qa["question"])
                columns["answers"].append({"text": [a["text"] for a in qa["answers"]], "answer_start": [a["answer_start"] for a in qa["answers"]]})
    return columns


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/ref-minilm"), help="Where the fine-tuned checkpoint goes.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="XQuAD-en JSON (SQuAD v1.1 layout).")
    parser.add_argument("--train-articles", type=int, default=36, help="Train on the first N articles, evaluate on the rest.")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--stride", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
    parser.add_argument("--skip-train", action="store_true", help="Re-use the checkpoint in --out.")
    args = parser.parse_args(argv)

    import datasets
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, Trainer, TrainingArguments, default_data_collator

    from spanqa.jobs.evaluate import evaluate
    from spanqa.runtime.models import resolve_model

    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.data.exists():
        print(f"error: {args.data}: not found", file=sys.stderr)
        return 1
    articles = json.loads(args.data.read_text(encoding="utf-8"))["data"]
    train_articles, eval_articles = articles[: args.train_articles], articles[args.train_articles :]
    train_columns, eval_columns = flatten(train_articles), flatten(eval_articles)
    print(f"train: articles 1-{len(train_articles)}, {len(train_columns['id'])} questions; "
          f"eval: articles {len(train_articles) + 1}-{len(articles)}, {len(eval_columns['id'])} questions")
    args.out.mkdir(parents=True, exist_ok=True)
    eval_file = args.out / f"xquad-en-articles-{len(train_articles) + 1}-{len(articles)}.json"
    eval_file.write_text(json.dumps({"version": "1.1", "data": eval_articles}, ensure_ascii=False), encoding="utf-8")

    t0 = time.time()
    if not args.skip_train:
        base = resolve_model("minilm")
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForQuestionAnswering.from_pretrained(base)
        train = datasets.Dataset.from_dict(train_columns)
        train_features = train.map(
            prepare_train_features, batched=True, remove_columns=train.column_names,
            fn_kwargs={"tokenizer": tokenizer, "max_length": args.max_length, "doc_stride": args.stride},
        )
        print(f"{len(train_features)} training windows")
        training_args = TrainingArguments(
            output_dir=str(args.out / "trainer"),
            learning_rate=args.lr,
            per_device_train_batch_size=args.batch_size,
            num_train_epochs=args.epochs,
            weight_decay=0.01,
            save_strategy="no",
            logging_steps=10,
            report_to="none",
            seed=args.seed,
            use_cpu=not torch.cuda.is_available(),
        )
        trainer = Trainer(model=model, args=training_args, train_dataset=train_features, data_collator=default_data_collator)
        trainer.train()
        trainer.save_model(str(args.out))
        tokenizer.save_pretrained(args.out)
        print(f"trained in {time.time() - t0:.0f}s; saved to {args.out}")

    # Reference path: notebook validation features, Trainer.predict, notebook post-processing, official scoring.
    t1 = time.time()
    tokenizer = AutoTokenizer.from_pretrained(args.out)
    model = AutoModelForQuestionAnswering.from_pretrained(args.out)
    evaluation = datasets.Dataset.from_dict(eval_columns)
    validation_features = evaluation.map(
        prepare_validation_features, batched=True, remove_columns=evaluation.column_names,
        fn_kwargs={"tokenizer": tokenizer, "max_length": args.max_length, "doc_stride": args.stride},
    )
    model_inputs = validation_features.remove_columns(["example_id", "offset_mapping"])
    predictor = Trainer(
        model=model,
        args=TrainingArguments(output_dir=str(args.out / "trainer"), per_device_eval_batch_size=32, report_to="none", use_cpu=not torch.cuda.is_available()),
        data_collator=default_data_collator,
    )
    raw = predictor.predict(model_inputs)
    start_logits, end_logits = raw.predictions
    reference_predictions = postprocess_qa_predictions(eval_columns, validation_features, start_logits, end_logits, tokenizer, 20, 30)
    reference = official_scores(eval_columns, reference_predictions)
    print(f"reference path in {time.time() - t1:.0f}s")

    # spanqa path.
    t2 = time.time()
    result = evaluate(
        args.out, eval_file, output_dir=args.out / "spanqa-eval", version_2=False,
        max_length=args.max_length, stride=args.stride, n_best=20, max_answer_length=30,
    )
    print(f"spanqa path in {time.time() - t2:.0f}s")
    ours = {"exact_match": result.metrics["exact_match"], "f1": result.metrics["f1"]}
    spanqa_predictions = {p.id: p.text for p in result.predictions}
    same_text = sum(spanqa_predictions[qid] == text.strip() for qid, text in reference_predictions.items())
    ours_official = official_scores(eval_columns, spanqa_predictions)

    print()
    print(f"{'':<28}{'EM':>8}{'F1':>8}")
    print(f"{'spanqa evaluate':<28}{ours['exact_match']:>8.2f}{ours['f1']:>8.2f}")
    print(f"{'HF reference (n-best 20)':<28}{reference['exact_match']:>8.2f}{reference['f1']:>8.2f}")
    print(f"{'difference (spanqa - ref)':<28}{ours['exact_match'] - reference['exact_match']:>+8.2f}{ours['f1'] - reference['f1']:>+8.2f}")
    print(f"identical answer text: {same_text}/{len(reference_predictions)} questions")
    print(f"spanqa predictions re-scored by this script's official scorer: EM {ours_official['exact_match']:.2f} F1 {ours_official['f1']:.2f}")
    summary = {
        "spanqa": ours, "reference": reference, "spanqa_rescored": ours_official,
        "difference": {k: ours[k] - reference[k] for k in ours},
        "identical_answers": same_text, "questions": len(reference_predictions),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    (args.out / "compare.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    differing = [(qid, text, spanqa_predictions[qid]) for qid, text in reference_predictions.items() if spanqa_predictions[qid] != text.strip()]
    for qid, ref_text, our_text in differing[:10]:
        print(f"  {qid}: reference {ref_text!r} vs spanqa {our_text!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
