"""Mistakes end in one clear line, finished work is never replaced without --overwrite, outputs survive kills."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spanqa.core.config import SpanQAConfig
from spanqa.core.errors import ConfigError, ModelError, OutputError
from spanqa.core.io import _recover_folder, atomic_folder, atomic_open, check_new_file, write_json
from spanqa.interfaces.cli import app
from spanqa.jobs.evaluation_files import check_evaluation_folder
from spanqa.jobs.predict import partial_paths

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def run(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def one_error(result) -> str:
    """The single `error:` line of a failed command."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("device, expected", [("gpu9", "unknown device 'gpu9'"), ("cuda", "device 'cuda'")])
def test_unusable_devices_are_refused_before_loading(tiny_bert_dir, device, expected):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = one_error(run("ask", tiny_bert_dir, "Who?", "--context", "Bob is here.", "--device", device))
    assert expected in line


@pytest.mark.parametrize("size", ["0", "-1"])
def test_batch_size_must_be_positive(tiny_bert_dir, sample_dev, tmp_path, size):
    assert "batch size" in one_error(run("evaluate", "-m", tiny_bert_dir, "-d", sample_dev, "-o", tmp_path / "e", "--batch-size", size))
    assert "batch size" in one_error(run("predict", tiny_bert_dir, sample_dev, "-o", tmp_path / "p.jsonl", "--batch-size", size))


@pytest.mark.parametrize(
    "option, expected",
    [
        (["--per_device_train_batch_size", "0"], "per_device_train_batch_size must be a positive integer"),
        (["--num_train_epochs", "-1"], "num_train_epochs must be a positive number"),
        (["--learning_rate", "abc"], "invalid float value: 'abc'"),
        (["--learning_rate", "nan"], "learning_rate must be a positive number"),
    ],
)
def test_bad_training_numbers_are_refused(tmp_path, option, expected):
    assert expected in one_error(run("train", "-o", tmp_path / "m", *option))


def test_nan_null_threshold_is_refused(tiny_bert_dir, sample_dev, tmp_path):
    line = one_error(run("evaluate", "-m", tiny_bert_dir, "-d", sample_dev, "-o", tmp_path / "e", "--null-threshold", "nan"))
    assert "null_threshold must be a number" in line


# --------------------------------------------------------------------------- model folders


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    "content, expected",
    [
        ([1, 2], "expected a JSON object of settings, got a JSON list"),
        ({"max_length": "384"}, "'max_length' must be an integer, got '384'"),
        ({"handle_impossible": "no"}, "'handle_impossible' must be true or false"),
        ({"n_best": 0}, "n_best must be >= 1"),
    ],
)
def test_spanqa_json_with_wrong_types_is_refused(tiny_bert_dir, tmp_path, content, expected):
    model = _copy_model(tiny_bert_dir, tmp_path / "m")
    (model / "spanqa.json").write_text(json.dumps(content))
    with pytest.raises(ConfigError, match="spanqa.json"):
        SpanQAConfig.load(model)
    assert expected in one_error(run("ask", model, "Who?", "--context", "Bob is here."))


def test_truncated_weights_are_named(tiny_bert_dir, tmp_path):
    model = _copy_model(tiny_bert_dir, tmp_path / "m")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    line = one_error(run("ask", model, "Who?", "--context", "Bob is here."))
    assert "model.safetensors cannot be read" in line and "truncated or corrupt" in line


def test_a_folder_without_tokenizer_is_refused(tiny_bert_dir, tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_bert_dir / name, model / name)
    assert "no tokenizer files in this folder" in one_error(run("ask", model, "Who?", "--context", "Bob is here."))


def test_a_mistyped_local_model_name_fails_at_once(tiny_bert_dir, tmp_path, monkeypatch):
    _copy_model(tiny_bert_dir, tmp_path / "my-model")
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    line = one_error(run("ask", "my-modle", "Who?", "--context", "Bob is here."))
    assert "did you mean my-model?" in line and time.monotonic() - started < 10  # the hub was not asked
    assert "model folder not found" in one_error(run("ask", "no such/model here", "Who?", "--context", "x"))


# --------------------------------------------------------------------------- training runs


