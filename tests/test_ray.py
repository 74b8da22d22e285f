"""`spanqa predict --engine ray`: a local Ray head (2 CPUs) reached through RAY_ADDRESS gives the
lines of `spanqa predict`, byte for byte, with one actor or two; Parquet holds the same records."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spanqa.interfaces.cli import app

# Not imported here: Ray reads its cluster token from the environment once, at import, and the
# CLI runs below in their own processes, as users run them, with the test cluster's environment.
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="--engine ray needs the 'ray' extra: pip install 'spanqa[ray]'")

runner = CliRunner()
BIN = Path(sys.executable).parent
RAY, SPANQA = BIN / "ray", BIN / "spanqa"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """``ray start --head`` with 2 CPUs in a temporary folder; its address in RAY_ADDRESS; stopped after."""
    if not RAY.exists():
        pytest.skip(f"no ray command beside {sys.executable}")
    # A short folder: Ray's unix sockets live under it, and socket paths are limited to ~107 characters.
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    port = _free_port()
    # Ray clusters authenticate clients with a token; this one's is made here and given to both sides
    # through the environment, so ~/.ray/auth_token is neither read nor written.
    cluster = {"RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16), "RAY_USAGE_STATS_ENABLED": "0"}
    env = {**os.environ, **cluster}
    env.pop("RAY_ADDRESS")
    start = [str(RAY), "start", "--head", "--num-cpus", "2", "--num-gpus", "0", f"--port={port}", f"--temp-dir={temp}"]
    subprocess.run([*start, "--include-dashboard=false", "--disable-usage-stats"], check=True, env=env, capture_output=True, timeout=120)
    previous = {name: os.environ.get(name) for name in cluster}
    os.environ.update(cluster)
    try:
        yield cluster["RAY_ADDRESS"]
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture()
def questions(tmp_path: Path) -> Path:
    contexts = ["The Danube flows through Vienna and Budapest.", "Sourdough rises because of wild yeast.", "Mount Everest is the highest mountain."]
    asked = ["What flows through Vienna?", "Why does sourdough rise?", "Which mountain is the highest?", "Where does the Danube flow?"]
    rows = [{"id": f"q{i}", "question": asked[i % 4], "context": contexts[i % 3]} for i in range(70)]
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _spanqa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SPANQA), *args], capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})


def _lines(folder: Path) -> str:
    return "".join(f.read_text(encoding="utf-8") for f in sorted(folder.iterdir()))


@needs_ray
@pytest.mark.integration
def test_ray_engine_gives_the_lines_of_the_local_engine(ray_head: str, questions: Path, tmp_path: Path, tiny_bert_dir: Path) -> None:
    local = tmp_path / "local.jsonl"
    common = ["predict", str(tiny_bert_dir), str(questions), "--device", "cpu", "--top-k", "2"]
    assert runner.invoke(app, [*common, "--out", str(local)]).exit_code == 0
    for actors in ("1", "2"):
        out = tmp_path / f"ray{actors}"
        # 30 questions a batch: 3 batches, the local engine's chunks are 64; answers do not depend on it.
        result = _spanqa(*common, "--out", str(out), "--engine", "ray", "--num-actors", actors, "--questions-per-batch", "30")
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"on the Ray cluster at {ray_head}: 1 nodes, 2 CPUs" in result.stderr  # through RAY_ADDRESS, not a Ray of its own
        assert "wrote 70 predictions" in result.stdout
        assert _lines(out) == local.read_text(encoding="utf-8")

    import pyarrow.parquet as pq

    out = tmp_path / "parquet"
    result = _spanqa(*common, "--out", str(out), "--engine", "ray", "--format", "parquet")
    assert result.returncode == 0, result.stderr[-3000:]
    records = [row for f in sorted(out.iterdir()) for row in pq.read_table(f).to_pylist()]
    expected = [json.loads(line) for line in local.read_text(encoding="utf-8").splitlines()]
    for record in expected:
        record.pop("document", None)
    assert records == expected


@needs_ray
def test_ray_engine_refuses_bad_options_before_starting(questions: Path, tmp_path: Path, tiny_bert_dir: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x.jsonl").write_text("{}\n", encoding="utf-8")
    common = ["predict", str(tiny_bert_dir), str(questions), "--engine", "ray"]
    cases = {
        ("--out", str(tmp_path / "taken")): "folder exists and is not empty; pass --overwrite",
        ("--out", str(questions)): "exists and is not a folder",
        ("--out", str(tmp_path / "o"), "--shard", "0/2"): "--shard and --resume are for the local engine",
        ("--out", str(tmp_path / "o"), "--format", "csv"): "unknown output format 'csv'",
        ("--out", str(tmp_path / "o"), "--engine", "spark"): "unknown engine 'spark'",
    }
    for extra, message in cases.items():
        result = runner.invoke(app, [*common, *extra])
        assert result.exit_code == 1, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_without_ray_the_error_names_the_extra(questions: Path, tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: importing it raises ImportError
    result = runner.invoke(app, ["predict", str(tiny_bert_dir), str(questions), "--out", str(tmp_path / "o"), "--engine", "ray"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == ["error: --engine ray needs Ray Data (no module 'ray'): pip install \"spanqa[ray]\""]
