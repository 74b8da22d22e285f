"""Files that survive every kill (issue 26, part 6): staged swaps recover before anything decides,
resumes notice changed data or models, cleanup never touches a sibling's files, a report deletes
only its own figures, an export leaves no staging behind, damaged index files are one clear error,
and every rename is followed by a sync of its folder.

A kill is a real one where the on-disk state matters: a subprocess patched to ``os._exit`` at the
chosen moment (its pid is then dead, as after ``kill -9``)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spanqa.core.errors import ConfigError, DataError, ModelError, OutputError
from spanqa.core.io import atomic_folder, atomic_open, check_output_folder, write_json
from spanqa.interfaces.cli import app
from spanqa.jobs.predict import PredictRun, partial_paths, predict_file
from spanqa.reading.index import Index, build_index

runner = CliRunner()

DEAD_PID_NAME = "7000000"  # above Linux's largest pid (2**22): read as a pid, it is always a dead one

# Runs argv[2] (Python code) and dies, as kill -9 would, right after a rename moves argv[1] aside.
_KILL_AFTER_MOVING_ASIDE = """
import os, sys
from pathlib import Path

target = str(Path(sys.argv[1]).resolve())
real_replace = os.replace

def replace(src, dst, *args, **kwargs):
    real_replace(src, dst, *args, **kwargs)
    if os.path.abspath(os.fspath(src)) == target:
        os._exit(9)  # between moving the old folder aside and moving the new one in

os.replace = os.rename = replace
exec(sys.argv[2])
"""


def _killed(tmp_path: Path, target: Path, code: str, *args: str) -> None:
    """Run ``code`` in a subprocess killed right after it moves ``target`` aside."""
    script = tmp_path / "killed.py"
    script.write_text(_KILL_AFTER_MOVING_ASIDE)
    done = subprocess.run([sys.executable, str(script), str(target), code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr  # the kill point was reached
    assert not target.exists()  # the moment of the fault: the old folder aside, the new one not in place


def one_error(result) -> str:
    """The single `error:` line of a failed command (never a traceback)."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


# --------------------------------------------------------------------------- staged swaps and kills


def _docs(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"doc{i}.txt").write_text(f"Document {i} tells of river number {i} and its bridges.\n", encoding="utf-8")
    return folder


_APPEND = "from spanqa.reading.index import build_index; build_index([sys.argv[3]], sys.argv[1], append=True)"


def test_index_append_after_a_kill_between_the_renames_keeps_every_passage(tmp_path):
    index = tmp_path / "ix"
    build_index([_docs(tmp_path / "old", 6)], index)
    _killed(tmp_path, index, _APPEND, str(_docs(tmp_path / "new", 1)))
    more = tmp_path / "more.txt"
    more.write_text("A seventh document about the harbour.\n", encoding="utf-8")
    result = runner.invoke(app, ["index", str(more), "--out", str(index), "--append"])
    assert result.exit_code == 0, result.output
    passages = Index.load(index).passages
    assert len(passages) == 7, "the append started from the old index, not from nothing"
    assert str(more) in {p.source for p in passages}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ix")] == []  # the aside copy is gone


def test_opening_an_index_after_a_kill_between_the_renames_finds_it(tmp_path):
    index = tmp_path / "ix"
    build_index([_docs(tmp_path / "old", 3)], index)
    _killed(tmp_path, index, _APPEND, str(_docs(tmp_path / "new", 1)))
    assert len(Index.load(index).passages) == 3  # the old index comes back, whole


