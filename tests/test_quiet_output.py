"""What training and model loads show: one bar and one line per evaluation, no library noise unless verbose."""

from __future__ import annotations

import json
import logging
import re
from contextlib import contextmanager
from io import StringIO

import pytest

from spanqa.jobs.calibration import Calibration
from spanqa.jobs.training import RunProgress, train
from spanqa.runtime.console import is_verbose, quiet_libraries, set_verbose
from spanqa.runtime.models import load_qa_model

FAST = dict(max_length=128, stride=32, per_device_train_batch_size=8, per_device_eval_batch_size=16, logging_steps=5, learning_rate=1e-3, seed=7)
NEW_HEAD = "new question-answering head (qa_outputs) initialised; training will fit it"
EVAL_LINE = re.compile(r"^epoch (\d+\.\d\d)  step (\d+)  loss (\S+)  EM (\d+\.\d)  F1 (\d+\.\d)$")


@contextmanager
def spanqa_log():
    """What spanqa logs at INFO, as text (its logger may not propagate: the CLI gives it its own handler)."""
    seen = StringIO()
    handler = logging.StreamHandler(seen)
    root = logging.getLogger("spanqa")
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield seen
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)


@pytest.fixture
def quiet():
    """Not verbose, whatever a test sets; the verbosity transformers had is set back after."""
    from transformers.utils import logging as transformers_logging

    level = transformers_logging.get_verbosity()
    set_verbose(False)
    yield
    set_verbose(False)
    transformers_logging.set_verbosity(level)


@pytest.fixture
def library_warnings(monkeypatch):
    """transformers at its default level (tests run it at ERROR through TRANSFORMERS_VERBOSITY), and
    what it logs, as text: its own handler writes to the stderr of when it was made."""
    from transformers.utils import logging as transformers_logging

    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    transformers_logging.set_verbosity_warning()
    seen = StringIO()
    handler = logging.StreamHandler(seen)
    root = logging.getLogger("transformers")
    root.addHandler(handler)
    yield seen
    root.removeHandler(handler)


@pytest.fixture(scope="module")
def trained(bare_encoder_dir, sample_train, sample_dev, tmp_path_factory):
    """Two epochs from a bare encoder, with what went to stdout, stderr and spanqa's log."""
    import sys

    from transformers.utils import logging as transformers_logging

    out = tmp_path_factory.mktemp("quiet") / "model"
    patch = pytest.MonkeyPatch()
    stdout, stderr, library = StringIO(), StringIO(), StringIO()
    patch.setattr(sys, "stdout", stdout)
    patch.setattr(sys, "stderr", stderr)
    # As a user's shell has it: transformers at WARNING (tests set ERROR), so the Trainer draws its bar.
    patch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_warning()
    handler = logging.StreamHandler(library)
    logging.getLogger("transformers").addHandler(handler)
    try:
        set_verbose(False)
        with spanqa_log() as seen:
            result = train(str(bare_encoder_dir), sample_train, sample_dev, output_dir=str(out), num_train_epochs=2, **FAST)
    finally:
        patch.undo()
        logging.getLogger("transformers").removeHandler(handler)
        transformers_logging.set_verbosity(level)
    return result, stdout.getvalue(), stderr.getvalue() + library.getvalue(), seen.getvalue()


def test_training_prints_one_numeric_line_per_evaluation_and_no_metric_dicts(trained):
    result, out, err, _ = trained
    assert "{'" not in out and "'eval_f1'" not in out and "'loss'" not in out, out
    lines = [line for line in out.splitlines() if line.strip()]
    evaluations = [entry for entry in result.history if "eval_f1" in entry]
    assert len(evaluations) == 2
    assert len(lines) == len(evaluations), lines
    for line, logged in zip(lines, evaluations):
        found = EVAL_LINE.match(line)
        assert found, line
        epoch, step, loss, em, f1 = found.groups()
        assert float(epoch) == pytest.approx(logged["epoch"], abs=0.01) and int(step) == logged["step"]
        assert float(loss) > 0
        assert float(em) == pytest.approx(logged["eval_exact"], abs=0.05) and float(f1) == pytest.approx(logged["eval_f1"], abs=0.05)


def test_training_shows_no_library_noise_and_no_escape_codes(trained):
    _, out, err, log = trained
    for noise in ("Writing model shards", "Loading weights", "LOAD REPORT", "MISSING", "mtime may not be reliable", "eval_loss"):
        assert noise not in out + err, noise
    assert "\x1b[" not in out + err + log


