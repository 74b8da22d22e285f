"""``spanqa.pipeline("question-answering", ...)``: the call forms of transformers' removed QA pipeline.

transformers v5 removed ``pipeline("question-answering")``. Code written for it runs on spanqa by
changing the import::

    # before (transformers 4.x)                    # after
    from transformers import pipeline              from spanqa import pipeline
    qa = pipeline("question-answering", model=m)   qa = pipeline("question-answering", model=m)
    qa(question="Who?", context="...")             qa(question="Who?", context="...")

The same inputs (keyword strings or lists, a dict, a list of dicts, two positional strings,
SQuAD-example objects) and arguments give the same shapes of output: ``{"score", "start",
"end", "answer"}``, a list of them for ``top_k > 1``, one result per input for a list.

Scores (``scores=``, per pipeline or per call):

* ``"transformers"`` (the default): 4.x's answers and numbers (:mod:`spanqa.stages.pipeline_decode`):
  each window normalised on its own, ``score = p(start) x p(end)``, and the scores of spans with the
  same text (case-insensitive) added up. Code that thresholded 4.x's scores keeps working.
* ``"spanqa"``: spanqa's calibrated scores, what ``spanqa ask``, ``predict`` and the server give: the
  probability of the answer among all of the question's candidate spans and "no answer", over every
  window of a long context, so scores of different windows and questions compare (4.x's could not:
  the best answer of a long text could lose to a worse one from a window with fewer candidates).

What differs from 4.x, on purpose:

* The model runs in float32 unless ``torch_dtype``/``dtype`` says otherwise, as 4.x loaded it
  (spanqa's own default elsewhere is bf16 where the hardware computes it natively).
* Without ``max_answer_len``, ``doc_stride``, ``max_seq_len`` or ``max_question_len`` the 4.x
  defaults apply (:data:`PIPELINE_DEFAULTS`), not the model's ``spanqa.json``; without
  ``handle_impossible_answer`` "no answer" is never returned, as in 4.x. With 4.x's scores,
  ``max_question_len`` is ignored as 4.x's fast-tokenizer path ignored it (a question is cut only
  where 4.x failed: no room left beside it for more than the stride); with spanqa's, questions
  over ``max_question_len`` tokens are cut to it.
* Inputs 4.x refused are refused with the same kind of error (ValueError; KeyError for a dict
  without ``question`` or ``context``), with a message that says what was expected. A blank (only
  whitespace) question or context is refused too, where 4.x answered from nothing.
* ``num_workers`` has no effect (batches are built in-process); it is accepted with a warning.
* Questions asked of an ``index`` (no context) are always answered with spanqa's scores.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spanqa.core.config import DEFAULTS, SPECIAL_TOKEN_ROOM, SpanQAConfig
from spanqa.core.errors import ConfigError, did_you_mean
from spanqa.reading.options import AnswerOptions
from spanqa.reading.reader import QARequest, Reader, ReaderResult
from spanqa.runtime.backends import BackendName, Precision
from spanqa.stages.data import QAExample
from spanqa.stages.pipeline_decode import PipelineRule, WindowScores, pipeline_answers

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from spanqa.reading.index import Index
    from spanqa.reading.indexed import SourcedAnswer
    from spanqa.stages.decode import Span

__all__ = ["pipeline", "QuestionAnsweringPipeline", "PIPELINE_DEFAULTS", "SCORES", "PipelineInputError", "MissingInputKey"]

logger = logging.getLogger(__name__)

TASKS = ("question-answering",)

PIPELINE_DEFAULTS: dict[str, Any] = {
    "top_k": 1,
    "doc_stride": DEFAULTS.stride,  # 4.x's window settings happen to be spanqa's too
    "max_answer_len": 15,  # 4.x's; spanqa's own default is longer
    "max_seq_len": DEFAULTS.max_length,
    "max_question_len": DEFAULTS.max_question_tokens,
    "handle_impossible_answer": False,
    "align_to_words": True,
}
"""The 4.x pipeline's defaults, used where a call does not give the argument."""

