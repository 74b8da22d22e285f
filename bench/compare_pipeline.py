#!/usr/bin/env python
"""transformers 4.57's question-answering pipeline against ``spanqa.pipeline``: same model, same questions.

transformers v5 removed ``pipeline("question-answering")``; ``spanqa.pipeline`` takes its call forms
and defaults. This script answers every question of a SQuAD-style file (all 1,190 of XQuAD-en by
default) with both, on the CPU, and says how many answers are identical (same ``start`` and
``end``), how many differ and why, and how fast each is.

* transformers 4.57 runs in its own virtual environment, made on first use and reused after
  (``--venv``, default ``~/.cache/spanqa-bench/transformers-4.57``; it is rebuilt when what is
  installed there is not 4.57.x). It gets ``pip install "transformers==4.57.*" "torch==X"``, X being
  this project's torch version without its local label (``2.13.0+cpu`` -> ``2.13.0``): the
  pytorch.org index is not needed. Where pip is set up as on the bench machines (a find-links
  folder holding ``torch-2.13.0+cpu``), ``torch==2.13.0`` resolves to that CPU wheel (PEP 440: a
  version without a local label matches ``+cpu``; the local build sorts first), so the venv is made
  from local files in about a minute. Elsewhere plain PyPI gives Linux the CUDA build (large, but
  it runs on a CPU); for the CPU one pass ``--pip-args "--index-url https://download.pytorch.org/whl/cpu
  --extra-index-url https://pypi.org/simple"``. The venv is not layered on this project's
  environment (``--system-site-packages`` would see transformers 5 and its hub/tokenizers, and
  pip could try to replace them there), so the two stacks cannot mix.
* There, this same file runs as a worker (``--worker answer``; it imports only the standard library,
  numpy and transformers): ``transformers.pipeline("question-answering", model=FOLDER, device=-1)``
  answers all questions as one list of dicts with ``batch_size``, and writes
  ``{id: {answer, start, end, score}}``, its load time and the wall time of that call.
* spanqa runs in this process: ``spanqa.pipeline("question-answering", model=FOLDER, device="cpu")``
  over the same list with the same arguments (given explicitly to both: top_k=1, doc_stride=128,
  max_answer_len=15, max_seq_len=384, max_question_len=64, handle_impossible_answer=False,
  align_to_words=True) and the same batch size, timed the same way. Each side first answers
  ``--warmup`` questions, untimed; model loading is not timed either.
* Each question whose answers differ is explained. The 4.57 worker (``--worker windows``) gives
  that question's windows as its pipeline builds them (tokens, offsets, each token's word as
  ``word_to_chars`` gives it, p_mask) with its model's logits (one window per forward, unpadded)
  and its own answer from them; spanqa gives its windows (``word_edges``) and logits. Then
  :func:`simulate` replays the span choice under rules between 4.x's and spanqa's, one switch at a time:

  N  4.x normalises each window on its own (softmax over the window's context tokens and CLS, score
     = p(start) x p(end)), so scores of different windows are not on one scale; spanqa compares
     start + end logits across all windows;
  M  4.x adds up the scores of candidates with the same text (case-insensitive): token spans of one
     window widened to the same words, the same answer from two overlapping windows, the same
     words at another place (keeping the first one's position); spanqa keeps each span at its best pair;
  S  4.x only sees each window's best ``top_k * 2 + 10`` token pairs (12) before adding up;
  W  the words a token widens to: 4.x's ``token_to_word``/``word_to_chars`` or spanqa's ``word_edges``;
  X  the logits: 4.x's model run or spanqa's (oneDNN, other padding): float noise.

  The smallest set of switches that turns 4.x's rule into spanqa's answer names the category:
  ``cross-window normalisation`` (N; or M where the added-up parts come from overlapping windows),
  ``word alignment`` (M where they are token spans of one window widened to the same words; W),
  ``same text elsewhere`` (M where they sit at other positions), ``span search`` (S), ``numerics``
  (X; or 4.x's own answer changing between its batched and unbatched runs). Before that:
  ``whitespace/tidy`` (the same text up to whitespace at the edges), ``windows differ`` (the two
  tokenize the question into other windows, e.g. a question over ``max_question_len`` tokens,
  which spanqa cuts and 4.x's fast-tokenizer path does not), ``tie`` (both answers score the same
  under a rule). ``UNEXPLAINED`` is what is left: a bug on one side.

Prints the machine, both speeds (questions/s) and their ratio, the identical share against the
acceptance (>= 99%), the |score difference| over the identical answers (median, 99th percentile,
max; with ``--scores transformers``, the default, 4.x's numbers must agree within 1e-4), the differences
by category, and up to ``--show`` differing questions; with several files (``--data A B`` or
``--languages de,es,...``) one line per file at the end.

    python bench/compare_pipeline.py --model /work/models/xquad-minilm            # all of XQuAD-en
    python bench/compare_pipeline.py --model M --questions 50 --show 10           # smoke test
    python bench/compare_pipeline.py --model M --languages de,es,ru,zh,ar,hi,el,ro  # XQuAD in eight languages
    python bench/compare_pipeline.py --model M --batch-size 1 --json out.json     # 4.x's default batch size
    python bench/compare_pipeline.py --model M --venv /tmp/hf457 --pip-args "--index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple"
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRANSFORMERS = "4.57"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spanqa-bench"
ACCEPTANCE = 0.99  # identical answers per language (issue 28)
SCORE_TOLERANCE = 1e-4  # |4.x score - spanqa score| with scores="transformers"
XQUAD_DIR = ROOT.parent / "shared" / "data" / "xquad"
XQUAD_LANGUAGES = ("en", "de", "es", "ru", "zh", "ar", "hi", "el", "ro")

# --------------------------------------------------------------------------- categories

TIDY = "whitespace/tidy (the same words; the edges differ by whitespace only)"
WINDOWS = "windows differ (the question is tokenized into other windows, e.g. cut at max_question_len)"
TIE = "tie (both answers score the same)"
NORM = "cross-window normalisation (4.x normalises each window on its own: scores of windows rank differently)"
OVERLAP = "cross-window normalisation (4.x adds up the answer's scores from overlapping windows)"
WORD_SUM = "word alignment (4.x adds up the scores of token spans widened to the same words)"
WORD_EDGES = "word alignment (the same tokens widened to other words)"
ELSEWHERE = "same text elsewhere (4.x adds up equal texts at other positions and keeps the first)"
SEARCH = "span search (4.x's top pairs per window miss spanqa's span)"
NUMERICS = "numerics (near-equal scores; the logits of the two runs differ in float noise)"
UNEXPLAINED = "UNEXPLAINED"
CATEGORIES = (TIDY, WINDOWS, TIE, NORM, OVERLAP, WORD_SUM, WORD_EDGES, ELSEWHERE, SEARCH, NUMERICS, UNEXPLAINED)


# --------------------------------------------------------------------------- replaying the span choice


@dataclass
class Window:
    """One model window of a question, as the span choice sees it (``T`` tokens).

    ``allowed`` is 4.x's ``p_mask == 0`` (context tokens and CLS: its softmax runs over them);
    ``context`` the context tokens only; ``chars`` each token's character offsets in the context
    and ``words`` those of the whole word it belongs to (align_to_words).
    """

    start: np.ndarray
    end: np.ndarray
    context: np.ndarray
    chars: np.ndarray
    words: np.ndarray
    allowed: np.ndarray | None = None
    input_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.start = np.asarray(self.start, dtype=np.float32)
        self.end = np.asarray(self.end, dtype=np.float32)
        self.context = np.asarray(self.context, dtype=bool)
        self.chars = np.asarray(self.chars, dtype=np.int64).reshape(-1, 2)
        self.words = np.asarray(self.words, dtype=np.int64).reshape(-1, 2)
        if self.allowed is None:
            allowed = self.context.copy()
            allowed[0] = True  # CLS first, as BERT-style tokenizers put it
            self.allowed = allowed
        self.allowed = np.asarray(self.allowed, dtype=bool)
        self.input_ids = tuple(int(i) for i in self.input_ids)


@dataclass(frozen=True)
class Rule:
    """How a pipeline picks its answer from window logits (the defaults are transformers 4.x's)."""

    per_window: bool = True  # softmax within each window, score p(start) * p(end); False: start + end logits across windows
    add_up: bool = True  # candidates with the same text (case-insensitive) add their scores; False: a span keeps its best pair
    top: int | None = 12  # only each window's best `top` pairs (4.x: top_k * 2 + 10 with align_to_words); None: all
    align: bool = True  # widen token spans to whole words


FOURX = Rule()
SPANQA = Rule(per_window=False, add_up=False, top=None)


@dataclass
class Candidate:
    """An answer with the token pairs it was made of: ``parts`` are (window, start token, end token, start char, end char, score)."""

    start: int
    end: int
    score: float
    parts: list[tuple[int, int, int, int, int, float]] = field(default_factory=list)

    @property
    def windows(self) -> set[int]:
        return {p[0] for p in self.parts}

    @property
    def positions(self) -> set[tuple[int, int]]:
        return {(p[3], p[4]) for p in self.parts}


def _band(n: int, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (start, end) token pair with 0 <= end - start < max_len inside n tokens."""
    starts = np.repeat(np.arange(n), max_len)
    ends = starts + np.tile(np.arange(max_len), n)
    keep = ends < n
    return starts[keep], ends[keep]


def simulate(windows: list[Window], context: str, rule: Rule = FOURX, max_answer_len: int = 15) -> list[Candidate]:
    """The answers ``rule`` gives from these windows, best first (4.x's postprocess for :data:`FOURX`)."""
    pairs = []
    for win in windows:
        s_tok, e_tok = _band(len(win.start), max_answer_len)
        if rule.per_window:
            # 4.x's select_starts_ends: -10000 outside p_mask == 0, softmax in float32, CLS (index 0) zeroed.
            s = np.where(win.allowed, win.start, np.float32(-10000.0)).astype(np.float32)
            e = np.where(win.allowed, win.end, np.float32(-10000.0)).astype(np.float32)
            ps = np.exp(s - s.max())
            ps = ps / ps.sum()
            pe = np.exp(e - e.max())
            pe = pe / pe.sum()
            ps[0] = pe[0] = 0.0
            scores = (ps[s_tok] * pe[e_tok]).astype(np.float64)
            valid = win.allowed[s_tok] & win.allowed[e_tok]
        else:
            scores = win.start[s_tok].astype(np.float64) + win.end[e_tok].astype(np.float64)
            valid = win.context[s_tok] & win.context[e_tok]
        pairs.append((s_tok, e_tok, scores, valid))
    if not rule.per_window:  # probabilities over all of the question's pairs: sums are comparable
        top_logit = max((float(sc[ok].max()) for _, _, sc, ok in pairs if ok.any()), default=0.0)
    answers: list[Candidate] = []
    index: dict[Any, Candidate] = {}
    for w, (win, (s_tok, e_tok, scores, valid)) in enumerate(zip(windows, pairs)):
        if rule.top is None:
            order = np.flatnonzero(valid)
            order = order[np.argsort(-scores[order], kind="stable")]
            if not rule.add_up:
                order = order[:64]  # each span at its best pair: the first ones decide
        else:
            ranked = scores if rule.per_window else np.where(valid, scores, -np.inf)
            k = min(rule.top, len(ranked))
            order = np.argpartition(-ranked, k - 1)[:k] if k < len(ranked) else np.arange(len(ranked))
            order = order[np.argsort(-ranked[order], kind="stable")]
            order = order[valid[order]]  # 4.x drops pairs outside p_mask after taking its top
        for j in order.tolist():
            si, ei = int(s_tok[j]), int(e_tok[j])
            score = float(scores[j]) if rule.per_window else float(np.exp(scores[j] - top_logit))
            if win.context[si] and win.context[ei] and rule.align:
                cs, ce = int(win.words[si, 0]), int(win.words[ei, 1])
            else:  # 4.x: no word for CLS -> the token offsets ((0, 0) for CLS)
                cs = int(win.chars[si, 0]) if win.context[si] else 0
                ce = int(win.chars[ei, 1]) if win.context[ei] else 0
            key: Any = context[cs:ce].lower() if rule.add_up else (cs, ce)
            part = (w, si, ei, cs, ce, score)
            found = index.get(key)
            if found is None:
                index[key] = found = Candidate(cs, ce, score, [part])
                answers.append(found)
            elif rule.add_up:
                found.score += score
                found.parts.append(part)
            elif score > found.score:
                found.score = score
                found.parts = [part]
    return sorted(answers, key=lambda a: -a.score)  # stable: ties keep the order found, as 4.x's sorted()


def _find(answers: list[Candidate], start: int, end: int, context: str, by_text: bool) -> Candidate | None:
    text = context[start:end].lower()
    for a in answers:
        if (a.start, a.end) == (start, end) or (by_text and context[a.start : a.end].lower() == text):
            return a
    return None


def _close(a: float, b: float, rel: float = 1e-6) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-30)


def same_windows(hf: list[Window], ours: list[Window]) -> bool:
    return len(hf) == len(ours) and all(a.input_ids == b.input_ids for a, b in zip(hf, ours))


def tidy_equal(context: str, a: tuple[int, int], b: tuple[int, int]) -> bool:
    """The two spans hold the same text once whitespace at their edges is dropped, at the same place."""

    def strip(s: int, e: int) -> tuple[int, int]:
        while s < e and context[s].isspace():
            s += 1
        while e > s and context[e - 1].isspace():
            e -= 1
        return s, e

    return strip(*a) == strip(*b)


SWITCHES = ("N", "M", "W", "S", "X")


def _rule_for(switches: tuple[str, ...]) -> Rule:
    return Rule(
        per_window="N" not in switches,
        add_up="M" not in switches,
        top=None if "S" in switches else FOURX.top,
    )


def _windows_for(switches: tuple[str, ...], hf: list[Window], ours: list[Window]) -> list[Window]:
    out = []
    for a, b in zip(hf, ours):
        win = a
        if "W" in switches:
            win = replace(win, words=b.words)
        if "X" in switches:
            win = replace(win, start=b.start, end=b.end)
        out.append(win)
    return out


def _label(switch: str, hf_best: Candidate) -> str:
    if switch == "N":
        return NORM
    if switch == "M":  # 4.x's answer won by adding up: say what it added up
        if len(hf_best.positions) > 1:
            return ELSEWHERE
        if len(hf_best.windows) > 1:
            return OVERLAP
        return WORD_SUM
    return {"W": WORD_EDGES, "S": SEARCH, "X": NUMERICS}[switch]


def categorise(
    context: str,
    hf: dict[str, Any],
    ours: dict[str, Any],
    hf_windows: list[Window] | None,
    our_windows: list[Window] | None,
    hf_unbatched: dict[str, Any] | None = None,
    max_answer_len: int = 15,
    top: int = 12,
) -> tuple[str, str]:
    """(category, why) for a question whose two answers differ (``hf``: 4.x's, ``ours``: spanqa's)."""
    h, q = (hf["start"], hf["end"]), (ours["start"], ours["end"])
    if tidy_equal(context, h, q):
        return TIDY, f"{context[h[0] : h[1]]!r} vs {context[q[0] : q[1]]!r}"
    if hf_windows is None or our_windows is None:
        return UNEXPLAINED, "no windows to replay"
    if not same_windows(hf_windows, our_windows):
        return WINDOWS, f"4.x {len(hf_windows)} windows, spanqa {len(our_windows)}; tokens differ"
    n = len(hf_windows)
    base = replace(FOURX, top=top)
    replay = simulate(hf_windows, context, base, max_answer_len)
    if not replay:
        return UNEXPLAINED, "4.x's rule finds no candidate"
    best = replay[0]
    notes = [f"{n} window{'s' if n > 1 else ''}"]
    # Ties: under 4.x's rule (its logits) or spanqa's (spanqa's logits) both answers score the same.
    theirs, mine = _find(replay, *h, context, True), _find(replay, *q, context, True)
    if theirs is not None and mine is not None and theirs is not mine and _close(theirs.score, mine.score):
        return TIE, "; ".join(notes + [f"4.x scores both {theirs.score:.6g}"])
    spanqa_rule = simulate(_windows_for(("W", "X"), hf_windows, our_windows), context, SPANQA, max_answer_len)
    a, b = _find(spanqa_rule, *h, context, False), _find(spanqa_rule, *q, context, False)
    if a is not None and b is not None and _close(a.score, b.score, 1e-7):
        return TIE, "; ".join(notes + ["spanqa scores both the same"])
    if hf_unbatched is not None and (best.start, best.end) != (hf_unbatched["start"], hf_unbatched["end"]):
        return UNEXPLAINED, "; ".join(notes + [f"the replay gives {context[best.start : best.end]!r}, 4.x's postprocess {hf_unbatched['answer']!r}"])
    if (best.start, best.end) != h:
        if hf_unbatched is not None:  # 4.x's own answer moves between its batched run and one window per forward
            return NUMERICS, "; ".join(notes + [f"4.x answers {hf_unbatched['answer']!r} one window per forward, {hf['answer']!r} batched"])
        return UNEXPLAINED, "; ".join(notes + [f"4.x's rule replayed gives {context[best.start : best.end]!r}, not 4.x's answer"])
    notes.append(f"4.x's answer from window(s) {sorted(best.windows)}, {len(best.parts)} part(s)")
    for size in range(1, len(SWITCHES) + 1):
        for switches in itertools.combinations(SWITCHES, size):
            rule = replace(_rule_for(switches), top=None if "S" in switches else top)
            got = simulate(_windows_for(switches, hf_windows, our_windows), context, rule, max_answer_len)
            if got and (got[0].start, got[0].end) == q:
                labels = list(dict.fromkeys(_label(s, best) for s in switches))
                if got[0].windows != best.windows:
                    notes.append(f"spanqa's from window(s) {sorted(got[0].windows)}")
                return " + ".join(labels), "; ".join(notes + ["switch " + "+".join(switches)])
    return UNEXPLAINED, "; ".join(notes + ["no change of rule gives spanqa's answer"])


def compare(contexts: dict[str, str], hf: dict[str, dict[str, Any]], ours: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(identical ids, differing ids): identical means the same start and end."""
    same, differ = [], []
    for qid in contexts:
        a, b = hf[qid], ours[qid]
        (same if (a["start"], a["end"]) == (b["start"], b["end"]) else differ).append(qid)
    return same, differ


def count_categories(categories: list[str]) -> list[tuple[str, int]]:
    """Counts per category, largest first; UNEXPLAINED (alone or combined) last."""
    counts: dict[str, int] = {}
    for c in categories:
        counts[c] = counts.get(c, 0) + 1
    return sorted(counts.items(), key=lambda kv: (UNEXPLAINED in kv[0], -kv[1], kv[0]))


# --------------------------------------------------------------------------- the transformers 4.x worker (runs in its venv)


def _pipeline_arguments(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "top_k": 1,
        "doc_stride": args.doc_stride,
        "max_answer_len": args.max_answer_len,
        "max_seq_len": args.max_seq_len,
        "max_question_len": args.max_question_len,
        "handle_impossible_answer": False,
        "align_to_words": True,
    }


def _answer_dict(a: dict[str, Any]) -> dict[str, Any]:
    return {"answer": a["answer"], "start": int(a["start"]), "end": int(a["end"]), "score": float(a["score"])}


def worker(args: argparse.Namespace) -> int:
    """In the transformers 4.x venv: answer the questions (``answer``) or dump some questions' windows (``windows``)."""
    import warnings

    warnings.filterwarnings("ignore")
    import torch
    import transformers
    from transformers import pipeline

    transformers.logging.set_verbosity_error()
    items = json.loads(Path(args.input).read_text(encoding="utf-8"))
    started = time.perf_counter()
    pipe = pipeline("question-answering", model=args.model, device=-1)
    load_seconds = time.perf_counter() - started
    arguments = _pipeline_arguments(args)
    out: dict[str, Any] = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_seconds": load_seconds,
    }
    if args.worker == "answer":
        inputs = [{"question": it["question"], "context": it["context"]} for it in items]
        if args.warmup:
            pipe(inputs[: args.warmup], batch_size=args.batch_size, **arguments)
        started = time.perf_counter()
        answers = pipe(inputs, batch_size=args.batch_size, **arguments)
        out["seconds"] = time.perf_counter() - started
        if isinstance(answers, dict):
            answers = [answers]
        out["answers"] = {it["id"]: _answer_dict(a) for it, a in zip(items, answers)}
    else:
        preprocess, forward, postprocess = pipe._sanitize_parameters(**arguments)
        dumped = {}
        for it in items:
            example = {"question": it["question"], "context": it["context"]}
            outputs = [pipe.forward(chunk, **forward) for chunk in pipe.preprocess(example, **preprocess)]
            answer = pipe.postprocess(outputs, **postprocess)
            windows = []
            for o in outputs:
                enc = o["encoding"]
                sequence = [-1 if s is None else s for s in enc.sequence_ids]
                words = []
                for t in range(len(enc.ids)):
                    try:  # as 4.x's get_indices widens a token
                        chars = enc.word_to_chars(enc.token_to_word(t), sequence_index=1) if sequence[t] == 1 else (-1, -1)
                    except Exception:
                        chars = enc.offsets[t]
                    words.append(list(chars))
                windows.append(
                    {
                        "input_ids": list(enc.ids),
                        "start": o["start"][0].float().tolist(),
                        "end": o["end"][0].float().tolist(),
                        "p_mask": [int(v) for v in np.asarray(o["p_mask"]).reshape(-1).tolist()],
                        "sequence_ids": sequence,
                        "offsets": [list(x) for x in enc.offsets],
                        "words": words,
                    }
                )
            dumped[it["id"]] = {"answer": _answer_dict(answer), "windows": windows}
        out["questions"] = dumped
    Path(args.output).write_text(json.dumps(out), encoding="utf-8")
    return 0


def hf_windows(dump: dict[str, Any]) -> list[Window]:
    """The worker's windows of one question as :class:`Window` objects."""
    wins = []
    for w in dump["windows"]:
        context = np.asarray(w["sequence_ids"]) == 1
        chars = np.where(context[:, None], np.asarray(w["offsets"]).reshape(-1, 2), -1)
        wins.append(Window(w["start"], w["end"], context, chars, w["words"], allowed=np.asarray(w["p_mask"]) == 0, input_ids=tuple(w["input_ids"])))
    return wins


# --------------------------------------------------------------------------- the venv


def _probe(python: Path) -> dict[str, str] | None:
    code = "import json, torch, transformers; print(json.dumps({'transformers': transformers.__version__, 'torch': torch.__version__}))"
    try:
        proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300, env=_clean_env())
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error", HF_HUB_OFFLINE="1", PYTHONNOUSERSITE="1")
    return env


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv(venv: Path, version: str, torch_version: str, pip_args: list[str]) -> tuple[Path, dict[str, str], str]:
    """The venv's python, its versions, and 'reused' or 'created in N s'; makes the venv when missing or stale."""
    python = _venv_python(venv)
    if python.exists():
        found = _probe(python)
        if found and found["transformers"].startswith(version + "."):
            return python, found, "reused"
    started = time.perf_counter()
    print(f"making the transformers {version} venv at {venv} (torch {torch_version}) ...", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pins = [f"transformers=={version}.*", f"torch=={torch_version}"]
    command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins, *pip_args]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: pip could not make the venv ({shlex.join(command)}):\n{proc.stderr[-3000:]}")
    found = _probe(python)
    if not found:
        raise SystemExit(f"error: the venv at {venv} cannot import torch and transformers")
    (venv / "spanqa-bench.json").write_text(json.dumps({"command": command, **found}, indent=1), encoding="utf-8")
    return python, found, f"created in {time.perf_counter() - started:.0f} s"


def run_worker(python: Path, mode: str, args: argparse.Namespace, items: list[dict[str, str]], workdir: Path) -> dict[str, Any]:
    source, target = workdir / f"{mode}-in.json", workdir / f"{mode}-out.json"
    source.write_text(json.dumps(items), encoding="utf-8")
    command = [
        str(python), str(Path(__file__).resolve()), "--worker", mode, "--model", str(args.model),
        "--input", str(source), "--output", str(target), "--batch-size", str(args.batch_size), "--warmup", str(args.warmup),
        "--doc-stride", str(args.doc_stride), "--max-seq-len", str(args.max_seq_len),
        "--max-answer-len", str(args.max_answer_len), "--max-question-len", str(args.max_question_len),
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, env=_clean_env())
    if proc.returncode != 0:
        raise SystemExit(f"error: the transformers worker failed ({mode}):\n{proc.stderr[-3000:]}")
    return json.loads(target.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- spanqa's side


def our_windows(pipe: Any, examples: list[Any], args: argparse.Namespace) -> dict[str, list[Window]]:
    """spanqa's windows of ``examples`` with its logits, as its pipeline builds them for these arguments."""
    from spanqa.stages.data import QAExample

    reader = pipe.reader.with_settings(stride=args.doc_stride, max_length=args.max_seq_len, max_question_tokens=args.max_question_len, align_to_words=True)
    examples = [QAExample(id=ex.id, question=ex.question.strip(), context=ex.context) for ex in examples]
    features = reader.features(examples, word_edges=True)
    start = [None] * len(features)
    end = [None] * len(features)
    for rows, s, e in reader.logits(features):
        for b, row in enumerate(rows.tolist()):
            n = len(features.input_ids[row])
            start[row], end[row] = np.asarray(s[b, :n]), np.asarray(e[b, :n])
    out: dict[str, list[Window]] = {ex.id: [] for ex in examples}
    for i in range(len(features)):
        n = len(features.input_ids[i])
        chars = features.offsets[i, :n]
        context = chars[:, 0] >= 0
        allowed = context.copy()
        allowed[int(features.cls_index[i])] = True
        out[examples[int(features.example_index[i])].id].append(
            Window(start[i], end[i], context, chars, features.word_edges[i, :n], allowed=allowed, input_ids=tuple(features.input_ids[i]))
        )
    return out


def window_counts(pipe: Any, examples: list[Any], args: argparse.Namespace) -> dict[str, int]:
    from spanqa.stages.data import QAExample

    reader = pipe.reader.with_settings(stride=args.doc_stride, max_length=args.max_seq_len, max_question_tokens=args.max_question_len)
    features = reader.features([QAExample(id=ex.id, question=ex.question.strip(), context=ex.context) for ex in examples])
    counts = np.bincount(features.example_index, minlength=len(examples))
    return {ex.id: int(c) for ex, c in zip(examples, counts)}


# --------------------------------------------------------------------------- main


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=32, help="batch_size of both pipelines (4.x's own default is 1).")
    parser.add_argument("--warmup", type=int, default=8, help="Questions each side answers first, untimed.")
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--max-seq-len", type=int, default=384)
    parser.add_argument("--max-answer-len", type=int, default=15)
    parser.add_argument("--max-question-len", type=int, default=64)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--worker" in argv:  # inside the transformers 4.x venv: no spanqa, no project imports
        wp = argparse.ArgumentParser()
        wp.add_argument("--worker", choices=("answer", "windows"), required=True)
        wp.add_argument("--model", required=True)
        wp.add_argument("--input", required=True)
        wp.add_argument("--output", required=True)
        _options(wp)
        return worker(wp.parse_args(argv))

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A QA model folder (e.g. fine-tuned by spanqa train on XQuAD-en articles 1-36).")
    parser.add_argument("--data", type=Path, nargs="+", default=None, help="SQuAD-style data files (default: ../shared/data/xquad/xquad.en.json).")
    parser.add_argument(
        "--languages", default=None, help=f"XQuAD languages from {XQUAD_DIR} instead of --data, e.g. de,es,ru,zh (of {','.join(XQUAD_LANGUAGES)}).",
    )
    parser.add_argument("--questions", type=int, default=0, help="Use the first N questions of each file (0: all).")
    parser.add_argument("--scores", choices=("transformers", "spanqa"), default="transformers", help="spanqa.pipeline's scores= (default: 4.x's).")
    parser.add_argument("--venv", type=Path, default=None, help=f"The transformers venv (default: {CACHE}/transformers-{TRANSFORMERS}).")
    parser.add_argument("--transformers", default=TRANSFORMERS, help="The transformers release series to compare with (default: 4.57).")
    parser.add_argument("--torch", default=None, help="torch version for the venv (default: this project's, without its local label).")
    parser.add_argument("--pip-args", default="", help="Extra pip install arguments for the venv (e.g. an --index-url).")
    parser.add_argument("--show", type=int, default=20, help="List at most N differing questions per file (-1: all).")
    parser.add_argument("--json", type=Path, help="Also write the figures and every difference here.")
    _options(parser)
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.warmup < 0:
        parser.error("--batch-size must be >= 1 and --warmup >= 0")
    if args.languages and args.data:
        parser.error("give --data or --languages, not both")

    sys.path.insert(0, str(ROOT / "bench"))
    from train_speed import data_file, machine  # the machine, printed first; the default data

    if args.languages:
        unknown = [lang for lang in args.languages.split(",") if lang not in XQUAD_LANGUAGES]
        if unknown:
            parser.error(f"--languages: unknown {unknown}; XQuAD has {','.join(XQUAD_LANGUAGES)}")
        files = [data_file(XQUAD_DIR / f"xquad.{lang}.json") for lang in args.languages.split(",")]
    else:
        files = [data_file(path) for path in args.data or [None]]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import logging
    import warnings
    from importlib.metadata import version

    logging.getLogger("spanqa").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    import spanqa

    print(machine(), flush=True)
    print("arguments (both): " + ", ".join(f"{k}={v}" for k, v in _pipeline_arguments(args).items()) + f"; spanqa scores={args.scores!r}")
    venv = args.venv or CACHE / f"transformers-{args.transformers}"
    torch_version = args.torch or version("torch").split("+")[0]
    python, found, how = ensure_venv(venv, args.transformers, torch_version, shlex.split(args.pip_args))
    print(f"venv {venv} ({how}): transformers {found['transformers']}, torch {found['torch']}", flush=True)
    started = time.perf_counter()
    pipe = spanqa.pipeline("question-answering", model=str(args.model), device="cpu", scores=args.scores)
    load_seconds = time.perf_counter() - started
    print(f"spanqa {spanqa.__version__} pipeline loaded in {load_seconds:.1f} s", flush=True)

    reports = [compare_file(args, data, python, pipe) for data in files]
    if len(reports) > 1:
        print_summary(reports)
    if args.json:
        figures = {"machine": machine(), "model": str(args.model), "scores": args.scores, "files": reports}
        args.json.write_text(json.dumps(figures, indent=1, ensure_ascii=False), encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


def score_differences(hf: dict[str, dict[str, Any]], ours: dict[str, dict[str, Any]], same: list[str]) -> dict[str, float]:
    """|4.x score - spanqa score| over the identical answers: median, 99th percentile, largest, and how many exceed 1e-4."""
    diffs = np.array([abs(hf[q]["score"] - ours[q]["score"]) for q in same]) if same else np.zeros(1)
    return {
        "median": float(np.median(diffs)),
        "p99": float(np.percentile(diffs, 99)),
        "max": float(diffs.max()),
        "over_tolerance": int((diffs > SCORE_TOLERANCE).sum()),
    }


def compare_file(args: argparse.Namespace, data: Path, python: Path, pipe: Any) -> dict[str, Any]:
    """Both pipelines over one file: answers, scores, speeds, and each difference explained; printed and returned."""
    import torch

    import spanqa
    from spanqa import load_examples

    examples = load_examples(data).examples
    if args.questions:
        examples = examples[: args.questions]
    n = len(examples)
    items = [{"id": ex.id, "question": ex.question, "context": ex.context} for ex in examples]
    contexts = {ex.id: ex.context for ex in examples}
    arguments = _pipeline_arguments(args)
    print(f"\n== {data.name}: {n} questions; batch_size {args.batch_size}; warm-up {args.warmup} questions (untimed)", flush=True)

    with tempfile.TemporaryDirectory(prefix="spanqa-compare-") as tmp:
        workdir = Path(tmp)
        hf_run = run_worker(python, "answer", args, items, workdir)
        hf_answers = hf_run["answers"]
        hf_speed = n / hf_run["seconds"]
        print(
            f"transformers {hf_run['transformers']} pipeline: {hf_run['seconds']:.1f} s, {hf_speed:.1f} questions/s "
            f"(load {hf_run['load_seconds']:.1f} s, torch threads {hf_run['threads']})",
            flush=True,
        )
        inputs = [{"question": it["question"], "context": it["context"]} for it in items]
        if args.warmup:
            pipe(inputs[: args.warmup], batch_size=args.batch_size, **arguments)
        started = time.perf_counter()
        answers = pipe(inputs, batch_size=args.batch_size, **arguments)
        our_seconds = time.perf_counter() - started
        answers = [answers] if isinstance(answers, dict) else answers  # a list of one gives one result, as in 4.x
        our_answers = {it["id"]: _answer_dict(a) for it, a in zip(items, answers)}
        our_speed = n / our_seconds
        print(f"spanqa {spanqa.__version__} pipeline: {our_seconds:.1f} s, {our_speed:.1f} questions/s (torch threads {torch.get_num_threads()})", flush=True)
        ratio = our_speed / hf_speed
        print(f"speed ratio spanqa / transformers {hf_run['transformers']} (questions/s): {ratio:.2f}x", flush=True)

        same, differ = compare(contexts, hf_answers, our_answers)
        same_text = sum(hf_answers[q]["answer"] == our_answers[q]["answer"] for q in contexts)
        counts = window_counts(pipe, examples, args)
        multi = [q for q in contexts if counts[q] > 1]
        multi_same = len(set(multi) & set(same))
        scores = score_differences(hf_answers, our_answers, same)

        explained: dict[str, tuple[str, str]] = {}
        if differ:
            by_id = {ex.id: ex for ex in examples}
            dumps = run_worker(python, "windows", args, [it for it in items if it["id"] in set(differ)], workdir)["questions"]
            ours = our_windows(pipe, [by_id[q] for q in differ], args)
            for q in differ:
                dump = dumps.get(q)
                explained[q] = categorise(
                    contexts[q], hf_answers[q], our_answers[q], hf_windows(dump) if dump else None, ours.get(q),
                    dump["answer"] if dump else None, args.max_answer_len, 2 * arguments["top_k"] + 10,
                )  # fmt: skip

    share = len(same) / n if n else 0.0
    verdict = "yes" if share >= ACCEPTANCE else "no"
    print(f"identical answers (same start and end): {len(same)} of {n} ({100 * share:.1f}%; acceptance >= {100 * ACCEPTANCE:.0f}%: {verdict})")
    print(f"identical answer texts: {same_text} of {n}")
    print(f"questions with more than one window: {len(multi)} ({multi_same} identical); one window: {n - len(multi)} ({len(same) - multi_same} identical)")
    print(
        f"|score difference| over the identical answers: median {scores['median']:.1e}, 99th percentile {scores['p99']:.1e}, "
        f"max {scores['max']:.1e}; over {SCORE_TOLERANCE:g}: {scores['over_tolerance']}"
    )
    print(f"different: {len(differ)}")
    categories = count_categories([explained[q][0] for q in differ])
    for category, k in categories:
        print(f"  {k:4d}  {category}")
    unexplained = sum(k for c, k in categories if UNEXPLAINED in c)
    print(f"unexplained: {unexplained}")
    shown = differ if args.show < 0 else differ[: args.show]
    if shown:
        print(f"differing questions ({len(differ)}{'' if len(shown) == len(differ) else f', first {len(shown)} shown'}):")
        for q in shown:
            a, b = hf_answers[q], our_answers[q]
            print(
                f"  {q} [{counts[q]} window{'s' if counts[q] > 1 else ''}]: 4.x {a['answer']!r} ({a['start']}-{a['end']}, {a['score']:.4f}) | "
                f"spanqa {b['answer']!r} ({b['start']}-{b['end']}, {b['score']:.4f})\n      -> {explained[q][0]}: {explained[q][1]}"
            )
    print(
        f"summary {data.name}: {len(same)}/{n} identical ({100 * share:.1f}%), {len(differ)} different ({unexplained} unexplained); "
        f"transformers {hf_run['transformers']} {hf_speed:.1f} q/s, spanqa {our_speed:.1f} q/s ({ratio:.2f}x)",
        flush=True,
    )
    return {
        "data": str(data),
        "questions": n,
        "identical": len(same),
        "identical_share": share,
        "acceptance": ACCEPTANCE,
        "identical_texts": same_text,
        "multi_window_questions": len(multi),
        "scores": scores,
        "categories": dict(categories),
        "unexplained": unexplained,
        "transformers": {"version": hf_run["transformers"], "torch": hf_run["torch"], "seconds": hf_run["seconds"], "questions_per_second": hf_speed},
        "spanqa": {"version": spanqa.__version__, "seconds": our_seconds, "questions_per_second": our_speed},
        "speed_ratio": ratio,
        "differences": [
            {"id": q, "windows": counts[q], "category": explained[q][0], "why": explained[q][1], "transformers": hf_answers[q], "spanqa": our_answers[q]}
            for q in differ
        ],
    }


def print_summary(reports: list[dict[str, Any]]) -> None:
    """One line per file: identical share against the acceptance, unexplained differences, score agreement, speeds."""
    print("\nfile              identical         unexplained  max |score diff|  > 1e-4   4.x q/s  spanqa q/s")
    for r in reports:
        mark = "ok" if r["identical_share"] >= ACCEPTANCE and not r["unexplained"] else "FAIL"
        print(
            f"{Path(r['data']).name:16s}  {r['identical']:4d}/{r['questions']:<4d} {100 * r['identical_share']:5.1f}% {mark:4s}  "
            f"{r['unexplained']:11d}  {r['scores']['max']:16.1e}  {r['scores']['over_tolerance']:6d}  "
            f"{r['transformers']['questions_per_second']:7.1f}  {r['spanqa']['questions_per_second']:10.1f}"
        )


if __name__ == "__main__":
    sys.exit(main())
