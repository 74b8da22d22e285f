"""The reference recipe: the Hugging Face question-answering notebook and the official SQuAD v1.1 scoring.

These are deliberate copies, verbatim in behaviour, of

* the Hugging Face question-answering notebook's ``prepare_train_features``,
  ``prepare_validation_features`` and ``postprocess_qa_predictions`` (the n-best
  post-processing), question first and padded on the right as for BERT-style
  tokenizers, and
* the official SQuAD ``evaluate-v1.1.py`` definitions (``normalize_answer``,
  ``f1_score``, ``exact_match_score``, ``evaluate``; v2.0 normalises answers the
  same way).

They are the oracles and the baseline that spanqa is compared against (``tests/test_decode.py``,
``tests/test_evaluate.py``, ``tests/test_metrics.py``, ``tests/test_score_cli.py``,
``scripts/compare_reference_decode.py`` and ``bench/train_speed.py``), so they must stay independent of
spanqa's own code: import nothing from :mod:`spanqa` here, and do not "fix" them
to agree with it. The data shapes are plain lists and dicts; callers adapt their
own (e.g. ``datasets``-style column dicts) with small wrappers.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- notebook preprocessing


def _tokenize_windows(tokenizer, questions, contexts, max_length, stride):
    """The notebook's tokenizer call: question first, context truncated into overlapping windows."""
    questions = [q.lstrip() for q in questions]
    return tokenizer(
        questions,
        contexts,
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )


def prepare_train_features(tokenizer, questions, contexts, answers, max_length, stride):
    """The notebook's ``prepare_train_features``, on plain lists.

    ``answers`` holds, per question, ``{"text": str, "answer_start": int}`` (the
    first gold answer) or None for no answer. Windows without the answer point
    at the CLS token. Returns the tokenizer's batch with ``start_positions`` and
    ``end_positions`` (offsets and the sample mapping removed).
    """
    tokenized = _tokenize_windows(tokenizer, questions, contexts, max_length, stride)
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    offset_mapping = tokenized.pop("offset_mapping")
    starts, ends = [], []
    for i, offsets in enumerate(offset_mapping):
        input_ids = tokenized["input_ids"][i]
        cls_index = input_ids.index(tokenizer.cls_token_id)
        sequence_ids = tokenized.sequence_ids(i)
        answer = answers[sample_mapping[i]]
        if answer is None:
            starts.append(cls_index)
            ends.append(cls_index)
            continue
        start_char = answer["answer_start"]
        end_char = start_char + len(answer["text"])
        token_start_index = 0
        while sequence_ids[token_start_index] != 1:
            token_start_index += 1
        token_end_index = len(input_ids) - 1
        while sequence_ids[token_end_index] != 1:
            token_end_index -= 1
        if not (offsets[token_start_index][0] <= start_char and offsets[token_end_index][1] >= end_char):
            starts.append(cls_index)
            ends.append(cls_index)
        else:
            while token_start_index < len(offsets) and offsets[token_start_index][0] <= start_char:
                token_start_index += 1
            starts.append(token_start_index - 1)
            while offsets[token_end_index][1] >= end_char:
                token_end_index -= 1
            ends.append(token_end_index + 1)
    tokenized["start_positions"] = starts
    tokenized["end_positions"] = ends
    return tokenized


def prepare_validation_features(tokenizer, ids, questions, contexts, max_length, stride):
    """The notebook's ``prepare_validation_features``: offsets None outside the context.

    Returns the tokenizer's batch (the sample mapping removed, offsets as the
    tokenizer gave them) and one dict per window with example_id, input_ids,
    cls_index and the masked offset_mapping, as :func:`reference_postprocess` takes.
    """
    tokenized = _tokenize_windows(tokenizer, questions, contexts, max_length, stride)
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    features = []
    for i in range(len(tokenized["input_ids"])):
        sequence_ids = tokenized.sequence_ids(i)
        features.append(
            {
                "example_id": ids[sample_mapping[i]],
                "input_ids": tokenized["input_ids"][i],
                "cls_index": tokenized["input_ids"][i].index(tokenizer.cls_token_id),
                "offset_mapping": [o if sequence_ids[k] == 1 else None for k, o in enumerate(tokenized["offset_mapping"][i])],
            }
        )
    return tokenized, features


# --------------------------------------------------------------------------- notebook post-processing


