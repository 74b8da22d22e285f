"""`spanqa index` and `spanqa ask --index`: passages keep their source offsets, BM25 finds them,
appending keeps what is there, bad input is one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from spanqa.core.errors import ConfigError, DataError
from spanqa.interfaces.cli import app
from spanqa.reading.index import Index, build_index, read_documents, split_passages
from spanqa.reading.indexed import answer_from_index
from spanqa.reading.reader import Reader

runner = CliRunner()

FILLER = " ".join(f"word{i}" for i in range(120))
FACTS = {
    "tower.txt": "The Eiffel Tower\n\nThe Eiffel Tower was completed in 1889 in Paris.\n\n" + FILLER,
    "rivers.md": "# Rivers\n\n" + FILLER + "\n\nThe Danube flows through Vienna and Budapest.\n",
    "notes/bread.txt": "Sourdough bread rises because of wild yeast.\n",
}


@pytest.fixture()
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    for name, text in FACTS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_split_passages_keeps_offsets_and_overlaps_long_paragraphs() -> None:
    long_paragraph = " ".join(f"w{i}" for i in range(500))
    text = "Heading\n\nshort one.\n\n  \n" + long_paragraph + "\n\nlast paragraph here"
    spans = split_passages(text, max_words=200, window_words=170, overlap_words=30)
    pieces = [text[s:e] for s, e in spans]
    assert pieces[0] == "Heading\n\nshort one."  # small paragraphs are joined
    assert pieces[-1] == "last paragraph here"
    windows = pieces[1:-1]
    assert all(len(w.split()) <= 170 for w in windows)
    assert windows[0].split()[-30:] == windows[1].split()[:30]  # consecutive windows overlap by 30 words
    assert " ".join(windows).split()[-1] == "w499"  # nothing lost at the end
    for start, end in spans:
        assert text[start:end] == text[start:end].strip()


def test_passages_point_into_their_source_documents(docs: Path, tmp_path: Path) -> None:
    index = build_index([docs], tmp_path / "ix", max_words=100)
    assert index.manifest["documents"] == 3 and index.manifest["passages"] > 3
    for passage in index.passages:
        source = Path(passage.source).read_text(encoding="utf-8")
        assert source[passage.start : passage.end] == passage.text
    assert index.manifest["format_version"] == 2 and index.manifest["embedding_model"] is None


def test_bm25_finds_the_right_passage(docs: Path, tmp_path: Path) -> None:
    build_index([docs], tmp_path / "ix", max_words=100)
    index = Index.load(tmp_path / "ix")
    hit = index.search("Which cities does the Danube flow through?", k=3)[0]
    assert "Danube" in hit.passage.text and hit.passage.doc_id.endswith("rivers.md")
    assert index.search("wild yeast sourdough", k=1)[0].passage.doc_id.endswith("bread.txt")
    assert len(index.search("the of and", k=50)) == index.manifest["passages"]  # stopwords only, k beyond the index: no failure


def test_append_keeps_existing_passages(docs: Path, tmp_path: Path) -> None:
    first = build_index([docs / "tower.txt"], tmp_path / "ix")
    extra = tmp_path / "more.jsonl"
    extra.write_text(json.dumps({"key": "k1", "body": "Mount Everest is the highest mountain."}) + "\n", encoding="utf-8")
    both = build_index([extra, docs / "tower.txt"], tmp_path / "ix", append=True, text_column="body", id_column="key")
    assert both.passages[: len(first.passages)] == first.passages  # the tower file is not indexed twice
    assert both.manifest["documents"] == 2
    assert both.search("highest mountain", 1)[0].passage.doc_id == "k1"
    with pytest.raises(ConfigError, match="--append"):
        build_index([docs], tmp_path / "ix")  # no silent overwrite


def test_tables_and_squad_contexts(tmp_path: Path) -> None:
    pd.DataFrame({"text": ["Alpha beta.", "Gamma delta."], "id": ["a", "b"]}).to_parquet(tmp_path / "t.parquet")
    pd.DataFrame({"text": ["Epsilon."]}).to_csv(tmp_path / "t.csv", index=False)
    squad = {"version": "v2.0", "data": [{"title": "T", "paragraphs": [{"context": "Zeta eta.", "qas": [
        {"id": "1", "question": "q1?", "answers": [{"text": "Zeta", "answer_start": 0}]},
        {"id": "2", "question": "q2?", "answers": [{"text": "eta", "answer_start": 5}]},
    ]}]}]}
    (tmp_path / "s.json").write_text(json.dumps(squad), encoding="utf-8")
    documents = read_documents([tmp_path / "t.parquet", tmp_path / "t.csv", tmp_path / "s.json"], id_column=None)
    assert [d.text for d in documents] == ["Alpha beta.", "Gamma delta.", "Epsilon.", "Zeta eta."]  # one document per distinct context
    assert [d.doc_id for d in read_documents([tmp_path / "t.parquet"], id_column="id")] == ["a", "b"]


def test_bad_inputs_are_one_clear_error(docs: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no .txt or .md files"):
        build_index([tmp_path / "empty"], tmp_path / "ix")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="latin1.txt: not UTF-8"):
        build_index([tmp_path / "latin1.txt"], tmp_path / "ix")
    (tmp_path / "rows.jsonl").write_text('{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="rows.jsonl: no column 'text' \\(--text-column\\); columns are 'body'"):
        build_index([tmp_path / "rows.jsonl"], tmp_path / "ix")
    with pytest.raises(DataError, match="no column 'key' \\(--id-column\\)"):
        build_index([tmp_path / "rows.jsonl"], tmp_path / "ix", text_column="body", id_column="key")
    with pytest.raises(DataError, match="nope.txt: no such file"):
        build_index([tmp_path / "nope.txt"], tmp_path / "ix")
    with pytest.raises(DataError, match="not a spanqa index"):
        Index.load(tmp_path)
    broken = tmp_path / "broken"
    build_index([docs / "tower.txt"], broken)
    (broken / "passages.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="passages.jsonl holds 0 passages"):
        Index.load(broken)

    build_index([docs / "tower.txt"], tmp_path / "ix")  # BM25 only
    before = sorted((p.name, p.read_bytes()) for p in (tmp_path / "ix").rglob("*") if p.is_file())
    with pytest.raises(ConfigError, match="built with embedding model None, not 'minilm'"):
        build_index([docs / "rivers.md"], tmp_path / "ix", append=True, embedding_model="minilm")
    with pytest.raises(DataError, match="latin1.txt"):
        build_index([docs / "rivers.md", tmp_path / "latin1.txt"], tmp_path / "ix", append=True)
    assert sorted((p.name, p.read_bytes()) for p in (tmp_path / "ix").rglob("*") if p.is_file()) == before  # failed appends change nothing
    with pytest.raises(ConfigError, match="not an empty folder or a spanqa index"):
        build_index([docs], docs / "notes")  # would replace the user's files

    result = runner.invoke(app, ["index", str(tmp_path / "rows.jsonl"), "--out", str(tmp_path / "ix2")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'rows.jsonl'}: no column 'text' (--text-column); columns are 'body'"]


@pytest.mark.integration
def test_dense_embeddings_are_fused_and_kept_on_append(docs: Path, tmp_path: Path) -> None:
    index = build_index([docs / "tower.txt", docs / "rivers.md"], tmp_path / "ix", embedding_model="minilm", max_words=100)
    count = len(index.passages)
    grown = build_index([docs / "notes"], tmp_path / "ix", append=True)  # the index's own model
    assert grown.manifest["embedding_model"] == "minilm"
    assert grown._embeddings is not None and grown._embeddings.shape[0] == len(grown.passages) > count
    assert grown.search("What makes sourdough bread rise?", 1)[0].passage.doc_id.endswith("bread.txt")


def test_ask_index_end_to_end(docs: Path, tmp_path: Path, tiny_bert_dir: Path) -> None:
    result = runner.invoke(app, ["index", str(docs), "--out", str(tmp_path / "ix")])
    assert result.exit_code == 0, result.output
    assert "indexed" in result.stdout

    args = ["ask", str(tiny_bert_dir), "Where does the Danube flow?", "--index", str(tmp_path / "ix"), "--passages", "2", "--top-k", "3"]
    result = runner.invoke(app, [*args, "--json", "--always-answer", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)["answers"]
    assert answers
    for answer in answers:  # start/end are in the passage read, document_start/end in the source file
        assert answer["passage"][answer["start"] : answer["end"]] == answer["text"]
        assert Path(answer["source"]).read_text(encoding="utf-8")[answer["document_start"] : answer["document_end"]] == answer["text"]

    result = runner.invoke(app, [*args, "--always-answer", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "rivers.md characters" in result.stdout or "tower.txt characters" in result.stdout

    result = runner.invoke(app, [*args, "--context", "some text"])
    assert result.exit_code == 1 and "drop --context" in result.stderr


def test_answer_from_index_api(docs: Path, tmp_path: Path, tiny_bert_dir: Path) -> None:
    index = build_index([docs], tmp_path / "ix", max_words=100)
    reader = Reader.from_pretrained(str(tiny_bert_dir), device="cpu")
    found = answer_from_index(reader, index, "When was the Eiffel Tower completed?", top_k=2, passages=3, handle_impossible=False)
    assert len(found.hits) == 3 and found.answer is not None
    for answer in found.answers:
        assert answer.passage.start <= answer.start < answer.end <= answer.passage.end
        assert Path(answer.source).read_text(encoding="utf-8")[answer.start : answer.end] == answer.text


def test_search_methods_and_retrieval_bench(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    contexts = ["The Danube flows through Vienna.", "Sourdough rises with wild yeast.", "Mount Everest is the highest mountain."]
    squad = {"version": "1.1", "data": [
        {"title": f"T{i}", "paragraphs": [{"context": c, "qas": [{"id": str(i), "question": q, "answers": [{"text": a, "answer_start": c.index(a)}]}]}]}
        for i, (c, q, a) in enumerate(zip(contexts, ["What flows through Vienna?", "What makes sourdough rise?", "Which is the highest mountain?"],
                                              ["Danube", "wild yeast", "Mount Everest"]))
    ]}
    data = tmp_path / "squad.json"
    data.write_text(json.dumps(squad), encoding="utf-8")
    index = build_index([data], tmp_path / "ix")
    assert index.search("highest mountain", 1, method="bm25")[0].passage.text == contexts[2]
    with pytest.raises(ConfigError, match="no embeddings"):
        index.search("highest mountain", 1, method="fused")

    spec = importlib.util.spec_from_file_location("retrieval_bench", Path(__file__).resolve().parents[1] / "bench" / "retrieval.py")
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--data", str(data), "--train-articles", "1", "--bm25-only"]) == 0
    assert "bm25    1.000  1.000  1.000" in capsys.readouterr().out  # 2 questions of articles 2-3, both found first


def test_reader_and_pipeline_answer_from_an_index(docs: Path, tmp_path: Path, tiny_bert_dir: Path) -> None:
    from spanqa import pipeline

    build_index([docs], tmp_path / "ix", max_words=100)
    reader = Reader.from_pretrained(str(tiny_bert_dir), device="cpu")
    found = reader.answer_from_index("Where does the Danube flow?", tmp_path / "ix", passages=2, top_k=2, handle_impossible=False)
    assert len(found.hits) == 2 and found.answers

    qa = pipeline("question-answering", model=reader, index=tmp_path / "ix", passages=2)
    one = qa(question="Where does the Danube flow?", handle_impossible_answer=False)
    assert isinstance(one, dict) and {"score", "start", "end", "answer", "source", "doc_id"} <= set(one)
    assert Path(one["source"]).read_text(encoding="utf-8")[one["start"] : one["end"]] == one["answer"]
    assert one["doc_id"] in {hit.passage.doc_id for hit in found.hits}  # the pipeline and the Reader read the same passages
    many = qa(question=["Where does the Danube flow?", "When was the tower completed?"], top_k=2)
    assert isinstance(many, list) and len(many) == 2 and all(isinstance(r, list) for r in many)
    with_context = qa(question="When was it completed?", context="It was completed in 1889.")
    assert isinstance(with_context, dict) and "source" not in with_context  # a context is read as given
    with pytest.raises(DataError, match="not a spanqa index"):
        pipeline("question-answering", model=reader, index=tmp_path)
    with pytest.raises(ConfigError, match="passages must be a positive integer"):
        pipeline("question-answering", model=reader, index=tmp_path / "ix", passages=0)


def test_an_index_built_with_another_embedding_model_is_one_clear_error(docs: Path, tmp_path: Path, tiny_bert_dir: Path) -> None:
    import numpy as np

    index = build_index([docs], tmp_path / "ix", embedding_model=str(tiny_bert_dir))  # any BERT encodes
    assert index.search("Where does the Danube flow?", 1)[0].passage.doc_id.endswith("rivers.md") or index.methods == ("bm25", "dense", "fused")
    np.save(tmp_path / "ix" / "embeddings.npy", np.zeros((len(index.passages), 7), dtype=np.float32))  # as if built by another model
    with pytest.raises(DataError, match="built with another embedding model: its passages have 7-dimensional embeddings"):
        Index.load(tmp_path / "ix").search("Where does the Danube flow?", 1)

    result = runner.invoke(app, ["index", str(docs / "tower.txt"), "--out", str(tmp_path / "ix"), "--append", "--embedding-model", "minilm"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'ix'}: index was built with embedding model {str(tiny_bert_dir)!r}, not 'minilm'; rebuild it or drop the option"
    ]


# --------------------------------------------------------------------------- the streamed build (bench/index_scale.py at scale)

SCALE_WORDS = ["river", "rivers", "flowing", "flows", "bridge", "bridges", "built", "building", "Vienna", "Danube", "yeast", "bread",
               "café", "naïve", "x", "42", "tower", "mountain", "highest", "completed"]
STOPWORDS = ["the", "of", "and", "is", "a", "to", "in"]


def _corpus_rows(count: int, seed: int) -> list[str]:
    """Deterministic small documents mixing stems, stopwords, case, numbers and accents; one of stopwords only."""
    import random

    rng = random.Random(seed)
    rows = [" ".join(rng.choice(SCALE_WORDS + STOPWORDS).capitalize() if rng.random() < 0.1 else rng.choice(SCALE_WORDS + STOPWORDS)
                     for _ in range(rng.randint(3, 40))) + "." for _ in range(count)]
    rows[count // 2] = "The of and, a to!"  # no BM25 word at all: an empty token list, as bm25s.tokenize leaves it
    return rows


def _write_rows(path: Path, rows: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": row}) + "\n" for row in rows), encoding="utf-8")
    return path


QUERIES = ["Which rivers flow through Vienna?", "bridges built", "yeast bread café", "the of and", "naïve 42", "zebra"]


def test_streamed_build_scores_as_bm25s_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bm25s
    import numpy as np

    from spanqa.reading import index as index_module
    from spanqa.stages import lexical

    monkeypatch.setattr(index_module, "_CHUNK", 7)  # many chunks, one cut mid-corpus
    rows = _corpus_rows(60, seed=3)
    index = build_index([_write_rows(tmp_path / "rows.jsonl", rows)], tmp_path / "ix")
    assert [p.text for p in index.passages] == rows and index.manifest["documents"] == 60 and index.manifest["passages"] == 60

    # Today's reference: every text tokenized at once, indexed by bm25s in memory.
    tokenized = bm25s.tokenize(rows, stopwords="en", stemmer=lexical.stemmer(), show_progress=False)
    reference = bm25s.BM25()
    reference.index(tokenized, show_progress=False)
    assert set(index._bm25.vocab_dict) == set(reference.vocab_dict)  # the same stems (ids may differ)
    for query in QUERIES:
        tokens = bm25s.tokenize(query, stopwords="en", stemmer=lexical.stemmer(), return_ids=False, show_progress=False)[0]
        expected = reference.get_scores(tokens) if tokens else np.zeros(len(rows))
        assert np.array_equal(index._bm25_scores(query), expected), query  # bit for bit
        hits = index.search(query, k=8, method="bm25")
        assert [rows.index(h.passage.text) for h in hits] == list(np.argsort(-expected, kind="stable")[:8])
        assert [h.score for h in hits] == [float(expected[rows.index(h.passage.text)]) for h in hits]


def test_streamed_append_equals_a_fresh_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from spanqa.reading import index as index_module

    monkeypatch.setattr(index_module, "_CHUNK", 4)
    first, second = _corpus_rows(30, seed=1), _corpus_rows(25, seed=2)
    built = build_index([_write_rows(tmp_path / "a.jsonl", first)], tmp_path / "ix")
    grown = build_index([_write_rows(tmp_path / "b.jsonl", second), tmp_path / "a.jsonl"], tmp_path / "ix", append=True)
    fresh = build_index([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], tmp_path / "fresh")
    assert grown.passages[: len(built.passages)] == built.passages  # kept as they were; a.jsonl not indexed twice
    assert grown.passages == fresh.passages
    assert {k: grown.manifest[k] for k in ("passages", "documents", "sources", "files")} == {
        "passages": 55, "documents": 55, "sources": sorted([str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]), "files": 2}
    for query in QUERIES:
        assert np.array_equal(grown._bm25_scores(query), fresh._bm25_scores(query)), query


def test_streamed_embeddings_keep_old_rows_on_append(tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from spanqa.reading import index as index_module

    monkeypatch.setattr(index_module, "_CHUNK", 3)
    rows = _corpus_rows(10, seed=4)
    built = build_index([_write_rows(tmp_path / "a.jsonl", rows)], tmp_path / "ix", embedding_model=str(tiny_bert_dir))
    assert built._embeddings is not None and built._embeddings.shape[0] == 10
    np.testing.assert_allclose(built._embeddings, index_module._Encoder(str(tiny_bert_dir))(rows), atol=1e-5)  # chunks encode as one call
    old = built._embeddings.copy()
    grown = build_index([_write_rows(tmp_path / "b.jsonl", _corpus_rows(5, seed=5))], tmp_path / "ix", append=True)
    assert grown._embeddings is not None and grown._embeddings.shape == (15, old.shape[1])
    assert np.array_equal(grown._embeddings[:10], old)  # copied as stored, not encoded again
    assert grown.search("rivers of Vienna", 3, method="fused")
    again = build_index([tmp_path / "a.jsonl"], tmp_path / "ix", append=True)  # nothing new: the old rows alone
    assert again._embeddings is not None and np.array_equal(again._embeddings, grown._embeddings)

    np.save(tmp_path / "ix" / "embeddings.npy", np.zeros((15, 7), dtype=np.float32))  # as if built by another model
    with pytest.raises(DataError, match="7-dimensional embeddings"):
        build_index([_write_rows(tmp_path / "c.jsonl", ["Bridges of Vienna."])], tmp_path / "ix", append=True)
    assert Index.load(tmp_path / "ix").manifest["passages"] == 15  # the failed append left the index as it was


def test_index_cli_embedding_model_none_is_bm25_only(tmp_path: Path) -> None:
    rows = _write_rows(tmp_path / "rows.jsonl", _corpus_rows(5, seed=6))
    result = runner.invoke(app, ["index", str(rows), "--out", str(tmp_path / "ix"), "--embedding-model", "None"])
    assert result.exit_code == 0, result.output
    index = Index.load(tmp_path / "ix")
    assert index.manifest["embedding_model"] is None and index.methods == ("bm25",) and not (tmp_path / "ix" / "embeddings.npy").exists()


def test_top_k_keeps_the_full_sorts_order_ties_included() -> None:
    import numpy as np

    from spanqa.reading.index import _best_first, _top

    rng = np.random.default_rng(0)
    for scores in (rng.integers(0, 4, 500).astype(np.float32), np.zeros(50), rng.random(300), np.array([1.0, np.nan, 3.0, np.nan, 3.0])):
        for k in (1, 2, 3, 5, 17, len(scores) - 1, len(scores), len(scores) + 5):
            assert list(_top(scores, k)) == list(_best_first(scores)[:k]), (scores[:10], k)


def test_index_scale_bench_runs_small(tmp_path: Path) -> None:
    import subprocess
    import sys

    bench = Path(__file__).resolve().parents[1] / "bench" / "index_scale.py"
    out = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, str(bench), "--passages", "300", "--queries", "20", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "CPU:" in proc.stdout and "bm25_p99_ms" in proc.stdout and "FAIL" not in proc.stdout
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["bm25"]["build"]["passages"] == 300 and all(figures["targets"].values())
