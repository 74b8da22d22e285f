"""The PyTorch precision by default: bf16 on CPUs that compute it natively, fp32 elsewhere; ``--dtype`` still chooses."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from samples import weight_reading_qa_model  # noqa: E402

from spanqa import Reader, load_examples  # noqa: E402
from spanqa.jobs import evaluate as evaluate_module  # noqa: E402
from spanqa.runtime import backends  # noqa: E402
from spanqa.runtime.backends import TorchBackend, default_precision, evaluation_precision  # noqa: E402
from spanqa.runtime.models import load_qa_model  # noqa: E402

CPU = torch.device("cpu")


@pytest.fixture
def native_bf16(monkeypatch):
    """This CPU reports AVX-512 BF16 or AMX (bf16 still runs where it does not, emulated)."""
    monkeypatch.setattr(backends, "cpu_has_fast_bf16", lambda: True)


@pytest.fixture
def no_native_bf16(monkeypatch):
    monkeypatch.setattr(backends, "cpu_has_fast_bf16", lambda: False)


def _batch(n: int = 3, length: int = 12) -> dict[str, np.ndarray]:
    ids = np.arange(5, 5 + n * length).reshape(n, length) % 900 + 5
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def _linears(model) -> dict[str, set]:
    """Linear layer kinds by their weight dtype."""
    found: dict[str, set] = {}
    for module in model.modules():
        if "Linear" in type(module).__name__:
            found.setdefault(type(module).__name__, set()).add(module.weight.dtype)
    return found


def test_the_cpu_default_follows_native_bf16(monkeypatch):
    monkeypatch.setattr(backends, "cpu_has_fast_bf16", lambda: True)
    assert default_precision(CPU) == "bf16"
    monkeypatch.setattr(backends, "cpu_has_fast_bf16", lambda: False)
    assert default_precision(CPU) == "fp32"
    monkeypatch.setattr(backends, "cuda_has_bf16", lambda: True)
    assert default_precision(torch.device("cuda")) == "bf16"
    monkeypatch.setattr(backends, "cuda_has_bf16", lambda: False)
    assert default_precision(torch.device("cuda")) == "fp32"
    assert default_precision(torch.device("mps")) == "fp32"


def test_default_on_a_native_bf16_cpu_converts_the_weights_once(tiny_bert_dir, native_bf16):
    backend = Reader.from_pretrained(tiny_bert_dir, device="cpu").backend
    assert backend.dtype == "bf16" and backend.bf16_weights
    assert backend._autocast().__class__.__name__ == "nullcontext"  # no per-call casting
    head = backend.model.qa_outputs  # the QA head stays fp32: logits are not rounded to bf16
    assert type(head).__name__ == "Fp32Head" and head.linear.weight.dtype == torch.float32
    assert backend.model.bert.embeddings.word_embeddings.weight.dtype == torch.bfloat16
    start, end = backend(_batch())
    assert start.dtype == end.dtype == np.float32 and start.shape == (3, 12)
    if backend.onednn:  # this torch has oneDNN's linear op: the encoder's layers run its bf16 kernels
        kinds = _linears(backend.model.bert)
        assert kinds == {"OneDnnLinear": {torch.bfloat16}}, kinds


def test_default_elsewhere_and_dtype_fp32_are_todays_fp32(tiny_bert_dir, no_native_bf16, monkeypatch):
    plain = TorchBackend(load_qa_model(tiny_bert_dir), "cpu", "fp32")
    default = Reader.from_pretrained(tiny_bert_dir, device="cpu").backend
    monkeypatch.setattr(backends, "cpu_has_fast_bf16", lambda: True)
    asked = Reader.from_pretrained(tiny_bert_dir, device="cpu", dtype="fp32").backend  # --dtype fp32 on a bf16 CPU
    for backend in (default, asked):
        assert backend.dtype == "fp32" and not backend.bf16_weights
        assert all(dtypes == {torch.float32} for dtypes in _linears(backend.model).values())
        if backend.onednn:
            assert set(_linears(backend.model)) == {"OneDnnLinear"}  # the oneDNN fp32 linears, as before
        for got, want in zip(backend(_batch()), plain(_batch())):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert default.onednn == asked.onednn


@pytest.mark.parametrize("family", ["tiny_bert_dir", "tiny_roberta_dir"])
def test_bf16_default_gives_the_fp32_top_answers(family, request, sample_dev, native_bf16):
    folder = request.getfixturevalue(family)
    examples = load_examples(sample_dev).examples
    fp32 = Reader.from_pretrained(folder, device="cpu", dtype="fp32")
    bf16 = Reader.from_pretrained(folder, device="cpu")
    assert bf16.backend.bf16_weights
    want = fp32.predict_examples(examples)
    got = bf16.predict_examples(examples)
    same = sum(g.text == w.text for g, w in zip(got, want))
    assert same >= 0.9 * len(examples), f"{same} of {len(examples)}"
    # A random tiny model's spans are nearly tied (logits of about 0.5): an answer differs only where fp32
    # itself ranks bf16's answer within bf16 rounding of its own.
    threshold = fp32.config.null_threshold
    for g, w in zip(got, want):
        if g.text == w.text:
            continue
        if "" in (g.text, w.text):  # answer or abstain: the null score was tied with the best span's
            assert abs(w.null_odds - threshold) < 0.01, (g.text, w.text, w.null_odds)
            continue
        fp32_logit = max(c.logit for c in w.candidates if c.text == g.text)
        assert w.candidates[0].logit - fp32_logit < 0.01, (g.text, w.text)
    np.testing.assert_allclose([p.best_score for p in got], [p.best_score for p in want], atol=0.01)


def test_a_callers_model_is_not_rewritten(tiny_bert_dir, native_bf16):
    model = load_qa_model(tiny_bert_dir)
    reader = Reader(model, Reader.from_pretrained(tiny_bert_dir, device="cpu", dtype="fp32").tokenizer, device="cpu")
    assert reader.backend.dtype == "bf16" and not reader.backend.bf16_weights  # autocast over the model as passed
    assert type(model.qa_outputs) is torch.nn.Linear and {p.dtype for p in model.parameters()} == {torch.float32}
    assert reader("Who wrote the book?", "The book was written by Jane Austen.").answers


def test_a_model_that_breaks_in_bf16_is_put_back(native_bf16):
    model = weight_reading_qa_model("qa_outputs")  # the fp32 head wrapper has no .weight
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    backend = TorchBackend(model, "cpu", onednn=True)  # type: ignore[arg-type]
    assert backend.dtype == "bf16" and not backend.bf16_weights  # falls back to autocast
    assert type(model.qa_outputs) is torch.nn.Linear
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32 and torch.equal(p, weights[name]), name  # the exact fp32 weights, not a round trip
    start, _ = backend(_batch())
    assert np.isfinite(start).all()


def test_evaluation_stays_fp32_on_the_cpu(tiny_bert_dir, sample_dev, native_bf16, monkeypatch):
    assert evaluation_precision("cpu") == "fp32"
    loaded = []
    from_pretrained = Reader.from_pretrained.__func__  # type: ignore[attr-defined]

    def spy(cls, name, load=None, **overrides):
        reader = from_pretrained(cls, name, load, **overrides)
        loaded.append(reader.backend.dtype)
        return reader

    monkeypatch.setattr(evaluate_module.Reader, "from_pretrained", classmethod(spy))
    exact = evaluate_module.evaluate(tiny_bert_dir, sample_dev, device="cpu").metrics
    asked = evaluate_module.evaluate(tiny_bert_dir, sample_dev, device="cpu", dtype="bf16").metrics
    assert loaded == ["fp32", "bf16"]  # bf16 only when asked for
    assert exact["f1"] == pytest.approx(asked["f1"], abs=5.0)