def reference_postprocess(
    examples, features, all_start_logits, all_end_logits, n_best_size=20, max_answer_length=30, squad_v2=False, drop_blank=True
):
    """``postprocess_qa_predictions`` of the Hugging Face question-answering notebook.

    ``examples`` are dicts with id/context; ``features`` dicts with example_id,
    cls_index and offset_mapping (None where the token is not context). Returns,
    per example id, the answer text plus the best candidate (score, char span),
    the null score and whether any valid candidate was found, for the
    comparisons. The null score is the minimum over the example's features, as
    the notebook intends. ``drop_blank`` drops whitespace-only candidates, as
    spanqa does (e.g. SentencePiece's lone '▁' token); False is the notebook as
    written.
    """
    example_id_to_index = {k["id"]: i for i, k in enumerate(examples)}
    features_per_example = collections.defaultdict(list)
    for i, feature in enumerate(features):
        features_per_example[example_id_to_index[feature["example_id"]]].append(i)

    predictions = collections.OrderedDict()
    for example_index, example in enumerate(examples):
        feature_indices = features_per_example[example_index]
        min_null_score = None
        valid_answers = []
        context = example["context"]
        for feature_index in feature_indices:
            start_logits = all_start_logits[feature_index]
            end_logits = all_end_logits[feature_index]
            offset_mapping = features[feature_index]["offset_mapping"]
            cls_index = features[feature_index]["cls_index"]
            feature_null_score = start_logits[cls_index] + end_logits[cls_index]
            if min_null_score is None or feature_null_score < min_null_score:
                min_null_score = feature_null_score
            start_indexes = np.argsort(start_logits)[-1 : -n_best_size - 1 : -1].tolist()
            end_indexes = np.argsort(end_logits)[-1 : -n_best_size - 1 : -1].tolist()
            for start_index in start_indexes:
                for end_index in end_indexes:
                    if (
                        start_index >= len(offset_mapping)
                        or end_index >= len(offset_mapping)
                        or offset_mapping[start_index] is None
                        or offset_mapping[end_index] is None
                    ):
                        continue
                    if end_index < start_index or end_index - start_index + 1 > max_answer_length:
                        continue
                    start_char = offset_mapping[start_index][0]
                    end_char = offset_mapping[end_index][1]
                    valid_answers.append(
                        {
                            "score": start_logits[start_index] + end_logits[end_index],
                            "text": context[start_char:end_char],
                            "span": (start_char, end_char),
                        }
                    )
        if drop_blank:
            valid_answers = [a for a in valid_answers if a["text"].strip()]
        if len(valid_answers) > 0:
            best_answer = sorted(valid_answers, key=lambda x: x["score"], reverse=True)[0]
        else:
            best_answer = {"text": "", "score": 0.0, "span": None}
        if not squad_v2:
            text = best_answer["text"]
        else:
            text = best_answer["text"] if best_answer["score"] > min_null_score else ""
        predictions[example["id"]] = {"text": text, "best": best_answer, "null": min_null_score, "found": bool(valid_answers)}
    return predictions


# --------------------------------------------------------------------------- official SQuAD scoring


def ref_normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (in that order)."""
    s = s.lower()
    exclude = set(string.punctuation)
    s = "".join(ch for ch in s if ch not in exclude)
    s = re.sub(re.compile(r"\b(a|an|the)\b", re.UNICODE), " ", s)
    return " ".join(s.split())


def iter_qas(dataset: list[dict[str, Any]]):
    """Every question of a SQuAD ``data`` list (articles of paragraphs of qas)."""
    for article in dataset:
        for paragraph in article["paragraphs"]:
            yield from paragraph["qas"]


def ref_token_f1(prediction_tokens: list[str], ground_truth_tokens: list[str]) -> float:
    """v1.1's ``f1_score`` once the answers are normalised and split (MLQA's script shares it)."""
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def ref_v1_f1_score(prediction: str, ground_truth: str) -> float:
    return ref_token_f1(ref_normalize_answer(prediction).split(), ref_normalize_answer(ground_truth).split())


def ref_v1_exact_match_score(prediction: str, ground_truth: str) -> bool:
    return ref_normalize_answer(prediction) == ref_normalize_answer(ground_truth)


def ref_metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    return max(metric_fn(prediction, gt) for gt in ground_truths)


def ref_v1_evaluate(dataset, predictions, exact_fn=ref_v1_exact_match_score, f1_fn=ref_v1_f1_score):
    """``evaluate`` of the official v1.1 script over a SQuAD ``data`` list: percentages, missing answers score 0."""
    f1 = exact_match = total = 0
    for qa in iter_qas(dataset):
        total += 1
        if qa["id"] not in predictions:
            continue  # 'Unanswered question ... will receive score 0.'
        ground_truths = [x["text"] for x in qa["answers"]]
        prediction = predictions[qa["id"]]
        exact_match += ref_metric_max_over_ground_truths(exact_fn, prediction, ground_truths)
        f1 += ref_metric_max_over_ground_truths(f1_fn, prediction, ground_truths)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}
