"""Batch prediction over a data file, streamed to JSONL."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .data import ColumnMapping, MismatchPolicy, load_examples
from .io import atomic_open
from .reader import QARequest, Reader, _progress

__all__ = ["predict_file"]


def predict_file(
    reader: Reader,
    data: str | Path,
    out: str | Path,
    *,
    columns: ColumnMapping | Mapping[str, str] | None = None,
    on_mismatch: MismatchPolicy = "repair",
    split: str | None = None,
    top_k: int = 1,
    max_answer_length: int | None = None,
    handle_impossible: bool | None = None,
    chunk_size: int = 64,
    progress: bool = False,
) -> int:
    """Answer every question of ``data``; one JSON line per question, written as it is answered.

    The output file appears (atomically) only when every question is answered.

    Args:
        reader: The loaded model.
        data: Questions with contexts: any layout :func:`~spanqa.data.load_examples` reads (answers not needed).
        out: The JSONL file to write.
        columns: Column mapping for flat files.
        on_mismatch: What to do with answers whose text is not at their offset.
        split: Split of a hub dataset.
        top_k: Answers kept per question.
        max_answer_length: Longest answer in tokens; default: the model's.
        handle_impossible: Allow "no answer"; default: as the model was trained.
        chunk_size: Questions answered per batch.
        progress: Show a progress bar.

    Returns:
        The number of questions answered.
    """
    dataset = load_examples(data, columns=columns, on_mismatch=on_mismatch, split=split, require_answers=False)
    examples = dataset.examples
    bar = _progress(len(examples), progress)
    with atomic_open(out) as handle:
        for lo in range(0, len(examples), chunk_size):
            chunk = examples[lo : lo + chunk_size]
            requests = [
                QARequest(ex.question, ex.context, top_k=top_k, max_answer_length=max_answer_length, handle_impossible=handle_impossible, id=ex.id)
                for ex in chunk
            ]
            for result in reader.answer_batch(requests):
                record: dict[str, Any] = result.to_dict()
                record.pop("document", None)
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            bar.update(len(chunk))
    bar.close()
    return len(examples)
