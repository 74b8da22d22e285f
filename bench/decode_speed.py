#!/usr/bin/env python
"""Decode speed: the notebook's n-best post-processing against ``spanqa.decode`` on identical logits.

Both decoders get the same windows and the same logit values; only decoding is timed.

* Windows: the XQuAD-en questions (all 1,190 by default) cut into 384/128 windows by the
  default model's tokenizer, once by the notebook recipe (``prepare_validation_features``,
  padded to 384) and once by spanqa (``build_features``, unpadded). The script checks that the
  two give the same windows (same number, same example, same tokens up to the padding, same
  context offsets) and says so; it stops if they do not, since the logits could not be shared.
* Logits: random normal values with a fixed seed, shaped (windows, 384) for the recipe (its
  padding positions get values too, as a model's output would) and the same values cut to each
  window's length for spanqa (-inf past it; ``spanqa.decode`` trims or pads to its width). Decode
  speed then depends on no model. ``--model FOLDER`` uses a real model's logits instead, computed
  once over the recipe's padded windows, outside the timing.
* Timed, best of ``--repeat``: (a) the recipe's ``reference_postprocess(..., squad_v2=False,
  drop_blank=False)``, the notebook as written: per window the top-20 starts x top-20 ends in a
  Python double loop; (b) ``spanqa.stages.decode.decode(..., DecodeConfig(handle_impossible=False))``,
  an exact search over every valid span, vectorised. Both with n-best 20 and answers of at most
  30 tokens. The recipe is also timed over ``datasets.Dataset`` objects, as the notebook holds its
  examples and features after ``.map`` (each ``features[i]["offset_mapping"]`` decodes an Arrow
  row); ``--no-datasets`` skips that.

Prints the machine, questions/s of each, the ratio, and how many predicted texts are identical.
Each question whose texts differ is listed with both candidates' scores and what explains the
difference: the notebook's top-20 x top-20 missing the best span (spanqa's span scores higher;
its start or end is not among the window's 20 best), a tie, a whitespace-only candidate the
notebook keeps (``drop_blank=False``), the same span tidied differently, or nothing (a bug).

    python bench/decode_speed.py                                  # XQuAD-en, 1,190 questions, random logits
    python bench/decode_speed.py --questions 300 --repeat 5 --seed 1
    python bench/decode_speed.py --model path/to/fine-tuned       # a real model's logits (computed once, untimed)
    python bench/decode_speed.py --data dev.json --tokenizer path/to/model --max-length 256 --stride 64
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import reference_recipe  # noqa: E402  (the notebook recipe)
from train_speed import data_file, machine  # noqa: E402  (the machine, printed first; the default data)

# --------------------------------------------------------------------------- windows


def recipe_windows(tokenizer, examples, max_length: int, stride: int) -> tuple[Any, list[dict[str, Any]]]:
    """The notebook's validation windows (padded to ``max_length``) and its per-window dicts."""
    return reference_recipe.prepare_validation_features(
        tokenizer, [ex.id for ex in examples], [ex.question for ex in examples], [ex.context for ex in examples], max_length, stride
    )


def window_differences(examples, recipe: list[dict[str, Any]], features, pad_id: int) -> list[str]:
    """Where the recipe's windows and spanqa's differ (empty: the same windows)."""
    if len(recipe) != len(features):
        return [f"{len(recipe)} windows from the recipe, {len(features)} from spanqa"]
    problems: list[str] = []
    for i, window in enumerate(recipe):
        ids = features.input_ids[i]
        n = len(ids)
        owner = examples[int(features.example_index[i])].id
        if window["example_id"] != owner:
            problems.append(f"window {i}: example {window['example_id']} (recipe) vs {owner} (spanqa)")
        elif window["input_ids"][:n] != ids or any(t != pad_id for t in window["input_ids"][n:]):
            problems.append(f"window {i} ({owner}): tokens differ beyond the padding")
        else:
            ours = [None if a < 0 else (a, b) for a, b in features.offsets[i, :n].tolist()]
            theirs = [None if o is None else (int(o[0]), int(o[1])) for o in window["offset_mapping"]]
            if theirs[:n] != ours or any(o is not None for o in theirs[n:]):
                problems.append(f"window {i} ({owner}): context offsets differ")
        if len(problems) >= 5:
            break
    return problems


# --------------------------------------------------------------------------- logits