SCORES = ("transformers", "spanqa")
"""``scores=``: 4.x's per-window numbers (the default) or spanqa's calibrated ones (see the module's notes)."""

CHUNK = 256
"""Questions read at a time: windows and logits of one chunk are held in memory, not those of a whole list."""


class PipelineInputError(ConfigError):
    """An input the pipeline cannot read (a ValueError, as 4.x raised)."""


class MissingInputKey(PipelineInputError, KeyError):
    """A dict input without ``question`` or ``context`` (also a KeyError, as 4.x raised)."""

    def __str__(self) -> str:  # KeyError quotes its argument; the message reads better as it is
        return str(self.args[0]) if self.args else ""

# A 4.x argument -> the spanqa setting it becomes (None: handled by the pipeline itself).
_SETTINGS = {
    "doc_stride": "stride",
    "max_seq_len": "max_length",
    "max_question_len": "max_question_tokens",
}
_CALL_ARGUMENTS = frozenset(PIPELINE_DEFAULTS) | {"batch_size", "num_workers", "topk", "scores"}


def pipeline(
    task: str = "question-answering",
    model: str | Path | Reader | PreTrainedModel | None = None,
    tokenizer: str | PreTrainedTokenizerBase | None = None,
    **kwargs: Any,
) -> QuestionAnsweringPipeline:
    """A question-answering pipeline, as ``transformers.pipeline("question-answering", ...)`` made one.

    Args:
        task: ``"question-answering"`` (the only task).
        model: A model folder, alias (``minilm``) or hub id; a loaded :class:`~spanqa.Reader`; or a
            PyTorch QA model (then give ``tokenizer``). Default: the embedded ``minilm``.
        tokenizer: The tokenizer (a name or a loaded one) when ``model`` is a loaded PyTorch model.
        **kwargs: :class:`QuestionAnsweringPipeline`'s keyword arguments (``device``, ``batch_size``,
            ``backend``, ``dtype``, ``index``, ``passages``), 4.x's ``torch_dtype``, and defaults for
            every call (``top_k``, ``max_answer_len``, ...).

    Raises:
        ConfigError: another task, or an argument the pipeline does not know.
    """
    if task not in TASKS:
        raise ConfigError(f"spanqa's pipeline does the question-answering task only, got {task!r}{did_you_mean(str(task), TASKS)}")
    torch_dtype = kwargs.pop("torch_dtype", None)
    if torch_dtype is not None and kwargs.get("dtype") is None:
        kwargs["dtype"] = _precision(torch_dtype)
    return QuestionAnsweringPipeline(model if model is not None else "minilm", tokenizer, **kwargs)


