"""An on-disk passage index for questions over a document collection.

``build_index`` splits documents (text, Markdown, PDF, HTML and DOCX files, a folder of them,
JSONL/CSV/Parquet rows with a text column, or a SQuAD file's contexts; read by
:mod:`spanqa.reading.documents`) into passages that remember their source document, character
offsets in it, PDF page and heading, and indexes them with BM25 (``bm25s`` over English-stemmed words: on
XQuAD-en the recall of tantivy's stemmed BM25, see ``bench/bm25_engines.py``); optionally it also stores normalised
sentence embeddings (``sentence-transformers``, the embedded MiniLM by default), fused with BM25
by reciprocal rank fusion.
:mod:`spanqa.reading.indexed` answers questions from the passages :meth:`Index.search` finds.

Index folder layout: ``passages.jsonl`` (one passage a line), ``bm25/`` (the bm25s model),
``embeddings.npy`` (when dense) and ``index.json`` (the manifest). Every build or append
writes a new folder and swaps it in whole, so readers never see a half-written index.
A build streams the passages (written, tokenized and embedded a chunk at a time), so its memory
grows with the token count: 100,000 passages of ~175 words build in ~20 s within ~0.5 GB and
answer a BM25 search in ~1 ms (``bench/index_scale.py``).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.core.errors import ConfigError, DataError, first_line
from spanqa.core.io import atomic_folder, read_json, recover_folder, write_json
from spanqa.reading.documents import Document, Skipped, read_documents, read_documents_with_skips
from spanqa.stages.lexical import BM25_STOPWORDS, bm25_words, stemmer

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
BM25_PARAMS = "params.index.json"  # in BM25_DIR: the settings bm25s passes to its constructor
EMBEDDINGS = "embeddings.npy"
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
        page: The (1-based) page of a PDF holding the passage (passages never span pages); None for other files.
        heading: The nearest heading at or before the passage (Markdown, HTML, DOCX); None when there is none.
    """

    doc_id: str
    source: str
    start: int
    end: int
    text: str
    page: int | None = None
    heading: str | None = None


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
            _recover(folder)  # a build killed mid-swap left the previous index aside
        if not (folder / MANIFEST).is_file():
            raise DataError(f"{folder}: not a spanqa index (no {MANIFEST}); build one with `spanqa index DOCS --out {folder}`")
        manifest = read_json(folder / MANIFEST)
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        if version != FORMAT_VERSION:
            raise DataError(f"{folder}: index format {version} is not {FORMAT_VERSION} (this spanqa's); rebuild the index")
        _check_manifest(folder / MANIFEST, manifest)
        passages = list(_read_passages(folder / PASSAGES))  # ~1 KB a passage: 100,000 load in about a second (bench/index_scale.py)
        if len(passages) != manifest.get("passages"):
            raise DataError(f"{folder}: {PASSAGES} holds {len(passages)} passages, {MANIFEST} says {manifest.get('passages')}; rebuild the index")
        _check_bm25_params(folder / BM25_DIR / BM25_PARAMS)
        try:
            bm25 = bm25s.BM25.load(str(folder / BM25_DIR), show_progress=False)
            embeddings = np.load(folder / EMBEDDINGS) if manifest.get("embedding_model") else None
        except (OSError, ValueError, TypeError, KeyError) as err:  # a missing or damaged file (bm25s checks little itself)
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
            return [Hit(self.passages[i], float(similarity[i])) for i in _top(similarity, k)]
        scores = self._bm25_scores(question)
        if method == "bm25":
            return [Hit(self.passages[i], float(scores[i])) for i in _top(scores, k)]
        fused = np.zeros(len(self.passages))
        for ranking in (_best_first(scores), _best_first(self._embeddings @ self._encode([question])[0])):
            fused[ranking] += 1.0 / (RRF_K + 1 + np.arange(len(ranking)))  # every rank counts: full sorts
        return [Hit(self.passages[i], float(fused[i])) for i in _top(fused, k)]

    def _bm25_scores(self, question: str) -> np.ndarray:
        tokens = bm25_words([question], return_ids=False)[0]
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