def random_logits(windows: int, width: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.standard_normal((windows, width), dtype=np.float32), rng.standard_normal((windows, width), dtype=np.float32)


def model_logits(model_name: str, tokenized, batch_size: int = 32):
    """A model's start/end logits over the recipe's padded windows, as the notebook's Trainer.predict gives them."""
    import numpy as np
    import torch
    from transformers.utils import logging as hf_logging

    from spanqa.runtime.models import load_qa_model

    hf_logging.disable_progress_bar()
    model = load_qa_model(model_name).eval()
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in tokenized]
    starts, ends = [], []
    total = len(tokenized["input_ids"])
    with torch.inference_mode():
        for lo in range(0, total, batch_size):
            batch = {k: torch.tensor(tokenized[k][lo : lo + batch_size]) for k in keys}
            out = model(**batch)
            starts.append(out.start_logits.float().numpy())
            ends.append(out.end_logits.float().numpy())
    return np.concatenate(starts), np.concatenate(ends)


def cut_to_windows(logits, lengths, width: int):
    """The same values as spanqa's decoder sees them: each window's own length, -inf past it."""
    import numpy as np

    keep = np.arange(width)[None, :] < lengths[:, None]
    return np.where(keep, logits[:, :width], -np.inf).astype(np.float32)


# --------------------------------------------------------------------------- timing


def best_of(repeat: int, fn) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


# --------------------------------------------------------------------------- comparing predictions


def rank(values, value: float) -> int:
    """1-based rank of ``value`` among ``values`` (1: the largest)."""
    return int((values > value).sum()) + 1


