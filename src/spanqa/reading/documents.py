"""Reading the documents of a passage index: text and Markdown files, PDF, HTML and DOCX files,
table rows with a text column, and the contexts of SQuAD files.

Each :class:`Document` is one text with what a passage needs to say where it came from: the
offsets where a PDF's pages start (so a passage never spans two pages) and the headings of
Markdown, HTML and DOCX files. A PDF, HTML or DOCX file that cannot be read (encrypted, scanned,
damaged, no main text) is skipped with a reason (:class:`Skipped`) instead of failing the whole
collection; text and table files still fail with a :class:`~spanqa.core.errors.DataError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import zipfile
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spanqa.core.errors import DataError, first_line

__all__ = [
    "Document",
    "Skipped",
    "read_documents",
    "read_documents_with_skips",
    "TEXT_SUFFIXES",
    "TABLE_SUFFIXES",
    "RICH_SUFFIXES",
]

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md")
TABLE_SUFFIXES = (".jsonl", ".csv", ".tsv", ".parquet")
PDF_SUFFIXES = (".pdf",)
HTML_SUFFIXES = (".html", ".htm")
DOCX_SUFFIXES = (".docx",)
RICH_SUFFIXES = PDF_SUFFIXES + HTML_SUFFIXES + DOCX_SUFFIXES  # read with a library; unreadable ones are skipped
FOLDER_SUFFIXES = TEXT_SUFFIXES + RICH_SUFFIXES  # what a folder contributes
BLOCK_BREAK = "\n\n"  # between the pages of a PDF and the paragraphs of HTML and DOCX files
# Parts of a web page that are never its main text (trafilatura drops most boilerplate itself, but
# takes a page of links alone for text).
_HTML_BOILERPLATE = ["//nav", "//header", "//footer", "//aside"]
_MARKDOWN_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(.*?))?[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


@dataclass(frozen=True)
class Document:
    """One source document: ``doc_id`` names it in answers, ``source`` is the file it came from.

    Attributes:
        doc_id: The document's id (a file path, ``FILE#ROW``, or the id column's value).
        source: The file the document came from.
        text: The document text.
        pages: For a PDF, the offset in ``text`` where each page starts (pages 1..n); else empty.
        headings: ``(offset, heading)`` of each heading in ``text``, in order (Markdown, HTML, DOCX).
    """

    doc_id: str
    source: str
    text: str
    pages: tuple[int, ...] = ()
    headings: tuple[tuple[int, str], ...] = ()

    def page_at(self, offset: int) -> int | None:
        """The (1-based) page holding character ``offset``; None for a document without pages.

        Args:
            offset: A character offset in ``text``.
        """
        return max(1, bisect_right(self.pages, offset)) if self.pages else None

    def heading_at(self, offset: int) -> str | None:
        """The nearest heading at or before character ``offset``; None when there is none.

        Args:
            offset: A character offset in ``text``.
        """
        at = bisect_right(self.headings, offset, key=lambda heading: heading[0])
        return self.headings[at - 1][1] if at else None

    def segments(self) -> list[tuple[int, int]]:
        """``(start, end)`` spans that passages must not cross: each page of a PDF, else the whole text."""
        if not self.pages:
            return [(0, len(self.text))]
        return list(zip(self.pages, [*self.pages[1:], len(self.text)]))


@dataclass(frozen=True)
class Skipped:
    """A file left out of the documents, and why (``encrypted``, ``no text layer (scanned?)``, ...)."""

    source: str
    reason: str


class _Skip(Exception):
    """A file this reader cannot read, to be skipped with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_documents(paths: Sequence[str | Path], text_column: str = "text", id_column: str | None = None) -> list[Document]:
    """Every readable document in ``paths``, in order; PDF, HTML and DOCX files that cannot be read
    are skipped with a warning (see :func:`read_documents_with_skips` for the list of them).

    Args:
        paths: Text/Markdown, PDF, HTML or DOCX files, folders of them (searched recursively, hidden
            files left out), JSONL/CSV/TSV/Parquet files with a text column, or SQuAD JSON files
            (each distinct context is a document).
        text_column: The column holding the document text in table files.
        id_column: A column holding document ids in table files (default: ``FILE#ROW``).

    Raises:
        DataError: a missing path, a folder without documents, an unreadable or non-UTF-8 text or
            table file, a missing column.
    """
    documents, skipped = read_documents_with_skips(paths, text_column, id_column)
    for skip in skipped:
        logger.warning("%s: skipped (%s)", skip.source, skip.reason)
    return documents