def test_a_swap_that_fails_between_the_renames_puts_the_old_folder_back(tmp_path, monkeypatch):
    folder = tmp_path / "set"
    with atomic_folder(folder) as staging:
        (staging / "a.txt").write_text("old")
    real_replace = os.replace

    def failing(src, dst):
        if Path(src).name.endswith(".staging") and Path(dst) == folder.resolve():
            raise OSError(28, "No space left on device")  # the second rename: the new folder into place
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OutputError):
        with atomic_folder(folder) as staging:
            (staging / "a.txt").write_text("new")
    monkeypatch.undo()
    assert (folder / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_an_output_folder_check_recovers_a_swap_killed_midway(tmp_path):
    """The check runs before any work: it must see the earlier output a kill left aside, not "nothing there"."""
    folder = tmp_path / "eval"
    with atomic_folder(folder) as staging:
        (staging / "metrics.json").write_text("{}")
    code = "from spanqa.core.io import atomic_folder\nwith atomic_folder(sys.argv[1]) as s: (s / 'metrics.json').write_text('[]')"
    _killed(tmp_path, folder, code)
    with pytest.raises(OutputError, match="--overwrite"):
        check_output_folder(folder)
    assert (folder / "metrics.json").read_text() == "{}"


_KILLED_EXPORT = """
import os, sys
import spanqa.jobs.export as export

def killed(model, tokenizer, work, **options):
    (work / "exported.onnx").write_bytes(b"x" * 100_000)  # a model-sized file, half written
    os._exit(9)

export._build_graph = killed
export.export_onnx(sys.argv[1], sys.argv[2], optimize=False)
"""


def test_export_after_a_kill_leaves_no_staging_folder(tiny_bert_dir, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import spanqa.jobs.export as export

    out = tmp_path / "exports" / "onnx"
    script = tmp_path / "killed_export.py"
    script.write_text(_KILLED_EXPORT)
    done = subprocess.run([sys.executable, str(script), str(tiny_bert_dir), str(out)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 9, done.stderr
    assert any((tmp_path / "exports").iterdir())  # the killed run's staging folder
    real_build = export._build_graph

    def failing(*args, **kwargs):
        raise ModelError("cannot export: simulated failure")

    monkeypatch.setattr(export, "_build_graph", failing)
    with pytest.raises(ModelError):
        export.export_onnx(tiny_bert_dir, out, optimize=False)
    assert list((tmp_path / "exports").iterdir()) == [], "the dead run's staging and the failed run's are removed"
    monkeypatch.setattr(export, "_build_graph", real_build)
    export.export_onnx(tiny_bert_dir, out, optimize=False)
    assert [p.name for p in (tmp_path / "exports").iterdir()] == ["onnx"]


# --------------------------------------------------------------------------- siblings


def test_cleanup_spares_a_siblings_live_staging_folder(tmp_path):
    sibling = tmp_path / f"report.{DEAD_PID_NAME}"
    with atomic_folder(sibling) as theirs:
        (theirs / "a.txt").write_text("theirs")
        with atomic_folder(tmp_path / "report") as mine:  # cleans up after dead runs of "report" only
            (mine / "a.txt").write_text("mine")
        assert (theirs / "a.txt").read_text() == "theirs"
    assert (sibling / "a.txt").read_text() == "theirs" and (tmp_path / "report" / "a.txt").read_text() == "mine"


def test_cleanup_spares_a_siblings_live_temporary_file(tmp_path):
    sibling = tmp_path / f"out.json.{DEAD_PID_NAME}"
    with atomic_open(sibling) as handle:
        handle.write("theirs")
        write_json(tmp_path / "out.json", {"mine": 1})  # cleans up after dead writers of out.json only
        handle.write(" too")
    assert sibling.read_text() == "theirs too" and json.loads((tmp_path / "out.json").read_text()) == {"mine": 1}


def test_cleanup_still_removes_its_own_dead_temporaries(tmp_path):
    """The other side of the sibling rule: a killed writer's temporary of the same file goes."""
    code = "from spanqa.core.io import atomic_open\nwith atomic_open(sys.argv[1]) as h:\n    h.write('half'); h.flush(); os._exit(9)"
    done = subprocess.run([sys.executable, "-c", "import os, sys\n" + code, str(tmp_path / "out.json")], capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    assert len(list(tmp_path.iterdir())) == 1  # the killed writer's temporary
    write_json(tmp_path / "out.json", {})
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


# --------------------------------------------------------------------------- report


@pytest.fixture(scope="module")
def evaluated_run(tiny_bert_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evaluated")
    context = "The bridge was built in 1897 by the river guild. It rains often there."
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
        {"id": f"q{i}", "question": f"When was bridge {i} built?", "answers": [{"text": "1897", "answer_start": context.index("1897")}]}
        for i in range(3)
    ]}]}]}
    (root / "d.json").write_text(json.dumps(data))
    res = runner.invoke(app, ["evaluate", "--model", str(tiny_bert_dir), "--data", str(root / "d.json"), "--output-dir", str(root / "e")])
    assert res.exit_code == 0, res.output
    return root / "e"


