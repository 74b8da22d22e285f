"""Reading requests in steps: windows built a few texts at a time, read in chunks, then ranked.

:meth:`Reader.answer_batch <spanqa.reading.reader.Reader.answer_batch>` reads a list of requests in
one go; a server cannot: one request with thousands of windows would hold every window in memory
and keep the model busy while small requests wait. A :class:`Reading` does the same work in
bounded pieces, so a caller (the server's scheduler) decides what runs next:

>>> reading = Reading(reader, requests, window_limit=512)
>>> while not reading.built:
...     reading.build()                            # a few texts' windows; over the limit: raises
>>> read_chunks(reader, reading.take(16))          # 16 windows through the model, maybe with others'
>>> results = reading.results()                    # once reading.unread == 0

Each request's decoding settings depend on its own options only, never on the requests read
beside it, so an answer is the same whether its request came alone or in a crowd.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from spanqa.core.config import DecodeConfig, SpanQAConfig, WindowConfig
from spanqa.core.errors import SpanQAError
from spanqa.reading.options import AnswerOptions
from spanqa.reading.results import QARequest, ReaderResult
from spanqa.runtime.devices import release_freed_memory
from spanqa.stages.data import QAExample
from spanqa.stages.decode import ExamplePrediction, SpanDecoder
from spanqa.stages.features import Features


class Reader(Protocol):
    """What reading in steps needs of a :class:`~spanqa.reading.reader.Reader` (which imports this module)."""

    config: SpanQAConfig

    def features(self, examples: Sequence[QAExample], window: WindowConfig | None = None, word_edges: bool = False) -> Features: ...

    def forward(self, inputs: Sequence[Mapping[str, Any]], batch_size: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]: ...

    def rank(self, request: QARequest, texts: Sequence[ExamplePrediction], retrieval_weight: float | None = None) -> ReaderResult: ...

__all__ = ["Reading", "WindowChunk", "WindowLimitExceeded", "read_chunks", "estimate_windows", "decode_config_for"]

BUILD_CHARS = 100_000
"""Characters of text tokenized in one :meth:`Reading.build` call (a longer text is built alone)."""

CHARS_PER_TOKEN = 1
"""At most one token per character for most tokenizers: an estimate from the length rarely counts too few
windows (English has about 4 characters a token), so memory budgets it on the safe side."""


class WindowLimitExceeded(SpanQAError):
    """The requests need more model windows than their limit allows."""

    def __init__(self, windows: int, limit: int) -> None:
        super().__init__(f"the texts need more than {limit} model windows (counted {windows} so far); the limit is {limit}")
        self.windows = windows
        self.limit = limit


def decode_config_for(options: AnswerOptions, base: DecodeConfig) -> DecodeConfig:
    """The span search one request needs, from its own (filled) options alone.

    Overlapping candidates are dropped from the top-k lists, so more are gathered
    than ``top_k`` when overlaps are filtered (scores stay those of the model's ``n_best``
    candidates: see :meth:`~spanqa.reading.reader.Reader.rank`).

    Args:
        options: The request's options, filled from the model's settings.
        base: The model's decoding settings.
    """
    filtered = options.top_k > 1 and options.overlap_threshold != 1.0
    # Overlapping candidates are dropped from top-k lists, and the best ones of a text often all share its best
    # start (every end of "Jane Austen wrote ..."): a pool of top_k x the longest answer holds k apart if the text has them.
    wanted = options.top_k * max(options.max_answer_length or 0, base.max_answer_length) if filtered else options.top_k
    return DecodeConfig(
        n_best=max(base.n_best, wanted),
        max_answer_length=max(options.max_answer_length or 0, base.max_answer_length),
        handle_impossible=False,  # decided across all of a request's texts, by Reader.rank
        align_to_words=bool(options.align_to_words),
        temperature=base.temperature,
    )


def estimate_windows(texts: Sequence[str], window: WindowConfig) -> int:
    """A rough count of the windows of ``texts`` from their length, to order work before tokenizing.

    Args:
        texts: The texts.
        window: The window settings.
    """
    room = max(window.max_length - window.max_question_tokens, 2)
    step = max(room - window.stride, 1)
    return sum(1 + math.ceil(max(len(text) / CHARS_PER_TOKEN - room, 0) / step) for text in texts)


@dataclass
class _Part:
    """Some texts of a reading, tokenized together: their windows and their decoder."""

    owners: list[tuple[int, int]]  # (request, text) of each example
    features: Features
    decoder: SpanDecoder
    order: np.ndarray  # window rows, longest first
    read: int = 0

    @property
    def unread(self) -> int:
        return len(self.order) - self.read


@dataclass(frozen=True)
class WindowChunk:
    """Windows of one part of a reading, to run through the model."""

    part: _Part
    rows: np.ndarray


class Reading:
    """Requests read in steps; see the module docstring.

    Args:
        reader: The reader whose tokenizer builds the windows (see :meth:`use`) and whose settings decode them.
        requests: The questions with their texts and options.
        window_limit: Most windows these requests may need; :meth:`build` raises
            :class:`WindowLimitExceeded` as soon as they need more (None: no limit).
    """

    def __init__(self, reader: Reader, requests: Sequence[QARequest], window_limit: int | None = None) -> None:
        self.reader = reader
        self.requests = list(requests)
        self.window_limit = window_limit
        self.windows = 0
        self.parts: list[_Part] = []
        base = reader.config.decode_config()
        self._options = [request.options.filled_from(reader.config) for request in self.requests]
        self._configs = [decode_config_for(options, base) for options in self._options]
        # Texts sharing a decoding setting are tokenized together: group them, keeping request order within a group.
        first_seen = {config: i for i, config in reversed(list(enumerate(self._configs)))}
        texts = [(r, d) for r, request in enumerate(self.requests) for d in range(len(request.texts))]
        self._todo = collections.deque(sorted(texts, key=lambda item: first_seen[self._configs[item[0]]]))

    def use(self, reader: Reader) -> None:
        """Build and decode with ``reader`` from now on (a server worker's own tokenizer; same model).

        Args:
            reader: A reader of the same model and settings.
        """
        self.reader = reader

    @property
    def built(self) -> bool:
        """Whether every text's windows are built."""
        return not self._todo

    @property
    def unread(self) -> int:
        """Windows built and not yet read."""
        return sum(part.unread for part in self.parts)

    @property
    def done(self) -> bool:
        """Whether every window is built and read: :meth:`results` is ready."""
        return self.built and self.unread == 0

    def remaining_estimate(self) -> int:
        """Windows still to read: those built and unread, plus an estimate for the texts not yet built."""
        todo = [self.requests[r].texts[d] for r, d in self._todo]
        return self.unread + estimate_windows(todo, self.reader.config.window)

    def build(self) -> int:
        """Build the windows of the next texts: those sharing the first one's decoding setting, up to
        :data:`BUILD_CHARS` characters (always at least one text). Returns how many windows were built.

        Raises:
            WindowLimitExceeded: the requests now need more than ``window_limit`` windows.
        """
        if not self._todo:
            return 0
        config = self._configs[self._todo[0][0]]
        owners: list[tuple[int, int]] = []
        chars = 0
        while self._todo and self._configs[self._todo[0][0]] == config:
            r, d = self._todo[0]
            size = len(self.requests[r].texts[d])
            if owners and chars + size > BUILD_CHARS:
                break
            owners.append(self._todo.popleft())
            chars += size
        examples = [QAExample(id=f"{r}:{d}", question=self.requests[r].question.strip(), context=self.requests[r].texts[d]) for r, d in owners]
        features = self.reader.features(examples, word_edges=config.align_to_words)
        self.windows += len(features)
        if self.window_limit is not None and self.windows > self.window_limit:
            self.parts.clear()  # the request is refused: let its windows go now
            raise WindowLimitExceeded(self.windows, self.window_limit)
        limits = np.array([self._options[r].max_answer_length for r, _ in owners])
        decoder = SpanDecoder(examples, features, config, max_answer_lengths=limits)
        self.parts.append(_Part(owners, features, decoder, np.argsort(-features.lengths, kind="stable")))
        return len(features)

    def build_all(self) -> None:
        """Build every text's windows."""
        while not self.built:
            self.build()

    def take(self, limit: int | None = None) -> list[WindowChunk]:
        """The next ``limit`` unread windows (all of them: None), longest first within each part; they count as read.

        Args:
            limit: Most windows to take.
        """
        chunks: list[WindowChunk] = []
        left = math.inf if limit is None else limit
        for part in self.parts:
            if left <= 0:
                break
            n = int(min(part.unread, left))
            if n:
                chunks.append(WindowChunk(part, part.order[part.read : part.read + n]))
                part.read += n
                left -= n
        return chunks

    def predictions(self) -> list[list[ExamplePrediction]]:
        """Each request's texts decoded, in order (for :meth:`Reader.rank <spanqa.reading.reader.Reader.rank>`),
        once every window is read."""
        if not self.done:
            raise RuntimeError("predictions() before every window was built and read")
        read: list[list[ExamplePrediction | None]] = [[None] * len(request.texts) for request in self.requests]
        for part in self.parts:
            for (r, d), prediction in zip(part.owners, part.decoder.finalize()):
                read[r][d] = prediction
        self.parts.clear()
        return [[p for p in texts if p is not None] for texts in read]

    def results(self) -> list[ReaderResult]:
        """Each request's answers, ranked across its texts, once every window is read."""
        return [self.reader.rank(request, texts) for request, texts in zip(self.requests, self.predictions())]


def read_chunks(reader: Reader, chunks: Sequence[WindowChunk]) -> int:
    """Run the windows of ``chunks`` (of any readings) through the model together, each batch's logits
    going to its own reading's decoder. Returns how many windows were read.

    Args:
        reader: The reader whose model runs (in ``reader.batch_size`` windows per pass, length-sorted).
        chunks: From :meth:`Reading.take`.
    """
    if not chunks:
        return 0
    inputs = [row for chunk in chunks for row in chunk.part.features.model_inputs(chunk.rows)]
    bounds = np.cumsum([0] + [len(chunk.rows) for chunk in chunks])
    for positions, start, end in reader.forward(inputs):
        owner = np.searchsorted(bounds, positions, side="right") - 1
        for c in np.unique(owner).tolist():
            mine = owner == c
            chunk = chunks[c]
            chunk.part.decoder.add(chunk.rows[positions[mine] - bounds[c]], start[mine], end[mine])
        release_freed_memory()  # each batch has its own length: keep the heap from fragmenting
    return len(inputs)