def read_documents_with_skips(paths: Sequence[str | Path], text_column: str = "text", id_column: str | None = None) -> tuple[list[Document], list[Skipped]]:
    """Every readable document in ``paths``, in order, and the PDF, HTML and DOCX files skipped.

    Args:
        paths: Files and folders (see :func:`read_documents`).
        text_column: The column holding the document text in table files.
        id_column: A column holding document ids in table files (default: ``FILE#ROW``).

    Returns:
        The documents, and a :class:`Skipped` (file and reason) for each file that could not be read.

    Raises:
        DataError: as :func:`read_documents` (a skipped file is no error).
    """
    documents: list[Document] = []
    skipped: list[Skipped] = []
    for raw in paths:
        for path in _files(Path(raw)):
            try:
                documents.extend(_read_file(path, text_column, id_column))
            except _Skip as skip:
                skipped.append(Skipped(str(path), skip.reason))
    return documents, skipped


def _files(path: Path) -> list[Path]:
    """The files of one argument: itself, or a folder's documents (sorted, recursive, no hidden ones)."""
    if path.is_dir():
        found = (p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FOLDER_SUFFIXES)
        files = sorted(p for p in found if not any(part.startswith(".") for part in p.relative_to(path).parts))  # no hidden files or folders
        if not files:
            raise DataError(f"{path}: no .txt or .md files (nor {', '.join(RICH_SUFFIXES)}) in this folder")
        return files
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.suffix.lower() not in (*FOLDER_SUFFIXES, *TABLE_SUFFIXES, ".json"):
        raise DataError(
            f"{path}: unsupported file type {path.suffix!r}; use .txt, .md, .pdf, .html, .docx, a folder, .jsonl, .csv, .tsv, .parquet or SQuAD .json"
        )
    return [path]


def _read_file(path: Path, text_column: str, id_column: str | None) -> Iterable[Document]:
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return [_text_document(path)]
    if suffix in PDF_SUFFIXES:
        return [_pdf_document(path)]
    if suffix in HTML_SUFFIXES:
        return [_html_document(path)]
    if suffix in DOCX_SUFFIXES:
        return [_docx_document(path)]
    if suffix in TABLE_SUFFIXES:
        return _table_documents(path, text_column, id_column)
    return _squad_documents(path)


# --------------------------------------------------------------------------- text and Markdown


def _text_document(path: Path) -> Document:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err.strerror or first_line(err)})") from None
    headings = _markdown_headings(text) if path.suffix.lower() == ".md" else ()
    return Document(str(path), str(path), text, headings=headings)


def _markdown_headings(text: str) -> tuple[tuple[int, str], ...]:
    """``(offset, heading)`` of each ``#`` heading line of Markdown ``text`` (not in code blocks)."""
    headings = []
    offset, fenced = 0, False
    for line in text.splitlines(keepends=True):
        stripped = line.rstrip("\r\n")
        if _FENCE.match(stripped):
            fenced = not fenced
        elif not fenced and (match := _MARKDOWN_HEADING.match(stripped)) and match.group(1):
            headings.append((offset, match.group(1).strip()))
        offset += len(line)
    return tuple(headings)


def _assembled(path: Path, blocks: Sequence[tuple[str, bool]]) -> Document:
    """A document of paragraphs ``(text, is_heading)`` separated by blank lines, remembering its headings."""
    parts: list[str] = []
    headings: list[tuple[int, str]] = []
    offset = 0
    for text, is_heading in blocks:
        if is_heading:
            headings.append((offset, " ".join(text.split())))
        parts.append(text)
        offset += len(text) + len(BLOCK_BREAK)
    return Document(str(path), str(path), BLOCK_BREAK.join(parts), headings=tuple(headings))


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Silence these libraries' warnings (a damaged file's details): the file's skip reason says enough."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [each.level for each in loggers]
    for each in loggers:
        each.setLevel(logging.ERROR + 10)
    try:
        yield
    finally:
        for each, level in zip(loggers, levels):
            each.setLevel(level)


# --------------------------------------------------------------------------- PDF


def _pdf_document(path: Path) -> Document:
    """The text layer of a PDF, page by page, pages separated by a blank line."""
    from pypdf import PdfReader

    with _quiet("pypdf"):
        try:
            reader = PdfReader(path)
            if reader.is_encrypted and not _opens_without_password(reader):
                raise _Skip("encrypted")
            texts = [(page.extract_text() or "").strip() for page in reader.pages]
        except _Skip:
            raise
        except OSError as err:
            raise _Skip(f"cannot read the file ({err.strerror or first_line(err)})") from None
        except Exception as err:  # pypdf raises many kinds of errors on a damaged file
            raise _Skip(_pdf_error(path, err)) from None
    if not texts:
        raise _Skip("no pages")
    if not any(texts):
        raise _Skip("no text layer (scanned?)")
    starts, offset = [], 0
    for text in texts:
        starts.append(offset)
        offset += len(text) + len(BLOCK_BREAK)
    return Document(str(path), str(path), BLOCK_BREAK.join(texts), pages=tuple(starts))


