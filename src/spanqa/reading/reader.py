"""A fine-tuned QA model with its saved settings: examples in, ranked spans out.

Evaluation, batch prediction and serving all answer through :class:`Reader`,
which runs the one pipeline: features -> model (length-sorted batches, each
padded to its own longest window) -> decode. The model runs behind a
:class:`~spanqa.runtime.backends.Backend`: PyTorch, or ONNX Runtime for an exported model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spanqa.core.config import SpanQAConfig
from spanqa.core.errors import ConfigError
from spanqa.reading.index import Index
from spanqa.reading.indexed import IndexAnswer, answer_from_index
from spanqa.reading.options import AnswerOptions
from spanqa.reading.results import QARequest, ReaderAnswer, ReaderResult
from spanqa.reading.stepwise import Reading, read_chunks
from spanqa.runtime.backends import (
    Backend,
    OnnxBackend,
    Precision,
    TorchBackend,
    backend_batch_size,
    check_batch_size,
    choose_backend,
    pick_device,
    warn_if_int8_may_saturate,
)
from spanqa.runtime.devices import release_freed_memory
from spanqa.runtime.models import load_qa_model, load_tokenizer, resolve_model
from spanqa.runtime.options import LOAD_OPTION_NAMES, LoadOptions
from spanqa.stages.data import QAExample
from spanqa.stages.decode import DecodeConfig, ExamplePrediction, Span, SpanDecoder, abstains, answer_scores, no_answer_threshold, passage_offsets
from spanqa.stages.features import Features, WindowConfig, build_features

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["Reader", "QARequest", "ReaderAnswer", "ReaderResult", "AnswerOptions", "LoadOptions", "pick_device"]

logger = logging.getLogger(__name__)


class Reader:
    """Extractive QA inference for one model, run by PyTorch or ONNX Runtime.

    >>> reader = Reader.from_pretrained("path/to/model")
    >>> predictions = reader.predict_examples(examples)

    ``Reader(model, tokenizer, config)`` wraps a PyTorch model; ``Reader(None, tokenizer, config,
    backend=OnnxBackend(folder))`` any other :class:`~spanqa.runtime.backends.Backend`.
    ``reader.model`` is the PyTorch model, or None for an ONNX model.
    """

    def __init__(
        self,
        model: PreTrainedModel | None,
        tokenizer: PreTrainedTokenizerBase,
        config: SpanQAConfig | None = None,
        *,
        device: str | None = None,
        batch_size: int | None = None,
        dtype: Precision | None = None,
        backend: Backend | None = None,
    ) -> None:
        """A reader over a PyTorch model, or over a ready backend.

        Args:
            model: A PyTorch QA model, or None when ``backend`` is given.
            tokenizer: Its (fast) tokenizer.
            config: Window and decoding settings; default: :class:`SpanQAConfig` defaults.
            device: Where a PyTorch model runs: ``cpu``, ``cuda``, ``cuda:1``, ``mps``; default: CUDA when available.
            batch_size: Windows per forward pass; default: what suits the backend (8 for ONNX Runtime on the CPU, else 32).
            dtype: PyTorch precision, ``bf16``, ``fp16`` or ``fp32``; default: bf16 on GPUs and CPUs that compute it natively, else fp32.
            backend: A ready backend (e.g. :class:`~spanqa.runtime.backends.OnnxBackend`) instead of ``model``.
        """
        if batch_size is not None:
            check_batch_size(batch_size)
        if backend is None:
            if model is None:
                raise TypeError("Reader needs a model or a backend")
            backend = TorchBackend(model, device, dtype)
        elif model is not None:
            raise TypeError("Reader takes a model or a backend, not both")
        self.backend: Backend = backend
        self.model: PreTrainedModel | None = getattr(backend, "model", None)
        self.device = self.backend.device
        self.tokenizer = tokenizer
        self.config = config or SpanQAConfig()
        self.batch_size = backend_batch_size(self.backend) if batch_size is None else batch_size
        self.config.window.check_model_limit(tokenizer, self.backend.max_positions)

    @classmethod
    def from_pretrained(cls, name: str | Path, load: LoadOptions | None = None, **overrides: Any) -> Reader:
        """Load a model folder (a ``checkpoint-N/`` or a ``spanqa export`` folder too), alias or hub id
        with its saved ``spanqa.json``.

        Args:
            name: Model folder, alias (``minilm``) or hub id.
            load: Device, backend, precision and batch size (see :class:`~spanqa.runtime.options.LoadOptions`).
            **overrides: :class:`~spanqa.runtime.options.LoadOptions` fields on top of ``load``
                (``device="cpu"``, ``batch_size=8``), and :class:`SpanQAConfig` fields that replace the
                saved values (``max_length``, ``stride``, ``null_threshold``, ...); None keeps the value.

        Raises:
            ModelError: ``backend="onnx"`` for a model without ``model.onnx``, or onnxruntime missing.
            ConfigError: an unknown backend or dtype, or a dtype for an ONNX model.
        """
        options = (load or LoadOptions()).updated(**{k: v for k, v in overrides.items() if k in LOAD_OPTION_NAMES})
        settings = {k: v for k, v in overrides.items() if k not in LOAD_OPTION_NAMES}
        path = resolve_model(str(name))
        chosen = choose_backend(path, options.backend)
        if chosen == "torch" and options.device:
            pick_device(options.device)  # an unusable device fails now, not after the model has loaded
        config = (SpanQAConfig.load(path) if Path(path).is_dir() else SpanQAConfig()).updated(**settings)
        tokenizer = load_tokenizer(path)
        backend: Backend
        if chosen == "onnx":
            if options.dtype not in (None, "fp32"):
                raise ConfigError(
                    f"dtype {options.dtype!r} applies to the torch backend; {name} is an ONNX model, run as exported (export with --int8 for speed)"
                )
            backend = OnnxBackend(path, device=options.device)
            if config.extra.get("export", {}).get("int8"):
                warn_if_int8_may_saturate(str(name), backend.device)
        else:
            backend = TorchBackend(load_qa_model(path), options.device, options.dtype, onednn=True)  # the reader owns this model
        return cls(None, tokenizer, config, batch_size=options.batch_size, backend=backend)

    def with_settings(self, *, batch_size: int | None = None, **overrides: Any) -> Reader:
        """This reader (same model and tokenizer, no copy) with other settings.

        Args:
            batch_size: Windows per forward pass (default: this reader's).
            **overrides: :class:`SpanQAConfig` fields such as ``max_length``, ``stride``,
                ``null_threshold``; None values keep the current setting.
        """
        config = self.config.updated(**overrides)
        if config == self.config and batch_size in (None, self.batch_size):
            return self
        return Reader(None, self.tokenizer, config, batch_size=self.batch_size if batch_size is None else batch_size, backend=self.backend)

    def features(self, examples: Sequence[QAExample], window: WindowConfig | None = None, word_edges: bool = False) -> Features:
        """The model windows of ``examples``.

        Args:
            examples: Questions with their contexts.
            window: Window settings; default: this reader's.
            word_edges: Also record whole-word spans (for ``align_to_words``).
        """
        return build_features(examples, self.tokenizer, window or self.config.window, word_edges=word_edges)

    def logits(self, features: Features, batch_size: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(window indices, start logits, end logits)`` in length-sorted batches.

        Args:
            features: Windows from :meth:`features`.
            batch_size: Windows per forward pass; default: this reader's.
        """
        yield from self.forward(features.model_inputs(), batch_size)

    def forward(self, inputs: Sequence[Mapping[str, Any]], batch_size: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Run unpadded windows through the model: yield ``(positions in inputs, start logits, end logits)``
        per pass, longest windows first, each pass padded to its own longest window.

        Args:
            inputs: Windows as :meth:`Features.model_inputs <spanqa.stages.features.Features.model_inputs>` rows.
            batch_size: Windows per forward pass; default: this reader's.
        """
        size = batch_size or self.batch_size
        lengths = np.fromiter((len(row["input_ids"]) for row in inputs), dtype=np.int64, count=len(inputs))
        # Longest windows first: each batch is padded to its own longest row, so similar lengths waste little.
        order = np.argsort(-lengths, kind="stable")
        # oneDNN keeps a compiled kernel per input shape: lengths rounded up to 16 bound their number, where every
        # distinct length grew memory with the data (1.32x peak RSS at 10x the XQuAD questions, 1.07x rounded).
        multiple = 16 if getattr(self.backend, "onednn", False) else None
        for lo, hi in length_batches(lengths[order], size):
            rows = order[lo:hi]
            padded = self.tokenizer.pad([inputs[i] for i in rows], return_tensors="np", pad_to_multiple_of=multiple)
            start, end = self.backend(dict(padded))
            longest = int(padded["attention_mask"].sum(axis=1).max())  # the rounding's extra columns are padding
            yield rows, start[:, :longest], end[:, :longest]

    def predict_examples(
        self,
        examples: Sequence[QAExample],
        decode_config: DecodeConfig | None = None,
        *,
        chunk_size: int = 512,
        progress: bool = False,
    ) -> list[ExamplePrediction]:
        """Predictions for examples, processed in chunks so memory stays bounded.

        Args:
            examples: Questions with their contexts (answers are not needed).
            decode_config: Decoding settings; default: this reader's ``spanqa.json``.
            chunk_size: Examples tokenized and decoded at a time.
            progress: Show a progress bar.
        """
        config = decode_config or self.config.decode_config()
        bar = _progress(len(examples), progress)
        out: list[ExamplePrediction] = []
        for lo in range(0, len(examples), chunk_size):
            chunk = examples[lo : lo + chunk_size]
            out.extend(self._decode(chunk, config))
            bar.update(len(chunk))
        bar.close()
        return out


    def __call__(
        self,
        question: str,
        context: str | None = None,
        *,
        documents: Sequence[str] | None = None,
        options: AnswerOptions | None = None,
        **overrides: Any,
    ) -> ReaderResult:
        """Answer one question over a context of any length, or rank answers across ``documents``.

        Args:
            question: The question.
            context: The text to answer from (or give ``documents``).
            documents: Several texts; answers are ranked across them and name their document.
            options: How to answer; default: the model's settings, one answer.
            **overrides: :class:`~spanqa.reading.options.AnswerOptions` fields on top of ``options``
                (``top_k=3``, ``max_answer_length=10``, ``handle_impossible=False``, ...).
        """
        texts = list(documents) if documents is not None else None
        return self.answer_batch([QARequest(question, context, texts, AnswerOptions.of(options, **overrides))])[0]

    def answer_from_index(
        self, question: str, index: Index | str | Path, *, passages: int = 10, options: AnswerOptions | None = None, **overrides: Any
    ) -> IndexAnswer:
        """Answer from a document collection: retrieve passages from a ``spanqa index`` folder, rank answers across them.

        Args:
            question: The question.
            index: A loaded :class:`~spanqa.reading.index.Index` or its folder (loading takes a moment: keep the Index for many questions).
            passages: How many retrieved passages to read.
            options: How to answer; default: the model's settings, one answer.
            **overrides: :class:`~spanqa.reading.options.AnswerOptions` fields on top of ``options``.

        Returns:
            Answers naming their source document, with character offsets in it, and the passages read.
        """
        return answer_from_index(self, Index.open(index), question, passages=passages, options=AnswerOptions.of(options, **overrides))

    def answer_batch(
        self,
        requests: Sequence[QARequest | Mapping[str, Any] | tuple[str, str]],
        *,
        chunk_size: int = 256,
    ) -> list[ReaderResult]:
        """Answer many requests with shared forward passes; each keeps its own answer options.

        Args:
            requests: :class:`QARequest` objects, mappings of its fields, or ``(question, context)`` pairs.
            chunk_size: Requests answered per shared pass.
        """
        parsed = [QARequest.coerce(r) for r in requests]
        results: list[ReaderResult] = []
        for lo in range(0, len(parsed), chunk_size):
            results.extend(self._answer_chunk(parsed[lo : lo + chunk_size]))
        return results

    def _answer_chunk(self, requests: list[QARequest]) -> list[ReaderResult]:
        # The server reads the same way in steps (spanqa.reading.stepwise): one path, one set of answers.
        return self._read(requests).results()

    def read_texts(self, requests: Sequence[QARequest]) -> list[list[ExamplePrediction]]:
        """Each request's texts decoded one by one, before :meth:`rank` ranks them together: per
        text its candidate spans (logits) and its null score.

        Args:
            requests: The questions with their texts and options.
        """
        return self._read(requests).predictions()

    def _read(self, requests: Sequence[QARequest]) -> Reading:
        reading = Reading(self, requests)
        reading.build_all()
        read_chunks(self, reading.take())
        return reading

    def _decode(self, examples: Sequence[QAExample], config: DecodeConfig, max_answer_lengths: np.ndarray | None = None) -> list[ExamplePrediction]:
        """The one inference path: windows, model, decode."""
        features = self.features(examples, word_edges=config.align_to_words)
        decoder = SpanDecoder(examples, features, config, max_answer_lengths=max_answer_lengths)
        for rows, start, end in self.logits(features):
            decoder.add(rows, start, end)
            release_freed_memory()  # each batch has its own length: keep the heap from fragmenting
        return decoder.finalize()

    def rank(self, request: QARequest, texts: Sequence[ExamplePrediction], retrieval_weight: float | None = None) -> ReaderResult:
        """Pool the candidates of every text of ``request``, each scored against its own text's null
        score (and, with ``request.document_scores``, the retrieval score fused in; see
        :func:`~spanqa.stages.decode.passage_offsets`), and keep the ``top_k`` that pass the score
        threshold and do not overlap a better answer from the same text. "No answer" when no text's
        best span beats its null score by the no-answer threshold.

        Args:
            request: The question.
            texts: :meth:`read_texts`'s result for it (the first ``len(request.texts)`` are used).
            retrieval_weight: Instead of the model's ``retrieval_weight`` (``evaluate --index`` fits it this way).
        """
        options = request.options.filled_from(self.config)
        weight = self.config.retrieval_weight if retrieval_weight is None else retrieval_weight
        read = list(texts[: len(request.texts)])
        offsets = passage_offsets([prediction.null_score for prediction in read], request.document_scores, weight)
        n_best = self.config.n_best
        pool = sorted(
            ((span.logit + offsets[d], span, d, rank < n_best) for d, prediction in enumerate(read) for rank, span in enumerate(prediction.candidates)),
            key=lambda item: -item[0],
        )
        handle = bool(options.handle_impossible)
        # Scores are shares of each text's n_best best candidates (and "no answer"), whatever the top_k: the extra
        # candidates gathered to fill a top-k list past overlapping ones get their share of the same total.
        probs, null_probability = answer_scores(
            [score for score, *_ in pool], 0.0, self.config.temperature, with_null=handle, normalizing=np.array([scored for *_, scored in pool], dtype=bool)
        )
        answers, overlapping = _top_answers(pool, probs, options, single=request.context is not None)
        best = pool[0][0] if pool else -np.inf
        impossible = not answers or (handle and abstains(0.0, best, self.config.null_threshold))
        shown_threshold = no_answer_threshold(self.config.null_threshold, self.config.temperature) if handle else 1.0
        note = _fewer_note(len(answers), overlapping, options) if len(answers) < options.top_k and overlapping else None
        return ReaderResult(request.question, answers, float(null_probability), bool(impossible), request.id, shown_threshold, note)


def _top_answers(pool: list[tuple[float, Span, int, bool]], probs: np.ndarray, options: AnswerOptions, single: bool) -> tuple[list[Span], int]:
    """The ``top_k`` best of ``pool`` (best first) above the score threshold, none overlapping a better one of its text;
    and how many candidates above the threshold were passed over for overlapping one."""
    answers: list[Span] = []
    overlapping = 0
    for i, (_, span, d, _) in enumerate(pool):
        if len(answers) == options.top_k or probs[i] < (options.score_threshold or 0.0):
            break  # best first: every later one scores lower
        document = None if single else d
        if any(a.document == document and _overlap(a, span) > (options.overlap_threshold or 0.0) for a in answers):
            overlapping += 1
            continue  # the same answer again, or most of it: the better-scored one stands for both
        answers.append(replace(span, score=float(probs[i]), document=document))
    return answers, overlapping


def _fewer_note(kept: int, overlapping: int, options: AnswerOptions) -> str:
    """Why a top-k list is shorter than asked: the other candidates overlap the answers kept."""
    threshold = options.overlap_threshold or 0.0
    return (
        f"{kept} of {options.top_k} answers: the other {overlapping} candidates overlap these by more than "
        f"{threshold:.0%} (overlap_threshold {threshold:g}; 1 keeps them)"
    )


def _overlap(a: Span, b: Span) -> float:
    """Characters two spans share, as a share of the shorter one (0: apart, 1: one holds the other)."""
    shared = min(a.end, b.end) - max(a.start, b.start)
    return max(shared, 0) / max(min(a.end - a.start, b.end - b.start), 1)


PADDING_SLACK = 0.75
"""A batch ends early where a window is shorter than this share of the batch's longest one."""


def length_batches(sorted_lengths: np.ndarray, size: int, slack: float = PADDING_SLACK) -> list[tuple[int, int]]:
    """``[lo, hi)`` ranges of windows sorted longest first: at most ``size`` windows each, and a new range
    wherever a window is shorter than ``slack`` times its range's longest.

    Bulk data has many windows of each length, so its batches stay full; a server's micro-batch of a
    few random-length windows is split instead of padding them all to the longest (ONNX int8, 10 random
    XQuAD questions: 152 ms as one batch, 92 ms in tight ones).

    Args:
        sorted_lengths: Window lengths, longest first.
        size: Most windows per batch.
        slack: The shortest window a batch keeps, as a share of its longest.
    """
    ranges: list[tuple[int, int]] = []
    lo = 0
    for i, length in enumerate(sorted_lengths.tolist()):
        if i > lo and (i - lo == size or length < slack * sorted_lengths[lo]):
            ranges.append((lo, i))
            lo = i
    if lo < len(sorted_lengths):
        ranges.append((lo, len(sorted_lengths)))
    return ranges


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="question", desc="predicting")
