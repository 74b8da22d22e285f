"""ONNX export and the ONNX Runtime backend: the same logits and answers as PyTorch, for each tokenizer family."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from spanqa import Reader, evaluate, load_examples  # noqa: E402  # after the skip: without onnxruntime nothing here runs
from spanqa.core.errors import ConfigError, ModelError  # noqa: E402
from spanqa.interfaces.cli import app  # noqa: E402
from spanqa.jobs.export import Int8Options, export_onnx  # noqa: E402
from spanqa.runtime.backends import OnnxBackend, TorchBackend  # noqa: E402

runner = CliRunner()
FAMILIES = ["tiny_bert_dir", "tiny_roberta_dir", "tiny_xlmr_dir"]
GRAPH_INPUTS = {  # BERT's WordPiece tokenizer produces segment ids; RoBERTa's and XLM-R's do not
    "tiny_bert_dir": ["input_ids", "attention_mask", "token_type_ids"],
    "tiny_roberta_dir": ["input_ids", "attention_mask"],
    "tiny_xlmr_dir": ["input_ids", "attention_mask"],
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


class Exported(NamedTuple):
    family: str
    source: Path
    out: Path


@pytest.fixture(scope="module", params=FAMILIES)
def exported(request, tmp_path_factory) -> Exported:
    """A tiny random model of each family and its fp32 ONNX export."""
    source = request.getfixturevalue(request.param)
    out = tmp_path_factory.mktemp("onnx") / request.param.removesuffix("_dir")
    assert export_onnx(source, out) == out
    return Exported(request.param, source, out)


@pytest.fixture(scope="module")
def dev_examples(sample_dev):
    return load_examples(sample_dev).examples


def _all_logits(reader: Reader, features, batch_size: int) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], set[tuple[int, int]]]:
    """Start/end logits by window, and the (batch size, padded length) shapes that ran."""
    starts, ends, shapes = {}, {}, set()
    for rows, start, end in reader.logits(features, batch_size=batch_size):
        shapes.add(start.shape)
        assert start.dtype == end.dtype == np.float32
        for b, row in enumerate(rows):
            starts[int(row)], ends[int(row)] = start[b], end[b]
    return starts, ends, shapes


def test_onnx_logits_equal_pytorch_for_any_batch_size_and_length(exported, dev_examples):
    _, source, out = exported
    torch_reader = Reader.from_pretrained(source, device="cpu", dtype="fp32", max_length=128, stride=32)  # fp32 as exported
    onnx_reader = Reader.from_pretrained(out, max_length=128, stride=32)
    assert isinstance(onnx_reader.backend, OnnxBackend) and onnx_reader.model is None
    assert isinstance(torch_reader.backend, TorchBackend) and torch_reader.model is not None
    features = torch_reader.features(dev_examples[:24])
    shapes_seen = set()
    for batch_size in (5, 16):
        want_start, want_end, _ = _all_logits(torch_reader, features, batch_size)
        got_start, got_end, shapes = _all_logits(onnx_reader, features, batch_size)
        shapes_seen |= shapes
        assert sorted(got_start) == sorted(want_start) == list(range(len(features)))
        for row in want_start:
            np.testing.assert_allclose(got_start[row], want_start[row], atol=1e-4, rtol=0)
            np.testing.assert_allclose(got_end[row], want_end[row], atol=1e-4, rtol=0)
    # The graph really is dynamic: several batch sizes and padded lengths ran through it.
    assert len({b for b, _ in shapes_seen}) >= 2 and len({n for _, n in shapes_seen}) >= 2


def test_onnx_reader_gives_pytorch_answers(exported, dev_examples):
    _, source, out = exported
    want = Reader.from_pretrained(source, device="cpu", dtype="fp32").predict_examples(dev_examples)  # fp32 as exported
    got = Reader.from_pretrained(out).predict_examples(dev_examples)
    assert [p.text for p in got] == [p.text for p in want]
    assert [p.is_impossible for p in got] == [p.is_impossible for p in want]
    np.testing.assert_allclose([p.null_odds for p in got], [p.null_odds for p in want], atol=1e-3)


def test_export_folder_is_self_contained(exported):
    source, out = exported.source, exported.out
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "spanqa.json", *TOKENIZER_FILES} <= names
    assert [p.name for p in out.glob("*.onnx")] == ["model.onnx"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "no staging folder left behind"
    settings = json.loads((out / "spanqa.json").read_text())
    assert settings["extra"]["export"] == {"format": "onnx", "int8": False, "opset": 17, "optimized": True, "source": str(source)}
    graph = onnx.load(str(out / "model.onnx")).graph
    inputs = [i.name for i in graph.input]
    assert inputs == GRAPH_INPUTS[exported.family]
    assert [o.name for o in graph.output] == ["start_logits", "end_logits"]
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        assert len(dims) == 2 and all(d.dim_param and not d.dim_value for d in dims), f"{value.name} has fixed axes"


@pytest.mark.parametrize("family", FAMILIES)
def test_int8_export_loads_and_mostly_agrees_with_fp32(family, request, dev_examples, tmp_path):
    source = request.getfixturevalue(family)
    out = export_onnx(source, tmp_path / "int8", int8=True)
    assert [p.name for p in out.glob("*.onnx")] == ["model.onnx"]
    fp32 = Reader.from_pretrained(source, device="cpu", dtype="fp32", max_length=128, stride=32)
    int8 = Reader.from_pretrained(out, max_length=128, stride=32)
    # Logits of a random model are nearly flat, so a few top spans may swap under int8 rounding;
    # the logits themselves must stay close (a broken quantization is off by far more than this).
    features = fp32.features(dev_examples)
    want_start, _, _ = _all_logits(fp32, features, 32)
    got_start, _, _ = _all_logits(int8, features, 32)
    for row in want_start:
        assert np.corrcoef(got_start[row], want_start[row])[0, 1] > 0.95
    want = [p.text for p in fp32.predict_examples(dev_examples)]
    got = [p.text for p in int8.predict_examples(dev_examples)]
    agree = np.mean([a == b for a, b in zip(got, want)])
    assert agree > 0.8, f"int8 answers agree with fp32 on {agree:.0%} of questions"


@pytest.fixture(scope="module")
def bert_int8(tiny_bert_dir, tmp_path_factory) -> Path:
    """An int8 export with no calibration settings: the tiny model records no data, so the sample data calibrates."""
    return export_onnx(tiny_bert_dir, tmp_path_factory.mktemp("bert-int8") / "model", int8=True)


def test_an_int8_export_on_a_cpu_without_vnni_warns(bert_int8, bert_onnx, monkeypatch, caplog):
    from spanqa.runtime import backends

    monkeypatch.setattr(backends, "cpu_has_vnni", lambda: False)
    with caplog.at_level(logging.WARNING, logger="spanqa.runtime.backends"):
        Reader.from_pretrained(bert_int8)
        Reader.from_pretrained(bert_onnx)  # fp32: nothing to say
    said = [r.getMessage() for r in caplog.records if "VNNI" in r.getMessage()]
    assert len(said) == 1 and str(bert_int8) in said[0] and "spanqa export MODEL OUT --onnx" in said[0], said
    caplog.clear()
    monkeypatch.setattr(backends, "cpu_has_vnni", lambda: True)
    with caplog.at_level(logging.WARNING, logger="spanqa.runtime.backends"):
        Reader.from_pretrained(bert_int8)
    assert not [r for r in caplog.records if "VNNI" in r.getMessage()]


def test_vnni_is_read_from_torch_or_the_cpu_flags(monkeypatch, tmp_path):
    import platform

    import torch

    from spanqa.runtime import devices

    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert devices.cpu_has_vnni()  # no saturating int8 products outside x86
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: False, raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(devices, "CPUINFO", str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert not devices.cpu_has_vnni()
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx_vnni fma\n")
    assert devices.cpu_has_vnni()  # AVX-VNNI (Alder Lake and later), which torch does not report
    monkeypatch.setattr(devices, "CPUINFO", str(tmp_path / "missing"))
    assert not devices.cpu_has_vnni()
    monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: True, raising=False)
    assert devices.cpu_has_vnni()


def test_int8_answers_do_not_depend_on_the_batch(bert_int8, dev_examples):
    # Dynamic quantization scaled activations by the range of the whole batch, so a question's
    # answer moved with its batch-mates; static scales make each window's result its own.
    reader = Reader.from_pretrained(bert_int8, max_length=96, stride=32, max_question_tokens=32)  # several windows of varied length per context
    requests = [(ex.question, ex.context) for ex in dev_examples[:24]]
    alone = [reader.answer_batch([request])[0] for request in requests]
    together = reader.answer_batch(requests)
    assert len(reader.features(dev_examples[:24])) > reader.batch_size  # full, length-sorted batches of many windows
    assert [r.answers[0].text for r in alone] == [r.answers[0].text for r in together]
    np.testing.assert_allclose([r.answers[0].score for r in alone], [r.answers[0].score for r in together], atol=1e-4, rtol=0)
    features = reader.features(dev_examples[:24])
    one_by_one, _, _ = _all_logits(reader, features, 1)
    batched, _, _ = _all_logits(reader, features, 32)
    lengths = features.lengths
    for row in one_by_one:  # a window's own tokens; the batch pads it with masked positions
        np.testing.assert_allclose(batched[row][: lengths[row]], one_by_one[row][: lengths[row]], atol=1e-5, rtol=0)


def test_int8_export_records_its_calibration(bert_int8, sample_train):
    quantization = json.loads((bert_int8 / "spanqa.json").read_text())["extra"]["export"]["quantization"]
    assert quantization["method"] == "static"
    assert Path(quantization["calibration"]["data"]) == sample_train  # the shipped sample data, found without arguments
    assert 0 < quantization["calibration"]["windows"] <= 512
    assert quantization["ops"]["int8"] > 0
    ops = {node.op_type for node in onnx.load(str(bert_int8 / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "MatMulIntegerToFloat", "QAttention"} <= ops and "DynamicQuantizeLinear" not in ops
    assert {"SkipLayerNormalization", "BiasGelu", "QEmbedLayerNormalization"} <= ops  # fused before quantizing, kept float


def test_int8_calibrates_on_the_data_the_model_was_trained_on(tiny_bert_dir, sample_dev, tmp_path):
    run = tmp_path / "run"  # `spanqa train` ran here with --output-dir model and a relative data path
    shutil.copytree(tiny_bert_dir, run / "model")
    shutil.copy(sample_dev, run / "dev.json")
    (run / "model" / "train_config.json").write_text(json.dumps({"train_data": "dev.json", "training": {"output_dir": "model"}}))
    out = export_onnx(run / "model", tmp_path / "int8", int8=True, int8_options=Int8Options(calibration_windows=16))
    calibration = json.loads((out / "spanqa.json").read_text())["extra"]["export"]["quantization"]["calibration"]
    assert Path(calibration["data"]) == (run / "dev.json").resolve() and calibration["windows"] == 16


def test_calibration_options_from_the_command_line(tiny_bert_dir, sample_dev, tmp_path):
    out = tmp_path / "cli-int8"
    args = ["export", str(tiny_bert_dir), str(out), "--onnx", "--int8", "--calibration-data", str(sample_dev), "--calibration-windows", "8"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    calibration = json.loads((out / "spanqa.json").read_text())["extra"]["export"]["quantization"]["calibration"]
    assert calibration["data"] == str(sample_dev) and calibration["windows"] == 8
    missing = tmp_path / "no-such" / "data.json"
    res = runner.invoke(app, ["export", str(tiny_bert_dir), str(tmp_path / "bad"), "--onnx", "--int8", "--calibration-data", str(missing)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert [line for line in res.output.splitlines() if line.startswith("error:")] == [f"error: calibration data {missing}: file not found"]
    assert not (tmp_path / "bad").exists()
    res = runner.invoke(app, ["export", str(tiny_bert_dir), str(tmp_path / "bad"), "--onnx", "--calibration-data", str(sample_dev)])
    assert res.exit_code == 1 and "--int8" in res.output
    res = runner.invoke(app, ["export", str(tiny_bert_dir), str(tmp_path / "bad"), "--onnx", "--int8", "--calibration-windows", "0"])
    assert res.exit_code == 1 and "calibration windows must be a positive integer" in res.output


def test_existing_output_is_refused_unless_overwrite(tiny_bert_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty.*--overwrite"):
        export_onnx(tiny_bert_dir, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    export_onnx(tiny_bert_dir, out, overwrite=True, optimize=False)
    assert not (out / "keep.txt").exists() and (out / "model.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "old folder and staging removed"
    with pytest.raises(ConfigError, match="would replace the model"):
        export_onnx(tiny_bert_dir, tiny_bert_dir, overwrite=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    export_onnx(tiny_bert_dir, empty, optimize=False)  # an empty folder is fine
    assert (empty / "model.onnx").is_file()


def test_export_command(tiny_bert_dir, tmp_path):
    out = tmp_path / "cli"
    res = runner.invoke(app, ["export", str(tiny_bert_dir), str(out), "--onnx", "--int8"])
    assert res.exit_code == 0, res.output
    assert "model.onnx" in res.output and "int8" in res.output
    assert json.loads((out / "spanqa.json").read_text())["extra"]["export"]["int8"] is True
    res = runner.invoke(app, ["export", str(tiny_bert_dir), str(out), "--onnx"])
    assert res.exit_code == 1 and "error:" in res.output and "--overwrite" in res.output
    res = runner.invoke(app, ["export", str(tiny_bert_dir), str(tmp_path / "other")])
    assert res.exit_code == 1 and "--onnx" in res.output
    res = runner.invoke(app, ["ask", str(out), "Who keeps the lighthouse?", "--context", "Marta Ilves keeps the lighthouse.", "--json"])
    assert res.exit_code == 0, res.output
    assert "answer" in json.loads(res.output[res.output.index("{") :])


def test_backend_option_reaches_evaluate_and_predict(tiny_bert_dir, bert_onnx, sample_dev, tmp_path):
    want = evaluate(str(tiny_bert_dir), sample_dev, device="cpu").metrics
    got = evaluate(str(bert_onnx), sample_dev).metrics
    assert got["exact"] == want["exact"] and got["f1"] == pytest.approx(want["f1"], abs=1e-9)
    with pytest.raises(ModelError, match="no model.onnx"):
        evaluate(str(tiny_bert_dir), sample_dev, backend="onnx")
    res = runner.invoke(app, ["evaluate", "-m", str(bert_onnx), "-d", str(sample_dev), "-o", str(tmp_path / "eval"), "--backend", "onnx"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["exact"] == want["exact"]
    res = runner.invoke(app, ["predict", str(bert_onnx), str(sample_dev), "--out", str(tmp_path / "p.jsonl"), "--backend", "onnx"])
    assert res.exit_code == 0, res.output
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == len(load_examples(sample_dev))


def test_onnx_on_the_cpu_reads_8_windows_per_pass_unless_told(bert_onnx, tiny_bert_dir):
    from spanqa.runtime.backends import DEFAULT_BATCH_SIZE, ONNX_CPU_BATCH_SIZE
    from spanqa.runtime.options import LoadOptions

    assert ONNX_CPU_BATCH_SIZE == 8 and DEFAULT_BATCH_SIZE == 32
    assert Reader.from_pretrained(bert_onnx).batch_size == ONNX_CPU_BATCH_SIZE
    assert Reader.from_pretrained(tiny_bert_dir, device="cpu").batch_size == DEFAULT_BATCH_SIZE
    assert Reader.from_pretrained(bert_onnx, batch_size=32).batch_size == 32  # what the user gives wins
    assert Reader.from_pretrained(bert_onnx, LoadOptions(batch_size=4)).batch_size == 4
    with pytest.raises(ConfigError, match="positive integer"):
        LoadOptions(batch_size=0)


def test_onnx_backend_on_a_pytorch_folder_is_a_clear_error(tiny_bert_dir):
    with pytest.raises(ModelError, match="no model.onnx.*spanqa export"):
        Reader.from_pretrained(tiny_bert_dir, backend="onnx")
    res = runner.invoke(app, ["ask", str(tiny_bert_dir), "Who?", "--context", "Marta.", "--backend", "onnx"])
    assert res.exit_code == 1 and "error:" in res.output and "no model.onnx" in res.output and "Traceback" not in res.output
    with pytest.raises(ConfigError, match="unknown backend 'onxx'.*did you mean 'onnx'"):
        Reader.from_pretrained(tiny_bert_dir, backend="onxx")  # type: ignore[arg-type]


def test_torch_backend_on_an_onnx_folder_and_dtype_for_onnx_are_clear_errors(bert_onnx):
    with pytest.raises(ModelError, match="no PyTorch weights"):
        Reader.from_pretrained(bert_onnx, backend="torch")
    with pytest.raises(ConfigError, match="dtype 'bf16' applies to the torch backend"):
        Reader.from_pretrained(bert_onnx, dtype="bf16")


def test_missing_onnxruntime_says_how_to_install(tiny_bert_dir, bert_onnx, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(ModelError, match=r'pip install "spanqa\[onnx\]"'):
        Reader.from_pretrained(bert_onnx)
    with pytest.raises(ModelError, match=r'pip install "spanqa\[onnx\]"'):
        export_onnx(tiny_bert_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_torch_backend_precisions(tiny_bert_dir, dev_examples):
    fp32 = Reader.from_pretrained(tiny_bert_dir, device="cpu", dtype="fp32")
    assert fp32.backend.dtype == "fp32"  # the CPU default depends on the CPU: tests/test_precision.py
    bf16 = Reader.from_pretrained(tiny_bert_dir, device="cpu", dtype="bf16")
    features = fp32.features(dev_examples[:8])
    want, _, _ = _all_logits(fp32, features, 8)
    got, _, _ = _all_logits(bf16, features, 8)
    differences = [np.abs(got[row] - want[row]).max() for row in want]
    assert 0 < max(differences) < 0.05  # bf16 is on (not bit-identical) and keeps ~3 significant digits
    with pytest.raises(ConfigError, match="unknown dtype 'bf61'"):
        Reader.from_pretrained(tiny_bert_dir, dtype="bf61")  # type: ignore[arg-type]
