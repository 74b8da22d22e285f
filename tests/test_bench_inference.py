"""The inference bench scripts run end to end on a tiny model; their figures are for people, not asserted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], capture_output=True, text=True, timeout=300)


def assert_machine_first(stdout: str) -> None:
    assert stdout.startswith("CPU:") and "\nGPU:" in stdout, stdout[:500]


def test_decode_speed_on_a_model_logits(tiny_bert_dir, sample_dev):
    proc = run("decode_speed.py", "--model", tiny_bert_dir, "--data", sample_dev, "--questions", "12", "--repeat", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert_machine_first(out)
    assert "12 questions" in out
    assert re.search(r"windows: (\d+) from the recipe \(padded to 384\) and \1 from spanqa .*: the same windows", out), out
    assert f"logits: model {tiny_bert_dir}" in out
    assert re.search(r"^recipe \(notebook n-best loop, as written\): .* questions/s", out, re.M), out
    assert re.search(r"^recipe over datasets.Dataset rows .*: .* questions/s .*the same texts as over lists", out, re.M), out
    assert re.search(r"^spanqa decode: .* questions/s", out, re.M), out
    assert re.search(r"^ratio spanqa / recipe \(questions/s\): [\d.]+x", out, re.M), out
    assert re.search(r"^identical predicted texts: \d+ of 12", out, re.M), out
    assert "UNEXPLAINED" not in out, out


def test_decode_speed_on_random_logits(tiny_bert_dir, sample_dev):
    proc = run("decode_speed.py", "--tokenizer", tiny_bert_dir, "--data", sample_dev, "--seed", "3", "--repeat", "2", "--max-length", "128", "--stride", "32")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert_machine_first(out)
    assert "41 questions" in out and "windows 128/32" in out
    assert "logits: random normal, seed 3" in out
    assert re.search(r"^identical predicted texts: \d+ of 41", out, re.M), out
    assert "UNEXPLAINED" not in out, out
    if "differing questions" in out:  # each difference is listed with its cause
        assert "differences by cause:" in out


def test_decode_speed_without_data_says_so(tmp_path):
    proc = run("decode_speed.py", "--data", tmp_path / "missing.json")
    assert proc.returncode != 0
    assert "missing.json not found" in proc.stderr


def test_eval_memory_measures_both_runs(tiny_bert_dir, sample_dev):
    proc = run("eval_memory.py", "--model", tiny_bert_dir, "--data", sample_dev, "--questions", "6", "--max-length", "256")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert_machine_first(out)
    assert "1x = 6 questions, 10x = 60 questions" in out
    assert re.search(r"^1x \(6 questions\): peak RSS [\d.]+ MiB, wall [\d.]+ s", out, re.M), out
    assert re.search(r"^10x \(60 questions\): peak RSS [\d.]+ MiB, wall [\d.]+ s", out, re.M), out
    assert re.search(r"^peak RSS 10x / 1x: [\d.]+", out, re.M), out


def test_eval_memory_without_data_says_so(tmp_path):
    proc = run("eval_memory.py", "--data", tmp_path / "missing.json")
    assert proc.returncode != 0
    assert "missing.json not found" in proc.stderr


def test_infer_speed_times_every_arm_per_run(tiny_bert_dir, sample_dev, tmp_path):
    arms = "recipe,torch,torch-fp32,torch-blas,torch-autocast"
    out_json = tmp_path / "speed.json"
    proc = run("infer_speed.py", "--model", tiny_bert_dir, "--data", sample_dev, "--questions", "10", "--runs", "2", "--arms", arms, "--json", out_json)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert_machine_first(out)
    assert re.search(r"^CPU flags: ", out, re.M), out[:500]
    for run_number in (1, 2):  # each run times every arm, with its ratio to that run's recipe
        assert re.search(rf"^run {run_number}: recipe [\d.]+ q/s \| torch [\d.]+ q/s [\d.]+x \| torch-fp32 [\d.]+ q/s [\d.]+x", out, re.M), out
    assert "= torch-blas" in out  # the fp32 model as loaded is the reference of the answers column
    import json

    rows = {row["arm"]: row for row in json.loads(out_json.read_text())}
    assert set(rows) == set(arms.split(","))
    assert all(len(row["questions_per_second"]) == len(row["vs_recipe"]) == 2 for row in rows.values())
    assert rows["torch-fp32"]["same_as_torch-blas"] == 10  # oneDNN fp32 answers as the model as loaded
    assert rows["recipe"]["median_vs_recipe"] == 1.0


def test_infer_speed_arm_at_a_batch_size_runs_beside_the_default(tiny_bert_dir, sample_dev):
    proc = run("infer_speed.py", "--model", tiny_bert_dir, "--data", sample_dev, "--questions", "6", "--runs", "1", "--arms", "recipe,torch,torch:4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^run 1: recipe [\d.]+ q/s \| torch [\d.]+ q/s [\d.]+x \| torch:4 [\d.]+ q/s [\d.]+x", proc.stdout, re.M), proc.stdout
    assert "batch: recipe 32, spanqa each backend's default" in proc.stdout
    bad = run("infer_speed.py", "--model", tiny_bert_dir, "--data", sample_dev, "--arms", "torch:0")
    assert bad.returncode == 2 and "torch:0 is not one of" in bad.stderr