def _best_first(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score; ties keep index order (stable), so results are reproducible."""
    return np.argsort(-scores, kind="stable")


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """``_best_first(scores)[:k]`` without sorting every score: a stable sort of 100,000 scores takes
    a few ms a question, a partition well under one."""
    if k >= len(scores):
        return _best_first(scores)
    negated = -scores
    kth = np.partition(negated, k - 1)[k - 1]  # the k-th best score (NaN last, as in the sort)
    if np.isnan(kth):  # fewer than k real scores: leave NaN's order to the sort
        return _best_first(scores)[:k]
    better = np.flatnonzero(negated < kth)
    ties = np.flatnonzero(negated == kth)[: k - len(better)]  # the first by index, as the stable sort keeps them
    chosen = np.sort(np.concatenate([better, ties]))
    return chosen[_best_first(scores[chosen])]


def _read_passages(path: Path) -> Iterator[Passage]:
    """The passages of an index's passages.jsonl, one at a time (a build streams them; :meth:`Index.load` keeps them),
    each row's fields checked (:func:`_passage`)."""
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    yield _passage(json.loads(line), path, number)
    except (OSError, ValueError) as err:  # DataError is a ValueError: a bad row's own message stays
        raise (err if isinstance(err, DataError) else DataError(f"{path}: cannot read the index passages ({first_line(err)}); rebuild the index")) from None


_PASSAGE_FIELDS: dict[str, tuple[type, ...]] = {
    "doc_id": (str,), "source": (str,), "start": (int,), "end": (int,), "text": (str,), "page": (int, type(None)), "heading": (str, type(None)),
}
_REQUIRED_FIELDS = ("doc_id", "source", "start", "end", "text")


def _passage(row: Any, path: Path, number: int) -> Passage:
    """One row of passages.jsonl as a :class:`Passage`, every field checked: the offsets locate answers
    in their documents, so a damaged or crafted index must fail here, not answer from wrong places.

    Raises:
        DataError: naming the file, the line and the field.
    """
    # The rows a build writes, checked in one expression: it adds ~0.2 s to a load of 100,000 passages,
    # the field-by-field checks ~0.5 s; they run for any other row, to name what is wrong with it.
    if type(row) is dict and len(row) == len(_PASSAGE_FIELDS) and row.keys() == _PASSAGE_FIELDS.keys():
        start, end, text, page, heading = row["start"], row["end"], row["text"], row["page"], row["heading"]
        if (
            type(row["doc_id"]) is str and type(row["source"]) is str and type(text) is str and type(start) is int and type(end) is int
            and 0 <= start and end - start == len(text) and (page is None or (type(page) is int and page >= 0))
            and (heading is None or type(heading) is str)
        ):
            return Passage(**row)
    return _checked_passage(row, f"{path}: line {number}")


def _checked_passage(row: Any, where: str) -> Passage:
    """:func:`_passage`'s checks field by field, for a message naming the first bad one."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a passage (a JSON object), got {type(row).__name__}; rebuild the index")
    for name in row:
        if name not in _PASSAGE_FIELDS:
            raise DataError(f"{where}: unknown field {name!r} (a passage has {', '.join(_PASSAGE_FIELDS)}); rebuild the index")
    for name in _REQUIRED_FIELDS:
        if name not in row:
            raise DataError(f"{where}: field {name!r} is missing; rebuild the index")
    for name, types in _PASSAGE_FIELDS.items():
        value = row.get(name)
        if isinstance(value, bool) or not isinstance(value, types) or (isinstance(value, int) and value < 0):
            expected = " or ".join("null" if t is type(None) else {int: "a whole number >= 0", str: "text"}[t] for t in types)
            raise DataError(f"{where}: field {name!r} must be {expected}, got {json.dumps(value)[:40]}; rebuild the index")
    if row["end"] - row["start"] != len(row["text"]):
        raise DataError(f"{where}: field 'end' - 'start' ({row['end']} - {row['start']}) is not the length of 'text' ({len(row['text'])}); rebuild the index")
    return Passage(**row)


_MANIFEST_FIELDS: dict[str, tuple[type, ...]] = {
    "passages": (int,), "documents": (int,), "files": (int,), "max_words": (int,), "embedding_model": (str, type(None)), "sources": (list,), "skipped": (list,),
}


def _check_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Check the types of the manifest's fields that spanqa reads (``passages`` is required).

    Raises:
        DataError: naming the file and the field.
    """
    if "passages" not in manifest:
        raise DataError(f"{path}: field 'passages' is missing; rebuild the index")
    for key, types in _MANIFEST_FIELDS.items():
        value = manifest.get(key)
        if key in manifest and (isinstance(value, bool) or not isinstance(value, types) or (isinstance(value, int) and value < 0)):
            expected = " or ".join({int: "a whole number >= 0", str: "text", list: "a list", type(None): "null"}[t] for t in types)
            raise DataError(f"{path}: field {key!r} must be {expected}, got {json.dumps(value)[:40]}; rebuild the index")
    if not all(isinstance(source, str) for source in manifest.get("sources", [])):
        raise DataError(f"{path}: field 'sources' must be a list of file names; rebuild the index")


_NUMBER = (int, float)
_BM25_SETTINGS: dict[str, tuple[type, ...]] = {
    # What bm25s saves (its BM25's constructor arguments, plus its version and the passage count) and may read back.
    "k1": _NUMBER, "b": _NUMBER, "delta": _NUMBER, "method": (str,), "idf_method": (str, type(None)), "dtype": (str,),
    "int_dtype": (str,), "num_docs": (int,), "version": (str,), "backend": (str,), "csc_backend": (str,), "auto_compile": (bool,),
}


def _check_bm25_params(path: Path) -> None:
    """Check the BM25 settings file key by key before ``bm25s`` passes it to its constructor as keyword
    arguments (where an unknown key or a wrong type would fail with a TypeError).

    Raises:
        DataError: naming the file and the key.
    """
    if not path.is_file():
        return  # bm25s's own error names the missing file
    params = read_json(path)
    if not isinstance(params, dict):
        raise DataError(f"{path}: expected an object of BM25 settings, got {type(params).__name__}; rebuild the index")
    for key, value in params.items():
        types = _BM25_SETTINGS.get(key)
        if types is None:
            raise DataError(f"{path}: unknown BM25 setting {key!r} (expected {', '.join(_BM25_SETTINGS)}); rebuild the index")
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types) or (isinstance(value, float) and not math.isfinite(value)):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise DataError(f"{path}: BM25 setting {key!r} must be {expected}, got {json.dumps(value)[:40]}; rebuild the index")


