"""Stage 1: load, validate and normalise question-answering data.

Every supported layout (SQuAD v1.1/v2.0 nested JSON; flat records in JSON,
JSONL, CSV or Parquet with any column names; UQA-style ``answer`` /
``answer_start`` / ``is_impossible`` rows; Hugging Face hub datasets) becomes the
same list of :class:`QAExample`, checked once here so later stages can trust it:
answer text equals ``context[start:start + len(text)]``, ids are unique,
questions and contexts are not empty.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shlex
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

from spanqa.core.errors import DataError, did_you_mean, first_line, near_path
from spanqa.core.io import atomic_open, write_json

__all__ = [
    "Answer",
    "QAExample",
    "QADataset",
    "ColumnMapping",
    "DataProblem",
    "MismatchPolicy",
    "DataSource",
    "read_dataset",
    "load_examples",
    "save_examples",
    "parse_columns",
    "split_by_title",
    "splits_word",
]

logger = logging.getLogger(__name__)

MismatchPolicy = Literal["repair", "trust", "skip"]
MISMATCH_POLICIES: tuple[str, ...] = ("repair", "trust", "skip")
FLAT_SUFFIXES = {".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".pq"}
# Names ending in one of these are files, never hub datasets: the loader's formats plus common
# data files it cannot read (so a missing 'notes.txt' is reported as a missing file).
FILE_SUFFIXES = FLAT_SUFFIXES | {".txt", ".xml", ".xlsx", ".arrow", ".gz", ".zip", ".bz2", ".xz", ".zst"}
REPAIR_WINDOW = 300  # characters either side of the given start searched by the 'repair' policy


@dataclass(frozen=True)
class Answer:
    """A gold answer: ``text`` occurs in the context at character ``start``."""

    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    @property
    def trimmed_span(self) -> tuple[int, int]:
        """(start, end) of the text without surrounding whitespace: what a model can cut back."""
        lead = len(self.text) - len(self.text.lstrip())
        trail = len(self.text) - len(self.text.rstrip())
        return self.start + lead, self.end - trail


@dataclass(frozen=True)
class QAExample:
    """One question about one context; no answers means unanswerable (SQuAD v2)."""

    id: str
    question: str
    context: str
    answers: tuple[Answer, ...] = ()
    title: str = ""

    @property
    def is_impossible(self) -> bool:
        return not self.answers


@dataclass(frozen=True)
class DataProblem:
    """A row that needed attention, with where it is and what was wrong."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass
class QADataset:
    """Validated examples plus what validation found on the way."""

    examples: list[QAExample]
    source: str
    version_2: bool
    problems: list[DataProblem] = field(default_factory=list)
    answers_checked: int = 0
    answers_mismatched: int = 0
    answers_repaired: int = 0
    examples_skipped: int = 0
    policy: str = "repair"
    suspected_marker: str | None = None
    """An answer text that many rows give and no context holds (``NONE``, ``N/A``, ``-``): probably a
    "no answer" marker the data was not loaded with (see :meth:`marker_hint`)."""
    suspected_marker_rows: int = 0

    def __len__(self) -> int:
        return len(self.examples)

    def marker_hint(self) -> str | None:
        """What to do about :attr:`suspected_marker`, in the CLI's and the Python API's spelling; None without one."""
        if self.suspected_marker is None:
            return None
        marker = self.suspected_marker
        return (
            f"{self.source}: {self.suspected_marker_rows} answers are {marker!r}, found in no context, and were skipped; "
            f"if {marker!r} means \"no answer\", give --no-answer-marker {shlex.quote(marker)} (Python: no_answer_marker={marker!r})"
        )

    def __iter__(self) -> Iterator[QAExample]:
        return iter(self.examples)

    @property
    def num_impossible(self) -> int:
        return sum(example.is_impossible for example in self.examples)

    def fingerprint(self) -> str:
        """A short hash of the examples' content, saved with trained models."""
        return examples_fingerprint(self.examples)

    def subset(self, examples: list[QAExample], source: str | None = None) -> QADataset:
        return replace(self, examples=examples, source=source or self.source)


def examples_fingerprint(examples: Sequence[QAExample]) -> str:
    """A short hash of examples' ids, questions, contexts and answers.

    Args:
        examples: The examples, in order.
    """
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(ex.id.encode())
        digest.update(ex.question.encode())
        digest.update(hashlib.sha1(ex.context.encode()).digest())
        for answer in ex.answers:
            digest.update(f"{answer.start}:{answer.text}".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ColumnMapping:
    """Which column of a flat file holds what; ``None`` means detect by the usual names.

    ``answers`` is a Hugging Face style column (``{"text": [...], "answer_start": [...]}``);
    alternatively ``answer_text`` plus ``answer_start`` (an int, a list, or a
    ``"(start, end)"`` string) and optionally ``answer_end``.
    """

    question: str | None = None
    context: str | None = None
    id: str | None = None
    title: str | None = None
    answers: str | None = None
    answer_text: str | None = None
    answer_start: str | None = None
    answer_end: str | None = None
    is_impossible: str | None = None
    no_answer_marker: str | None = None

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str] | None) -> ColumnMapping:
        if not mapping:
            return cls()
        known = {f.name for f in fields(cls)}
        for key in mapping:
            if key not in known:
                raise DataError(
                    f"unknown column role {key!r}{did_you_mean(key, known)}; "
                    f"roles are: {', '.join(sorted(known))}"
                )
        return cls(**{k: (str(v) if v is not None else None) for k, v in mapping.items()})

    @classmethod
    def of(cls, columns: ColumnMapping | Mapping[str, str] | str | None, no_answer_marker: str | None = None) -> ColumnMapping:
        """A mapping from the forms people write: a ``ROLE=COLUMN,...`` spec, a mapping or a mapping
        object, with the no-answer marker given on its own (as the command line's options are).

        Args:
            columns: The column mapping in any of those forms; None: detect by the usual names.
            no_answer_marker: Answer text that means "no answer"; it joins the mapping.
        """
        mapping = parse_columns(columns) if isinstance(columns, str) else dict(vars(columns) if isinstance(columns, ColumnMapping) else columns or {})
        if no_answer_marker:
            mapping["no_answer_marker"] = no_answer_marker
        return cls.from_mapping({k: v for k, v in mapping.items() if v is not None})

    def given(self) -> dict[str, str]:
        """The roles that name a column (and the marker), as a plain mapping."""
        return {key: value for key, value in vars(self).items() if value is not None}


