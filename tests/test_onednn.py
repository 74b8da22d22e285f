"""The CPU fp32 fast path: a reader's own model runs its linear layers through oneDNN, with the same answers."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from samples import weight_reading_qa_model  # noqa: E402

from spanqa import Reader  # noqa: E402
from spanqa.runtime.backends import TorchBackend  # noqa: E402
from spanqa.runtime.models import load_qa_model  # noqa: E402

QUESTION, CONTEXT = "Who wrote the book?", "The book was written by Jane Austen in 1811, in a small house."


def _batch(n: int = 3, length: int = 12) -> dict[str, np.ndarray]:
    ids = np.arange(5, 5 + n * length).reshape(n, length) % 900 + 5
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def _linear_types(model) -> set[str]:
    return {type(m).__name__ for m in model.modules() if "Linear" in type(m).__name__}


@pytest.mark.parametrize("family", ["tiny_bert_dir", "tiny_roberta_dir"])
def test_onednn_layers_give_the_same_logits(family, request):
    folder = request.getfixturevalue(family)
    plain = TorchBackend(load_qa_model(folder), "cpu", "fp32")
    fast = TorchBackend(load_qa_model(folder), "cpu", "fp32", onednn=True)
    if not fast.onednn:
        pytest.skip("this torch build has no oneDNN linear op")
    assert _linear_types(plain.model) == {"Linear"} and _linear_types(fast.model) == {"OneDnnLinear"}
    for got, want in zip(fast(_batch()), plain(_batch())):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_from_pretrained_owns_its_model_and_answers_as_before(tiny_bert_dir):
    fast = Reader.from_pretrained(tiny_bert_dir, device="cpu", dtype="fp32")
    plain = Reader(load_qa_model(tiny_bert_dir), fast.tokenizer, fast.config, device="cpu", dtype="fp32")
    assert not plain.backend.onednn  # a model the caller passed in is not rewritten
    assert _linear_types(plain.model) == {"Linear"}
    spans = [[(a.text, a.start, a.end) for a in reader(QUESTION, CONTEXT, top_k=5).answers] for reader in (fast, plain)]
    assert spans[0] == spans[1] and spans[0]


def test_onednn_stays_off_for_autocast_and_unconvertible_models(tiny_bert_dir):
    # fp16 on the CPU runs under autocast, which would cast around the oneDNN fp32 op; bf16 converts the
    # weights instead and runs oneDNN's bf16 kernels (tests/test_precision.py)
    assert not TorchBackend(load_qa_model(tiny_bert_dir), "cpu", "fp16", onednn=True).onednn

    backend = TorchBackend(weight_reading_qa_model("qa"), "cpu", "fp32", onednn=True)  # type: ignore[arg-type]
    assert not backend.onednn and type(backend.model.qa) is torch.nn.Linear  # put back as it was
    start, end = backend(_batch())
    assert start.shape == (3, 12) and np.isfinite(start).all()