def explain(example, ref: dict[str, Any], ours, start, end, n_best: int) -> tuple[str, str]:
    """(category, one line) for a question whose predicted texts differ."""
    from spanqa.stages.decode import _tidy

    r_score = float(ref["best"]["score"]) if ref["found"] else float("-inf")
    o_score = float(ours.best_score)
    tol = 1e-5 * max(1.0, abs(o_score) if ours.candidates else 1.0)
    left = f"notebook {ref['text']!r} (score {r_score:.6f}, span {ref['best']['span']})" if ref["found"] else "notebook '' (no candidate)"
    if ours.candidates:
        top = ours.candidates[0]
        ranks = (rank(start[top.window], top.start_logit), rank(end[top.window], top.end_logit))
        right = f"spanqa {ours.text!r} (score {o_score:.6f}, span ({top.start}, {top.end}), window {top.window}, start rank {ranks[0]}, end rank {ranks[1]})"
    else:
        ranks = (0, 0)
        right = "spanqa '' (no candidate)"
    outside = ranks[0] > n_best or ranks[1] > n_best
    in_reach = "UNEXPLAINED (spanqa's best pair is in the notebook's top lists)"
    blank = "whitespace-only candidate kept by the notebook (drop_blank=False)"
    if not ref["found"] and ours.candidates:
        category = "notebook found no valid pair among its top starts x top ends" if outside else in_reach
    elif not ours.candidates:
        category = blank if not ref["text"].strip() else "UNEXPLAINED (spanqa found no span)"
    elif o_score > r_score + tol:
        category = "notebook missed the best span (not in its top starts x top ends)" if outside else in_reach
    elif r_score > o_score + tol:
        category = blank if not ref["text"].strip() else "UNEXPLAINED (the notebook's span scores higher: spanqa bug?)"
    elif _tidy(example.context, *ref["best"]["span"]) == (top.start, top.end):
        category = "same span, text tidied (whitespace or combining marks)"
    else:
        category = "tie (equal scores, different spans)"
    return category, f"{example.id}: {left} | {right} -> {category}"


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="SQuAD-style data (default: ../shared/data/xquad/xquad.en.json).")
    parser.add_argument("--questions", type=int, default=0, help="Use the first N questions (0: all).")
    parser.add_argument("--tokenizer", default="minilm", help="Tokenizer for the windows (default: minilm, the default model's; --model implies its own).")
    parser.add_argument("--model", default=None, help="Use this model's logits (computed once, untimed) instead of random ones.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random logits.")
    parser.add_argument("--repeat", type=int, default=3, help="Time each decoder this many times; report the best.")
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--stride", type=int, default=128)
    parser.add_argument("--no-datasets", action="store_true", help="Skip the second recipe timing over datasets.Dataset rows.")
    parser.add_argument("--show", type=int, default=-1, help="List at most N differing questions (-1: all).")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    data = data_file(args.data)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import logging

    logging.getLogger("spanqa").setLevel(logging.WARNING)

    from spanqa import DecodeConfig, WindowConfig, build_features, decode, load_examples
    from spanqa.runtime.models import load_tokenizer

    print(machine(), flush=True)
    examples = load_examples(data).examples
    if args.questions:
        examples = examples[: args.questions]
    tokenizer_name = args.model or args.tokenizer
    tokenizer = load_tokenizer(tokenizer_name)
    print(f"data {data.name}: {len(examples)} questions; tokenizer {tokenizer_name}; windows {args.max_length}/{args.stride}", flush=True)

    tokenized, recipe_features = recipe_windows(tokenizer, examples, args.max_length, args.stride)
    features = build_features(examples, tokenizer, WindowConfig(args.max_length, args.stride))
    lengths = features.lengths
    problems = window_differences(examples, recipe_features, features, tokenizer.pad_token_id)
    if problems:
        print("windows differ between the recipe and spanqa, so they cannot share logits:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    print(
        f"windows: {len(features)} from the recipe (padded to {args.max_length}) and {len(features)} from spanqa "
        f"(unpadded, mean {lengths.mean():.1f} tokens, longest {lengths.max()}): the same windows "
        f"(same examples, same tokens up to the padding, same context offsets)",
        flush=True,
    )

    if args.model:
        started = time.perf_counter()
        start, end = model_logits(args.model, tokenized)
        print(f"logits: model {args.model} over the recipe's padded windows ({time.perf_counter() - started:.1f} s, untimed)", flush=True)
    else:
        start, end = random_logits(len(features), args.max_length, args.seed)
        print(f"logits: random normal, seed {args.seed}, shape {start.shape} for the recipe; the same values cut to each window's length for spanqa")
    width = features.offsets.shape[1]
    our_start, our_end = cut_to_windows(start, lengths, width), cut_to_windows(end, lengths, width)

    config = DecodeConfig(handle_impossible=False)
    records = [{"id": ex.id, "context": ex.context} for ex in examples]
    recipe_seconds, reference = best_of(
        args.repeat,
        lambda: reference_recipe.reference_postprocess(
            records, recipe_features, start, end, config.n_best, config.max_answer_length, squad_v2=False, drop_blank=False
        ),
    )
    n = len(examples)
    print(f"recipe (notebook n-best loop, as written): {recipe_seconds:.3f} s, {n / recipe_seconds:.1f} questions/s (best of {args.repeat})", flush=True)
    arrow_seconds = None
    if not args.no_datasets:
        # The same function over datasets.Dataset objects, as the notebook holds its examples and features
        # (after .map): every features[i][...] decodes an Arrow row.
        import datasets

        arrow_examples, arrow_features = datasets.Dataset.from_list(records), datasets.Dataset.from_list(recipe_features)
        arrow_seconds, arrow_reference = best_of(
            args.repeat,
            lambda: reference_recipe.reference_postprocess(
                arrow_examples, arrow_features, start, end, config.n_best, config.max_answer_length, squad_v2=False, drop_blank=False
            ),
        )
        arrow_agree = all(arrow_reference[ex.id]["text"] == reference[ex.id]["text"] for ex in examples)
        print(
            f"recipe over datasets.Dataset rows (as the notebook holds them): {arrow_seconds:.3f} s, {n / arrow_seconds:.1f} questions/s "
            f"(best of {args.repeat}; {'the same texts' if arrow_agree else 'OTHER TEXTS'} as over lists)",
            flush=True,
        )
    spanqa_seconds, ours = best_of(args.repeat, lambda: decode(examples, features, our_start, our_end, config))
    print(f"spanqa decode: {spanqa_seconds:.3f} s, {n / spanqa_seconds:.1f} questions/s (best of {args.repeat})", flush=True)
    ratio = recipe_seconds / spanqa_seconds
    print(f"ratio spanqa / recipe (questions/s): {ratio:.2f}x (acceptance >= 10x: {'yes' if ratio >= 10 else 'no'})")
    if arrow_seconds is not None:
        print(f"ratio spanqa / recipe over datasets.Dataset rows (questions/s): {arrow_seconds / spanqa_seconds:.2f}x")

    same = found_best = same_best = 0
    differing: list[tuple[str, str]] = []
    for ex, pred in zip(examples, ours):
        ref = reference[ex.id]
        agree = ref["text"] == pred.text
        same += agree
        if ref["found"] and pred.candidates and abs(float(ref["best"]["score"]) - pred.best_score) <= 1e-5 * max(1.0, abs(pred.best_score)):
            found_best += 1  # the notebook's top starts x top ends held the best span
            same_best += agree
        if not agree:
            differing.append(explain(ex, ref, pred, start, end, config.n_best))
    print(f"identical predicted texts: {same} of {n} (acceptance: all {'yes' if same == n else 'no'})")
    print(f"where the notebook's candidates hold the best span ({found_best} questions): {same_best} identical")
    if differing:
        shown = differing if args.show < 0 else differing[: args.show]
        print(f"differing questions ({len(differing)}{'' if len(shown) == len(differing) else f', first {len(shown)} shown'}):")
        for _, line in shown:
            print(f"  {line}")
        counts: dict[str, int] = {}
        for category, _ in differing:
            counts[category] = counts.get(category, 0) + 1
        print("differences by cause: " + "; ".join(f"{c}: {k}" for c, k in sorted(counts.items(), key=lambda kv: -kv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
