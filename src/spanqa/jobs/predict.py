"""Batch prediction over a data file, streamed to JSONL, resumable after a kill.

Answers go, chunk by chunk, to ``.OUT.partial`` beside the output (each chunk written whole and
synced), with the run's settings in ``.OUT.partial.json``. When every question is answered the
partial file is renamed to OUT. A killed run leaves both behind; ``resume=True`` keeps the
finished chunks and answers the rest, so the output equals an uninterrupted run's. It refuses
when the data's questions or contexts, the model's files or the settings have changed since.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spanqa.core.config import with_current_names
from spanqa.core.errors import ConfigError, OutputError
from spanqa.core.io import atomic_open, check_new_file, output_error, read_json, sync_folder, write_json
from spanqa.reading.options import AnswerOptions
from spanqa.reading.reader import QARequest, Reader, ReaderResult, _progress
from spanqa.stages.data import DataSource, QAExample

__all__ = ["predict_file", "PredictRun", "partial_paths", "check_output", "parse_shard", "shard_range", "prediction_line", "answer_lines"]

logger = logging.getLogger(__name__)


def partial_paths(out: str | Path) -> tuple[Path, Path]:
    """The unfinished answers and the run's settings of a prediction into ``out``."""
    out = Path(out)
    return out.parent / f".{out.name}.partial", out.parent / f".{out.name}.partial.json"


@dataclass(frozen=True)
class PredictRun:
    """How a prediction run writes its output: which part of the data, in what chunks, and what
    to do with an earlier run's output.

    Attributes:
        shard: ``(i, n)``: answer only the i-th of n consecutive, equal parts of the questions (see
            :func:`shard_range`), for a job array on any scheduler; the n outputs, concatenated in
            order, are the whole run's output.
        chunk_size: Questions answered, then written and synced, at a time.
        progress: Show a progress bar.
        resume: Continue an interrupted run into the output (same data and settings).
        overwrite: Replace an existing output and drop an interrupted run's answers.
    """

    shard: tuple[int, int] | None = None
    chunk_size: int = 64
    progress: bool = False
    resume: bool = False
    overwrite: bool = False


def predict_file(
    reader: Reader, data: str | Path | DataSource, out: str | Path, options: AnswerOptions | None = None, run: PredictRun | None = None
) -> int:
    """Answer every question of ``data``; one JSON line per question, in the data's order.

    The output file appears (by a rename) only when every question is answered.

    Args:
        reader: The loaded model.
        data: Questions with contexts: any layout :func:`~spanqa.stages.data.load_examples` reads (answers not needed).
        out: The JSONL file to write.
        options: How every question is answered; default: the model's settings, one answer.
        run: Shard, chunks, progress bar, resume or overwrite; default: the whole data, a new file.

    Returns:
        The number of questions answered (in this call and, with ``resume``, before it).

    Raises:
        OutputError: ``out`` exists, or an interrupted run's answers are there, and neither
            ``overwrite`` nor (for the latter) ``resume`` was given; or ``out`` cannot be written.
        ConfigError: ``resume`` with other data (its questions and contexts are compared, not only
            their ids), another model (its files are compared) or other settings than the interrupted run's.
    """
    out, options, run = Path(out), options or AnswerOptions(), run or PredictRun()
    partial, settings_file = partial_paths(out)
    check_output(out, resume=run.resume, overwrite=run.overwrite)
    source = DataSource.of(data)
    examples = source.load(require_answers=False).examples
    if run.shard is not None:
        examples = examples[slice(*shard_range(len(examples), *run.shard))]
    if out.exists() and not out.is_file():  # a device or pipe (/dev/stdout, a FIFO): streamed in place, nothing to resume
        with atomic_open(out) as handle:
            for lines, _ in _answered_chunks(reader, examples, 0, run.chunk_size, options):
                handle.write(lines)
        return len(examples)
    settings = _run_settings(reader, source.path, examples, options, run.chunk_size)
    done = _resume_point(partial, settings_file, settings, len(examples)) if run.resume and partial.exists() else 0
    try:
        if not done:
            write_json(settings_file, settings)
        _write_chunks(partial, done, _answered_chunks(reader, examples, done, run.chunk_size, options), _progress(len(examples), run.progress))
        os.replace(partial, out)
        sync_folder(out.parent)
        settings_file.unlink(missing_ok=True)
    except OSError as err:
        raise output_error(out, err) from None
    return len(examples)