def parse_columns(spec: str | None) -> dict[str, str]:
    """Parse ``"context=review,answer_text=human_ans_spans"`` into a dict."""
    if not spec:
        return {}
    out: dict[str, str] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise DataError(f"column mapping {part!r} should look like ROLE=COLUMN, e.g. context=review")
        key, value = (s.strip() for s in part.split("=", 1))
        out[key] = value
    ColumnMapping.from_mapping(out)  # validates the role names
    return out


# --------------------------------------------------------------------------- loading


class _Gold(NamedTuple):
    """A row's gold answers as the file gives them: texts, starts and ends (None: not given), unanswerable flag."""

    texts: list[str]
    starts: list[int | None]
    ends: list[int | None]
    impossible: bool


_NO_GOLD = _Gold([], [], [], False)


@dataclass
class _RawRow:
    """A record before validation, in one shape whatever the file layout was.

    ``gold_problem`` says why a malformed gold answer was ignored (only when answers are not required).
    """

    location: str
    question: Any
    context: Any
    id: Any
    title: Any
    gold: _Gold
    gold_problem: str | None = None


@dataclass(frozen=True)
class DataSource:
    """A data file (or hub dataset) and how to read it, declared once and passed whole: the CLI,
    evaluation, both prediction engines and reports build one and call :meth:`load`.

    Attributes:
        path: A SQuAD JSON, JSONL, CSV/TSV or Parquet file, or a hub dataset ``NAME[@CONFIG][:SPLIT]``.
        columns: Which column holds what in a flat file, with the no-answer marker.
        on_mismatch: ``repair``, ``trust`` or ``skip`` answers whose text is not at their offset.
        split: Split of a hub dataset.
        version_2: Whether the data is SQuAD v2 (questions may have no answer); None: detected from the data.
    """

    path: str | Path
    columns: ColumnMapping = field(default_factory=lambda: ColumnMapping())
    on_mismatch: MismatchPolicy = "repair"
    split: str | None = None
    version_2: bool | None = None

    @classmethod
    def of(
        cls,
        path: str | Path | DataSource,
        columns: ColumnMapping | Mapping[str, str] | str | None = None,
        no_answer_marker: str | None = None,
        **options: Any,
    ) -> DataSource:
        """A source from the forms people write: a column spec (``"context=review,..."``) or mapping,
        and the no-answer marker on its own.

        Args:
            path: The data, or a ready :class:`DataSource` (``options`` replace its own).
            columns: ``ColumnMapping``, a mapping of roles to columns, or a ``ROLE=COLUMN,...`` string.
            no_answer_marker: Answer text that means "no answer" (joins the column mapping).
            **options: ``on_mismatch``, ``split``, ``version_2``.
        """
        if isinstance(path, DataSource):
            if columns is not None or no_answer_marker is not None:
                raise TypeError("give the columns in the DataSource, not beside it")
            return replace(path, **options) if options else path
        return cls(path, ColumnMapping.of(columns, no_answer_marker), **options)

    def load(self, require_answers: bool = True) -> QADataset:
        """The validated examples (see :func:`load_examples`); ``version_2``, when set, overrides what the data says.

        Args:
            require_answers: Whether gold answers matter (False for prediction input).
        """
        dataset = load_examples(self.path, columns=self.columns, on_mismatch=self.on_mismatch, split=self.split, require_answers=require_answers)
        return dataset if self.version_2 is None else replace(dataset, version_2=self.version_2)

    def describe(self) -> dict[str, Any]:
        """What a run records to read the same data again (``evaluation.json``)."""
        return {
            "columns": self.columns.given(),
            "on_mismatch": self.on_mismatch,
            "split": self.split,
        }


def read_dataset(data: str | Path | DataSource | QADataset, **options: Any) -> tuple[DataSource, QADataset]:
    """How ``data`` is read (what a run records), and the data, read now unless it comes loaded.

    Args:
        data: A file or hub name, a :class:`DataSource`, or a loaded :class:`QADataset`.
        **options: :class:`DataSource` options for a name or a loaded dataset (``columns``,
            ``no_answer_marker``, ``on_mismatch``, ``split``, ``version_2``; a given ``version_2``
            overrides what the data says).

    Raises:
        TypeError: options beside a :class:`DataSource` (they belong in it).
    """
    if isinstance(data, DataSource):
        if options:
            raise TypeError(f"give {', '.join(sorted(options))} in the DataSource, not beside it")
        return data, data.load()
    if isinstance(data, QADataset):
        source = DataSource.of(data.source, **options)
        return source, data if source.version_2 is None else replace(data, version_2=source.version_2)
    source = DataSource.of(data, **options)
    return source, source.load()