class QuestionAnsweringPipeline:
    """Answers questions from texts with the call forms of transformers 4.x's question-answering pipeline.

    Args:
        model: A model folder, alias or hub id, a :class:`~spanqa.Reader`, or a PyTorch QA model.
        tokenizer: The tokenizer when ``model`` is a loaded PyTorch model.
        device: ``-1``/``"cpu"``, a GPU index, ``"cuda:1"``, ``"mps"`` or a ``torch.device``.
        batch_size: Windows per forward pass; default: 8 for ONNX models on the CPU, else 32.
        backend: ``auto``, ``torch`` or ``onnx``.
        dtype: PyTorch precision (default ``fp32``, as 4.x loaded models; 4.x's ``torch_dtype`` sets it too).
        index: A ``spanqa index`` folder or loaded index, for questions asked without a context.
        passages: With ``index``: passages read per question.
        **call_defaults: Defaults for every call (``top_k``, ``max_answer_len``, ...).
    """

    task = "question-answering"

    def __init__(
        self,
        model: str | Path | Reader | PreTrainedModel,
        tokenizer: str | PreTrainedTokenizerBase | None = None,
        *,
        device: int | str | torch.device | None = None,
        batch_size: int | None = None,
        backend: BackendName = "auto",
        dtype: Precision | None = None,
        index: str | Path | Index | None = None,
        passages: int = 10,
        **call_defaults: Any,
    ) -> None:
        from spanqa.reading.index import Index

        # The index first: a wrong folder fails before the model loads.
        self.index = None if index is None else Index.open(index)
        if isinstance(passages, bool) or not isinstance(passages, int) or passages < 1:
            raise ConfigError(f"passages must be a positive integer, got {passages!r}")
        self.passages = passages
        self.reader = _reader(model, tokenizer, _device(device), batch_size, backend, dtype or "fp32")  # float32, as 4.x loaded models
        self._defaults = {**PIPELINE_DEFAULTS, "scores": "transformers", **self._arguments(call_defaults)}

    @property
    def model(self) -> Any:
        """The PyTorch model (None for an ONNX model)."""
        return self.reader.model

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.reader.tokenizer

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any] | list[Any]:
        """Answer one or many questions.

        Call forms: ``pipe(question=..., context=...)`` (strings, or lists of equal length, or a
        list of questions about one context), ``pipe({"question": ..., "context": ...})``,
        ``pipe([{...}, {...}])``, ``pipe("question", "context")``, objects with ``question_text``
        and ``context_text`` (SQuAD examples), and 4.x's ``X=`` / ``data=``. With an index,
        ``pipe(question=...)`` (a string or a list) answers from the collection.

        Args:
            *args: Inputs as above.
            **kwargs: ``question``, ``context`` and the arguments ``top_k``, ``doc_stride``,
                ``max_answer_len``, ``max_seq_len``, ``max_question_len``,
                ``handle_impossible_answer``, ``align_to_words``, ``batch_size``.

        Returns:
            For one input, ``{"score", "start", "end", "answer"}`` (a list of them when ``top_k > 1``);
            for a list of inputs, one such result per input. Answers from an index also have
            ``source``, ``doc_id``, ``page`` (PDFs) and ``heading``; their ``start``/``end`` are offsets in that document.
        """
        if self.index is not None and not args and "question" in kwargs and "context" not in kwargs:
            return self._from_index(self.index, kwargs)
        inputs, single = _inputs(args, kwargs)
        settings = {**self._defaults, **self._arguments(kwargs)}
        if settings["doc_stride"] > settings["max_seq_len"]:
            raise ConfigError(f"doc_stride ({settings['doc_stride']}) is larger than max_seq_len ({settings['max_seq_len']})")
        reader = self._configured_reader(settings)
        if settings["scores"] == "transformers":
            rule = PipelineRule(settings["top_k"], settings["max_answer_len"], settings["handle_impossible_answer"], settings["align_to_words"])
            results = [_shaped(answers) for answers in _answers_as_4x(reader, inputs, rule)]
        else:
            options = _answer_options(settings)
            requests = [QARequest(question, context, options=options) for question, context in inputs]
            results = [_answers(result, options) for result in reader.answer_batch(requests)] if requests else []
        return results[0] if single else results

    def _configured_reader(self, settings: Mapping[str, Any]) -> Reader:
        """The reader with this call's window and batch settings."""
        window = {_SETTINGS[name]: settings[name] for name in _SETTINGS}
        if settings.get("scores") == "transformers":
            # 4.x's fast-tokenizer path never applied max_question_len: a question is cut only where 4.x failed
            # (no room left for the context beyond the stride). Russian questions in an English vocabulary
            # often pass 64 tokens: cutting them changed 279 of 1,190 XQuAD-ru answers.
            window["max_question_tokens"] = max(1, settings["max_seq_len"] - SPECIAL_TOKEN_ROOM - settings["doc_stride"] - 1)
        reader = self.reader.with_settings(batch_size=settings.get("batch_size"), **window)
        # The span search must reach the longest answer asked for, whatever the model saved.
        return reader.with_settings(max_answer_length=max(settings["max_answer_len"], reader.config.max_answer_length))

    def _from_index(self, index: Index, kwargs: dict[str, Any]) -> dict[str, Any] | list[Any]:
        """Questions without a context, answered from the passages the index retrieves for each."""
        from spanqa.reading.indexed import answer_questions_from_index

        question = kwargs.pop("question")
        questions = [_text(question, "question")] if isinstance(question, str) else _texts(question, "question")
        settings = {**self._defaults, **self._arguments(kwargs)}
        options = _answer_options(settings)
        found = answer_questions_from_index(self._configured_reader(settings), index, questions, passages=self.passages, options=options)
        results = [_answers(each.result, options, each.answers) for each in found]
        return results[0] if isinstance(question, str) else results

    def _arguments(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The pipeline arguments among ``given``, checked; question/context are left to :func:`_inputs`."""
        found: dict[str, Any] = {}
        for name, value in given.items():
            if name in ("question", "context", "X", "data"):
                continue
            if name not in _CALL_ARGUMENTS:
                raise ConfigError(f"unknown question-answering pipeline argument {name!r}{did_you_mean(name, _CALL_ARGUMENTS)}")
            if name == "topk":
                warnings.warn("topk is deprecated in transformers' pipeline; use top_k", FutureWarning, stacklevel=3)
                name = "top_k"
            if name == "num_workers":
                logger.warning("num_workers has no effect in spanqa's pipeline: batches are built in-process")
                continue
            found[name] = _checked(name, value)
        return found


def _checked(name: str, value: Any) -> Any:
    """``value`` if it has the type the 4.x argument ``name`` takes, else a ConfigError naming it."""
    if name == "scores":
        if value not in SCORES:
            raise ConfigError(f"scores must be one of {', '.join(map(repr, SCORES))}, got {value!r}{did_you_mean(str(value), SCORES)}")
        return value
    if name in ("handle_impossible_answer", "align_to_words"):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be True or False, got {value!r}")
        return value
    if value is None and name == "batch_size":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "doc_stride" else 1):
        kind = "a non-negative integer" if name == "doc_stride" else "a positive integer"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")
    return value


def _inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list[tuple[str, str]], bool]:
    """(question, context) pairs from any 4.x call form, and whether one result (not a list) is wanted.

    As 4.x's argument handler: a list of one input gives one result; an empty list gives an empty list;
    what it refused is refused, with the same kind of error (:class:`PipelineInputError`, a ValueError;
    :class:`MissingInputKey`, also a KeyError, for a dict without ``question`` or ``context``).
    """
    legacy = [kwargs.pop(name) for name in ("X", "data") if name in kwargs]
    has_keywords = "question" in kwargs or "context" in kwargs
    if sum(map(bool, (args, legacy, has_keywords))) > 1:
        raise PipelineInputError("give the inputs one way: positionally, as question=/context=, or as X=/data=")
    if has_keywords:
        return _from_keywords(kwargs.pop("question", None), kwargs.pop("context", None))
    if not args and not legacy:
        raise PipelineInputError("no inputs: give question= and context= (or a dict, or a list of dicts)")
    if len(args) == 2 and all(isinstance(a, str) for a in args):
        return [(_text(args[0], "question"), _text(args[1], "context"))], True
    item = legacy[0] if legacy else args[0] if len(args) == 1 else list(args)
    if isinstance(item, Mapping) or _is_squad_example(item):
        return [_pair(item, "input")], True
    if not isinstance(item, (list, tuple)):
        kind = "a string alone is a question without its context" if isinstance(item, str) else f"got {type(item).__name__}"
        raise PipelineInputError(f"expected a dict with 'question' and 'context', a list of them, or question=/context= ({kind})")
    pairs = [_pair(entry, f"inputs[{i}]") for i, entry in enumerate(item)]
    return pairs, len(pairs) == 1


def _from_keywords(question: Any, context: Any) -> tuple[list[tuple[str, str]], bool]:
    """4.x's keyword forms: two strings; a list of questions about one context; two lists of one length."""
    if question is None or context is None:
        raise PipelineInputError(f"give both question= and context= (missing {'question' if question is None else 'context'})")
    if isinstance(question, str) and isinstance(context, str):
        return [(_text(question, "question"), _text(context, "context"))], True
    if isinstance(question, list) and isinstance(context, str):
        pairs = [(_text(q, f"question[{i}]"), _text(context, "context")) for i, q in enumerate(question)]
    elif isinstance(question, list) and isinstance(context, list):
        if len(question) != len(context):
            raise PipelineInputError(
                f"question and context lists differ in length ({len(question)} and {len(context)}); "
                "for several questions about one text give context= a string"
            )
        pairs = [(_text(q, f"question[{i}]"), _text(c, f"context[{i}]")) for i, (q, c) in enumerate(zip(question, context))]
    else:
        raise PipelineInputError(
            f"question= and context= must be two strings, a list of questions and one context string, or two lists "
            f"of one length; got {type(question).__name__} and {type(context).__name__}"
        )
    return pairs, len(pairs) == 1


def _texts(value: Any, name: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not value:
        raise PipelineInputError(f"{name} must be a string or a non-empty list of strings, got {type(value).__name__}")
    return [_text(v, f"{name}[{i}]") for i, v in enumerate(value)]


def _is_squad_example(item: Any) -> bool:
    return hasattr(item, "question_text") and hasattr(item, "context_text")


def _pair(item: Any, where: str) -> tuple[str, str]:
    if isinstance(item, Mapping):
        missing = [key for key in ("question", "context") if key not in item]
        if missing:
            raise MissingInputKey(f"{where}: missing {' and '.join(repr(m) for m in missing)} (expected {{'question': ..., 'context': ...}})")
        return _text(item["question"], f"{where}['question']"), _text(item["context"], f"{where}['context']")
    if _is_squad_example(item):  # a SquadExample
        return _text(item.question_text, f"{where}.question_text"), _text(item.context_text, f"{where}.context_text")
    raise PipelineInputError(f"{where}: expected a dict with 'question' and 'context', got {type(item).__name__}")


def _text(value: Any, name: str) -> str:
    if value is None:
        raise PipelineInputError(f"{name} cannot be None")
    if not isinstance(value, str):
        raise PipelineInputError(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise PipelineInputError(f"{name} is empty")
    return value


def _answers_as_4x(reader: Reader, pairs: list[tuple[str, str]], rule: PipelineRule) -> list[list[dict[str, Any]]]:
    """Each question's answers as 4.x gave them: the reader's windows and logits, decided by 4.x's rule.

    Args:
        reader: The model, with this call's window and batch settings.
        pairs: (question, context) pairs.
        rule: 4.x's postprocessing arguments.
    """
    out: list[list[dict[str, Any]]] = []
    cls_id = reader.tokenizer.cls_token_id
    for lo in range(0, len(pairs), CHUNK):
        examples = [QAExample(id=str(lo + i), question=q, context=c) for i, (q, c) in enumerate(pairs[lo : lo + CHUNK])]
        features = reader.features(examples, word_edges=rule.align_to_words)
        logits: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for rows, start, end in reader.logits(features):
            logits.update((int(row), (start[j], end[j])) for j, row in enumerate(rows))
        windows: list[list[WindowScores]] = [[] for _ in examples]
        for i, length in enumerate(features.lengths.tolist()):
            ids = np.asarray(features.input_ids[i])
            context_tokens = features.offsets[i, :length, 0] >= 0
            start, end = logits[i]
            edges = None if features.word_edges is None else features.word_edges[i, :length]
            allowed = context_tokens | (ids == cls_id) if cls_id is not None else context_tokens
            windows[features.example_index[i]].append(WindowScores(start[:length], end[:length], allowed, features.offsets[i, :length], edges))
        out.extend(pipeline_answers(example.context, example_windows, rule) for example, example_windows in zip(examples, windows))
    return out


def _shaped(answers: list[dict[str, Any]]) -> dict[str, Any] | list[dict[str, Any]]:
    """4.x's result for one question: the answer itself when there is one, else the list (empty or ranked)."""
    return answers[0] if len(answers) == 1 else answers


def _answer_options(settings: Mapping[str, Any]) -> AnswerOptions:
    """A call's 4.x arguments as the reader's answer options."""
    return AnswerOptions(
        top_k=settings["top_k"],
        max_answer_length=settings["max_answer_len"],
        handle_impossible=settings["handle_impossible_answer"],
        align_to_words=settings["align_to_words"],
    )


def _answers(result: ReaderResult, options: AnswerOptions, sourced: list[SourcedAnswer] | None = None) -> dict[str, Any] | list[dict[str, Any]]:
    """A Reader result as 4.x returned it: the best answer's dict, or the top_k list; answers read
    from an index (``sourced``, in the result's order) carry their source and document offsets."""
    located = dict(zip(map(id, result.answers), sourced)) if sourced is not None else {}
    ranked = result.with_no_answer() if options.handle_impossible else list(result.answers)
    answers = [_answer_dict(span, result.no_answer_score, located.get(id(span))) for span in ranked][: options.top_k]
    if not answers:
        answers = [{"score": 0.0, "start": 0, "end": 0, "answer": ""}]
    return answers[0] if options.top_k == 1 else answers


def _answer_dict(span: Span | None, no_answer_score: float, sourced: SourcedAnswer | None) -> dict[str, Any]:
    """One answer in 4.x's form; None is the "no answer" entry."""
    if span is None:
        return {"score": no_answer_score, "start": 0, "end": 0, "answer": ""}
    if sourced is None:
        return {"score": span.score, "start": span.start, "end": span.end, "answer": span.text}
    located = {"source": sourced.source, "doc_id": sourced.doc_id, "page": sourced.page, "heading": sourced.heading}
    return {"score": sourced.score, "start": sourced.start, "end": sourced.end, "answer": sourced.text, **located}


def _device(device: int | str | torch.device | None) -> str | None:
    """4.x's device forms (``-1``, ``0``, ``"cuda:1"``, ``torch.device``) as spanqa's device string."""
    if device is None:
        return None
    if isinstance(device, bool):
        raise ConfigError(f"device must be -1, a GPU index, a name like 'cuda:1' or a torch.device, got {device!r}")
    if isinstance(device, int):
        return "cpu" if device < 0 else f"cuda:{device}"
    return str(device)


def _precision(torch_dtype: Any) -> Precision | None:
    """``torch_dtype`` (a torch dtype or its name) as spanqa's precision name."""
    if torch_dtype is None or torch_dtype == "auto":
        return None
    names = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}
    name = str(torch_dtype).removeprefix("torch.")
    if name not in names:
        raise ConfigError(f"torch_dtype must be bfloat16, float16 or float32, got {torch_dtype!r}")
    return names[name]  # type: ignore[return-value]


def _reader(
    model: str | Path | Reader | PreTrainedModel,
    tokenizer: str | PreTrainedTokenizerBase | None,
    device: str | None,
    batch_size: int | None,
    backend: BackendName,
    dtype: Precision | None,
) -> Reader:
    from spanqa.runtime.models import load_tokenizer

    if isinstance(model, Reader):
        return model.with_settings(batch_size=batch_size)
    if isinstance(model, (str, Path)):
        if tokenizer is not None:
            logger.warning("tokenizer is taken from the model folder %s; the tokenizer argument is not used", model)
        return Reader.from_pretrained(model, device=device, batch_size=batch_size, backend=backend, dtype=dtype)
    if tokenizer is None:
        raise ConfigError("a loaded model needs its tokenizer: pipeline('question-answering', model=model, tokenizer=tokenizer)")
    loaded = load_tokenizer(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer
    return Reader(model, loaded, SpanQAConfig(), device=device, batch_size=batch_size, dtype=dtype)