def _opens_without_password(reader: Any) -> bool:
    """Whether an encrypted PDF opens with the empty user password (only editing is protected)."""
    try:
        return bool(reader.decrypt(""))
    except Exception:  # an unsupported encryption (or a missing crypto library)
        return False


def _pdf_error(path: Path, err: Exception) -> str:
    try:
        with open(path, "rb") as handle:
            head = handle.read(1024)
    except OSError:
        head = b"%PDF"
    if not head:
        return "empty file"
    if b"%PDF" not in head:
        return "not a PDF file: no %PDF header"
    return f"cannot read the PDF: {first_line(err)}"


# --------------------------------------------------------------------------- HTML


def _html_document(path: Path) -> Document:
    """The main text of a web page (trafilatura drops navigation, footers, ads), with its headings."""
    import trafilatura
    from lxml import etree

    try:
        data = path.read_bytes()  # bytes: the encoding is found from the page (meta charset, or guessed)
    except OSError as err:
        raise _Skip(f"cannot read the file ({err.strerror or first_line(err)})") from None
    with _quiet("trafilatura", "htmldate", "courlan"):
        try:
            extracted = trafilatura.extract(data, output_format="xml", include_comments=False, include_tables=True, prune_xpath=_HTML_BOILERPLATE)
            blocks = _html_blocks(etree.fromstring(extracted.encode("utf-8"))) if extracted else []
        except Exception as err:  # lxml/trafilatura errors on a damaged page
            raise _Skip(f"cannot read the HTML: {first_line(err)}") from None
    if not blocks:
        raise _Skip("no main text found")
    return _assembled(path, blocks)


def _html_blocks(root: Any) -> list[tuple[str, bool]]:
    """``(text, is_heading)`` of each block of trafilatura's XML: headings, paragraphs, lists, tables."""
    main = root.find("main")
    if main is None:
        return []
    blocks = [(_squash(main.text or ""), False)]  # text outside any block (a page without paragraphs)
    for child in main:
        if child.tag == "list":
            text = "\n".join(_squash(item.itertext()) for item in child.findall("item"))
        elif child.tag == "table":
            text = "\n".join(" | ".join(_squash(cell.itertext()) for cell in row.findall("cell")) for row in child.iter("row"))
        else:
            text = _squash(child.itertext())
        blocks += [(text.strip(), child.tag == "head"), (_squash(child.tail or ""), False)]
    return [(text, is_heading) for text, is_heading in blocks if text]


def _squash(pieces: Iterable[str]) -> str:
    """Text pieces joined, runs of whitespace made one space."""
    return " ".join("".join(pieces).split())


# --------------------------------------------------------------------------- DOCX


def _docx_document(path: Path) -> Document:
    """The paragraphs and table rows of a Word document in order; ``Heading``/``Title`` styles are headings."""
    import docx

    if not zipfile.is_zipfile(path):
        raise _Skip("not a DOCX file: not a zip archive" if path.stat().st_size else "empty file")
    try:
        blocks = list(_docx_blocks(docx.Document(str(path))))
    except OSError as err:
        raise _Skip(f"cannot read the file ({err.strerror or first_line(err)})") from None
    except KeyError as err:  # a zip archive without the parts of a Word document
        raise _Skip(f"not a DOCX file: {first_line(err).strip(chr(34) + chr(39))}") from None
    except Exception as err:  # python-docx/lxml errors on a damaged package
        raise _Skip(f"cannot read the DOCX: {first_line(err)}") from None
    if not blocks:
        raise _Skip("no text")
    return _assembled(path, blocks)


def _docx_blocks(document: Any) -> Iterator[tuple[str, bool]]:
    from docx.table import Table

    for item in document.iter_inner_content():
        if isinstance(item, Table):
            text = "\n".join(line for line in map(_docx_row, item.rows) if line)  # a table is one block, a row a line
            if text:
                yield text, False
            continue
        text = item.text.strip()
        if text:
            style = (item.style.name if item.style is not None else None) or ""
            yield text, style.startswith(("Heading", "Title"))


def _docx_row(row: Any) -> str:
    cells = dict.fromkeys(row.cells)  # a merged cell repeats in each column it spans
    return " | ".join(text for text in (" ".join(cell.text.split()) for cell in cells) if text)


# --------------------------------------------------------------------------- tables and SQuAD


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