def load_examples(
    source: str | Path,
    *,
    columns: ColumnMapping | Mapping[str, str] | None = None,
    on_mismatch: MismatchPolicy = "repair",
    split: str | None = None,
    require_answers: bool = True,
    no_answer_marker: str | None = None,
) -> QADataset:
    """Load and validate a dataset from a file or a hub name.

    With ``require_answers=False`` (prediction input) files without any answer
    column are accepted and their questions simply carry no gold answers; a
    malformed gold answer (wrong type, bad offset, text not at its offset) then
    costs only that answer, never the question: it is dropped and listed in
    ``problems``, since a prediction needs only the question and the context.

    Ids and titles must be text; integers are accepted too and written in
    decimal (CSV and JSON exports often number their questions), but booleans,
    fractions, lists, objects and null are errors (``str()`` of them would be an
    id nothing else matches). A missing or null title is the empty title. An
    ``is_impossible`` flag is a boolean, the integer 0 or 1, or the string
    true/false/1/0 in any case; anything else is an error naming the row.

    ``on_mismatch`` decides what happens to answers whose text is not found at
    their offset: ``repair`` looks for the text near the offset (then skips what
    it cannot find), ``trust`` keeps the offsets and takes the text from the
    context, ``skip`` drops them.

    Args:
        source: A SQuAD JSON, JSONL, CSV/TSV or Parquet file, or a hub dataset ``NAME[@CONFIG][:SPLIT]``.
        columns: Column mapping for flat files (``{"context": "review", ...}``).
        on_mismatch: ``repair``, ``trust`` or ``skip`` answers whose text is not at their offset.
        split: Split of a hub dataset (also settable as ``NAME:SPLIT``).
        require_answers: Whether gold answers matter: an answer column must exist and a
            malformed answer is an error (False for prediction input: both are tolerated).
        no_answer_marker: Answer text that means "no answer" (``--no-answer-marker``; joins ``columns``).
            Without one, when most answers found in no context are one short text, a warning
            suggests it (:meth:`QADataset.marker_hint`).

    Raises:
        DataError: the file is missing, unreadable or malformed; the message names file, row and field.
    """
    if on_mismatch not in MISMATCH_POLICIES:
        raise DataError(
            f"unknown mismatch policy {on_mismatch!r}{did_you_mean(str(on_mismatch), MISMATCH_POLICIES)}; "
            f"choose one of {', '.join(MISMATCH_POLICIES)}"
        )
    mapping = columns if isinstance(columns, ColumnMapping) else ColumnMapping.from_mapping(columns)
    if no_answer_marker:
        mapping = replace(mapping, no_answer_marker=no_answer_marker)
    path = Path(source)
    version_hint: str | None = None
    if path.exists():
        if path.is_dir():
            raise DataError(f"{path}: is a folder; give a data file (SQuAD JSON, JSONL, CSV or Parquet)")
        rows, version_hint = _read_file(path, mapping, require_answers)
        name = str(path)
    elif not _is_hub_spec(str(source)):
        raise DataError(f"{source}: file not found{near_path(path)}")
    elif near_path(path):
        # Checked before the hub is asked: offline, asking takes 25-50 s of retries to fail.
        raise DataError(f"{source}: no such file here{near_path(path)}; a hub dataset would be owner/name")
    else:
        rows = _read_hub(str(source), split, mapping, require_answers)
        name = str(source)
    dataset = _validate(rows, name, on_mismatch, require_answers)
    if version_hint is not None and version_hint.startswith("v2"):
        dataset.version_2 = True
    if dataset.answers_mismatched:
        first = "; ".join(str(p) for p in dataset.problems[:3])
        logger.warning(
            "%s: %d of %d answers disagree with their offsets (policy %r: %d repaired, %d examples skipped). First: %s",
            name,
            dataset.answers_mismatched,
            dataset.answers_checked,
            on_mismatch,
            dataset.answers_repaired,
            dataset.examples_skipped,
            first,
        )
    hint = dataset.marker_hint()
    if hint:
        logger.warning("%s", hint)
    return dataset


def _looks_like_hub_id(text: str) -> bool:
    return bool(re.fullmatch(r"[\w.\-]+(/[\w.\-]+)?(@[\w.\-]+)?(:[\w.\-\[\]%:+]+)?", text))


def _is_hub_spec(text: str) -> bool:
    """Whether a source that is not a local file names a hub dataset, ``NAME[@CONFIG][:SPLIT]``.

    Only NAME's suffix tells a file from a dataset: a config or split may hold dots
    (``google/xquad@xquad.en``), and so may a dataset name (``someuser/qa.v2``).
    """
    name = text.partition(":")[0].partition("@")[0]
    return _looks_like_hub_id(text) and Path(name).suffix.lower() not in FILE_SUFFIXES