def test_poisoned_checkpoint_is_refused_by_file(tmp_path):
    from spanqa.jobs.training import _prepare_output_dir

    checkpoint = tmp_path / "run" / "checkpoint-10"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 10}))
    (checkpoint / "optimizer.pt").write_bytes(b"\x80\x04cos\nsystem\n(S'echo pwned'\ntR.")  # a pickle that runs a command
    with pytest.raises(ModelError, match=r"refused to resume from .*checkpoint-10: optimizer.pt cannot be read safely"):
        _prepare_output_dir(tmp_path / "run", resume=True, overwrite=False, is_main=True)


def test_resume_on_a_finished_run_without_checkpoints_keeps_the_model(tmp_path):
    from spanqa.jobs.training import _prepare_output_dir

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    (run_dir / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(ConfigError, match="no checkpoint to continue from"):
        _prepare_output_dir(run_dir, resume=True, overwrite=False, is_main=True)
    assert (run_dir / "model.safetensors").read_bytes() == b"weights"
    assert _prepare_output_dir(tmp_path / "new", resume=True, overwrite=False, is_main=True) is None  # nothing there: a fresh start


# --------------------------------------------------------------------------- outputs


def test_outputs_get_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_folder(tmp_path / "set") as staging:
            write_json(staging / "b.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "set").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "set" / "b.json").stat().st_mode & 0o777 == 0o644


def test_write_json_never_writes_nan(tmp_path):
    write_json(tmp_path / "m.json", {"f1": float("nan"), "odds": [float("inf"), 1.5]})
    assert json.loads((tmp_path / "m.json").read_text(), parse_constant=lambda c: pytest.fail(c)) == {"f1": None, "odds": [None, 1.5]}


def test_full_disk_names_the_path(tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    with pytest.raises(OutputError, match="no space left on the device"):
        with atomic_open(tmp_path / "out.json"):
            raise OSError(28, "No space left on device")  # what a write to a full disk raises
    predictions = tmp_path / "p.json"
    predictions.write_text("{}")
    line = one_error(run("score", "-d", ROOT / "src/spanqa/sample_data/dev.json", "-p", predictions, "-o", "/dev/full"))
    assert "/dev/full: no space left on the device" in line
    assert Path("/dev/full").is_char_device()  # written in place, never renamed over


def test_devices_are_written_in_place(sample_dev, tmp_path):
    predictions = tmp_path / "p.json"
    predictions.write_text("{}")
    assert run("score", "-d", sample_dev, "-p", predictions, "-o", "/dev/null").exit_code == 0  # no --overwrite: no work to lose
    assert Path("/dev/null").is_char_device()


def test_output_path_mistakes_are_one_line(tiny_bert_dir, sample_dev, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert "is a file" in one_error(run("evaluate", "-m", tiny_bert_dir, "-d", sample_dev, "-o", a_file))
    assert "a part of the path is a file" in one_error(run("data", "convert", sample_dev, a_file / "sub" / "out.json"))
    assert "is a folder" in one_error(run("predict", tiny_bert_dir, sample_dev, "-o", tmp_path))
    assert "is a folder" in one_error(run("data", "convert", sample_dev, tmp_path))
    assert "is a folder" in one_error(run("score", "-d", sample_dev, "-p", tmp_path))
    assert "is a folder" in one_error(run("ask", tiny_bert_dir, "Who?", "--context-file", tmp_path))
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café".encode("latin-1"))
    assert "not UTF-8" in one_error(run("ask", tiny_bert_dir, "Who?", "--context-file", latin1))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_names_the_path(sample_dev, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        line = one_error(run("data", "convert", sample_dev, locked / "out.json"))
    finally:
        locked.chmod(0o700)
    assert "out.json: permission denied" in line


def test_finished_outputs_need_overwrite(tiny_bert_dir, sample_dev, tmp_path):
    out = tmp_path / "dev.jsonl"
    assert run("data", "convert", sample_dev, out).exit_code == 0
    before = out.read_bytes()
    assert "exists; pass --overwrite" in one_error(run("data", "convert", sample_dev, out))
    assert out.read_bytes() == before
    assert run("data", "convert", sample_dev, out, "--overwrite").exit_code == 0
    check_new_file(tmp_path / "new.json")

    evaluation = tmp_path / "eval"
    assert run("evaluate", "-m", tiny_bert_dir, "-d", sample_dev, "-o", evaluation).exit_code == 0
    assert "holds an earlier evaluation" in one_error(run("evaluate", "-m", tiny_bert_dir, "-d", sample_dev, "-o", evaluation))
    assert run("evaluate", "-m", tiny_bert_dir, "-d", sample_dev, "-o", evaluation, "--overwrite").exit_code == 0

    model = _copy_model(tiny_bert_dir, tmp_path / "model")
    (model / "metrics.json").write_text('{"f1": 1}')
    line = one_error(run("evaluate", "-m", model, "-d", sample_dev, "-o", model, "--overwrite"))
    assert "is a model folder" in line and (model / "metrics.json").read_text() == '{"f1": 1}'
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    with pytest.raises(OutputError, match="holds other files"):
        check_evaluation_folder(other, overwrite=True)


# --------------------------------------------------------------------------- kills

_SLOW_PREDICT = """
import sys, time
from spanqa import Reader
from spanqa.jobs.predict import PredictRun, predict_file
from spanqa.reading.options import AnswerOptions

reader = Reader.from_pretrained(sys.argv[1], batch_size=4)
inner = reader.backend

class Slow:
    input_names, max_positions, device = inner.input_names, inner.max_positions, inner.device
    def __call__(self, batch):
        time.sleep(float(sys.argv[4]))
        return inner(batch)

reader.backend = Slow()
predict_file(reader, sys.argv[2], sys.argv[3], AnswerOptions(top_k=2), PredictRun(chunk_size=5, resume=len(sys.argv) > 5))
"""


def _predict(script: Path, model: Path, data: Path, out: Path, delay: float, resume: bool = False) -> subprocess.Popen:
    args = [sys.executable, str(script), str(model), str(data), str(out), str(delay)] + (["resume"] if resume else [])
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_predict_killed_three_times_resumes_to_the_same_output(tiny_bert_dir, sample_dev, tmp_path):
    script = tmp_path / "slow_predict.py"
    script.write_text(_SLOW_PREDICT)
    reference = tmp_path / "reference.jsonl"
    assert _predict(script, tiny_bert_dir, sample_dev, reference, 0.0).wait(timeout=120) == 0

    out = tmp_path / "killed.jsonl"
    partial, settings = partial_paths(out)
    for target in (0, 12, 31):  # before any answer, mid-run, near the end (41 questions, chunks of 5)
        process = _predict(script, tiny_bert_dir, sample_dev, out, 0.05, resume=partial.exists())
        deadline = time.monotonic() + 120
        # partial too: a kill between the settings file and the first open of the partial one leaves nothing to resume
        while (not settings.exists() or not partial.exists() or _lines(partial) < target) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not out.exists() and partial.exists()
    line = one_error(run("predict", tiny_bert_dir, sample_dev, "-o", out))
    assert "--resume" in line  # a plain rerun does not throw the finished answers away
    resumed = _predict(script, tiny_bert_dir, sample_dev, out, 0.0, resume=True)
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read() if resumed.stderr else ""
    assert out.read_bytes() == reference.read_bytes()
    assert not partial.exists() and not settings.exists()


def test_resume_with_other_settings_is_refused(tiny_bert_dir, sample_dev, tmp_path):
    out = tmp_path / "p.jsonl"
    partial, settings = partial_paths(out)
    partial.write_text("")
    settings.write_text(json.dumps({"top_k": 9}))
    line = one_error(run("predict", tiny_bert_dir, sample_dev, "-o", out, "--resume"))
    assert "written with other" in line and "top_k" in line


def test_a_run_interrupted_before_the_rename_of_version_2_resumes(reader, sample_dev, tmp_path):
    """A prediction run interrupted under 0.1 saved its model settings with ``version_2``; 0.2 calls it
    ``handle_impossible`` and must still resume the run, not refuse it as other settings."""
    from dataclasses import asdict

    from spanqa.jobs.predict import PredictRun, predict_file

    whole = tmp_path / "whole.jsonl"
    predict_file(reader, sample_dev, whole, run=PredictRun(chunk_size=5))
    lines = whole.read_text().splitlines(keepends=True)
    out = tmp_path / "p.jsonl"
    partial, settings_file = partial_paths(out)
    partial.write_text("".join(lines[:10]))
    old = asdict(reader.config)
    old["version_2"] = old.pop("handle_impossible")
    ids = [json.loads(line)["id"] for line in lines]
    settings_file.write_text(json.dumps({
        "data": str(sample_dev), "questions": len(lines), "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "top_k": 1, "max_answer_length": None, "handle_impossible": None, "score_threshold": None,
        "chunk_size": 5, "batch_size": reader.batch_size, "config": old,
    }))
    assert predict_file(reader, sample_dev, out, run=PredictRun(chunk_size=5, resume=True)) == len(lines)
    assert out.read_text() == whole.read_text()


_SLOW_EVALUATE = """
import importlib, json, sys, time
evaluation = importlib.import_module("spanqa.jobs.evaluation_files")  # the module that writes an evaluation's files
from spanqa.core.io import write_json as plain

def slow(path, obj, indent=2):
    plain(path, obj, indent)
    time.sleep(0.02)

evaluation.write_json = slow
from spanqa.stages.decode import ExamplePrediction
run = sys.argv[2]
predictions = [ExamplePrediction(id=f"q{i}", text=run, candidates=[], null_score=0.0, best_score=0.0) for i in range(3)]
for i in range(1000):
    evaluation.write_prediction_files(sys.argv[1], predictions, {"run": run}, version_2=True, overwrite=True)
    if i == 0:
        print("wrote", flush=True)
"""


def _consistent(folder: Path) -> str | None:
    """The run that wrote ``folder``'s whole set, None when there is no folder; fails on a mix."""
    if not folder.exists():
        return None
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["metrics.json", "nbest_predictions.json", "null_odds.json", "predictions.json"], names
    runs = {text for text in json.loads((folder / "predictions.json").read_text()).values()}
    runs.add(json.loads((folder / "metrics.json").read_text())["run"])
    assert len(runs) == 1, runs
    return runs.pop()


def test_evaluate_killed_while_writing_never_leaves_a_mix(tmp_path):
    script = tmp_path / "slow_evaluate.py"
    script.write_text(_SLOW_EVALUATE)
    folder = tmp_path / "eval"
    for attempt, delay in enumerate((0.0, 0.03, 0.07, 0.11, 0.16, 0.23)):
        process = subprocess.Popen([sys.executable, str(script), str(folder), f"run{attempt}"], stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None and process.stdout.readline() == "wrote\n"  # one whole set written; then it rewrites in a loop
        time.sleep(delay)  # a different moment of the next rewrite each time (one takes about 0.1 s)
        process.send_signal(signal.SIGKILL)
        process.wait()
        _consistent(folder)  # whatever moment it died: one run's set, or (mid-swap) none
        _recover_folder(folder.resolve())  # what the next write does first: a set moved aside comes back ...
        assert _consistent(folder) is not None  # ... so a reader again finds one whole set
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".eval.")]
    assert leftovers == []


def test_atomic_folder_failure_keeps_the_old_set(tmp_path):
    folder = tmp_path / "set"
    with atomic_folder(folder) as staging:
        (staging / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_folder(folder) as staging:
            (staging / "a.txt").write_text("new")
            raise RuntimeError("interrupted")
    assert (folder / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.json.{dead.pid}.abc.tmp"
    stale.write_text("half")
    live = tmp_path / f".out.json.{os.getpid()}.xyz.tmp"
    live.write_text("writing")
    write_json(tmp_path / "out.json", {})
    assert not stale.exists() and live.exists()


def test_a_mistyped_local_data_name_fails_at_once(sample_dev, tmp_path, monkeypatch):
    shutil.copy(sample_dev, tmp_path / "devset.json")
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    assert "did you mean devset.json?" in one_error(run("data", "check", "devsett"))
    assert "did you mean devset.json?" in one_error(run("data", "check", "devset.jsn"))
    assert time.monotonic() - started < 10  # the hub was not asked


def test_harness_findings(tiny_bert_dir, sample_dev, tmp_path):
    head, tail = tmp_path / "head.json", tmp_path / "tail.json"
    head.write_text("mine")
    assert "exists; pass --overwrite" in one_error(run("data", "split", sample_dev, head, tail, "--articles", "1"))
    assert head.read_text() == "mine"
    line = one_error(run("predict", tiny_bert_dir, sample_dev, "-o", tmp_path / "p.jsonl", "--top-k", "-1"))
    assert line.startswith("error: top_k must be a positive integer")  # before any progress bar
    assert "'--port'" in one_error(run("serve", tiny_bert_dir, "--port", "70000"))  # the option's own range check, no traceback


def test_a_checkpoint_state_that_is_not_an_object_is_skipped(tmp_path):
    from spanqa.jobs.training import _prepare_output_dir, find_resumable_checkpoint

    checkpoint = tmp_path / "run" / "checkpoint-5"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("[1, 2, 3]")
    assert find_resumable_checkpoint(tmp_path / "run") is None
    with pytest.raises(ConfigError, match="none is readable"):
        _prepare_output_dir(tmp_path / "run", resume=True, overwrite=False, is_main=True)


def test_report_to_none_is_a_value():
    from spanqa.jobs.arguments import parse_train_args

    _, args = parse_train_args(["--report_to", "none", "--output_dir", "x"])
    assert args.report_to in ("none", ["none"], [])


def test_saved_weights_get_the_umask_mode(tiny_bert_dir, tmp_path):
    from spanqa.core.io import share_files
    from spanqa.runtime.models import load_qa_model

    old = os.umask(0o022)
    try:
        load_qa_model(tiny_bert_dir).save_pretrained(tmp_path / "m")
        share_files(tmp_path / "m")  # what SpanQATrainer._save and export do after transformers has written
    finally:
        os.umask(old)
    assert {f.name: f.stat().st_mode & 0o777 for f in (tmp_path / "m").iterdir()} == {"config.json": 0o644, "model.safetensors": 0o644}


def test_predict_streams_to_a_device(tiny_bert_dir, sample_dev):
    assert run("predict", tiny_bert_dir, sample_dev, "-o", "/dev/null").exit_code == 0
    assert Path("/dev/null").is_char_device()
    assert "/dev/full: no space left on the device" in one_error(run("predict", tiny_bert_dir, sample_dev, "-o", "/dev/full"))
    assert Path("/dev/full").is_char_device()


def test_read_only_file_system_is_named(tmp_path):
    import errno

    with pytest.raises(OutputError, match=r"cannot write .*out\.json: read-only file system"):
        with atomic_open(tmp_path / "out.json"):
            raise OSError(errno.EROFS, "Read-only file system")  # what a write on a read-only mount raises


def test_more_input_mistakes_are_one_line(sample_dev, tmp_path):
    latin1 = tmp_path / "p.json"
    latin1.write_bytes('{"q": "café"}'.encode("latin-1"))
    assert "not UTF-8" in one_error(run("score", "-d", sample_dev, "-p", latin1))
    assert "max_length" in one_error(run("data", "check", sample_dev, "--max-length", "0"))


def test_one_rule_for_output_folders_and_files(tmp_path):
    from spanqa.core.io import check_output_folder

    assert check_output_folder(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "empty")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(OutputError, match=r"exists and is not a folder \(it is a file\)"):
        check_output_folder(a_file)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="folder exists and is not empty; pass --overwrite"):
        check_output_folder(taken, error=ConfigError)
    check_output_folder(taken, overwrite=True)
    owned = {"metrics.json"}.__contains__
    with pytest.raises(OutputError, match=r"holds an earlier evaluation \(metrics.json\); pass --overwrite"):
        check_output_folder(taken, owned=owned, what="evaluation")
    check_output_folder(taken, overwrite=True, owned=owned)
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"holds other files \(notes.txt\)"):
        check_output_folder(taken, overwrite=True, owned=owned)

    report = tmp_path / "r.html"
    report.write_text("<html>mine</html>")
    with pytest.raises(OutputError, match="exists and is not a spanqa report; pass --overwrite"):
        check_new_file(report, owned=lambda path: False, owned_name="a spanqa report")
    assert check_new_file(report, owned=lambda path: True) == report
    with pytest.raises(OutputError, match="is a folder, expected an .html file name"):
        check_new_file(tmp_path, expected="an .html file name")
