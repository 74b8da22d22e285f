"""An on-disk passage index for questions over a document collection.

``build_index`` splits documents (text files, a folder of them, JSONL/CSV/Parquet rows with a
text column, or a SQuAD file's contexts) into passages that remember their source document and
character offsets in it, and indexes them with BM25 (``bm25s`` over English-stemmed words: on
XQuAD-en the recall of tantivy's stemmed BM25, see ``bench/bm25_engines.py``); optionally it also stores normalised
sentence embeddings (``sentence-transformers``, the embedded MiniLM by default), fused with BM25
by reciprocal rank fusion.
:mod:`spanqa.reading.indexed` answers questions from the passages :meth:`Index.search` finds.

Index folder layout: ``passages.jsonl`` (one passage a line), ``bm25/`` (the bm25s model),
``embeddings.npy`` (when dense) and ``index.json`` (the manifest). Every build or append
writes a new folder and swaps it in whole, so readers never see a half-written index.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.core.errors import ConfigError, DataError, first_line
from spanqa.core.io import atomic_folder, read_json, write_json

__all__ = [
    "Document",
    "Passage",
    "Hit",
    "Index",
    "split_passages",
    "read_documents",
    "build_index",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: BM25 over English-stemmed words (version 1 indexes did not stem)
MANIFEST = "index.json"
PASSAGES = "passages.jsonl"
BM25_DIR = "bm25"
EMBEDDINGS = "embeddings.npy"
TEXT_SUFFIXES = (".txt", ".md")
TABLE_SUFFIXES = (".jsonl", ".csv", ".tsv", ".parquet")
RRF_K = 60  # the usual reciprocal-rank-fusion constant (Cormack et al. 2009)

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Passage:
    """A piece of a source document: ``document text[start:end] == text``.

    Attributes:
        doc_id: The document's id (a file path, ``FILE#ROW``, or the id column's value).
        source: The file the document came from.
        start: Character offset of the passage in the document.
        end: Character offset just past the passage.
        text: The passage text.
    """

    doc_id: str
    source: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Hit:
    """A retrieved passage with its retrieval score (BM25, or the fused RRF score)."""

    passage: Passage
    score: float


# --------------------------------------------------------------------------- splitting


def split_passages(text: str, max_words: int = 200, window_words: int = 170, overlap_words: int = 30) -> list[tuple[int, int]]:
    """Character spans of the passages of one document.

    Consecutive paragraphs (separated by blank lines) are joined while the passage stays within
    ``max_words``, so headings do not become passages of their own; a paragraph longer than that
    is cut into windows of ``window_words`` words overlapping by ``overlap_words`` (an answer
    near a cut is then whole in one of the windows).

    Args:
        text: The document.
        max_words: Most words in a passage made of whole paragraphs.
        window_words: Words per window of a long paragraph.
        overlap_words: Words shared by consecutive windows.

    Returns:
        ``(start, end)`` pairs with ``text[start:end]`` starting and ending on a word.
    """
    if not 0 <= overlap_words < window_words <= max_words:
        raise ConfigError(f"passage sizes must satisfy 0 <= overlap ({overlap_words}) < window ({window_words}) <= max ({max_words})")
    spans: list[tuple[int, int]] = []
    group: list[tuple[int, int]] = []  # word spans of the paragraphs being joined
    for words in _paragraph_words(text):
        if len(words) > max_words:
            _flush(group, spans)
            group = []
            spans.extend(_windows(words, window_words, overlap_words))
            continue
        if len(group) + len(words) > max_words:
            _flush(group, spans)
            group = []
        group.extend(words)
    _flush(group, spans)
    return spans


def _paragraph_words(text: str) -> Iterator[list[tuple[int, int]]]:
    """The word spans of each non-empty paragraph of ``text``."""
    start = 0
    for brk in [*_PARAGRAPH_BREAK.finditer(text), None]:
        end = brk.start() if brk else len(text)
        words = [(m.start() + start, m.end() + start) for m in _WORD.finditer(text[start:end])]
        if words:
            yield words
        if brk:
            start = brk.end()


def _flush(words: list[tuple[int, int]], spans: list[tuple[int, int]]) -> None:
    if words:
        spans.append((words[0][0], words[-1][1]))


def _windows(words: list[tuple[int, int]], size: int, overlap: int) -> Iterator[tuple[int, int]]:
    step = size - overlap
    for first in range(0, len(words), step):
        chunk = words[first : first + size]
        yield chunk[0][0], chunk[-1][1]
        if first + size >= len(words):
            break


# --------------------------------------------------------------------------- reading documents


@dataclass(frozen=True)
class Document:
    """One source document: ``doc_id`` names it in answers, ``source`` is the file it came from."""

    doc_id: str
    source: str
    text: str


def read_documents(paths: Sequence[str | Path], text_column: str = "text", id_column: str | None = None) -> list[Document]:
    """Every document in ``paths``, in order.

    Args:
        paths: Text/Markdown files, folders of them (searched recursively), JSONL/CSV/TSV/Parquet
            files with a text column, or SQuAD JSON files (each distinct context is a document).
        text_column: The column holding the document text in table files.
        id_column: A column holding document ids in table files (default: ``FILE#ROW``).

    Raises:
        DataError: a missing path, an empty folder, an unreadable or non-UTF-8 file, a missing column.
    """
    documents: list[Document] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES and not p.name.startswith("."))
            if not files:
                raise DataError(f"{path}: no {' or '.join(TEXT_SUFFIXES)} files in this folder")
            documents.extend(_text_document(p) for p in files)
        elif not path.exists():
            raise DataError(f"{path}: no such file or folder")
        elif path.suffix.lower() in TEXT_SUFFIXES:
            documents.append(_text_document(path))
        elif path.suffix.lower() in TABLE_SUFFIXES:
            documents.extend(_table_documents(path, text_column, id_column))
        elif path.suffix.lower() == ".json":
            documents.extend(_squad_documents(path))
        else:
            raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .txt, .md, a folder, .jsonl, .csv, .tsv, .parquet or SQuAD .json")
    return documents


def _text_document(path: Path) -> Document:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror or first_line(err)})") from None
    return Document(str(path), str(path), text)


def _table_records(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL, CSV/TSV or Parquet file as dicts."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            with open(path, encoding="utf-8") as handle:
                return [_json_line(line, path, n) for n, line in enumerate(handle, 1) if line.strip()]
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        import pandas as pd

        frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False, encoding="utf-8")
        return frame.to_dict("records")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror or first_line(err)})") from None
    except DataError:
        raise
    except Exception as err:  # pandas/pyarrow parse errors have many types
        raise DataError(f"{path}: cannot read the file ({first_line(err)})") from None


def _json_line(line: str, path: Path, number: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: line {number}: not valid JSON ({err.msg})") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: line {number}: expected a JSON object, got {type(record).__name__}")
    return record


def _table_documents(path: Path, text_column: str, id_column: str | None) -> Iterator[Document]:
    records = _table_records(path)
    columns = list(records[0]) if records else []
    for wanted, role in ((text_column, "--text-column"), (id_column, "--id-column")):
        if wanted is not None and records and wanted not in columns:
            raise DataError(f"{path}: no column {wanted!r} ({role}); columns are {', '.join(map(repr, columns))}")
    for row, record in enumerate(records, 1):
        text = record.get(text_column)
        if text is None:
            continue  # a null cell: nothing to index
        if not isinstance(text, str):
            raise DataError(f"{path}: row {row}: column {text_column!r} holds {type(text).__name__}, expected text")
        doc_id = str(record[id_column]) if id_column is not None else f"{path}#{row}"
        yield Document(doc_id, str(path), text)


def _squad_documents(path: Path) -> Iterator[Document]:
    from spanqa.stages.data import load_examples

    dataset = load_examples(path, require_answers=False)
    seen: set[str] = set()
    for example in dataset.examples:
        if example.context in seen:
            continue  # many questions share a paragraph; index it once
        seen.add(example.context)
        yield Document(f"{path}#{len(seen)}", str(path), example.context)


# --------------------------------------------------------------------------- the index


@dataclass
class Index:
    """Passages with a BM25 model and, optionally, their sentence embeddings.

    Attributes:
        folder: Where the index is stored.
        passages: All passages, in index order.
        manifest: The contents of ``index.json``.
    """

    folder: Path
    passages: list[Passage]
    manifest: dict[str, Any]
    _bm25: Any = field(default=None, repr=False)
    _embeddings: np.ndarray | None = field(default=None, repr=False)
    _encoder: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, folder: str | Path) -> Index:
        """Open an index folder written by :func:`build_index`.

        Args:
            folder: The index folder.

        Raises:
            DataError: the folder is missing, not an index, or of another format version.
        """
        import bm25s

        folder = Path(folder)
        if not (folder / MANIFEST).is_file():
            raise DataError(f"{folder}: not a spanqa index (no {MANIFEST}); build one with `spanqa index DOCS --out {folder}`")
        manifest = read_json(folder / MANIFEST)
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        if version != FORMAT_VERSION:
            raise DataError(f"{folder}: index format {version} is not {FORMAT_VERSION} (this spanqa's); rebuild the index")
        passages = _read_passages(folder / PASSAGES)
        if len(passages) != manifest.get("passages"):
            raise DataError(f"{folder}: {PASSAGES} holds {len(passages)} passages, {MANIFEST} says {manifest.get('passages')}; rebuild the index")
        try:
            bm25 = bm25s.BM25.load(str(folder / BM25_DIR), show_progress=False)
            embeddings = np.load(folder / EMBEDDINGS) if manifest.get("embedding_model") else None
        except (OSError, ValueError) as err:  # a missing or damaged file
            raise DataError(f"{folder}: cannot read the index ({first_line(err)}); rebuild it") from None
        if embeddings is not None and embeddings.shape[0] != len(passages):
            raise DataError(f"{folder}: {EMBEDDINGS} holds {embeddings.shape[0]} rows for {len(passages)} passages; rebuild the index")
        return cls(folder, passages, manifest, bm25, embeddings)

    @classmethod
    def open(cls, index: Index | str | os.PathLike[str]) -> Index:
        """``index`` itself when loaded already, else the index in that folder (see :meth:`load`).

        Args:
            index: A loaded index or its folder.
        """
        return index if isinstance(index, Index) else cls.load(Path(index))

    @property
    def methods(self) -> tuple[str, ...]:
        """The retrieval methods this index supports: ``bm25``, plus ``dense`` and ``fused`` with embeddings."""
        return ("bm25",) if self._embeddings is None else ("bm25", "dense", "fused")

    @property
    def default_method(self) -> str:
        """``fused`` when the index holds embeddings, else ``bm25``."""
        return self.methods[-1]

    def search(self, question: str, k: int = 10, method: str | None = None) -> list[Hit]:
        """The ``k`` passages that best match ``question``, best first.

        BM25 alone, or BM25 and embedding similarity fused by reciprocal rank fusion when the
        index holds embeddings (each passage scores ``sum 1 / (60 + rank)`` over the two rankings).

        Args:
            question: The question.
            k: How many passages to return.
            method: ``bm25``, ``dense`` or ``fused`` (default: ``fused`` when the index holds embeddings, else ``bm25``).
        """
        if k < 1:
            raise ConfigError(f"number of passages must be positive, got {k}")
        method = method or self.default_method
        if method not in ("bm25", "dense", "fused"):
            raise ConfigError(f"unknown retrieval method {method!r}; use bm25, dense or fused")
        if method != "bm25" and self._embeddings is None:
            raise ConfigError(f"{self.folder}: the index holds no embeddings; rebuild it with --embedding-model for {method} retrieval")
        if method == "dense":
            similarity = self._embeddings @ self._encode([question])[0]
            return [Hit(self.passages[i], float(similarity[i])) for i in _best_first(similarity)[:k]]
        scores = self._bm25_scores(question)
        lexical = _best_first(scores)
        if method == "bm25":
            return [Hit(self.passages[i], float(scores[i])) for i in lexical[:k]]
        dense = _best_first(self._embeddings @ self._encode([question])[0])
        fused = np.zeros(len(self.passages))
        for ranking in (lexical, dense):
            fused[ranking] += 1.0 / (RRF_K + 1 + np.arange(len(ranking)))
        return [Hit(self.passages[i], float(fused[i])) for i in _best_first(fused)[:k]]

    def _bm25_scores(self, question: str) -> np.ndarray:
        import bm25s

        tokens = bm25s.tokenize(question, stopwords="en", stemmer=_stemmer(), return_ids=False, show_progress=False)[0]
        if not tokens:  # bm25s fails on an empty query (a question of stopwords only)
            return np.zeros(len(self.passages))
        return np.asarray(self._bm25.get_scores(tokens))

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._encoder is None:
            self._encoder = _Encoder(self.manifest["embedding_model"])
        encoded = self._encoder(texts)
        assert self._embeddings is not None
        if encoded.shape[1] != self._embeddings.shape[1]:
            # The name now resolves to another model (a replaced folder, another hub revision).
            raise DataError(
                f"{self.folder}: the index was built with another embedding model: its passages have "
                f"{self._embeddings.shape[1]}-dimensional embeddings, {self.manifest['embedding_model']!r} now gives "
                f"{encoded.shape[1]}; rebuild the index (spanqa index DOCS --out NEW --embedding-model MODEL)"
            )
        return encoded


@functools.cache
def _stemmer() -> Any:
    """The English Snowball stemmer for BM25's words, passages and questions alike: "built" finds
    "build", "rivers" finds "river" (on XQuAD-en, recall@1 0.898 -> 0.928; bench/bm25_engines.py)."""
    import Stemmer

    return Stemmer.Stemmer("english")


def _best_first(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score; ties keep index order (stable), so results are reproducible."""
    return np.argsort(-scores, kind="stable")


def _read_passages(path: Path) -> list[Passage]:
    try:
        with open(path, encoding="utf-8") as handle:
            return [Passage(**json.loads(line)) for line in handle if line.strip()]
    except (OSError, ValueError, TypeError) as err:
        raise DataError(f"{path}: cannot read the index passages ({first_line(err)}); rebuild the index") from None


class _Encoder:
    """Normalised sentence embeddings by ``sentence-transformers`` (a plain Hugging Face encoder
    gets mean pooling, how all-MiniLM-L6-v2 was trained to be used)."""

    def __init__(self, model: str, batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        from spanqa.runtime.models import resolve_model

        self.model = SentenceTransformer(str(resolve_model(model)), device="cpu")
        self.batch_size = batch_size

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        encoded = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(encoded, dtype=np.float32)


def build_index(
    docs: Sequence[str | Path],
    out: str | Path,
    *,
    append: bool = False,
    text_column: str = "text",
    id_column: str | None = None,
    embedding_model: str | None = None,
    max_words: int = 200,
) -> Index:
    """Split documents into passages and write (or extend) an index folder.

    Args:
        docs: Files and folders (see :func:`read_documents`).
        out: The index folder.
        append: Add to an existing index: its passages are kept as they are (documents whose id is
            already indexed are skipped); the BM25 model is rebuilt over all passages.
        text_column: Text column of table files.
        id_column: Id column of table files.
        embedding_model: Also store sentence embeddings of this model (e.g. ``minilm``) for fused
            retrieval; with ``append``, None means the index's own model.
        max_words: Most words per passage.

    Raises:
        DataError: bad input (see :func:`read_documents`), or nothing to index.
        ConfigError: ``append`` to an index built with another embedding model, or no ``append`` onto an existing index.
    """
    out = Path(out)
    old: Index | None = None
    if append and (out / MANIFEST).exists():
        old = Index.load(out)
        built_with = old.manifest.get("embedding_model")
        if embedding_model is None:
            embedding_model = built_with
        elif embedding_model != built_with:
            raise ConfigError(f"{out}: index was built with embedding model {built_with!r}, not {embedding_model!r}; rebuild it or drop the option")
    elif not append and (out / MANIFEST).exists():
        raise ConfigError(f"{out}: an index is already there; pass --append to add documents or choose another folder")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        # The index replaces the whole folder; other files there would be lost.
        raise ConfigError(f"{out}: exists and is not an empty folder or a spanqa index; choose another --out")

    known = {p.doc_id for p in old.passages} if old else set()
    new_passages = list(_passages_of(read_documents(docs, text_column, id_column), known, max_words))
    if not new_passages and old is None:
        raise DataError(f"{', '.join(map(str, docs))}: no text to index (every document is empty)")
    passages = (old.passages if old else []) + new_passages
    embeddings = _embeddings(old, new_passages, embedding_model)
    sources = sorted({p.source for p in passages})
    manifest = {
        "format_version": FORMAT_VERSION,
        "passages": len(passages),
        "documents": len({p.doc_id for p in passages}),
        "sources": sources,
        "embedding_model": embedding_model,
        "max_words": max_words,
    }
    _write_index(out, passages, embeddings, manifest)
    logger.info("indexed %d new passages (%d in all) in %s", len(new_passages), len(passages), out)
    return Index.load(out)


def _passages_of(documents: Iterable[Document], known: set[str], max_words: int) -> Iterator[Passage]:
    for doc in documents:
        if doc.doc_id in known:
            logger.warning("%s: already indexed; skipped", doc.doc_id)
            continue
        known.add(doc.doc_id)
        for start, end in split_passages(doc.text, max_words=max_words, window_words=min(170, max_words), overlap_words=min(30, max_words // 4)):
            yield Passage(doc.doc_id, doc.source, start, end, doc.text[start:end])


def _embeddings(old: Index | None, new: list[Passage], model: str | None) -> np.ndarray | None:
    """All passages' embeddings: the old ones as stored, the new ones encoded now."""
    if model is None:
        return None
    encoded = _Encoder(model)([p.text for p in new]) if new else None
    parts = [a for a in (old._embeddings if old else None, encoded) if a is not None and a.size]
    return np.concatenate(parts).astype(np.float32)


def _write_index(out: Path, passages: list[Passage], embeddings: np.ndarray | None, manifest: dict[str, Any]) -> None:
    """Write the whole index into a staging folder and swap it in, so a killed or failed run
    (an append included) leaves the previous index as it was."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([p.text for p in passages], stopwords="en", stemmer=_stemmer(), show_progress=False), show_progress=False)
    with atomic_folder(out) as staging:
        with open(staging / PASSAGES, "w", encoding="utf-8") as handle:
            for passage in passages:
                handle.write(json.dumps(asdict(passage), ensure_ascii=False) + "\n")
        retriever.save(str(staging / BM25_DIR), show_progress=False)
        if embeddings is not None:
            np.save(staging / EMBEDDINGS, embeddings)
        write_json(staging / MANIFEST, manifest)
