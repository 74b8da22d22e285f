"""Whenever the API or the page says "no answer", the no-answer score it shows is above the threshold it shows, and the reverse."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
from conftest import XQUAD, needs_shared  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from spanqa import Reader, load_examples  # noqa: E402
from spanqa.interfaces.serve import create_app  # noqa: E402

XQUAD_EN = XQUAD / "xquad.en.json"


def _agree(reader: Reader, examples, batch: int = 32) -> int:
    """Ask every question through the HTTP API; check the rule on each result; return the "no answer" count."""
    abstained = 0
    with TestClient(create_app(reader)) as client:
        for lo in range(0, len(examples), batch):
            questions = [{"question": ex.question, "context": ex.context, "top_k": 3} for ex in examples[lo : lo + batch]]
            response = client.post("/answer", content=json.dumps({"questions": questions}), headers={"content-type": "application/json"})
            assert response.status_code == 200, response.text
            for result in response.json()["results"]:
                shown, threshold = result["no_answer_score"], result["no_answer_threshold"]
                if result["is_impossible"]:
                    abstained += 1
                    assert shown > threshold and result["answer"] == ""
                else:
                    assert shown <= threshold and result["answer"] == result["answers"][0]["text"]
                    assert result["score"] == result["answers"][0]["score"]
    return abstained


@pytest.mark.parametrize("null_threshold, temperature", [(0.0, 1.0), (-1.5, 2.5), (2.0, 0.7)])
def test_sample_data(reader, sample_dev, null_threshold, temperature):
    reader = reader.with_settings(handle_impossible=True, null_threshold=null_threshold, temperature=temperature)
    examples = load_examples(sample_dev).examples
    abstained = _agree(reader, examples)
    assert 0 <= abstained <= len(examples)


@needs_shared(XQUAD_EN)
def test_xquad_eval_split(reader):
    from spanqa.stages.data import split_by_title

    examples = split_by_title(load_examples(XQUAD_EN), 36)[1].examples
    base = reader.with_settings(handle_impossible=True, temperature=1.7)
    counts = [_agree(base.with_settings(null_threshold=threshold), examples) for threshold in (-4.0, -2.0, 0.5)]
    assert counts == sorted(counts, reverse=True)  # a higher threshold abstains less
    assert counts[0] > 0 and counts[-1] < len(examples)  # both decisions occur, so both directions were checked
