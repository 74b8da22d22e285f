"""`spanqa report`: the HTML report of a run, its PNG figures, the model card's copy, /report in the server.

The numbers in the report are checked against the same numbers recomputed here from
``predictions.json`` and the gold data with the official per-answer scores.
"""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from conftest import SUBJQA, XQUAD, needs_shared
from typer.testing import CliRunner

from spanqa.interfaces.cli import app
from spanqa.stages.data import load_examples
from spanqa.stages.metrics import exact_score, f1_score

runner = CliRunner()
TRAIN = ["--max-steps", "6", "--eval-strategy", "steps", "--eval-steps", "3", "--save-strategy", "steps", "--save-steps", "3",
         "--logging-steps", "1", "--max-length", "192", "--stride", "48", "--per-device-train-batch-size", "8", "--learning-rate", "1e-3",
         "--seed", "7"]
SUBJQA_COLUMNS = ["--columns", "context=review,answer_text=human_ans_spans,answer_start=human_ans_indices", "--no-answer-marker", "ANSWERNOTFOUND"]


def _run(args: list[str]):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_png(path: Path) -> bytes:
    """A valid PNG: the signature, every chunk's CRC, IHDR first with a real size, IEND last."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path}: bad CRC in {kind!r}"
        if not kinds:
            width, height = struct.unpack(">II", body[:8])
            assert width > 100 and height > 100
        kinds.append(kind)
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    return data


def html_table(page: str, key: str) -> dict[str, tuple[int, float, float]]:
    """{label: (questions, EM, F1)} of one breakdown table of the report."""
    table = re.search(rf'<table class="breakdown" id="breakdown-{key}">(.*?)</table>', page, re.S)
    assert table, key
    rows = re.findall(
        r'<tr data-label="([^"]*)"><td>.*?</td><td class="num count">(\d+)</td>'
        r'<td class="num em" data-value="([^"]+)">.*?</td><td class="num f1" data-value="([^"]+)">',
        table.group(1),
    )
    return {html.unescape(label): (int(n), float(em), float(f1)) for label, n, em, f1 in rows}


def recompute(examples, predictions: dict[str, str], group) -> dict[str, tuple[int, float, float]]:
    """Per group: count, EM and F1 (percent) from the official per-answer scores, max over gold answers (v1.1 rules)."""
    scores: dict[str, list[tuple[float, float]]] = {}
    for ex in examples:
        pred = predictions[ex.id]
        golds = [a.text for a in ex.answers]
        em = max(exact_score(pred, g) for g in golds)
        f1 = max(f1_score(pred, g, v2=False) for g in golds)
        scores.setdefault(group(ex), []).append((em, f1))
    return {k: (len(v), 100 * sum(e for e, _ in v) / len(v), 100 * sum(f for _, f in v) / len(v)) for k, v in scores.items()}


def first_wh_word(question: str) -> str:
    words = [{"whom": "who", "whose": "who"}.get(w, w) for w in re.findall(r"[a-z]+", question.lower())]
    return next((w for w in words if w in ("what", "who", "when", "where", "which", "how", "why")), "other")


def assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for label, (count, em, f1) in want.items():
        assert got[label][0] == count, label
        assert got[label][1] == pytest.approx(em, abs=1e-9), label
        assert got[label][2] == pytest.approx(f1, abs=1e-9), label


# --------------------------------------------------------------------------- a v1.1 run: XQuAD, articles 1-36 / 37-48


@pytest.fixture(scope="module")
def xquad_run(tiny_bert_dir, tmp_path_factory):
    if not XQUAD.exists():
        pytest.skip(f"shared data not found at {XQUAD}")
    from spanqa.stages.data import save_examples, split_by_title

    root = tmp_path_factory.mktemp("xquad-run")
    head, tail = split_by_title(load_examples(XQUAD / "xquad.en.json"), 36)
    save_examples(head.examples, root / "train.json")
    save_examples(tail.examples, root / "eval.json")
    res = _run(["train", "--model", tiny_bert_dir, "--train", root / "train.json", "--eval", root / "eval.json", "--output-dir", root / "m", *TRAIN])
    assert res.exit_code == 0, res.output
    return root


@needs_shared(XQUAD)
def test_train_writes_the_report_its_pngs_and_the_log_history(xquad_run):
    run = xquad_run / "m"
    page = (run / "report.html").read_text(encoding="utf-8")
    for name in ("training", "breakdown"):
        png = assert_png(run / f"report-{name}.png")
        assert f"data:image/png;base64,{base64.b64encode(png).decode()}" in page  # the same figure, embedded
    assert not (run / "report-threshold.png").exists()  # v1.1 data: no no-answer threshold
    assert "<script" not in page and "http://" not in page and "https://" not in page  # nothing to run, nothing to fetch
    history = json.loads((run / "trainer_state.json").read_text())["log_history"]
    assert sum("eval_f1" in entry for entry in history) == 2 and sum("loss" in entry for entry in history) == 6
    assert not list(run.glob("checkpoint-*"))  # the history outlives the checkpoints
    assert page.count('<li data-id="') == 25


@needs_shared(XQUAD)
def test_breakdown_numbers_equal_those_recomputed_from_predictions(xquad_run):
    from spanqa.runtime.models import load_tokenizer

    run = xquad_run / "m"
    page = (run / "report.html").read_text(encoding="utf-8")
    predictions = json.loads((run / "eval" / "predictions.json").read_text())
    examples = load_examples(xquad_run / "eval.json").examples
    assert len(examples) == 265 and set(predictions) == {ex.id for ex in examples}

    assert_same(html_table(page, "question_word"), recompute(examples, predictions, lambda ex: first_wh_word(ex.question)))

    def words(ex) -> str:
        n = len(ex.answers[0].text.split())
        return next(label for top, label in ((1, "1"), (2, "2"), (3, "3"), (5, "4-5"), (10, "6-10"), (10**9, "11+")) if n <= top)

    assert_same(html_table(page, "answer_length"), recompute(examples, predictions, words))

    tokenizer = load_tokenizer(str(run))

    def context_tokens(ex) -> str:
        n = len(tokenizer(ex.context, add_special_tokens=False)["input_ids"])
        return next((label for top, label in ((96, "<= 96"), (192, "97-192"), (384, "193-384")) if n <= top), "> 384")

    assert_same(html_table(page, "context_tokens"), recompute(examples, predictions, context_tokens))

    # Where the answer falls among the windows: every question once, and the groups average to the overall scores.
    windows = html_table(page, "windows")
    overall = recompute(examples, predictions, lambda ex: "all")["all"]
    assert sum(n for n, _, _ in windows.values()) == 265
    assert sum(n * f1 for n, _, f1 in windows.values()) / 265 == pytest.approx(overall[2], abs=1e-9)
    assert {"answer across a window edge", "answer clear of window edges"} <= set(windows)  # 192-token windows cut some answers
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["f1"] == pytest.approx(overall[2], abs=1e-9) and metrics["exact_match"] == pytest.approx(overall[1], abs=1e-9)


@needs_shared(XQUAD)
def test_model_card_embeds_the_curve_figure_and_the_breakdown_table(xquad_run):
    run = xquad_run / "m"
    card = (run / "README.md").read_text(encoding="utf-8")
    assert "](report-training.png)" in card
    page = (run / "report.html").read_text(encoding="utf-8")
    for label, (count, em, f1) in html_table(page, "question_word").items():
        assert f"| {label} | {count} | {em:.2f} | {f1:.2f} |" in card


@needs_shared(XQUAD)
def test_report_command_writes_elsewhere_and_refuses_foreign_files(xquad_run, tmp_path):
    run = xquad_run / "m"
    out = tmp_path / "out" / "xquad.html"
    res = _run(["report", run, "--out", out])
    assert res.exit_code == 0, res.output
    for name in ("training", "breakdown"):
        assert_png(tmp_path / "out" / f"xquad-{name}.png")
    page = out.read_text(encoding="utf-8")
    original = (run / "report.html").read_text(encoding="utf-8")
    for key in ("question_word", "answer_length", "context_tokens", "windows"):
        assert html_table(page, key) == html_table(original, key)
    assert _run(["report", run, "--out", out]).exit_code == 0  # an earlier report is simply replaced

    foreign = tmp_path / "notes.html"
    foreign.write_text("mine")
    res = _run(["report", run, "--out", foreign])
    assert res.exit_code == 1 and "not a spanqa report" in res.output and foreign.read_text() == "mine"


@needs_shared(XQUAD)
def test_report_opens_in_headless_chromium(xquad_run, tmp_path):
    from live import chromium

    report = xquad_run / "m" / "report.html"
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        problems: list[str] = []
        requests: list[str] = []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        assert page.title() == "spanqa report: m"
        assert page.evaluate("Array.from(document.images).every(img => img.complete && img.naturalWidth > 100)")
        assert page.evaluate("document.images.length") == 2
        assert page.locator("ol.errors mark.pred, ol.errors mark.gold").count() > 25
        shot = tmp_path / "report-screenshot.png"
        page.screenshot(path=str(shot), full_page=True)
    assert problems == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    assert_png(shot)


# --------------------------------------------------------------------------- a v2 run: SubjQA CSV


@pytest.fixture(scope="module")
def subjqa_run(tiny_bert_dir, tmp_path_factory):
    if not SUBJQA.exists():
        pytest.skip(f"shared data not found at {SUBJQA}")
    import pandas as pd

    root = tmp_path_factory.mktemp("subjqa-run")
    for split, n in (("train", 120), ("dev", 80)):
        pd.read_csv(SUBJQA / "electronics" / f"{split}.csv").head(n).to_csv(root / f"{split}.csv", index=False)
    res = _run(["train", "--model", tiny_bert_dir, "--train", root / "train.csv", "--eval", root / "dev.csv", *SUBJQA_COLUMNS,
                "--version-2", "--output-dir", root / "m", *TRAIN])
    assert res.exit_code == 0, res.output
    return root


@needs_shared(SUBJQA)
def test_v2_threshold_curve_maximum_is_the_best_f1_of_evaluate(subjqa_run):
    run = subjqa_run / "m"
    res = _run(["evaluate", "--model", run, "--data", subjqa_run / "dev.csv", *SUBJQA_COLUMNS, "--tune-threshold",
                "--output-dir", subjqa_run / "eval"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((subjqa_run / "eval" / "metrics.json").read_text())
    page = (subjqa_run / "eval" / "report.html").read_text(encoding="utf-8")  # written by evaluate itself
    assert_png(subjqa_run / "eval" / "report-threshold.png")
    best = re.search(r'id="threshold-best" data-value="([^"]+)"', page)
    assert best and float(best.group(1)) == pytest.approx(metrics["f1"], abs=1e-9)
    for row in ("default", "tuned"):
        assert re.search(rf'<tr class="{row}">.*?</tr>', page)
    assert "HasAns_f1" in page and "NoAns_f1" in page

    # The report of the training run agrees with the threshold tuned at the end of training.
    report = _run(["report", run])
    assert report.exit_code == 0, report.output
    trained = json.loads((run / "metrics.json").read_text())
    page = (run / "report.html").read_text(encoding="utf-8")
    assert float(re.search(r'id="threshold-best" data-value="([^"]+)"', page).group(1)) == pytest.approx(trained["f1"], abs=1e-9)
    assert_png(run / "report-threshold.png")
    assert "no answer" in html_table(page, "answer_length")


# --------------------------------------------------------------------------- small cases


def test_question_words():
    from spanqa.jobs.report import question_word

    assert question_word("What's the capital?") == "what"
    assert question_word("In which year did it open?") == "which"
    assert question_word("To whom was it given?") == "who"
    assert question_word("Howard built it, didn't he?") == "other"
    assert question_word("Is the battery good?") == "other"


def test_threshold_curve_points_are_reachable_and_tuning_takes_the_maximum():
    from spanqa.jobs.evaluate import null_threshold_curve, score_decoded, tune_null_threshold, with_null_threshold
    from spanqa.stages.data import Answer, QAExample
    from spanqa.stages.decode import ExamplePrediction, Span

    context = "red green blue"
    golds = {"a": None, "b": None, "c": "red", "d": "green"}
    examples = [QAExample(q, "Which?", context, (Answer(g, context.index(g)),) if g else ()) for q, g in golds.items()]
    # Every answer is wrong: abstaining on all questions is best, below every null odds.
    preds = [ExamplePrediction(q, "", [Span("blue", 10, 14, 1.0, 0.5, 0.5)], odds, 0.0) for q, odds in zip(golds, (1.0, 2.0, -1.0, 0.5))]
    curve = null_threshold_curve(examples, preds)
    for t, f1 in zip(curve.thresholds, curve.f1):
        assert score_decoded(examples, with_null_threshold(preds, float(t)), version_2=True).metrics["f1"] == pytest.approx(f1)
    tuning = tune_null_threshold(examples, preds, default_threshold=1.5)  # answers a wrongly: F1 25
    assert tuning.default_metrics["f1"] == pytest.approx(25.0)
    assert curve.f1.max() == pytest.approx(50.0) and tuning.tuned_metrics["f1"] == pytest.approx(50.0) and tuning.threshold < -1.0


def test_evaluate_writes_a_report_with_user_text_escaped(tiny_bert_dir, tmp_path):
    context = "The <b>bridge</b> & the tower were built in 1897 by <i>Ada Lovelace</i>. It rains."
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
        {"id": f"q{i}", "question": f"<script>alert({i})</script> when was it built?", "answers": [{"text": "1897", "answer_start": context.index("1897")}]}
        for i in range(3)
    ]}]}]}
    (tmp_path / "d.json").write_text(json.dumps(data))
    res = _run(["evaluate", "--model", tiny_bert_dir, "--data", tmp_path / "d.json", "--output-dir", tmp_path / "e"])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "e" / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and "<b>" not in page and "<i>" not in page
    # The excerpt is split by the <mark>s of the spans, wherever the (random) model puts them.
    text = re.sub(r"</?mark[^>]*>", "", page)
    assert "&lt;script&gt;alert(0)&lt;/script&gt;" in text and "&lt;b&gt;bridge&lt;/b&gt; &amp; the tower" in text
    assert html_table(page, "question_word")["when"][0] == 3
    # The folder stays an evaluation folder: evaluating again over it is allowed with --overwrite.
    again = _run(["evaluate", "--model", tiny_bert_dir, "--data", tmp_path / "d.json", "--output-dir", tmp_path / "e", "--overwrite"])
    assert again.exit_code == 0, again.output


def test_report_errors_are_one_line(tiny_bert_dir, tmp_path):
    res = _run(["report", tmp_path / "nowhere"])
    assert res.exit_code == 1 and "no such run folder" in res.output
    res = _run(["report", tiny_bert_dir])
    assert res.exit_code == 1 and "no predictions.json" in res.output
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "predictions.json").write_text('{"x": "y"}')
    res = _run(["report", tmp_path / "e"])
    assert res.exit_code == 1 and "pass --data FILE" in res.output
    assert "Traceback" not in res.output


def test_serve_shows_the_model_report(tiny_bert_dir, tmp_path):
    pytest.importorskip("fastapi", reason="serving needs the 'serve' extra")
    from fastapi.testclient import TestClient

    from spanqa.interfaces.serve import ServeSettings, create_app
    from spanqa.reading.reader import Reader

    folder = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, folder)
    with TestClient(create_app(Reader.from_pretrained(folder), ServeSettings())) as client:
        missing = client.get("/report")
        assert missing.status_code == 404 and "spanqa report" in missing.json()["error"]["message"]
        assert client.get("/health").json()["report"] is False  # the page shows no link
        (folder / "report.html").write_text("<!DOCTYPE html><title>r</title><p>not a spanqa report</p>", encoding="utf-8")
        assert client.get("/report").status_code == 404  # only a report `spanqa report` wrote is served
        marker = '<meta name="generator" content="spanqa report 0.2.0">'  # what render_html writes
        (folder / "report.html").write_text(f"<!DOCTYPE html><html><head>{marker}<title>r</title></head><p>the report</p>", encoding="utf-8")
        found = client.get("/report")
        assert found.status_code == 200 and "the report" in found.text
        assert client.get("/health").json()["report"] is True
        assert 'id="report-link" href="report" hidden' in client.get("/").text
        assert "script-src" not in found.headers["content-security-policy"] and "default-src 'none'" in found.headers["content-security-policy"]


def test_a_report_that_fails_to_draw_costs_only_the_report(tiny_bert_dir, sample_train, sample_dev, tmp_path, monkeypatch, caplog):
    import logging

    import spanqa.jobs.report
    from spanqa.jobs.training import train

    def broken(report):
        raise RuntimeError("no fonts on this machine")

    monkeypatch.setattr(spanqa.jobs.report, "draw_figures", broken)
    monkeypatch.setattr(logging.getLogger("spanqa"), "propagate", True)
    out = tmp_path / "m"
    with caplog.at_level(logging.WARNING, logger="spanqa"):
        result = train(str(tiny_bert_dir), sample_train, sample_dev, output_dir=str(out), max_steps=1, max_length=128, stride=32)
    assert result.metrics and (out / "model.safetensors").is_file() and (out / "metrics.json").is_file()
    assert any("could not write the report" in r.getMessage() and "no fonts" in r.getMessage() for r in caplog.records)
    assert not (out / "report.html").exists()
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "report-training.png" not in card and "## Hyper-parameters" in card