def _read_file(path: Path, mapping: ColumnMapping, require_answers: bool = True) -> tuple[list[_RawRow], str | None]:
    suffix = path.suffix.lower()
    if suffix in (".json",):
        try:
            obj = _json_loads(_read_text(path), str(path))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
        if isinstance(obj, dict) and isinstance(obj.get("data"), list):
            records = obj["data"]
            if records and isinstance(records[0], dict) and "paragraphs" in records[0]:
                mapped = [f.name for f in fields(mapping) if f.name != "no_answer_marker" and getattr(mapping, f.name) is not None]
                if mapped:
                    raise DataError(
                        f"{path}: is SQuAD JSON, which has fixed field names; the column mapping "
                        f"({', '.join(mapped)}) applies only to flat files (CSV, JSONL, Parquet, JSON records)"
                    )
                return list(_squad_rows(records, path, require_answers)), str(obj.get("version", ""))
            return _flat_rows(records, path, mapping, require_answers), None
        if isinstance(obj, list):
            return _flat_rows(obj, path, mapping, require_answers), None
        raise DataError(
            f"{path}: expected SQuAD JSON ({{'data': [{{'paragraphs': ...}}]}}) or a list of records, "
            f"got a JSON {type(obj).__name__}"
        )
    if suffix in (".jsonl", ".ndjson"):
        records = []
        # Split on "\n" only: str.splitlines() would also split at U+2028 and friends, which
        # json.dumps(ensure_ascii=False) leaves unescaped inside strings.
        for lineno, line in enumerate(_read_text(path).split("\n"), 1):
            if not line.strip():
                continue
            try:
                records.append(_json_loads(line, f"{path} line {lineno}"))
            except json.JSONDecodeError as err:
                raise DataError(f"{path} line {lineno}: not valid JSON ({err.msg})") from None
        return _flat_rows(records, path, mapping, require_answers), None
    if suffix in (".csv", ".tsv"):
        import pandas as pd

        try:
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
        except UnicodeDecodeError as err:
            raise _not_utf8(path, err) from None
        except OSError as err:
            raise _unreadable(path, err) from None
        except (pd.errors.ParserError, ValueError) as err:
            raise DataError(f"{path}: cannot parse as {suffix[1:].upper()} ({first_line(err)})") from None
        return _flat_rows(frame.to_dict("records"), path, mapping, require_answers), None
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises several unrelated types for bad files
            raise DataError(f"{path}: cannot read as Parquet ({err})") from None
        return _flat_rows(table.to_pylist(), path, mapping, require_answers), None
    raise DataError(f"{path}: unsupported file type {suffix!r}; use .json (SQuAD or records), .jsonl, .csv, .tsv or .parquet")


def _read_text(path: Path) -> str:
    """A data file's whole text, read as UTF-8.

    Args:
        path: The file.

    Raises:
        DataError: the bytes are not UTF-8 or the file cannot be read; names the path and the cause.
    """
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise _not_utf8(path, err) from None
    except OSError as err:  # a folder, no permission, a vanished file: open() says which
        raise _unreadable(path, err) from None


def _not_utf8(path: Path, err: UnicodeDecodeError) -> DataError:
    return DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8")


def _unreadable(path: Path, err: OSError) -> DataError:
    return DataError(f"{path}: cannot read the file ({err.strerror or first_line(err)})")