def test_report_deletes_only_the_figures_it_wrote(evaluated_run, tmp_path, monkeypatch):
    import spanqa.jobs.report as report

    out = tmp_path / "rep" / "slides.html"
    out.parent.mkdir()
    unrelated = {name: out.parent / f"slides-{name}.png" for name in ("training", "threshold")}  # figures this run has not
    for path in unrelated.values():
        path.write_bytes(b"my own slide")
    res = runner.invoke(app, ["report", str(evaluated_run), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert all(path.read_bytes() == b"my own slide" for path in unrelated.values())
    assert (out.parent / "slides-breakdown.png").is_file()

    draw = report.draw_figures
    monkeypatch.setattr(report, "draw_figures", lambda run: {k: v for k, v in draw(run).items() if k != "breakdown"})
    res = runner.invoke(app, ["report", str(evaluated_run), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert not (out.parent / "slides-breakdown.png").exists()  # its own earlier figure, no longer drawn
    assert all(path.read_bytes() == b"my own slide" for path in unrelated.values())


# --------------------------------------------------------------------------- resume fingerprints


def _data(path: Path, contexts: list[str]) -> Path:
    qas = [{"id": f"q{i}", "question": "Who built the bridge?", "answers": []} for i in range(len(contexts))]
    paragraphs = [{"context": context, "qas": [qa]} for context, qa in zip(contexts, qas)]
    path.write_text(json.dumps({"version": "2.0", "data": [{"title": "t", "paragraphs": paragraphs}]}), encoding="utf-8")
    return path


def _interrupted(reader, data: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A prediction run stopped after its first chunk of two questions (the rest never answered)."""
    import spanqa.jobs.predict as predict

    real, calls = predict.answer_lines, []

    def stopping(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(predict, "answer_lines", stopping)
    with pytest.raises(KeyboardInterrupt):
        predict_file(reader, data, out, run=PredictRun(chunk_size=2))
    monkeypatch.setattr(predict, "answer_lines", real)
    assert partial_paths(out)[0].read_text().count("\n") == 2


def test_resume_refuses_changed_data_with_the_same_ids(reader, tmp_path, monkeypatch):
    data, out = tmp_path / "d.json", tmp_path / "p.jsonl"
    _interrupted(reader, _data(data, [f"Ada built bridge {i}." for i in range(4)]), out, monkeypatch)
    _data(data, [f"Grace built tower {i}." for i in range(4)])  # the same ids, other texts
    with pytest.raises(ConfigError, match="data changed"):
        predict_file(reader, data, out, run=PredictRun(chunk_size=2, resume=True))
    assert not out.exists()


def test_resume_refuses_a_changed_model(tiny_bert_dir, tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForQuestionAnswering

    from spanqa import Reader

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model_dir)
    data, out = _data(tmp_path / "d.json", [f"Ada built bridge {i}." for i in range(4)]), tmp_path / "p.jsonl"
    _interrupted(Reader.from_pretrained(model_dir, device="cpu"), data, out, monkeypatch)
    retrained = AutoModelForQuestionAnswering.from_pretrained(model_dir)
    with torch.no_grad():
        retrained.qa_outputs.weight.mul_(-1.0)  # the same folder, the same configuration, other weights
    retrained.save_pretrained(model_dir)
    with pytest.raises(ConfigError, match="model changed"):
        predict_file(Reader.from_pretrained(model_dir, device="cpu"), data, out, run=PredictRun(chunk_size=2, resume=True))


def test_resume_with_the_same_data_and_model_still_finishes(reader, tmp_path, monkeypatch):
    data, out = _data(tmp_path / "d.json", [f"Ada built bridge {i}." for i in range(4)]), tmp_path / "p.jsonl"
    whole = tmp_path / "whole.jsonl"
    predict_file(reader, data, whole, run=PredictRun(chunk_size=2))
    _interrupted(reader, data, out, monkeypatch)
    assert predict_file(reader, data, out, run=PredictRun(chunk_size=2, resume=True)) == 4
    assert out.read_text() == whole.read_text()


# --------------------------------------------------------------------------- crafted index files


@pytest.fixture()
def small_index(tmp_path) -> Path:
    build_index([_docs(tmp_path / "docs", 2)], tmp_path / "ix")
    return tmp_path / "ix"


def test_a_crafted_bm25_params_file_is_one_error_line(small_index, tmp_path):
    params = small_index / "bm25" / "params.index.json"
    crafted = {**json.loads(params.read_text()), "evil": 1}
    params.write_text(json.dumps(crafted))
    (tmp_path / "new.txt").write_text("More text.\n")
    line = one_error(runner.invoke(app, ["index", str(tmp_path / "new.txt"), "--out", str(small_index), "--append"]))
    assert "params.index.json" in line and "evil" in line
    del crafted["evil"]
    params.write_text(json.dumps({**crafted, "k1": "1.5"}))  # a known key of the wrong type
    with pytest.raises(DataError, match=r"params\.index\.json.*k1"):
        Index.load(small_index)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"start": "0"}, "start"),
        ({"end": 1.5}, "end"),
        ({"text": 7}, "text"),
        ({"page": "one"}, "page"),
        ({"heading": ["h"]}, "heading"),
        ({"doc_id": None}, "doc_id"),
        ({"score": 1.0}, "score"),  # a field a passage does not have
        ({"text": None, "__drop__": "text"}, "text"),  # a missing field
    ],
)
def test_passage_fields_are_checked_one_by_one(small_index, change, field):
    path = small_index / "passages.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    drop = change.pop("__drop__", None)
    rows[1].update(change)
    if drop:
        del rows[1][drop]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    with pytest.raises(DataError, match=rf"passages\.jsonl: line 2: .*'{field}'"):
        Index.load(small_index)


def test_a_passage_row_that_is_not_an_object_is_one_error_line(small_index, tmp_path):
    path = small_index / "passages.jsonl"
    path.write_text(path.read_text(encoding="utf-8") + "[1, 2]\n", encoding="utf-8")
    (tmp_path / "new.txt").write_text("More text.\n")
    line = one_error(runner.invoke(app, ["index", str(tmp_path / "new.txt"), "--out", str(small_index), "--append"]))
    assert "passages.jsonl: line 3" in line


# --------------------------------------------------------------------------- folder syncs


def test_renames_are_followed_by_a_sync_of_their_folder(reader, tmp_path, monkeypatch):
    events: list[str] = []  # "rename" into tmp_path, "sync" of tmp_path, in order
    real_fsync, real_replace = os.fsync, os.replace
    folder = (tmp_path.stat().st_dev, tmp_path.stat().st_ino)

    def recording_fsync(fd: int) -> None:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode) and (info.st_dev, info.st_ino) == folder:
            events.append("sync")
        real_fsync(fd)

    def recording_replace(src, dst, *args, **kwargs) -> None:
        real_replace(src, dst, *args, **kwargs)
        if Path(dst).parent.resolve() == tmp_path.resolve():
            events.append("rename")

    def renamed_then_synced() -> bool:
        found = "rename" in events and events[-1] == "sync"  # nothing renamed after the last sync
        events.clear()
        return found

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    write_json(tmp_path / "a.json", {})
    assert renamed_then_synced(), "atomic_open"
    with atomic_folder(tmp_path / "set") as staging:
        (staging / "b.txt").write_text("b")
    assert renamed_then_synced(), "atomic_folder"
    data = _data(tmp_path / "d.json", ["Ada built it."])
    events.clear()
    predict_file(reader, data, tmp_path / "p.jsonl")
    assert renamed_then_synced(), "predict's final rename"