def _recover(folder: Path) -> None:
    """Finish what a killed build or append left (:func:`~spanqa.core.io.recover_folder`); a reader
    that may not write there leaves it to the next build."""
    try:
        recover_folder(folder)
    except OSError:
        pass


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
    strict: bool = False,
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
        strict: Fail on a PDF, HTML or DOCX file that cannot be read instead of skipping it (with a
            warning; the manifest's ``skipped`` lists each such file and the reason).

    Raises:
        DataError: bad input (see :func:`read_documents`), a skipped file with ``strict``, or nothing to index.
        ConfigError: ``append`` to an index built with another embedding model, or no ``append`` onto an existing index.
    """
    out = Path(out)
    old: Index | None = None
    _recover(out)  # before deciding whether an index is there: a kill mid-swap leaves it aside
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
    documents, skipped = _read_new_documents(docs, text_column, id_column, strict)
    new_passages = _passages_of(_taken(documents), known, max_words)
    first = next(new_passages, None)
    if first is None and old is None:
        raise DataError(f"{', '.join(map(str, docs))}: no text to index (every document is empty)")
    previous, kept = (old.folder, len(old.passages)) if old else (None, 0)
    del old  # the build re-reads the old passages and embeddings from their files, a chunk at a time
    manifest: dict[str, Any] = {
        "embedding_model": embedding_model,
        "max_words": max_words,
        "skipped": [asdict(skip) for skip in skipped],  # files this build or append could not read
    }
    manifest = _write_index(out, previous, itertools.chain(() if first is None else (first,), new_passages), manifest)
    logger.info("indexed %d new passages (%d in all) in %s", manifest["passages"] - kept, manifest["passages"], out)
    return Index.load(out)


def _passages_of(documents: Iterable[Document], known: set[str], max_words: int) -> Iterator[Passage]:
    for doc in documents:
        if doc.doc_id in known:
            logger.warning("%s: already indexed; skipped", doc.doc_id)
            continue
        known.add(doc.doc_id)
        for first, last in doc.segments():  # each page of a PDF apart: no passage spans two pages
            spans = split_passages(doc.text[first:last], max_words=max_words, window_words=min(170, max_words), overlap_words=min(30, max_words // 4))
            for start, end in ((first + start, first + end) for start, end in spans):
                yield Passage(doc.doc_id, doc.source, start, end, doc.text[start:end], doc.page_at(start), doc.heading_at(start))


def _taken(documents: list[Document]) -> Iterator[Document]:
    """``documents`` in order, each dropped from the list as it is handed out: a build then holds
    the documents not yet split rather than all of them until its end (~200 MB at 100,000 passages)."""
    documents.reverse()
    while documents:
        yield documents.pop()


def _read_new_documents(docs: Sequence[str | Path], text_column: str, id_column: str | None, strict: bool) -> tuple[list[Document], list[Skipped]]:
    """The documents to index and the files skipped (each logged); with ``strict`` a skip is an error."""
    documents, skipped = read_documents_with_skips(docs, text_column, id_column)
    if skipped and strict:
        more = f"; {len(skipped) - 1} more files cannot be read either" if len(skipped) > 1 else ""
        raise DataError(f"{skipped[0].source}: {skipped[0].reason}{more}; drop --strict to skip such files")
    for skip in skipped:
        logger.warning("%s: skipped (%s)", skip.source, skip.reason)
    if skipped and not documents:
        reasons = "; ".join(f"{skip.source}: {skip.reason}" for skip in skipped)
        raise DataError(f"nothing to index: every file was skipped ({reasons})")
    return documents, skipped


_CHUNK = 4096  # passages tokenized or embedded at a time: bounds the Python objects alive at once


def _write_index(out: Path, previous: Path | None, passages: Iterable[Passage], manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the whole index into a staging folder and swap it in, so a killed or failed run
    (an append included) leaves the previous index as it was.

    Passages stream through: the old index's (re-read from ``previous``) and then the new ones
    are written to passages.jsonl and tokenized a chunk at a time into flat token-id arrays, so
    memory grows with the number of tokens (4 bytes each) rather than with Python objects per
    passage and word; embeddings are encoded a chunk at a time into a memory-mapped .npy.

    Returns:
        The manifest written: ``manifest`` with the format version and the passage, document and source counts.
    """
    import bm25s

    with atomic_folder(out) as staging:
        old = _read_passages(previous / PASSAGES) if previous else iter(())
        corpus, counts = _write_passages(staging / PASSAGES, itertools.chain(old, passages))
        # "auto": scipy's CSC build when installed (a dependency of sentence-transformers): same
        # matrix as the numpy one, ~200 MB less at 100,000 passages (no int64 argsort of every entry).
        retriever = bm25s.BM25(csc_backend="auto")
        retriever.index(corpus, show_progress=False)
        del corpus  # the token ids: the matrix holds what queries need
        retriever.save(str(staging / BM25_DIR), show_progress=False)
        del retriever
        if manifest.get("embedding_model"):
            _write_embeddings(staging, previous, manifest["embedding_model"], counts["passages"])
        manifest = {"format_version": FORMAT_VERSION, **counts, **manifest}
        write_json(staging / MANIFEST, manifest)
    return manifest


def _write_passages(path: Path, passages: Iterable[Passage]) -> tuple[Any, dict[str, Any]]:
    """Write ``passages`` to ``path`` (a JSON line each) and tokenize them for BM25, a chunk at a time.

    Returns:
        A ``bm25s`` corpus (the token ids and the vocabulary of stems) and the manifest's counts.
    """
    from bm25s.tokenization import Tokenized, Tokenizer

    # bm25s.tokenize's words, stopwords and stems (so the same scores), a passage at a time; with
    # allow_empty=False a passage of stopwords stays empty, as bm25s.tokenize leaves it.
    tokenizer = Tokenizer(stopwords=BM25_STOPWORDS, stemmer=stemmer())
    ids = _TokenIds()
    doc_ids: set[str] = set()
    sources: set[str] = set()
    with open(path, "w", encoding="utf-8") as handle:
        for chunk in _chunks(passages, _CHUNK):
            # vars(): the fields in order, as asdict() gives them, without its deep copy (~2 s of 100,000 passages)
            handle.writelines(json.dumps(vars(passage), ensure_ascii=False) + "\n" for passage in chunk)
            ids.extend(tokenizer.streaming_tokenize([passage.text for passage in chunk], update_vocab=True, allow_empty=False))
            doc_ids.update(passage.doc_id for passage in chunk)
            sources.update(passage.source for passage in chunk)
    counts = {"passages": len(ids), "documents": len(doc_ids), "sources": sorted(sources), "files": len(sources)}
    return Tokenized(ids=ids, vocab=tokenizer.get_vocab_dict()), counts


class _TokenIds:
    """Every passage's BM25 token ids in two flat arrays, 4 bytes a token (Python lists would take
    8-byte pointers and a list object per passage); ``bm25s`` reads it as a sequence of per-passage ids."""

    def __init__(self) -> None:
        self.ids = array("i")
        self.ends = array("q", [0])  # passage i's ids are ids[ends[i]:ends[i + 1]]

    def extend(self, passages: Iterable[list[int]]) -> None:
        for ids in passages:
            self.ids.extend(ids)
            self.ends.append(len(self.ids))

    def __len__(self) -> int:
        return len(self.ends) - 1

    def __iter__(self) -> Iterator[memoryview]:
        view = memoryview(self.ids)  # slices of a view copy nothing
        for start, end in zip(self.ends, self.ends[1:]):
            yield view[start:end]


def _chunks(passages: Iterable[Passage], size: int) -> Iterator[list[Passage]]:
    iterator = iter(passages)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _write_embeddings(staging: Path, previous: Path | None, model: str, count: int) -> None:
    """``embeddings.npy`` for the ``count`` passages in ``staging``: the previous index's rows as
    stored, then the new passages' (read back from passages.jsonl), encoded a chunk at a time
    straight into the memory-mapped file, never all in memory."""
    old = np.load(previous / EMBEDDINGS, mmap_mode="r") if previous else np.zeros((0, 0), dtype=np.float32)
    matrix = _embedding_file(staging / EMBEDDINGS, old, count, old.shape[1]) if count == len(old) else None
    encoder = _Encoder(model) if count > len(old) else None
    row = len(old)
    for chunk in _chunks(itertools.islice(_read_passages(staging / PASSAGES), len(old), None), _CHUNK):
        assert encoder is not None
        encoded = encoder([passage.text for passage in chunk])
        if matrix is None:  # the first chunk tells the width
            if len(old) and old.shape[1] != encoded.shape[1]:  # the name now resolves to another model
                raise DataError(
                    f"{previous}: the index holds {old.shape[1]}-dimensional embeddings, {model!r} now gives {encoded.shape[1]}; "
                    "rebuild the index (spanqa index DOCS --out NEW --embedding-model MODEL)"
                )
            matrix = _embedding_file(staging / EMBEDDINGS, old, count, encoded.shape[1])
        matrix[row : row + len(chunk)] = encoded
        row += len(chunk)
    assert matrix is not None
    matrix.flush()


def _embedding_file(path: Path, old: np.ndarray, count: int, width: int) -> np.memmap:
    """A new ``count`` x ``width`` float32 .npy, memory-mapped, with ``old``'s rows copied to its top."""
    matrix = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(count, width))
    for start in range(0, len(old), 16 * _CHUNK):
        end = min(start + 16 * _CHUNK, len(old))
        matrix[start:end] = old[start:end]
    return matrix