def _json_loads(text: str, where: str) -> Any:
    """``json.loads``, with the limits of Python's JSON reader as DataErrors naming ``where``.

    Valid JSON can still be unreadable: nesting deeper than the interpreter's
    recursion limit raises RecursionError, and an integer of more digits than
    ``sys.get_int_max_str_digits()`` a ValueError. Malformed JSON
    (:class:`json.JSONDecodeError`) is passed on: each caller words it for its layout.

    Args:
        text: The JSON text.
        where: The file (and line, row or field) it came from, for the message.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply to read (deeper than about {sys.getrecursionlimit()} levels)") from None
    except ValueError as err:  # JSONDecodeError is a ValueError too, but it was handled above
        raise DataError(f"{where}: {_too_long(err)}") from None


def _too_long(err: ValueError) -> str:
    """What int() refused, worded for a data file (Python's own message ends with advice for programmers)."""
    return f"a number too long to read ({first_line(err).split(';')[0]})"


def _read_hub(spec: str, split: str | None, mapping: ColumnMapping, require_answers: bool = True) -> list[_RawRow]:
    """``NAME[@CONFIG][:SPLIT]`` through :func:`datasets.load_dataset`."""
    name, _, spec_split = spec.partition(":")
    name, _, config = name.partition("@")
    split = split or spec_split or "train"
    try:
        import datasets

        hub = datasets.load_dataset(name, config or None, split=split)
    except Exception as err:  # offline, unknown name, bad split: datasets raises many types
        raise DataError(
            f"{spec}: not a local file, and loading it from the Hugging Face hub failed "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    return _flat_rows(hub, Path(f"{name}[{split}]"), mapping, require_answers)


def _squad_rows(articles: list[Any], path: Path, require_answers: bool = True) -> Iterator[_RawRow]:
    for a, article in enumerate(articles):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise DataError(f"{path}: data[{a}]: expected an object with a 'paragraphs' list")
        title = _as_label(article.get("title"), f"{path}: data[{a}]", "title", required=False)
        for p, paragraph in enumerate(article["paragraphs"]):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            if not isinstance(paragraph, dict) or "context" not in paragraph or "qas" not in paragraph:
                raise DataError(f"{where}: expected an object with 'context' and 'qas'")
            for q, qa in enumerate(paragraph["qas"]):
                loc = f"{where}.qas[{q}]"
                if not isinstance(qa, dict):
                    raise DataError(f"{loc}: expected an object, got {type(qa).__name__}")
                gold, problem = _read_gold(partial(_squad_gold, qa, loc), loc, require_answers)
                yield _RawRow(
                    location=loc,
                    question=qa.get("question"),
                    context=paragraph["context"],
                    id=qa.get("id"),
                    title=title,
                    gold=gold,
                    gold_problem=problem,
                )


def _squad_gold(qa: Mapping[str, Any], loc: str) -> _Gold:
    """The gold answers of one SQuAD ``qas`` entry.

    Args:
        qa: The entry.
        loc: Where it is, for messages.
    """
    answers = qa.get("answers") or []
    if not isinstance(answers, list):
        raise DataError(f"{loc}: field 'answers': expected a list of {{text, answer_start}}")
    texts: list[str] = []
    starts: list[int | None] = []
    for i, answer in enumerate(answers):
        if not isinstance(answer, dict) or "text" not in answer or "answer_start" not in answer:
            raise DataError(f"{loc}: field 'answers': each answer needs 'text' and 'answer_start'")
        texts.append(_as_text(answer["text"], loc, f"answers[{i}].text"))
        starts.append(_as_int(answer["answer_start"], loc, f"answers[{i}].answer_start"))
    # An absent flag is SQuAD v1.1 (every question answerable); a question without answers is unanswerable either way.
    impossible = _as_bool(qa["is_impossible"], loc, "is_impossible") if "is_impossible" in qa else False
    return _Gold(texts, starts, [None] * len(texts), impossible or not texts)


def _read_gold(read: Callable[[], _Gold], loc: str, require_answers: bool) -> tuple[_Gold, str | None]:
    """A row's gold answers from ``read``, or, where answers are not required, none and why.

    Prediction input needs only questions and contexts, so there a malformed gold
    answer is dropped (and reported) instead of costing the question.

    Args:
        read: Parses the row's answers; raises DataError for malformed ones.
        loc: The location ``read`` starts its messages with (cut from the reason returned).
        require_answers: Whether a malformed answer is an error.
    """
    try:
        return read(), None
    except DataError as err:
        if require_answers:
            raise
        return _NO_GOLD, str(err).removeprefix(f"{loc}: ")


_AUTO_NAMES: dict[str, tuple[str, ...]] = {
    "question": ("question", "query", "questions"),
    "context": ("context", "passage", "paragraph", "document"),
    "id": ("id", "qid", "question_id", "example_id"),
    "title": ("title",),
    "answers": ("answers",),
    "answer_text": ("answer_text", "answer", "answers_text", "text"),
    "answer_start": ("answer_start", "answer_starts", "start"),
    "answer_end": ("answer_end",),
    "is_impossible": ("is_impossible", "impossible", "unanswerable"),
}


def _resolve_columns(available: Sequence[str], mapping: ColumnMapping, path: Path, require_answers: bool = True) -> dict[str, str | None]:
    """Map each role to a real column, raising a helpful error for wrong names."""
    resolved: dict[str, str | None] = {}
    for role, candidates in _AUTO_NAMES.items():
        given = getattr(mapping, role)
        if given is not None:
            if given not in available:
                raise DataError(
                    f"{path}: column {given!r} (for {role}) not found{did_you_mean(given, available)}; "
                    f"columns are: {', '.join(available)}"
                )
            resolved[role] = given
        else:
            resolved[role] = next((c for c in candidates if c in available), None)
    # 'text' and 'answer' are only answer columns when nothing better claims them.
    if resolved["answers"] is not None and mapping.answer_text is None:
        resolved["answer_text"] = None
    if resolved["answer_text"] is not None and resolved["answer_start"] is None and resolved["answers"] is None:
        if mapping.answer_text is None and resolved["answer_text"] == "text":
            resolved["answer_text"] = None
    for role in ("question", "context"):
        if resolved[role] is None:
            hint = ""
            for col in available:
                if role in col.lower() or (role == "context" and col.lower() in ("review", "text", "body", "article")):
                    hint = f" (is it {col!r}? map it with {role}={col})"
                    break
            raise DataError(
                f"{path}: no {role} column found; columns are: {', '.join(available)}{hint}"
            )
    if require_answers and resolved["answers"] is None and resolved["answer_text"] is None and resolved["is_impossible"] is None:
        raise DataError(
            f"{path}: no answer column found; expected 'answers' ({{text, answer_start}}), or "
            f"'answer' + 'answer_start', or map yours with answer_text=... answer_start=...; "
            f"columns are: {', '.join(available)}"
        )
    return resolved


def _flat_rows(records: Iterable[Mapping[str, Any]], path: Path, mapping: ColumnMapping, require_answers: bool = True) -> list[_RawRow]:
    rows: list[_RawRow] = []
    cols: dict[str, str | None] | None = None
    marker = mapping.no_answer_marker
    for n, record in enumerate(records, 1):
        loc = f"{path} row {n}"
        if not isinstance(record, Mapping):
            raise DataError(f"{loc}: expected a record (object), got {type(record).__name__}")
        if cols is None:
            cols = _resolve_columns(list(record.keys()), mapping, path, require_answers)
        missing = [c for c in cols.values() if c is not None and c not in record]
        if missing:
            raise DataError(f"{loc}: missing field {missing[0]!r}")
        gold, problem = _read_gold(partial(_flat_gold, record, cols, loc, marker), loc, require_answers)
        context = record[cast(str, cols["context"])]  # question and context columns always resolve
        if marker is not None and isinstance(context, str):
            context = _strip_marker(context, marker)
        rows.append(
            _RawRow(
                location=loc,
                question=record[cast(str, cols["question"])],
                context=context,
                id=record[cols["id"]] if cols["id"] else f"{path.stem}-{n}",
                title=record[cols["title"]] if cols["title"] else "",
                gold=gold,
                gold_problem=problem,
            )
        )
    return rows


def _flat_gold(record: Mapping[str, Any], cols: Mapping[str, str | None], loc: str, marker: str | None) -> _Gold:
    """The gold answers of one flat record: its answer columns, its is_impossible flag, the no-answer marker.

    Args:
        record: The record.
        cols: Which column holds what (from :func:`_resolve_columns`).
        loc: Where the record is, for messages.
        marker: The no-answer sentinel, if the data uses one.
    """
    texts, starts, ends = _answers_of(record, cols, loc)
    impossible_column = cols["is_impossible"]
    impossible = impossible_column is not None and _as_bool(record[impossible_column], loc, impossible_column)
    if marker is not None:
        kept = [(t, s, e) for t, s, e in zip(texts, starts, ends) if t.strip() != marker]
        impossible = impossible or (bool(texts) and not kept)
        texts, starts, ends = [k[0] for k in kept], [k[1] for k in kept], [k[2] for k in kept]
    if impossible or not any(t.strip() for t in texts):
        return _Gold([], [], [], True)
    return _Gold(texts, starts, ends, False)


# Scripts written without spaces between words: every character boundary is a word boundary.
_UNSPACED_SCRIPTS = ("CJK", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR", "TIBETAN")


def splits_word(text: str, pos: int) -> bool:
    """Whether a cut at ``pos`` falls inside a word of a spaced script (letters, digits or marks on both sides).

    An answer that starts or ends there ('Tentakel' in 'neTentakel', '2,70' in
    '2,700') is usually a typo in the text or a truncated annotation; a model
    that predicts whole tokens can only match it if the tokenizer splits there.
    """
    if not 0 < pos < len(text):
        return False
    return all(
        unicodedata.category(c)[0] in "LNM" and not unicodedata.name(c, "").startswith(_UNSPACED_SCRIPTS)
        for c in (text[pos - 1], text[pos])
    )


def _strip_marker(context: str, marker: str) -> str:
    """Drop a trailing no-answer sentinel (SubjQA ends every review with one)."""
    stripped = context.rstrip()
    if stripped.endswith(marker):
        return stripped[: -len(marker)].rstrip()
    return context


_SPAN_RE = re.compile(r"^\s*[\(\[]?\s*(-?\d+)\s*[,;]\s*(-?\d+)\s*[\)\]]?\s*$")


def _answers_of(record: Mapping[str, Any], cols: Mapping[str, str | None], loc: str) -> tuple[list[str], list[int | None], list[int | None]]:
    """Answer texts, starts and (optional) ends from whichever columns hold them."""
    if cols["answers"] is not None:
        value = _maybe_json(record[cols["answers"]], loc, cols["answers"])
        if value is None or value == "" or value == []:
            return [], [], []
        if isinstance(value, Mapping):
            texts = _as_list(value.get("text", []))
            raw_starts = _as_list(value.get("answer_start", []))
        elif isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
            texts = [v.get("text") for v in value]
            raw_starts = [v.get("answer_start") for v in value]
        else:
            raise DataError(
                f"{loc}: field {cols['answers']!r}: expected {{'text': [...], 'answer_start': [...]}} "
                f"or a list of {{'text', 'answer_start'}}, got {str(value)[:60]!r}"
            )
        if len(texts) != len(raw_starts):
            raise DataError(
                f"{loc}: field {cols['answers']!r}: {len(texts)} texts but {len(raw_starts)} answer_start values"
            )
        answer_starts: list[int | None] = [_as_int(s, loc, "answer_start") for s in raw_starts]
        return [_as_text(t, loc, str(cols["answers"])) for t in texts], answer_starts, [None] * len(texts)
    if cols["answer_text"] is None:
        return [], [], []
    raw_text = _maybe_json(record[cols["answer_text"]], loc, cols["answer_text"])
    if raw_text is None or (isinstance(raw_text, float) and math.isnan(raw_text)):
        return [], [], []
    texts = [_as_text(t, loc, str(cols["answer_text"])) for t in _as_list(raw_text)]
    texts_are_empty = not any(t.strip() for t in texts)
    if cols["answer_start"] is None:
        if texts_are_empty:
            return [], [], []
        return texts, [None] * len(texts), [None] * len(texts)
    raw_start = record[cols["answer_start"]]
    starts: list[int | None]
    ends: list[int | None]
    span = _SPAN_RE.match(raw_start) if isinstance(raw_start, str) else None
    if span:
        starts, ends = [_as_int(span.group(1), loc, cols["answer_start"])], [_as_int(span.group(2), loc, cols["answer_start"])]
    elif isinstance(raw_start, (tuple,)) and len(raw_start) == 2 and len(texts) == 1:
        starts, ends = [_as_int(raw_start[0], loc, cols["answer_start"])], [_as_int(raw_start[1], loc, cols["answer_start"])]
    else:
        value = _maybe_json(raw_start, loc, cols["answer_start"])
        if texts_are_empty and (value is None or value == "" or value == []):
            return [], [], []
        starts = [_as_int(s, loc, cols["answer_start"]) for s in _as_list(value)]
        ends = [None] * len(starts)
    if cols["answer_end"] is not None:
        ends = [_as_int(e, loc, cols["answer_end"]) for e in _as_list(_maybe_json(record[cols["answer_end"]], loc, cols["answer_end"]))]
    if len(starts) != len(texts) or len(ends) != len(texts):
        raise DataError(
            f"{loc}: {len(texts)} answer texts but {len(starts)} starts in {cols['answer_start']!r}"
        )
    return texts, starts, ends


def _maybe_json(value: Any, loc: str, name: str) -> Any:
    """CSV cells hold lists and dicts as JSON (or Python repr) strings; decode those.

    Args:
        value: The cell.
        loc: Where the row is, for messages.
        name: The cell's column, for messages.
    """
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "[{":
            try:
                return _json_loads(text, f"{loc}: field {name!r}")
            except json.JSONDecodeError:
                try:
                    import ast

                    return ast.literal_eval(text)
                except (ValueError, SyntaxError):  # not a literal either: an ordinary string after all
                    return value
    if hasattr(value, "tolist"):  # numpy arrays from Parquet
        return value.tolist()
    return value


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    if hasattr(value, "tolist"):
        return list(value.tolist())
    return [value]


def _shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: a whole nested object would drown the message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    """A wrong value for a message: its type and (cut) repr, or 'null' (what JSON calls None)."""
    return "null" if value is None else f"{type(value).__name__} {_shown(value)}"


def _as_text(value: Any, loc: str, name: str | None) -> str:
    """An answer text, which must be a string: ``str(34)`` might happen to occur in the context and mislead."""
    if not isinstance(value, str):
        raise DataError(f"{loc}: field {name!r}: expected answer text (a string), got {_kind(value)}")
    return value


def _as_int(value: Any, loc: str, name: str | None) -> int:
    """A character offset: an integer, an integral float (pandas, Parquet) or a string of digits."""
    if isinstance(value, bool):
        raise DataError(f"{loc}: field {name!r}: expected a character offset (integer), got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        try:
            return int(value)
        except ValueError as err:  # more digits than sys.get_int_max_str_digits()
            raise DataError(f"{loc}: field {name!r}: {_too_long(err)}") from None
    raise DataError(f"{loc}: field {name!r}: expected a character offset (integer), got {_shown(value)}")


_BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False}


def _as_bool(value: Any, loc: str, name: str) -> bool:
    """An is_impossible flag: a boolean, the integer 0 or 1, or the string true/false/1/0 (any case).

    Nothing else is guessed at: ``bool("false")`` is True, and reading a stray
    ``"no"``, ``""`` or null either way could silently turn an answerable
    question into an unanswerable one.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.strip().lower()]
    raise DataError(f"{loc}: field {name!r}: expected true/false, got {_shown(value)} (accepted: true, false, 1, 0)")


def _as_label(value: Any, loc: str, name: str, *, required: bool) -> str:
    """An id or title as text: a string, or an integer written in decimal (CSV and JSON often number ids).

    Args:
        value: The field's value.
        loc: Where the row is, for messages.
        name: The field, for messages.
        required: Whether a missing (null or blank) value is an error; if not, it is the empty string.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise DataError(f"{loc}: missing {name}")
        return ""
    if isinstance(value, str):
        return value
    # bool is an int, but a true/false id is a mistake; so is any fraction, list or object,
    # whose str() would be an id that no prediction file matches.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise DataError(f"{loc}: field {name!r}: expected text (or an integer), got {_kind(value)}")


# --------------------------------------------------------------------------- validation


def _validate(rows: list[_RawRow], source: str, policy: str, require_answers: bool = True) -> QADataset:
    """Check every row and turn it into a :class:`QAExample`.

    Args:
        rows: The rows, in file order.
        source: The file or dataset name, for messages.
        policy: What to do with answers that disagree with their offsets (see :func:`load_examples`).
        require_answers: Whether a question whose answers all fail goes (True) or stays without them.
    """
    examples: list[QAExample] = []
    problems: list[DataProblem] = []
    seen: dict[str, str] = {}
    ignored: list[DataProblem] = []  # questions kept without their malformed gold answers
    checked = mismatched = repaired = skipped = 0
    unfound: Counter[str] = Counter()  # answer texts that no part of their context holds, for the marker hint
    any_impossible = False
    for row in rows:
        qid, title = _checked_row(row, seen)
        if row.gold_problem is not None:
            ignored.append(DataProblem(row.location, f"id {qid}: gold answers ignored ({row.gold_problem})"))
            problems.append(ignored[-1])
        context: str = row.context
        answers: list[Answer] = []
        gold = row.gold
        for text, start, end in zip(gold.texts, gold.starts, gold.ends):
            checked += 1
            answer, problem, was_repaired = _check_answer(context, text, start, end, policy)
            if problem is not None:
                mismatched += 1
                problems.append(DataProblem(row.location, f"id {qid}: {problem}"))
            repaired += was_repaired
            if answer is not None:
                answers.append(answer)
            elif (stripped := text.strip()) and stripped not in context:
                unfound[stripped] += 1
        # Without usable answers a training or scoring example is worthless, but a question
        # to predict on still stands (it then carries no gold answers).
        if gold.texts and not answers and require_answers:
            skipped += 1
            continue
        any_impossible = any_impossible or gold.impossible
        examples.append(QAExample(id=qid, question=row.question.strip(), context=context, answers=tuple(answers), title=title))
    if ignored:
        logger.warning(
            "%s: malformed gold answers ignored for %d of %d questions (answers are not needed here). First: %s",
            source, len(ignored), len(rows), ignored[0],
        )
    marker, marker_rows = _suspected_marker(unfound) if require_answers else (None, 0)  # predict keeps such rows
    if not examples:
        if rows:
            hint = f"; {marker_rows} answers are {marker!r}: if that means \"no answer\", give --no-answer-marker" if marker else ""
            raise DataError(f"{source}: no usable examples ({skipped} skipped because their answers disagree with their offsets){hint}")
        raise DataError(f"{source}: contains no examples")
    return QADataset(
        examples=examples,
        source=source,
        version_2=any_impossible,
        problems=problems,
        answers_checked=checked,
        answers_mismatched=mismatched,
        answers_repaired=repaired,
        examples_skipped=skipped,
        policy=policy,
        suspected_marker=marker,
        suspected_marker_rows=marker_rows,
    )


def _checked_row(row: _RawRow, seen: dict[str, str]) -> tuple[str, str]:
    """A row's id and title, once its question and context are non-empty text and its id is new (noted in ``seen``)."""
    for role in ("question", "context"):
        value = getattr(row, role)
        if not isinstance(value, str):
            raise DataError(f"{row.location}: field {role!r}: expected text, got {type(value).__name__}")
        if not value.strip():
            raise DataError(f"{row.location}: empty {role}")
    qid = _as_label(row.id, row.location, "id", required=True)
    title = _as_label(row.title, row.location, "title", required=False)
    if qid in seen:
        raise DataError(f"{row.location}: duplicate id {qid!r} (first seen at {seen[qid]})")
    seen[qid] = row.location
    return qid, title


MARKER_MIN_ROWS = 3
"""Rows that must give one unfound answer text before it is called a likely "no answer" marker."""


def _suspected_marker(unfound: Counter[str]) -> tuple[str | None, int]:
    """The answer text most rows give that no context holds, if it is short, at least
    :data:`MARKER_MIN_ROWS` rows give it and it is at least half of all such answers (a marker, not typos)."""
    if not unfound:
        return None, 0
    [(text, rows)] = unfound.most_common(1)
    if rows >= MARKER_MIN_ROWS and 2 * rows >= unfound.total() and len(text) <= 32:
        return text, rows
    return None, 0


def _check_answer(context: str, text: str, start: int | None, end: int | None, policy: str) -> tuple[Answer | None, str | None, bool]:
    """Return (answer or None, problem description or None, whether it was repaired)."""
    if start is None:  # no offset given at all: locate the text
        pos = context.find(text)
        if pos < 0:
            return None, f"answer {text!r} not found in the context", False
        return Answer(text, pos), None, False
    if 0 <= start and context[start : start + len(text)] == text and text:
        return Answer(text, start), None, False
    found = context[start : start + len(text)] if 0 <= start < len(context) else "<out of range>"
    problem = f"answer {_short(text)} != context[{start}:{start + len(text)}] {_short(found)}"
    if policy == "skip":
        return None, problem + " (skipped)", False
    if policy == "trust":
        stop = end if end is not None else start + len(text)
        if not (0 <= start < stop <= len(context)):
            return None, problem + " (offsets out of range; skipped)", False
        return Answer(context[start:stop], start), problem + " (kept the offsets)", False
    repaired = _repair(context, text, start)
    if repaired is None:
        return None, problem + " (not found nearby; skipped)", False
    return repaired, problem + f" (repaired to {repaired.start})", True


def _repair(context: str, text: str, start: int) -> Answer | None:
    """The occurrence of ``text`` nearest to ``start``, allowing different spacing."""
    lo, hi = max(0, start - REPAIR_WINDOW), min(len(context), start + len(text) + REPAIR_WINDOW)
    best: Answer | None = None
    tokens = text.split()
    if not tokens:
        return None
    exact = re.escape(text.strip())
    spaced = r"\s*".join(re.escape(t) for t in tokens)
    # spacing may also differ inside a token ('awesome!' in the answer, 'awesome !' in the context)
    any_spacing = r"\s*".join(re.escape(c) for c in "".join(tokens))
    for pattern in (exact, spaced, any_spacing):
        for match in re.finditer(pattern, context[lo:hi]):
            candidate = Answer(match.group(0), lo + match.start())
            if best is None or abs(candidate.start - start) < abs(best.start - start):
                best = candidate
        if best is not None:
            return best
    return None


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


# --------------------------------------------------------------------------- writing


def save_examples(examples: Iterable[QAExample], path: str | Path, *, version_2: bool | None = None) -> None:
    """Write examples as SQuAD JSON (``.json``) or flat JSONL (``.jsonl``), atomically."""
    path = Path(path)
    examples = list(examples)
    if version_2 is None:
        version_2 = any(ex.is_impossible for ex in examples)
    suffix = path.suffix.lower()
    if suffix == ".json":
        write_json(path, to_squad(examples, version_2), indent=None)
    elif suffix in (".jsonl", ".ndjson"):
        with atomic_open(path) as handle:
            for ex in examples:
                record = {
                    "id": ex.id,
                    "title": ex.title,
                    "context": ex.context,
                    "question": ex.question,
                    "answers": {"text": [a.text for a in ex.answers], "answer_start": [a.start for a in ex.answers]},
                    "is_impossible": ex.is_impossible,
                }
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        raise DataError(f"{path}: can only write .json (SQuAD) or .jsonl, not {suffix!r}")


def to_squad(examples: Iterable[QAExample], version_2: bool = True) -> dict[str, Any]:
    """Nest flat examples into the SQuAD layout, grouping questions by title and context."""
    articles: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for ex in examples:
        paragraphs = articles.setdefault(ex.title, {})
        qa: dict[str, Any] = {
            "id": ex.id,
            "question": ex.question,
            "answers": [{"text": a.text, "answer_start": a.start} for a in ex.answers],
        }
        if version_2:
            qa["is_impossible"] = ex.is_impossible
        paragraphs.setdefault(ex.context, []).append(qa)
    return {
        "version": "v2.0" if version_2 else "1.1",
        "data": [
            {"title": title, "paragraphs": [{"context": c, "qas": qas} for c, qas in paragraphs.items()]}
            for title, paragraphs in articles.items()
        ],
    }


def split_by_title(dataset: QADataset, first: int) -> tuple[QADataset, QADataset]:
    """Split into the first ``first`` articles (by title, in file order) and the rest."""
    order: dict[str, int] = {}
    for ex in dataset.examples:
        order.setdefault(ex.title, len(order))
    head = [ex for ex in dataset.examples if order[ex.title] < first]
    tail = [ex for ex in dataset.examples if order[ex.title] >= first]
    return dataset.subset(head), dataset.subset(tail)
