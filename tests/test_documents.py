"""`spanqa index` over PDF, HTML and DOCX files: passages keep their PDF page and heading, never
span two pages, boilerplate is dropped, and files that cannot be read are skipped with a reason
(or fail the build with --strict) instead of failing the collection."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spanqa.core.errors import DataError
from spanqa.interfaces.cli import app
from spanqa.reading import documents as documents_module
from spanqa.reading.documents import Document, Skipped, read_documents, read_documents_with_skips
from spanqa.reading.index import Index, Passage, build_index

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("fresh_cli_logging")

PAGES = [
    "Apples grow in orchards near quiet villages. Farmers pick them each autumn.",
    "The lighthouse was built in 1874 by Robert Stevenson. Its lamp shone for a century.",
    "Fishing boats rest in the harbour at night. Gulls circle over the nets.",
]
ARTICLE = """<!doctype html><html><head><meta charset="utf-8"><title>Garden news</title></head><body>
<nav><a href="/">Home</a> | <a href="/about">About us</a> | <a href="/shop">Shop</a></nav>
<div class="ad">Buy cheap seeds now! Limited offer!</div>
<article>
<h1>Growing tomatoes</h1>
<p>Tomatoes need at least six hours of sun every day to ripen well. Plant them in spring after the last frost.</p>
<h2>Watering schedule</h2>
<p>Water the plants deeply twice a week so that the roots grow down into the soil. In hot weather water them every morning.</p>
<p>A layer of <b>straw mulch</b> keeps the soil moist and cool.</p>
</article>
<footer>Copyright 2024 Garden News. All rights reserved. Privacy policy.</footer>
</body></html>"""


def make_pdf(path: Path, pages: list[str]) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 10, text)
    pdf.output(str(path))
    return path


def make_encrypted_pdf(source: Path, path: Path, user_password: str) -> Path:
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=source)
    writer.encrypt(user_password=user_password, owner_password="owner-secret")
    writer.write(path)
    return path


def make_docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Company history", level=1)
    document.add_paragraph("The company was founded in 1952 in Leeds by two brothers.")
    document.add_heading("Products", level=2)
    document.add_paragraph("It makes bicycles and tandems.")
    table = document.add_table(rows=2, cols=2)
    for (row, column), text in {(0, 0): "Year", (0, 1): "Sales", (1, 0): "2020", (1, 1): "5000 bicycles"}.items():
        table.cell(row, column).text = text
    document.add_paragraph("Closing remarks after the table.", style="Normal")
    document.save(str(path))
    return path


@pytest.fixture()
def pdf(tmp_path: Path) -> Path:
    return make_pdf(tmp_path / "report.pdf", PAGES)


@pytest.fixture()
def bad_files(tmp_path: Path, pdf: Path) -> dict[str, Path]:
    """One file per way of being unreadable, with the reason it must be skipped for."""
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "random.pdf").write_bytes(os.urandom(2048).replace(b"%PDF", b"xxxx"))
    (folder / "text.pdf").write_text("just a text file with a .pdf name\n", encoding="utf-8")
    (folder / "empty.pdf").write_bytes(b"")
    (folder / "junk.docx").write_bytes(b"")
    with zipfile.ZipFile(folder / "junk.docx", "w") as archive:
        archive.writestr("junk.txt", "not a Word document")
    (folder / "text.docx").write_text("plain text, not a zip\n", encoding="utf-8")
    (folder / "empty.html").write_bytes(b"")
    (folder / "nav.html").write_text('<html><body><nav><a href="/">Home</a> <a href="/about">About</a></nav></body></html>', encoding="utf-8")
    make_encrypted_pdf(pdf, folder / "locked.pdf", "secret")
    make_pdf(folder / "scanned.pdf", [""])
    return {p.name: p for p in folder.iterdir()}


# --------------------------------------------------------------------------- PDF


def test_pdf_passages_keep_their_page_and_offsets(pdf: Path, tmp_path: Path) -> None:
    [document] = read_documents([pdf])
    assert len(document.pages) == 3 and document.pages[0] == 0
    for number, text in enumerate(PAGES, 1):
        at = document.text.index(text.split(".")[0])
        assert document.page_at(at) == number
    index = build_index([pdf], tmp_path / "ix")  # 200 words a passage: the three pages would fit in one
    assert [p.page for p in index.passages] == [1, 2, 3]  # but a passage never spans two pages
    for passage in index.passages:
        assert document.text[passage.start : passage.end] == passage.text
        assert passage.heading is None and passage.source == str(pdf)
    [on_page_2] = [p for p in index.passages if "Robert Stevenson" in p.text]
    assert on_page_2.page == 2 and "Apples" not in on_page_2.text and "harbour" not in on_page_2.text
    assert Index.load(tmp_path / "ix").passages == index.passages  # page and heading survive the round trip


def test_a_pdf_protected_only_against_editing_is_read(pdf: Path, tmp_path: Path) -> None:
    readable = make_encrypted_pdf(pdf, tmp_path / "owner-only.pdf", user_password="")
    [document] = read_documents([readable])
    assert "Robert Stevenson" in document.text and len(document.pages) == 3


def test_unreadable_files_are_skipped_with_reasons(bad_files: dict[str, Path], pdf: Path) -> None:
    found, skipped = read_documents_with_skips([pdf, *sorted(bad_files.values())])
    assert [d.source for d in found] == [str(pdf)]
    reasons = {Path(s.source).name: s.reason for s in skipped}
    assert reasons == {
        "locked.pdf": "encrypted",
        "scanned.pdf": "no text layer (scanned?)",
        "random.pdf": "not a PDF file: no %PDF header",
        "text.pdf": "not a PDF file: no %PDF header",
        "empty.pdf": "empty file",
        "junk.docx": "not a DOCX file: There is no item named '[Content_Types].xml' in the archive",
        "text.docx": "not a DOCX file: not a zip archive",
        "empty.html": "no main text found",
        "nav.html": "no main text found",
    }
    assert all(isinstance(s, Skipped) for s in skipped)


def test_a_damaged_pdf_is_skipped_with_the_readers_message(pdf: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.pdf"
    damaged.write_bytes(b"%PDF-1.4\n" + os.urandom(3000))
    _, skipped = read_documents_with_skips([damaged])
    assert len(skipped) == 1 and skipped[0].reason.startswith(("cannot read the PDF: ", "no pages", "no text layer"))


# --------------------------------------------------------------------------- HTML, DOCX, Markdown


def test_html_main_text_without_boilerplate_and_with_headings(tmp_path: Path) -> None:
    page = tmp_path / "garden.html"
    page.write_text(ARTICLE, encoding="utf-8")
    [document] = read_documents([page])
    assert "straw mulch keeps the soil moist" in document.text
    for boilerplate in ("Home", "About us", "Copyright", "Buy cheap seeds"):
        assert boilerplate not in document.text
    assert [h for _, h in document.headings] == ["Growing tomatoes", "Watering schedule"]
    index = build_index([page], tmp_path / "ix", max_words=25)
    by_text = {p.text.split()[0]: p for p in index.passages}
    assert by_text["Growing"].heading == "Growing tomatoes"
    watering = next(p for p in index.passages if "twice a week" in p.text)
    assert watering.heading == "Watering schedule" and watering.page is None
    assert all(document.text[p.start : p.end] == p.text for p in index.passages)


def test_html_encoding_is_found_from_the_page(tmp_path: Path) -> None:
    page = tmp_path / "cafe.htm"
    html = (
        '<html><head><meta charset="iso-8859-1"></head><body><article>'
        "<p>Le café au lait est très bon, vraiment très bon. Nous le buvons chaque matin.</p></article></body></html>"
    )
    page.write_bytes(html.encode("latin-1"))
    [document] = read_documents([page])
    assert "café au lait est très bon" in document.text


def test_docx_paragraphs_headings_and_tables(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "history.docx")
    [document] = read_documents([path])
    blocks = document.text.split("\n\n")
    assert blocks[:4] == ["Company history", "The company was founded in 1952 in Leeds by two brothers.", "Products", "It makes bicycles and tandems."]
    assert blocks[4] == "Year | Sales\n2020 | 5000 bicycles" and blocks[5] == "Closing remarks after the table."
    assert document.headings == ((0, "Company history"), (document.text.index("Products"), "Products"))
    assert document.heading_at(document.text.index("bicycles")) == "Products"
    assert document.heading_at(document.text.index("Leeds")) == "Company history"


def test_markdown_headings_and_plain_text(tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("Intro line.\n\n# Rivers\n\nThe Danube.\n\n```\n# not a heading\n```\n\n## Lakes ##\n\nLake Geneva.\n", encoding="utf-8")
    (tmp_path / "plain.txt").write_text("# not a heading in a .txt\n\nText.\n", encoding="utf-8")
    [md] = read_documents([notes])
    assert [h for _, h in md.headings] == ["Rivers", "Lakes"]
    assert md.heading_at(0) is None and md.heading_at(md.text.index("Danube")) == "Rivers" and md.heading_at(md.text.index("Geneva")) == "Lakes"
    [txt] = read_documents([tmp_path / "plain.txt"])
    assert txt.headings == () and txt.page_at(0) is None
    index = build_index([notes], tmp_path / "ix", max_words=3)
    assert {p.text: p.heading for p in index.passages}["Lake Geneva."] == "Lakes"


def test_folders_collect_every_kind_and_old_names_still_work(tmp_path: Path, pdf: Path) -> None:
    import spanqa.reading.index as index_module

    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    make_pdf(folder / "a.pdf", PAGES[:1])
    (folder / "sub" / "b.html").write_text(ARTICLE, encoding="utf-8")
    make_docx(folder / "c.docx")
    (folder / "d.txt").write_text("Plain text.", encoding="utf-8")
    (folder / ".hidden.pdf").write_bytes(b"junk")
    (folder / "e.xyz").write_text("ignored", encoding="utf-8")
    found, skipped = read_documents_with_skips([folder])
    assert [Path(d.source).relative_to(folder).as_posix() for d in found] == ["a.pdf", "c.docx", "d.txt", "sub/b.html"] and skipped == []
    assert index_module.read_documents is read_documents and index_module.Document is Document is documents_module.Document
    assert {"read_documents", "Document"} <= set(index_module.__all__)
    old = {"doc_id": "a", "source": "a.txt", "start": 0, "end": 1, "text": "x"}  # a passages.jsonl line of an older index
    assert Passage(**old).page is None and Passage(**old).heading is None


def test_text_files_still_fail_as_before(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="latin1.txt: not UTF-8"):
        read_documents_with_skips([tmp_path / "latin1.txt"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no \.txt or \.md files \(nor \.pdf, \.html, \.htm, \.docx\)"):
        read_documents([tmp_path / "empty"])


# --------------------------------------------------------------------------- build_index and the CLI


def test_build_index_records_skips_and_strict_fails_before_writing(bad_files: dict[str, Path], pdf: Path, tmp_path: Path) -> None:
    docs = [pdf, bad_files["locked.pdf"], bad_files["nav.html"]]
    index = build_index(docs, tmp_path / "ix")
    assert index.manifest["files"] == 1
    assert index.manifest["skipped"] == [
        {"source": str(bad_files["locked.pdf"]), "reason": "encrypted"},
        {"source": str(bad_files["nav.html"]), "reason": "no main text found"},
    ]
    assert json.loads((tmp_path / "ix" / "index.json").read_text(encoding="utf-8"))["skipped"] == index.manifest["skipped"]
    with pytest.raises(DataError, match=r"locked\.pdf: encrypted; 1 more files cannot be read either; drop --strict"):
        build_index(docs, tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict").exists()
    with pytest.raises(DataError, match="nothing to index: every file was skipped"):
        build_index([bad_files["scanned.pdf"]], tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_cli_index_prints_skips_and_a_summary(bad_files: dict[str, Path], pdf: Path, tmp_path: Path) -> None:
    page = tmp_path / "garden.html"
    page.write_text(ARTICLE, encoding="utf-8")
    docx_path = make_docx(tmp_path / "history.docx")
    args = ["index", str(pdf), str(page), str(docx_path), str(bad_files["locked.pdf"]), str(bad_files["junk.docx"]), "--out", str(tmp_path / "ix")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    passages = Index.load(tmp_path / "ix").manifest["passages"]
    assert result.stdout.strip().splitlines() == [f"indexed 3 files ({passages} passages) in {tmp_path / 'ix'}; skipped 2 files"]
    assert f"WARNING: {bad_files['locked.pdf']}: skipped (encrypted)" in result.stderr.splitlines()
    junk = f"WARNING: {bad_files['junk.docx']}: skipped (not a DOCX file: There is no item named '[Content_Types].xml' in the archive)"
    assert junk in result.stderr.splitlines()
    assert sum("locked.pdf" in line for line in result.stderr.splitlines()) == 1  # named once
    assert "Traceback" not in result.output

    strict = runner.invoke(app, [*args[:-1], str(tmp_path / "strict"), "--strict"])
    assert strict.exit_code == 1
    assert strict.stderr.strip().splitlines() == [
        f"error: {bad_files['locked.pdf']}: encrypted; 1 more files cannot be read either; drop --strict to skip such files"
    ]
    assert not (tmp_path / "strict").exists()


@pytest.mark.parametrize("name", ["random.pdf", "text.pdf", "empty.pdf", "junk.docx", "text.docx", "empty.html", "nav.html", "scanned.pdf"])
def test_cli_one_bad_file_is_one_error_line(bad_files: dict[str, Path], tmp_path: Path, name: str) -> None:
    result = runner.invoke(app, ["index", str(bad_files[name]), "--out", str(tmp_path / "ix")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: nothing to index: every file was skipped ({bad_files[name]}: ")
    assert not (tmp_path / "ix").exists()


def test_ask_index_names_the_pdf_and_its_page(tmp_path: Path, tiny_bert_dir: Path, bad_files: dict[str, Path]) -> None:
    pdf = make_pdf(tmp_path / "coast.pdf", PAGES)
    page = tmp_path / "garden.html"
    page.write_text(ARTICLE, encoding="utf-8")
    notes = tmp_path / "notes.txt"
    notes.write_text("Tomatoes want sun and water every morning.\n\nBasil grows beside them.", encoding="utf-8")
    files = [pdf, page, make_docx(tmp_path / "history.docx"), notes, bad_files["locked.pdf"], bad_files["random.pdf"]]
    built = runner.invoke(app, ["index", *map(str, files), "--out", str(tmp_path / "ix")])
    assert built.exit_code == 0, built.output
    assert "indexed 4 files" in built.stdout and "skipped 2 files" in built.stdout
    assert f"{bad_files['locked.pdf']}: skipped (encrypted)" in built.stderr and f"{bad_files['random.pdf']}: skipped (not a PDF file" in built.stderr
    # Only page 2 shares words with the question, so the one passage read (and any answer) is on page 2.
    args = ["ask", str(tiny_bert_dir), "Who built the lighthouse in 1874?", "--index", str(tmp_path / "ix"), "--passages", "1", "--top-k", "2"]
    result = runner.invoke(app, [*args, "--json", "--always-answer", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["source"] == str(pdf) and record["page"] == 2 and record["heading"] is None
    for answer in record["answers"]:
        assert answer["page"] == 2 and answer["source"] == str(pdf) and "Robert Stevenson" in answer["passage"]
        assert answer["passage"][answer["start"] : answer["end"]] == answer["text"]
    text = read_documents([pdf])[0].text
    assert text[record["document_start"] : record["document_end"]] == record["answer"]

    human = runner.invoke(app, [*args, "--always-answer", "--device", "cpu"])
    assert human.exit_code == 0, human.output
    assert "coast.pdf p. 2, characters" in human.stdout


def test_web_page_shows_the_pdf_page_and_the_passage_safely(tmp_path: Path, reader, clean_serve_environment) -> None:
    pytest.importorskip("fastapi", reason="serving needs the 'serve' extra (fastapi, uvicorn)")
    from live import chromium, serving

    from spanqa.interfaces.serve import ServeSettings, create_app

    pages = [PAGES[0], "The lighthouse <img src=x onerror=alert(1)> was built in 1874 by Robert Stevenson.", PAGES[2]]
    index = build_index([make_pdf(tmp_path / "coast.pdf", pages)], tmp_path / "ix")
    with chromium() as browser, serving(create_app(reader, ServeSettings(threads=1, passages=1), index=index)) as url:
        page = browser.new_page()
        page.set_default_timeout(15_000)
        page.goto(url + "/")
        page.wait_for_selector("#index-hint:not([hidden])")
        page.fill("#question", "Who built the lighthouse in 1874?")
        page.click("#ask")
        page.wait_for_selector("#source-name")
        assert page.text_content("#source-page") == "p. 2"
        passage = page.text_content("#passage")
        assert passage == index.passages[1].text and "<img src=x" in passage  # the passage as text, never as markup
        assert page.query_selector("#passage img") is None
        if page.query_selector("#passage mark"):  # a random model may decide "no answer"
            assert page.text_content("#passage mark") == page.text_content("#answer-text")
