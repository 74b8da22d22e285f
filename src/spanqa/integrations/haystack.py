"""``SpanQAReader``: a spanqa model as the extractive reader of a Haystack pipeline.

It mirrors Haystack's own extractive reader (``TransformersExtractiveReader``, in the
``transformers-haystack`` package since haystack-ai 3): the same ``run`` inputs and the same output,
``{"answers": list[ExtractedAnswer]}`` best first with a "no answer" entry (``data=None``), so it
takes that reader's place after a retriever::

    from haystack import Pipeline
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
    from spanqa.integrations.haystack import SpanQAReader

    pipe = Pipeline()
    pipe.add_component("retriever", InMemoryBM25Retriever(document_store=store))
    pipe.add_component("reader", SpanQAReader("path/to/model"))
    pipe.connect("retriever.documents", "reader.documents")
    pipe.run({"retriever": {"query": question}, "reader": {"query": question}})

Haystack 3 rebuilds only allowlisted classes from a saved pipeline, so loading one that holds this
reader names its module: ``Pipeline.loads(text, allowed_modules=["spanqa.integrations.haystack"])``.

The answers are spanqa's: overlapping windows over long documents, one softmax over every
candidate of every document and "no answer", and the settings the model was evaluated with
(its ``spanqa.json``). Needs ``pip install "spanqa[haystack]"`` (haystack-ai 3.x).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, get_args

from spanqa.core.errors import ConfigError
from spanqa.reading.options import AnswerOptions
from spanqa.reading.reader import Reader
from spanqa.runtime.backends import BackendName, Precision, check_precision
from spanqa.stages.decode import Span

_INSTALL = 'pip install "spanqa[haystack]"'  # the README's spelling

try:
    from haystack import Document, ExtractedAnswer, component, default_from_dict, default_to_dict
    from haystack.utils import ComponentDevice
except ModuleNotFoundError as error:
    if error.name is None or error.name.partition(".")[0] != "haystack":
        raise  # Haystack is installed but lacks one of its own dependencies: that error says which
    raise ImportError(f"spanqa.integrations.haystack needs Haystack (haystack-ai 3.x), which is not installed: {_INSTALL}") from error
except ImportError as error:  # a `haystack` without these names: farm-haystack 1.x installs one too
    raise ImportError(f"spanqa.integrations.haystack needs haystack-ai 3.x, but the installed `haystack` is another ({error}): {_INSTALL}") from error

__all__ = ["SpanQAReader"]

logger = logging.getLogger(__name__)


def _check_limits(top_k: int | None, score_threshold: float | None) -> None:
    """Refuse a ``top_k`` or ``score_threshold`` the reader's answer options refuse (None: unset).

    Raises:
        ConfigError: naming the setting and the value.
    """
    AnswerOptions.of(top_k=top_k, score_threshold=score_threshold)


@component
class SpanQAReader:
    """Extract answers to a query from Documents with a spanqa model.

    Answers are ranked across all the documents together: each ``score`` is a probability from one
    softmax over every candidate span of every document plus "no answer", so scores compare across
    documents and the "no answer" entry's score is the model's own no-answer probability.

    >>> reader = SpanQAReader("path/to/model", top_k=3)
    >>> reader.warm_up()
    >>> answers = reader.run(query="Who wrote it?", documents=[Document(content="It was written by Ada.")])["answers"]
    """

    def __init__(
        self,
        model: str | Path,
        device: str | ComponentDevice | None = None,
        backend: BackendName = "auto",
        top_k: int = 20,
        score_threshold: float | None = None,
        no_answer: bool = True,
        max_answer_length: int | None = None,
        max_seq_length: int | None = None,
        stride: int | None = None,
        max_batch_size: int | None = None,
        context_window_size: int = 150,
        dtype: Precision | None = None,
    ) -> None:
        """Set the reader up; the model loads in :meth:`warm_up` (Haystack asks for a light ``__init__``).

        Args:
            model: A spanqa model folder (a trained, checkpoint or ``spanqa export`` folder) or hub id.
            device: ``cpu``, ``cuda``, ``cuda:1``, ``mps`` or a single-device ``ComponentDevice``;
                default: CUDA when available (the CPU for ONNX models).
            backend: ``auto`` (ONNX for a folder with only ``model.onnx``, else PyTorch), ``torch`` or ``onnx``.
            top_k: Answers returned per query, besides the "no answer" entry.
            score_threshold: Drop answers (the "no answer" entry too) that score below this probability.
            no_answer: Add a "no answer" entry (``data=None``) scored with the model's no-answer probability.
            max_answer_length: Longest answer in tokens; default: the model's ``spanqa.json``.
            max_seq_length: Window length in tokens (spanqa's ``max_length``); default: the model's.
            stride: Tokens shared by neighbouring windows of a long document; default: the model's.
            max_batch_size: Windows per forward pass; default: 8 for ONNX models on the CPU, else 32.
            context_window_size: Characters of the document kept on each side of an answer as its
                ``context``; 0 keeps the answer alone.
            dtype: PyTorch precision, ``bf16``, ``fp16`` or ``fp32``; default: bf16 where the hardware
                computes it natively (GPUs from Ampere on, CPUs with AVX-512 BF16 or AMX), else fp32.

        Raises:
            ConfigError: an unknown backend or dtype, or a top_k, score_threshold or size out of range.
        """
        if backend not in get_args(BackendName):
            raise ConfigError(f"backend must be one of {', '.join(get_args(BackendName))}, got {backend!r}")
        check_precision(dtype)
        _check_limits(top_k, score_threshold)
        if isinstance(context_window_size, bool) or not isinstance(context_window_size, int) or context_window_size < 0:
            raise ConfigError(f"context_window_size must be a whole number of characters >= 0, got {context_window_size!r}")
        self.model = str(model)
        # Stored as a string so that to_dict writes plain JSON; a device map cannot hold one model.
        self.device = device.to_torch_str() if isinstance(device, ComponentDevice) else device
        self.backend: BackendName = backend
        self.dtype: Precision | None = dtype
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.no_answer = no_answer
        self.max_answer_length = max_answer_length
        self.max_seq_length = max_seq_length
        self.stride = stride
        self.max_batch_size = max_batch_size
        self.context_window_size = context_window_size
        self._reader: Reader | None = None

    def warm_up(self) -> None:
        """Load the model; Haystack pipelines call this before they run, and it does nothing the second time."""
        if self._reader is not None:
            return
        self._reader = Reader.from_pretrained(
            self.model,
            device=self.device,
            backend=self.backend,
            dtype=self.dtype,
            batch_size=self.max_batch_size,  # None: what suits the backend
            max_length=self.max_seq_length,  # None keeps the value saved with the model
            stride=self.stride,
        )

    def to_dict(self) -> dict[str, Any]:
        """This component's settings, in the form Haystack saves pipelines in."""
        return default_to_dict(
            self,
            model=self.model,
            device=self.device,
            backend=self.backend,
            top_k=self.top_k,
            score_threshold=self.score_threshold,
            no_answer=self.no_answer,
            max_answer_length=self.max_answer_length,
            max_seq_length=self.max_seq_length,
            stride=self.stride,
            max_batch_size=self.max_batch_size,
            context_window_size=self.context_window_size,
            dtype=self.dtype,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpanQAReader:
        """A component from :meth:`to_dict`'s output (the model loads at :meth:`warm_up`).

        Args:
            data: ``{"type": ..., "init_parameters": {...}}`` as :meth:`to_dict` wrote it.
        """
        return default_from_dict(cls, data)

    @component.output_types(answers=list[ExtractedAnswer])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
        no_answer: bool | None = None,
        max_answer_length: int | None = None,
        max_seq_length: int | None = None,
        stride: int | None = None,
        max_batch_size: int | None = None,
    ) -> dict[str, list[ExtractedAnswer]]:
        """Answer ``query`` from ``documents``; arguments left None take the component's settings.

        Args:
            query: The question.
            documents: Where to look; documents without text are skipped.
            top_k: Answers returned, besides the "no answer" entry.
            score_threshold: Drop answers (the "no answer" entry too) that score below this probability.
            no_answer: Add the "no answer" entry (``data=None``).
            max_answer_length: Longest answer in tokens.
            max_seq_length: Window length in tokens.
            stride: Tokens shared by neighbouring windows.
            max_batch_size: Windows per forward pass.

        Returns:
            ``{"answers": [...]}``: ExtractedAnswers, each with its ``document``, its
            ``document_offset`` (``document.content[start:end] == data``) and a ``context`` around it.
            The "no answer" entry is placed by spanqa's one rule
            (:meth:`~spanqa.reading.results.ReaderResult.with_no_answer`, as in the pipeline): first
            whenever the model's own no-answer rule (``null_threshold`` in ``spanqa.json``) abstains,
            else after the model's answer, among the others by score. No documents with text give no answers.
        """
        _check_limits(top_k, score_threshold)
        self.warm_up()
        assert self._reader is not None  # set by warm_up; the assert tells mypy
        top_k = self.top_k if top_k is None else top_k
        score_threshold = self.score_threshold if score_threshold is None else score_threshold
        no_answer = self.no_answer if no_answer is None else no_answer

        # spanqa refuses empty texts (they cannot hold an answer); skip them as Haystack's reader does.
        usable = [doc for doc in documents if doc.content and doc.content.strip()]
        if len(usable) < len(documents):
            logger.warning("SpanQAReader skipped %d document(s) without text", len(documents) - len(usable))
        if not usable:
            return {"answers": []}

        # with_settings shares the loaded model, so per-call window settings cost no reload; None
        # keeps what warm_up loaded (the component's settings, else the model's).
        reader = self._reader.with_settings(batch_size=max_batch_size, max_length=max_seq_length, stride=stride)
        options = AnswerOptions(
            top_k=top_k,
            max_answer_length=self.max_answer_length if max_answer_length is None else max_answer_length,
            # None: the model abstains by its own rule, as trained; without the entry no decision is needed.
            handle_impossible=None if no_answer else False,
        )
        result = reader(query, documents=[doc.content or "" for doc in usable], options=options)
        ranked = result.with_no_answer() if no_answer else list(result.answers)
        # Given documents=, every span names its document (an index into usable); "or 0" only satisfies mypy.
        answers = [
            ExtractedAnswer(query=query, score=result.no_answer_score, data=None, document=None, meta={})
            if span is None
            else self._extracted(query, span, usable[span.document or 0])
            for span in ranked
        ]
        if score_threshold is not None:
            answers = [answer for answer in answers if answer.score >= score_threshold]
        return {"answers": answers}

    def _extracted(self, query: str, span: Span, document: Document) -> ExtractedAnswer:
        """A spanqa span as Haystack's answer, with ``context_window_size`` characters of context each side."""
        text = document.content or ""
        lo = max(span.start - self.context_window_size, 0)
        hi = min(span.end + self.context_window_size, len(text))
        return ExtractedAnswer(
            query=query,
            score=span.score,
            data=span.text,
            document=document,
            context=text[lo:hi],
            document_offset=ExtractedAnswer.Span(span.start, span.end),
            context_offset=ExtractedAnswer.Span(span.start - lo, span.end - lo),
            meta={},
        )
