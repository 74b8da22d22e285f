"""spanqa predict --shard i/n: the parts cover every question exactly once, and concatenated equal the whole run."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from spanqa.core.errors import ConfigError
from spanqa.interfaces.cli import app
from spanqa.jobs.predict import parse_shard, shard_range

runner = CliRunner()


@given(st.integers(0, 500), st.integers(1, 40))
def test_shard_ranges_cover_every_question_once(total, count):
    ranges = [shard_range(total, i, count) for i in range(count)]
    covered = [q for start, stop in ranges for q in range(start, stop)]
    assert covered == list(range(total))  # in order, none twice, none missed
    sizes = [stop - start for start, stop in ranges]
    assert max(sizes) - min(sizes) <= 1


def test_three_shards_together_equal_the_whole_run(tiny_bert_dir, sample_dev, tmp_path):
    whole = tmp_path / "all.jsonl"
    assert runner.invoke(app, ["predict", str(tiny_bert_dir), str(sample_dev), "-o", str(whole)]).exit_code == 0
    parts = []
    for i in range(3):
        out = tmp_path / f"part{i}.jsonl"
        result = runner.invoke(app, ["predict", str(tiny_bert_dir), str(sample_dev), "-o", str(out), "--shard", f"{i}/3"])
        assert result.exit_code == 0, result.output
        parts.append([json.loads(line) for line in out.read_text().splitlines()])
    ids = [r["id"] for part in parts for r in part]
    assert len(ids) == len(set(ids)) and all(parts)  # every question exactly once, no part empty
    expected = [json.loads(line) for line in whole.read_text().splitlines()]
    assert ids == [r["id"] for r in expected]
    assert [r["answer"] for part in parts for r in part] == [r["answer"] for r in expected]


@pytest.mark.parametrize("text", ["3/3", "-1/3", "1", "a/b", "1/0", "0/"])
def test_bad_shards_are_refused(text, tiny_bert_dir, sample_dev, tmp_path):
    with pytest.raises(ConfigError, match="shard"):
        parse_shard(text)
    result = runner.invoke(app, ["predict", str(tiny_bert_dir), str(sample_dev), "-o", str(tmp_path / "p.jsonl"), "--shard", text])
    assert result.exit_code == 1 and result.output.count("error:") == 1 and "Traceback" not in result.output
