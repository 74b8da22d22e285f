"""The bench scripts run end to end (a few steps on a tiny model); their figures are for people, not asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_train_speed_runs_both_arms(tiny_bert_dir, sample_train, sample_dev, tmp_path):
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [
            sys.executable, str(BENCH / "train_speed.py"), "--model", str(tiny_bert_dir), "--train", str(sample_train), "--eval", str(sample_dev),
            "--train-questions", "24", "--eval-questions", "8", "--steps", "2", "--batch-size", "4", "--max-length", "128", "--stride", "32",
            "--variants", "default,fp32", "--device", "cpu", "--json", str(out),
        ],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CPU:" in proc.stdout and "GPU:" in proc.stdout  # the machine comes first
    for arm in ("recipe", "spanqa default", "spanqa fp32"):
        assert f"\n{arm} " in proc.stdout, proc.stdout
    import json

    figures = json.loads(out.read_text())
    assert [f["name"] for f in figures] == ["recipe", "spanqa default", "spanqa fp32"]
    assert all(f["steps"] == 2 and f["samples_per_second"] > 0 for f in figures)


def test_passage_ranking_prints_every_rule(tiny_bert_dir, sample_dev, tmp_path):
    from spanqa.reading.index import build_index

    build_index([sample_dev], tmp_path / "ix")
    proc = subprocess.run(
        [sys.executable, str(BENCH / "passage_ranking.py"), str(tiny_bert_dir), str(tmp_path / "ix"), str(sample_dev)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CPU:" in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if "| 10: " in line]
    assert len(rows) == 12 and any(row.strip().startswith("minus-null+12") for row in rows)


def test_abuse_serve_runs_and_prints_a_summary(tiny_bert_dir, tmp_path):
    """The cheap attacks (Host, idle connections with a short cap) against a real server on the tiny model; the
    verdicts are not asserted (the server is being hardened), only that every attack ran and was summarised."""
    import json

    out = tmp_path / "abuse.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "abuse_serve.py"), "--quick", "--model", str(tiny_bert_dir), "--device", "cpu",
         "--skip", "a,b,e", "--idle-cap", "3", "--timeout", "20", "--json", str(out)],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "CPU:" in proc.stdout
    summary = proc.stdout.split("\nsummary\n", 1)[1].splitlines()
    assert [line.split()[0] for line in summary] == ["a", "b", "c", "d", "e"], proc.stdout
    assert summary[0].split()[2] == "SKIP" and summary[1].split()[2] == "SKIP" and summary[4].split()[2] == "SKIP"
    assert summary[2].split()[2] in ("PASS", "FAIL") and "attacker.example" in summary[2], proc.stdout
    assert summary[3].split()[2] in ("PASS", "FAIL") and "slow-header" in summary[3], proc.stdout
    figures = json.loads(out.read_text())
    assert set(figures["attacks"]) == {"c", "d"} and "error" not in figures["attacks"]["c"] and "error" not in figures["attacks"]["d"]
    assert figures["attacks"]["d"]["idle"]["seconds"] <= 3 + 5


def test_load_serve_prints_the_server_beside_the_model_alone(tiny_bert_dir):
    """A short load on the tiny model: every request answered as expected, and with ``--offline`` the
    model's own rate on the same mix of requests and the share of it the server delivered."""
    import re

    proc = subprocess.run(
        [sys.executable, str(BENCH / "load_serve.py"), "--model", str(tiny_bert_dir), "--device", "cpu",
         "--clients", "2", "--duration", "2", "--offline", "12"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert re.search(r"^throughput +[\d.]+ req/s", proc.stdout, re.M), proc.stdout
    offline = re.search(r"^offline +([\d.]+) req/s: 12 requests of the same mix \((\d+) questions\).*delivers ([\d.]+) of it", proc.stdout, re.M)
    assert offline and float(offline[1]) > 0 and int(offline[2]) >= 10, proc.stdout  # 12 requests, a few of them invalid or batches
    assert re.search(r"^result +ok$", proc.stdout, re.M), proc.stdout