def _write_chunks(partial: Path, done: int, chunks: Iterator[tuple[str, int]], bar: Any) -> None:
    """Append each chunk's lines to ``partial`` and sync it, so that a kill keeps every finished chunk."""
    bar.update(done)
    with open(partial, "a" if done else "w", encoding="utf-8") as handle:
        for lines, answered in chunks:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())  # a kill after this point keeps the chunk
            bar.update(answered)
    bar.close()


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` as ``(i, n)``, with ``0 <= i < n``.

    Args:
        text: The shard, e.g. ``0/3`` (shards count from 0, as Slurm array and Kubernetes job indexes do).
    """
    index, slash, count = text.partition("/")
    if not (slash and index.strip().isdigit() and count.strip().isdigit()):
        raise ConfigError(f"--shard must look like i/n (e.g. 0/3), got {text!r}")
    i, n = int(index), int(count)
    if not 0 <= i < n:
        raise ConfigError(f"--shard {text}: i must be from 0 to n-1 (shards count from 0)")
    return i, n


def shard_range(total: int, index: int, count: int) -> tuple[int, int]:
    """The questions ``[start, stop)`` of shard ``index`` of ``count``: consecutive, sizes differing by at most one.

    Args:
        total: How many questions there are.
        index: The shard, from 0.
        count: How many shards.
    """
    return index * total // count, (index + 1) * total // count


def check_output(out: str | Path, *, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse, before loading anything, to replace finished work without ``overwrite``.

    Args:
        out: The JSONL file to write.
        resume: Continue an interrupted run into ``out``.
        overwrite: Replace an existing ``out`` or an interrupted run's answers.
    """
    out = Path(out)
    partial = partial_paths(out)[0]
    if resume and overwrite:
        raise ConfigError("--resume continues an interrupted run and --overwrite starts over: give one of them")
    check_new_file(out, overwrite)
    if partial.exists() and not (resume or overwrite):
        raise OutputError(
            f"{out}: an interrupted run left its answers in {partial}; continue it with --resume or start over with --overwrite"
        )


_DATA_KEYS = ("questions", "ids_sha256", "examples_sha256")
_FINGERPRINTS = ("examples_sha256", "model_sha256")  # new after 0.2.0: a run interrupted under 0.2.0 has none


def _run_settings(reader: Reader, data: str | Path, examples: Sequence[QAExample], options: AnswerOptions, chunk_size: int) -> dict[str, Any]:
    """What must match for a resumed run to give the same lines as an uninterrupted one: the data's
    questions and contexts (the same ids over other texts would mix answers to two datasets), the
    model's files, the answer options and the run's batching."""
    ids = hashlib.sha256("\n".join(ex.id for ex in examples).encode("utf-8")).hexdigest()
    texts = hashlib.sha256()
    for ex in examples:
        texts.update(json.dumps([ex.id, ex.question, ex.context], ensure_ascii=False).encode("utf-8") + b"\n")
    return {
        "data": str(data),
        "questions": len(examples),
        "ids_sha256": ids,
        "examples_sha256": texts.hexdigest(),
        "model_sha256": _model_fingerprint(reader),
        **_answer_settings(options),
        "chunk_size": chunk_size,
        "batch_size": reader.batch_size,
        "config": asdict(reader.config),
    }


_MODEL_SUFFIXES = {".json", ".safetensors", ".bin", ".onnx", ".data", ".model", ".txt", ".pt", ".pth"}
"""The files of a model folder that make its answers: weights, configuration, tokenizer (not a README or a report)."""
_SAMPLE = 1 << 20  # bytes hashed at each end of a large (weights) file


def _model_fingerprint(reader: Reader) -> str:
    """A hash of the model a reader runs, from its files: small ones (configuration, tokenizer)
    whole, weights by size and their first and last MiB. safetensors stores tensors in name order,
    so the QA head, which every fine-tuning changes, is at one end (``qa_outputs`` after ``bert.*``,
    ``distilbert.*``, ``electra.*``; before ``roberta.*``). Cheap for any model size, the same for a
    copy of the folder, different for a model retrained or replaced in place.

    Args:
        reader: The loaded model.
    """
    name, folder = _model_folder(reader)
    digest = hashlib.sha256(name.encode("utf-8") if folder is None else b"folder")
    if folder is not None:
        for file in sorted(folder.iterdir()):
            if file.suffix in _MODEL_SUFFIXES and file.is_file() and file.name != "README.md":
                digest.update(f"{file.name}\0{file.stat().st_size}\0".encode("utf-8", "surrogateescape"))
                digest.update(_file_sample(file))
    else:  # no files to read (a model built in memory): its configuration at least
        model = getattr(reader, "model", None)
        digest.update(model.config.to_json_string().encode("utf-8") if model is not None and hasattr(model, "config") else b"")
    return digest.hexdigest()


def _model_folder(reader: Reader) -> tuple[str, Path | None]:
    """Where the reader's model was loaded from: its name (path or hub id) and its local folder (the
    hub cache's snapshot for a hub id), or None when there is none."""
    model = getattr(reader, "model", None)
    name = str(getattr(model, "name_or_path", "") or "")
    if not name:  # an ONNX backend: the session knows its file
        name = str(getattr(getattr(reader.backend, "session", None), "_model_path", "") or "")
        name = str(Path(name).parent) if name.endswith(".onnx") else name
    if name and Path(name).is_dir():
        return name, Path(name)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json") if name else None
    except Exception:  # noqa: BLE001 - not a hub id (an odd name): no folder to read
        cached = None
    return name, Path(cached).parent if isinstance(cached, str) else None


def _file_sample(file: Path) -> bytes:
    """The whole file when small, else a hash of its first and last :data:`_SAMPLE` bytes."""
    size = file.stat().st_size
    with open(file, "rb") as handle:
        if size <= 2 * _SAMPLE:
            return hashlib.sha256(handle.read()).digest()
        head = handle.read(_SAMPLE)
        handle.seek(size - _SAMPLE)
        return hashlib.sha256(head + handle.read()).digest()


def _resume_point(partial: Path, settings_file: Path, settings: dict[str, Any], total: int) -> int:
    """How many questions the interrupted run finished, in whole chunks; the file is cut back to them."""
    try:
        saved = read_json(settings_file)
    except FileNotFoundError:
        saved = None
    if isinstance(saved, dict) and isinstance(saved.get("config"), dict):
        saved["config"] = with_current_names(saved["config"])[0]  # a run interrupted before a setting was renamed
    unchecked = [key for key in _FINGERPRINTS if isinstance(saved, dict) and key not in saved]
    if unchecked:
        logger.warning("%s: written by an earlier spanqa, without %s; resuming without checking them", settings_file, ", ".join(unchecked))
    differing = sorted(
        key for key in settings if key not in unchecked and (not isinstance(saved, dict) or saved.get(key) != json.loads(json.dumps(settings[key])))
    )
    if differing:
        raise ConfigError(f"cannot resume into {partial}: {_what_changed(differing)}; drop --resume and start over with --overwrite, or write to a new --out")
    with open(partial, "rb") as handle:
        lines = handle.read().split(b"\n")
    complete = lines[:-1]  # the last piece has no newline: empty, or a line cut by the kill
    kept = min(len(complete) // settings["chunk_size"] * settings["chunk_size"], total) if len(complete) < total else total
    with open(partial, "r+b") as handle:
        handle.truncate(sum(len(line) + 1 for line in complete[:kept]))
    return kept


def _what_changed(differing: Sequence[str]) -> str:
    """The settings that differ from the interrupted run's, in words."""
    reasons = []
    if any(key in _DATA_KEYS for key in differing):
        reasons.append("the data changed since the interrupted run (other questions, contexts or ids)")
    if "model_sha256" in differing:
        reasons.append("the model changed since the interrupted run (its files differ)")
    others = [key for key in differing if key not in _DATA_KEYS and key != "model_sha256"]
    if others:
        reasons.append(f"it was written with other {', '.join(others)} than this run's")
    return "; ".join(reasons)


def _answer_settings(options: AnswerOptions) -> dict[str, Any]:
    """The answer options a resumed run must share; options at their "the model's value" default
    are left out, so runs interrupted before an option existed still resume."""
    return {name: value for name, value in options.to_dict().items() if value is not None}


def _answered_chunks(reader: Reader, examples: Sequence[QAExample], start: int, chunk_size: int, options: AnswerOptions) -> Iterator[tuple[str, int]]:
    """From question ``start`` on, each chunk's JSON lines (one per question) and its number of questions."""
    for lo in range(start, len(examples), chunk_size):
        chunk = examples[lo : lo + chunk_size]
        yield "".join(line + "\n" for line in answer_lines(reader, [(ex.id, ex.question, ex.context) for ex in chunk], options)), len(chunk)


def answer_lines(reader: Reader, questions: Sequence[tuple[str, str, str]], options: AnswerOptions) -> list[str]:
    """Answer one chunk of questions in one shared pass: their output lines, in order (the local and
    the Ray engine both answer through here, so equal chunks give equal lines).

    Args:
        reader: The loaded model.
        questions: ``(id, question, context)`` triples.
        options: How every question is answered.
    """
    results = reader.answer_batch([QARequest(question, context, options=options, id=qid) for qid, question, context in questions])
    return [prediction_line(result) for result in results]


def prediction_line(result: ReaderResult) -> str:
    """One question's line of the output: its :class:`~spanqa.reading.reader.ReaderResult` as JSON (without the
    ``document`` of the best answer, always null for a single context).

    Args:
        result: The reader's result for the question.
    """
    record: dict[str, Any] = result.to_dict()
    record.pop("document", None)
    return json.dumps(record, ensure_ascii=False)