def test_new_head_is_one_sentence_and_calibration_says_why(trained):
    _, _, _, log = trained
    assert log.count(NEW_HEAD) == 1, log
    assert "tokenized windows" not in log and "indexed" not in log  # the steps' details wait for --verbose
    calibration = json.loads((trained[0].output_dir / "metrics.json").read_text())["calibration"]
    line = next(line for line in log.splitlines() if line.startswith("score temperature"))
    if calibration["temperature"] == calibration["fitted_temperature"]:
        assert f"score temperature {calibration['temperature']:.3f} fitted" in line
    else:
        assert f"kept at {calibration['temperature']:.3f}" in line and f"the fitted {calibration['fitted_temperature']:.3f} did not lower" in line


def test_run_progress_lines():
    progress = RunProgress(bar=False)
    assert progress.line(5, {"loss": 4.2, "grad_norm": 1.0, "epoch": 0.5}, evaluating=True) is None
    progress.loss = 4.2134
    assert progress.line(12, {"eval_exact": 35.123, "eval_f1": 48.94, "eval_loss": 3.0, "epoch": 1.0}, evaluating=True) == (
        "epoch 1.00  step 12  loss 4.21  EM 35.1  F1 48.9"
    )
    assert progress.line(5, {"loss": 4.2134, "epoch": 0.5}, evaluating=False) == "epoch 0.50  step 5  loss 4.21"
    progress.loss = 1.999
    assert progress.line(12, {"eval_loss": 3.0, "epoch": 1.0}, evaluating=True) == "epoch 1.00  step 12  loss 2.00  eval loss 3.00"


def test_model_load_draws_no_bar_and_reports_a_missing_head_plainly(bare_encoder_dir, quiet, library_warnings, capfd):
    from transformers.utils import logging as transformers_logging

    bars = transformers_logging.is_progress_bar_enabled()
    with spanqa_log() as seen:
        load_qa_model(str(bare_encoder_dir))
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "%|" not in err
    assert "LOAD REPORT" not in library_warnings.getvalue()
    assert [line for line in seen.getvalue().splitlines() if "question-answering head" in line] == [
        f"{bare_encoder_dir} has no trained question-answering head (qa_outputs is newly initialised): "
        "its answers are random until it is fine-tuned (spanqa train)"
    ]
    # What the program had set holds after spanqa's call.
    assert transformers_logging.get_verbosity() == logging.WARNING and transformers_logging.is_progress_bar_enabled() == bars


def test_reader_load_draws_no_bar(tiny_bert_dir, quiet, library_warnings, capfd):
    from spanqa import Reader

    with spanqa_log() as seen:
        Reader.from_pretrained(tiny_bert_dir, device="cpu", dtype="fp32")
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "%|" not in err
    assert not library_warnings.getvalue() and "question-answering head" not in seen.getvalue()  # a QA model loads silently


def test_verbose_shows_the_library_notes_without_escape_codes(bare_encoder_dir, quiet, library_warnings, capfd):
    set_verbose(True)
    assert is_verbose()
    load_qa_model(str(bare_encoder_dir))
    err = capfd.readouterr().err
    shown = library_warnings.getvalue()
    assert "Loading weights" in err
    assert "LOAD REPORT" in shown and "qa_outputs.weight" in shown
    assert "\x1b[" not in shown + err  # captured output is not a terminal


def test_quiet_libraries_keeps_a_programs_own_settings(quiet, monkeypatch):
    from transformers.utils import logging as transformers_logging

    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    transformers_logging.set_verbosity_info()
    transformers_logging.disable_progress_bar()
    try:
        with quiet_libraries():
            assert transformers_logging.get_verbosity() == logging.ERROR
            assert not transformers_logging.is_progress_bar_enabled()
        assert transformers_logging.get_verbosity() == logging.INFO
        assert not transformers_logging.is_progress_bar_enabled()  # the program turned bars off; spanqa leaves them off
    finally:
        transformers_logging.enable_progress_bar()


def test_calibration_sentence_gives_the_reason_a_fitted_temperature_was_not_kept():
    kept = Calibration(1.0, 0.3045, 0.3045, 41, fitted=2.209, fitted_ece=0.3121)
    assert kept.describe() == (
        "score temperature kept at 1.000 (expected calibration error 0.3045): "
        "the fitted 2.209 did not lower the error on these 41 questions (0.3045 -> 0.3121)"
    )
    assert not kept.kept_fitted
    used = Calibration(2.209, 0.3045, 0.1200, 41, fitted=2.209, fitted_ece=0.12)
    assert used.kept_fitted
    assert used.describe() == "score temperature 2.209 fitted on 41 questions: expected calibration error 0.3045 -> 0.1200"
