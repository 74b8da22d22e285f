#!/usr/bin/env python
"""Bad inputs: every ``spanqa`` command run on inputs a user can get wrong, each result classified.

Each case builds its own bad input in a temporary folder (data files, options, model
folders, output paths, earlier work that must not be replaced), runs one command as a
subprocess (``python -m spanqa ...``, at most two at a time, each with a timeout) and
is classified:

* TRACEBACK: stderr holds a Python traceback, or the process died from a signal;
* WRONG: the case's own expectation failed: exit 0 on garbage, no single ``error:`` line
  naming what was wrong, a wrong result (a question missing from ``predict``'s output,
  invalid JSON written, a v1 file converted to v2, a file written with mode 0600 under
  umask 022, earlier work replaced, a hub lookup for a mistyped local name...);
* CLEAN: otherwise.

Nothing goes to the network: every case runs with ``HF_HUB_OFFLINE=1`` except the mistyped
local model name, where the tool itself must notice (a timeout bounds it). One tiny random
BERT (built as ``tests/conftest.py`` builds them) serves every case; a two-step training run
of it gives the finished run and the checkpoints that the ``train --resume`` cases start from.

Prints the machine, one line per case (``CLEAN|TRACEBACK|WRONG  case  reason``), then the
counts; exits 1 if any case is TRACEBACK or WRONG.

    python bench/bad_inputs.py                     # every case (a few minutes on 2 cores)
    python bench/bad_inputs.py --only predict      # the cases whose name contains 'predict'
    python bench/bad_inputs.py --list              # the case table: name, command, expectation
    python bench/bad_inputs.py --json results.json # also write every result as JSON
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

CLEAN, TRACEBACK, WRONG, SKIPPED = "CLEAN", "TRACEBACK", "WRONG", "SKIPPED"
ERROR, OK, EITHER = "error", "ok", "either"  # what a case expects: exit 1 with one `error:` line, exit 0, or either of them
SPANQA = [sys.executable, "-m", "spanqa"]
MAX_ERROR_CHARS = 1000  # an `error:` line longer than this dumps the input instead of naming the problem


class Skip(Exception):
    """A case that cannot run on this machine (say, a read-only folder when running as root)."""


# --------------------------------------------------------------------------- the case table


@dataclass(frozen=True)
class Case:
    """One command on one bad input, with what a correct tool does.

    ``argv`` follows ``spanqa`` and is split like a shell line; ``{tiny}``, ``{good}`` ... are the
    shared fixtures (:meth:`Ctx.values`) and anything the case's setup put in its state. The
    command runs in the case's own folder, so bare names are files its setup wrote there.
    ``mentions``: each entry must appear in the ``error:`` line (case-insensitive; ``a|b``: either).
    ``keep``: files (relative to the case folder) the command must leave byte for byte as the setup wrote them,
    whatever its exit status.
    """

    name: str
    argv: str
    expect: str = ERROR
    mentions: tuple[str, ...] = ()
    setup: Callable[[Ctx, Path, dict[str, Any]], None] | None = None
    check: Callable[[Ctx, Path, dict[str, Any], Run], str | None] | None = None
    keep: tuple[str, ...] = ()
    timeout: float = 150.0
    max_seconds: float | None = None
    offline: bool = True
    needs_run: bool = False  # starts from the finished training run (a fixture that costs a short training)
    why: str = ""

    @property
    def needs_model(self) -> bool:
        return "{tiny}" in self.argv or self.needs_run or self.name.startswith("model/")


@dataclass
class Ctx:
    """The shared fixtures every case may use (built once per run, read-only to the cases)."""

    root: Path
    tiny: Path | None = None
    good: Path | None = None
    good_v1: Path | None = None
    good_csv: Path | None = None
    preds: Path | None = None
    run: Path | None = None
    run_note: str = ""
    cuda: bool = False

    def values(self) -> dict[str, str]:
        names = ("tiny", "good", "good_v1", "good_csv", "preds", "run")
        return {name: str(getattr(self, name)) for name in names if getattr(self, name) is not None}


@dataclass
class Run:
    rc: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    seconds: float
    argv: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    name: str
    verdict: str
    reason: str
    seconds: float = 0.0


# ---- inputs

CTX1 = "The Glenbarrow Light Railway runs for 14 kilometres between Ashby Cross and Glenbarrow. It was built in 1897 to carry slate."
CTX2 = "Bluebell is a tank engine built in Leeds in 1903. It still pulls the first train of the day."
QUESTIONS = [  # id, context, question, answer (None: unanswerable)
    ("q1", CTX1, "How long is the railway?", "14 kilometres"),
    ("q2", CTX1, "When was the railway built?", "1897"),
    ("q3", CTX1, "What did the railway carry?", "slate"),
    ("q4", CTX2, "Where was Bluebell built?", "Leeds"),
    ("q5", CTX2, "Who drives Bluebell?", None),
]
IDS = [q[0] for q in QUESTIONS]
ASK = "ask {tiny} 'How long is the railway?' --context 'The railway runs for 14 kilometres.'"
TRAIN = "train --model {tiny} --train {good} --output_dir model --eval_strategy no --save_strategy no --cache_features false"
TRAIN_RESUME = (
    "train --model {tiny} --train {good} --eval {good} --output_dir model --resume --max_steps 3 --per_device_train_batch_size 2 "
    "--save_strategy steps --save_steps 1 --eval_strategy steps --eval_steps 1 --cache_features false"
)
HUGE = "1" + "0" * 4999  # an integer with 5,000 digits (Python refuses to parse more than 4,300 by default)
DEEP = "[" * 100_000 + "]" * 100_000  # JSON nested 100,000 levels


def squad(v1: bool = False, mutate: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    """The five questions as SQuAD JSON (v1: answerable ones only, no is_impossible); ``mutate`` edits it in place."""
    articles: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for qid, context, question, answer in QUESTIONS:
        if v1 and answer is None:
            continue
        qa: dict[str, Any] = {"id": qid, "question": question, "answers": [] if answer is None else [{"text": answer, "answer_start": context.index(answer)}]}
        if not v1:
            qa["is_impossible"] = answer is None
        title = "Railway" if context == CTX1 else "Bluebell"
        articles.setdefault(title, {}).setdefault(context, []).append(qa)
    doc = {
        "version": "1.1" if v1 else "v2.0",
        "data": [{"title": t, "paragraphs": [{"context": c, "qas": qas} for c, qas in ps.items()]} for t, ps in articles.items()],
    }
    if mutate is not None:
        mutate(doc)
    return doc


def first_qa(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["data"][0]["paragraphs"][0]["qas"][0]


def q1(**changes: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda doc: first_qa(doc).update(changes)


def q1_answer(**changes: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda doc: first_qa(doc)["answers"][0].update(changes)


def title(value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda doc: doc["data"][0].update(title=value)


def every_qa(**changes: Any) -> Callable[[dict[str, Any]], Any]:
    def mutate(doc: dict[str, Any]) -> None:
        for article in doc["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    qa.update(changes)

    return mutate


def records(mutate: Callable[[list[dict[str, Any]]], Any] | None = None) -> list[dict[str, Any]]:
    """The five questions as flat records (JSONL / CSV rows)."""
    rows = [
        {"id": qid, "question": question, "context": context, "answer": answer or "", "answer_start": context.index(answer) if answer else -1}
        for qid, context, question, answer in QUESTIONS
    ]
    if mutate is not None:
        mutate(rows)
    return rows


def jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def csv_text(rows: list[dict[str, Any]]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def huge_int_squad() -> str:
    return json.dumps(squad(mutate=q1_answer(answer_start="@HUGE@"))).replace('"@HUGE@"', HUGE)


def not_utf8_squad() -> bytes:
    return json.dumps(squad(), ensure_ascii=False).replace("Glenbarrow", "Glenbärrow").encode("latin-1")


def not_utf8_csv() -> bytes:
    return csv_text(records()).replace("Glenbarrow", "Glenbärrow").encode("latin-1")


# ---- setups (each writes into the case's folder)

Setup = Callable[[Ctx, Path, dict[str, Any]], None]
Check = Callable[[Ctx, Path, dict[str, Any], Run], str | None]


def write(name: str, content: Any) -> Setup:
    """A file: ``content`` is bytes, text, a JSON-able object, or a callable returning one of those."""

    def setup(ctx: Ctx, here: Path, state: dict[str, Any]) -> None:
        value = content() if callable(content) else content
        path = here / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, bytes):
            path.write_bytes(value)
        elif isinstance(value, str):
            path.write_text(value, encoding="utf-8")
        else:
            path.write_text(json.dumps(value), encoding="utf-8")

    return setup


def folder(name: str, with_file: str | None = None) -> Setup:
    def setup(ctx: Ctx, here: Path, state: dict[str, Any]) -> None:
        (here / name).mkdir(parents=True, exist_ok=True)
        if with_file:
            (here / name / with_file).write_text("{}\n", encoding="utf-8")

    return setup


def chain(*setups: Setup) -> Setup:
    def setup(ctx: Ctx, here: Path, state: dict[str, Any]) -> None:
        for step in setups:
            step(ctx, here, state)

    return setup


def model_copy(name: str = "model", edit: Callable[[Path], None] | None = None) -> Setup:
    """A copy of the tiny model as ``name``, then ``edit(folder)``."""

    def setup(ctx: Ctx, here: Path, state: dict[str, Any]) -> None:
        if ctx.tiny is None:
            raise Skip("no tiny model")
        shutil.copytree(ctx.tiny, here / name)
        if edit is not None:
            edit(here / name)

    return setup


def run_copy(name: str = "model", checkpoints: bool = True, final: bool = True, edit: Callable[[Path], None] | None = None) -> Setup:
    """A copy of the finished two-step training run: its final model and/or its checkpoints."""

    def setup(ctx: Ctx, here: Path, state: dict[str, Any]) -> None:
        if ctx.run is None:
            raise Skip(f"no finished training run ({ctx.run_note})")
        has_checkpoints = any(ctx.run.glob("checkpoint-*"))
        if checkpoints and not has_checkpoints:
            raise Skip(f"the training run kept no checkpoints ({ctx.run_note})")
        target = here / name
        target.mkdir()
        for item in ctx.run.iterdir():
            is_checkpoint = item.name.startswith("checkpoint-")
            if (is_checkpoint and checkpoints) or (not is_checkpoint and final):
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, target / item.name)
        if edit is not None:
            edit(target)

    return setup


def write_into(rel: str, content: bytes | str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        data = content.encode("utf-8") if isinstance(content, str) else content
        (folder / rel).write_bytes(data)

    return edit


def truncate(rel: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / rel
        path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])

    return edit


def remove_tokenizer(folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "added_tokens.json"):
        (folder / name).unlink(missing_ok=True)


def newest_checkpoint(folder: Path) -> Path:
    return max(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


def poison_newest(rel: str, content: bytes) -> Callable[[Path], None]:
    return lambda folder: (newest_checkpoint(folder) / rel).write_bytes(content)


def poison_all(rel: str, content: bytes) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        for checkpoint in folder.glob("checkpoint-*"):
            (checkpoint / rel).write_bytes(content)

    return edit


def full_device(name: str) -> Setup:
    """``name``: a character device like /dev/full (every write fails with ENOSPC), or /dev/full itself.

    A private node in the case folder: a tool that "atomically" replaces its output would,
    run as root, replace the real /dev/full with a regular file.
    """

    def setup(ctx: Ctx, here: Path, state: dict[str, Any]) -> None:
        node = here / name
        try:
            os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
            state["full"] = name
        except OSError:
            if os.access("/dev", os.W_OK):
                raise Skip("cannot make a private /dev/full node, and /dev is writable (the real one could be replaced)") from None
            state["full"] = "/dev/full"
        state["full_node"] = str(node if state["full"] == name else "/dev/full")

    return setup


def read_only(name: str) -> Setup:
    def setup(ctx: Ctx, here: Path, state: dict[str, Any]) -> None:
        if os.geteuid() == 0:
            raise Skip("running as root: a read-only folder is writable")
        (here / name).mkdir()
        (here / name).chmod(0o500)

    return setup


def free_port(ctx: Ctx, here: Path, state: dict[str, Any]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        state["port"] = str(sock.getsockname()[1])


def needs_no_cuda(ctx: Ctx, here: Path, state: dict[str, Any]) -> None:
    if ctx.cuda:
        raise Skip("CUDA is available here")


# ---- checks (None: fine; else why the result is WRONG)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def valid_json(*rels: str, stdout: bool = True) -> Check:
    """stdout (on exit 0) and each of ``rels`` that exists parse as strict JSON (no NaN / Infinity)."""

    def check(ctx: Ctx, here: Path, state: dict[str, Any], run: Run) -> str | None:
        texts = [("stdout", run.stdout)] if stdout and run.rc == 0 else []
        texts += [(rel, (here / rel).read_text(encoding="utf-8")) for rel in rels if (here / rel).is_file()]
        for where, text in texts:
            try:
                _strict_json(text)
            except ValueError as err:
                return f"{where} is not valid JSON ({err})"
        return None

    return check


def device_intact(ctx: Ctx, here: Path, state: dict[str, Any], run: Run) -> str | None:
    node = Path(state["full_node"])
    if not stat.S_ISCHR(os.lstat(node).st_mode):
        return f"replaced the device {state['full']} with a regular file (exit {run.rc})"
    return None


def all_ids(rel: str, ids: Iterable[str]) -> Check:
    """On exit 0 the JSONL output holds one line for every question id."""

    def check(ctx: Ctx, here: Path, state: dict[str, Any], run: Run) -> str | None:
        if run.rc != 0:
            return None
        path = here / rel
        if not path.is_file():
            return f"exit 0 but {rel} was not written"
        seen = {json.loads(line).get("id") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
        missing = [qid for qid in ids if qid not in seen]
        return f"question(s) {', '.join(missing)} missing from the output" if missing else None

    return check


def converted_v1(rel: str) -> Check:
    def check(ctx: Ctx, here: Path, state: dict[str, Any], run: Run) -> str | None:
        path = here / rel
        if run.rc != 0 or not path.is_file():
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
        impossible = [qa["id"] for a in doc["data"] for p in a["paragraphs"] for qa in p["qas"] if qa.get("is_impossible") is True]
        if doc.get("version") == "v2.0" or impossible:
            return f'is_impossible "false" read as true: wrote a {doc.get("version")} file' + (f", unanswerable {impossible}" if impossible else "")
        return None

    return check


def summary_v1(ctx: Ctx, here: Path, state: dict[str, Any], run: Run) -> str | None:
    if run.rc != 0:
        return None
    summary = json.loads(run.stdout)[0]
    if summary["version_2"] or summary["unanswerable"]:
        return f'is_impossible "false" read as true: version_2={summary["version_2"]}, unanswerable={summary["unanswerable"]}'
    return None


def scored_v1(ctx: Ctx, here: Path, state: dict[str, Any], run: Run) -> str | None:
    if run.rc != 0:
        return None
    metrics = json.loads(run.stdout)
    return None if "exact_match" in metrics else f'is_impossible "false" read as true: scored as v2 ({", ".join(list(metrics)[:4])}, ...)'


def modes(*patterns: str, mode: int = 0o644) -> Check:
    """Every regular file matching ``patterns`` (globs under the case folder) has ``mode`` (umask 022)."""

    def check(ctx: Ctx, here: Path, state: dict[str, Any], run: Run) -> str | None:
        if run.rc != 0:
            return None
        files = [p for pattern in patterns for p in here.glob(pattern) if p.is_file() and not p.is_symlink()]
        if not files:
            return f"exit 0 but nothing matching {', '.join(patterns)} was written"
        bad = [f"{p.relative_to(here)} {stat.S_IMODE(p.stat().st_mode):04o}" for p in files if stat.S_IMODE(p.stat().st_mode) != mode]
        return f"written ignoring umask 022 (want {mode:04o}): {', '.join(sorted(bad))}" if bad else None

    return check


def warns_about_checkpoint(ctx: Ctx, here: Path, state: dict[str, Any], run: Run) -> str | None:
    if run.rc == 0 and "checkpoint" not in run.stderr.lower():
        return "exit 0 and not a word about the unusable checkpoints"
    return None


def checks(*items: Check) -> Check:
    def check(ctx: Ctx, here: Path, state: dict[str, Any], run: Run) -> str | None:
        return next((reason for item in items if (reason := item(ctx, here, state, run))), None)

    return check


# ---- the table

DATA_COMMANDS = {
    "check": "data check {data} -m {tiny}",
    "convert": "data convert {data} out.json",
    "split": "data split {data} head.json tail.json --articles 1",
    "score": "score -d {data} -p {preds}",
    "evaluate": "evaluate -m {tiny} -d {data} -o eval",
    "predict": "predict {tiny} {data} -o out.jsonl",
    "train": TRAIN.replace("{good}", "{data}") + " --max_steps 1",
}

TEXT = ("bad.json", "text|answer")
BIG = "digit|integer|number|large|long"
# name, file, content, what the error must mention, commands
BAD_DATA: list[tuple[str, str, Any, tuple[str, ...], list[str]]] = [
    ("answer-text-number", "bad.json", lambda: squad(mutate=q1_answer(text=42)), TEXT, ["check", "convert", "score", "evaluate", "train"]),
    ("answer-text-null", "bad.json", lambda: squad(mutate=q1_answer(text=None)), TEXT, ["convert", "score"]),
    ("answer-text-list", "bad.json", lambda: squad(mutate=q1_answer(text=["14 kilometres"])), TEXT, ["convert", "evaluate"]),
    ("answer-start-word", "bad.json", lambda: squad(mutate=q1_answer(answer_start="abc")), ("bad.json", "answer_start|offset"), ["score"]),
    ("deep-nesting-json", "bad.json", DEEP, ("bad.json", "nest|deep|recurs|depth"), ["check", "convert", "split", "score", "evaluate", "predict", "train"]),
    ("deep-nesting-jsonl", "bad.jsonl", DEEP + "\n", ("bad.jsonl", "nest|deep|recurs|depth"), ["convert", "predict"]),
    ("huge-int-json", "bad.json", huge_int_squad, ("bad.json", BIG), ["convert", "score", "predict"]),
    ("huge-int-csv", "bad.csv", lambda: csv_text(records(lambda rows: rows[0].update(answer_start=HUGE))), ("bad.csv", BIG), ["convert"]),
    ("id-list", "bad.json", lambda: squad(mutate=q1(id=["q1"])), ("bad.json", "id"), ["check", "convert"]),
    ("id-object", "bad.json", lambda: squad(mutate=q1(id={"n": 1})), ("bad.json", "id"), ["convert", "score"]),
    ("id-object-jsonl", "bad.jsonl", lambda: jsonl(records(lambda rows: rows[0].update(id={"n": 1}))), ("bad.jsonl", "id"), ["convert"]),
    ("title-list", "bad.json", lambda: squad(mutate=title(["Railway", "Trains"])), ("bad.json", "title"), ["convert", "split"]),
    ("title-object", "bad.json", lambda: squad(mutate=title({"name": "Railway"})), ("bad.json", "title"), ["split"]),
    ("is-impossible-word", "bad.json", lambda: squad(v1=True, mutate=q1(is_impossible="maybe")), ("bad.json", "is_impossible"), ["convert"]),
    ("not-utf8-json", "bad.json", not_utf8_squad, ("bad.json", "utf-8|utf8|encoding"), ["convert", "evaluate", "train"]),
    ("not-utf8-jsonl", "bad.jsonl", lambda: jsonl(records()).replace("Glenbarrow", "Glenbärrow").encode("latin-1"), ("bad.jsonl", "utf-8|utf8"), ["check"]),
    ("not-utf8-csv", "bad.csv", not_utf8_csv, ("bad.csv", "utf-8|utf8|encoding"), ["convert", "predict"]),
    ("directory", "bad.json", None, ("bad.json", "folder|director"), ["convert", "score", "predict", "train"]),
    ("empty-json", "bad.json", "", ("bad.json",), ["convert", "train"]),
    ("empty-jsonl", "bad.jsonl", "", ("bad.jsonl",), ["predict", "split"]),
    ("empty-csv", "bad.csv", "", ("bad.csv",), ["check", "convert"]),
    ("csv-unknown-columns", "bad.csv", "foo,bar,baz\n1,2,3\n", ("bad.csv", "column"), ["convert", "predict"]),
    ("csv-ragged-rows", "bad.csv", lambda: csv_text(records()) + "q9,one,two,three,four,five,six\n", ("bad.csv",), ["convert"]),
]


def _data_cases() -> list[Case]:
    cases = []
    for name, filename, content, mentions, commands in BAD_DATA:
        setup = folder(filename) if content is None else write(filename, content)
        for command in commands:
            argv = DATA_COMMANDS[command].replace("{data}", filename)
            cases.append(Case(f"data/{name}/{command}", argv, ERROR, mentions, setup, why=f"{name} given to {command}"))
    false = write("bad.json", lambda: squad(v1=True, mutate=every_qa(is_impossible="false")))
    cases += [
        Case(
            "data/is-impossible-false-string/convert",
            "data convert bad.json out.json",
            OK,
            (),
            false,
            converted_v1("out.json"),
            why='is_impossible "false" (a string) must read as false: the converted file is v1',
        ),
        Case(
            "data/is-impossible-false-string/check",
            "data check bad.json -m {tiny} --json",
            OK,
            (),
            false,
            summary_v1,
            why='is_impossible "false": no unanswerable questions',
        ),
        Case(
            "data/is-impossible-false-string/score",
            "score -d bad.json -p {preds}",
            OK,
            (),
            false,
            scored_v1,
            why='is_impossible "false": scored as v1 (exact_match)',
        ),
        Case(
            "data/csv-missing-mapped-column/score",
            "score -d {good_csv} -p {preds} -c question=nope",
            ERROR,
            ("nope",),
            why="--columns names a column the file lacks",
        ),
        Case(
            "data/gold-not-in-context/predict",
            "predict {tiny} bad.json -o out.jsonl",
            OK,
            (),
            write("bad.json", lambda: squad(mutate=q1_answer(text="Manchester", answer_start=5))),
            all_ids("out.jsonl", IDS),
            why="a question whose gold answer is not in its context is still a question to answer",
        ),
        Case(
            "data/gold-start-out-of-range/predict",
            "predict {tiny} bad.json -o out.jsonl",
            OK,
            (),
            write("bad.json", lambda: squad(mutate=q1_answer(text="Manchester", answer_start=99_999))),
            all_ids("out.jsonl", IDS),
            why="gold offset past the end of the context: the question is still answered",
        ),
        Case(
            "data/gold-text-number/predict",
            "predict {tiny} bad.json -o out.jsonl",
            EITHER,
            ("bad.json",),
            write("bad.json", lambda: squad(mutate=q1_answer(text=42))),
            all_ids("out.jsonl", IDS),
            why="gold answer text a number: refuse the file, or answer every question",
        ),
    ]
    return cases


def _score_cases() -> list[Case]:
    def na(value: str) -> Setup:
        return write("na.json", lambda: '{"q1": ' + value + ', "q2": 0.1, "q3": 0.1, "q4": 0.1, "q5": 0.9}')

    score_na = "score -d {good} -p {preds} --na-probs na.json -o metrics.json"
    return [
        Case(
            "score/predictions-directory",
            "score -d {good} -p preds.json",
            ERROR,
            ("preds.json", "folder|director"),
            folder("preds.json"),
            why="--predictions is a folder",
        ),
        Case(
            "score/predictions-not-utf8",
            "score -d {good} -p preds.json",
            ERROR,
            ("preds.json", "utf-8|utf8|encoding"),
            write("preds.json", '{"q1": "Glenbärrow"}'.encode("latin-1")),
        ),
        Case("score/predictions-deep-nesting", "score -d {good} -p preds.json", ERROR, ("preds.json",), write("preds.json", DEEP)),
        Case("score/predictions-list", "score -d {good} -p preds.json", ERROR, ("preds.json",), write("preds.json", ["14 kilometres"])),
        Case(
            "score/na-probs-nan",
            score_na,
            EITHER,
            ("na.json|nan",),
            na("NaN"),
            valid_json("metrics.json"),
            why="NaN no-answer probability: refuse it, or write valid JSON",
        ),
        Case("score/na-probs-infinity", score_na, EITHER, ("na.json|infinit",), na("Infinity"), valid_json("metrics.json")),
        Case("score/na-probs-minus-infinity", score_na, EITHER, ("na.json|infinit",), na("-Infinity"), valid_json("metrics.json")),
        Case("score/na-probs-huge-int", score_na, ERROR, ("na.json",), na(HUGE)),
        Case("score/na-prob-thresh-nan", "score -d {good} -p {preds} --na-prob-thresh nan", ERROR, ("thresh|nan",)),
    ]


def _option_cases() -> list[Case]:
    evaluate = "evaluate -m {tiny} -d {good} -o eval"
    predict = "predict {tiny} {good} -o out.jsonl"
    train = TRAIN + " --max_steps 2"
    serve = "serve {tiny} --port {port}"
    return [
        Case("options/evaluate-batch-size-0", evaluate + " --batch-size 0", ERROR, ("batch",)),
        Case("options/evaluate-batch-size-minus-1", evaluate + " --batch-size -1", ERROR, ("batch",)),
        Case("options/predict-batch-size-0", predict + " --batch-size 0", ERROR, ("batch",)),
        Case("options/predict-batch-size-minus-1", predict + " --batch-size -1", ERROR, ("batch",)),
        Case("options/train-batch-size-0", train + " --batch-size 0", ERROR, ("batch",)),
        Case("options/train-batch-size-minus-1", train + " --batch-size -1", ERROR, ("batch",)),
        Case("options/train-epochs-minus-1", TRAIN + " --epochs -1", ERROR, ("epoch",)),
        Case("options/train-learning-rate-word", train + " --learning_rate abc", ERROR, ("learning_rate|learning-rate",)),
        Case("options/data-check-max-length-0", "data check {good} -m {tiny} --max-length 0", ERROR, ("max-length|max_length",)),
        Case("options/evaluate-null-threshold-nan", evaluate + " --null-threshold nan", ERROR, ("threshold|nan",)),
        Case("options/evaluate-max-answer-length-0", evaluate + " --max-answer-length 0", ERROR, ("max_answer_length|max-answer-length",)),
        Case("options/ask-top-k-0", ASK + " --top-k 0", ERROR, ("top",)),
        Case("options/predict-top-k-minus-1", predict + " --top-k -1", ERROR, ("top",)),
        Case("options/ask-device-gpu9", ASK + " --device gpu9", ERROR, ("gpu9",)),
        Case("options/evaluate-device-gpu9", evaluate + " --device gpu9", ERROR, ("gpu9",)),
        Case("options/predict-device-gpu9", predict + " --device gpu9", ERROR, ("gpu9",)),
        Case("options/serve-device-gpu9", serve + " --device gpu9", ERROR, ("gpu9",), free_port, timeout=60),
        Case("options/ask-device-cuda", ASK + " --device cuda", ERROR, ("cuda",), needs_no_cuda),
        Case("options/evaluate-device-cuda", evaluate + " --device cuda", ERROR, ("cuda",), needs_no_cuda),
        Case("options/predict-device-cuda", predict + " --device cuda", ERROR, ("cuda",), needs_no_cuda),
        Case("options/serve-max-batch-0", serve + " --max-batch 0", ERROR, ("max_batch|max-batch",), free_port, timeout=60),
        Case("options/serve-request-timeout-word", serve + " --request-timeout-s soon", ERROR, ("request_timeout_s|request-timeout-s",), free_port, timeout=60),
        Case("options/serve-max-bach-typo", serve + " --max-bach 3", ERROR, ("max-bach",), free_port, timeout=60),
        Case("options/serve-dtype-fp17", serve + " --dtype fp17", ERROR, ("fp17",), free_port, timeout=60),
        Case("options/serve-batch-size-0", serve + " --batch-size 0", ERROR, ("batch",), free_port, timeout=60),
        Case("options/serve-port-70000", "serve {tiny} --port 70000", ERROR, ("port|70000",), timeout=60),
    ]


def _model_cases() -> list[Case]:
    wrong_types = write_into("spanqa.json", '{"max_length": "long", "null_threshold": "high"}')
    not_object = write_into("spanqa.json", "[1, 2, 3]")
    ask = ASK.replace("{tiny}", "model")
    truncated = model_copy(edit=truncate("model.safetensors"))
    no_tokenizer = model_copy(edit=remove_tokenizer)
    train_model = TRAIN.replace("{tiny}", "model").replace("--output_dir model", "--output_dir run") + " --max_steps 1"

    def mistyped(name: str, argv: str) -> Case:
        why = "my-model/ exists: the tool must notice the typo by itself (no HF_HUB_OFFLINE), within 10 s"
        return Case(name, argv, ERROR, ("my-modle",), model_copy("my-model"), timeout=40, max_seconds=10, offline=False, why=why)

    resume_mentions = ("checkpoint|trainer_state|optimizer",)
    return [
        Case("model/spanqa-json-wrong-types/ask", ask, ERROR, ("spanqa.json",), model_copy(edit=wrong_types)),
        Case("model/spanqa-json-wrong-types/evaluate", "evaluate -m model -d {good} -o eval", ERROR, ("spanqa.json",), model_copy(edit=wrong_types)),
        Case("model/spanqa-json-wrong-types/predict", "predict model {good} -o out.jsonl", ERROR, ("spanqa.json",), model_copy(edit=wrong_types)),
        Case(
            "model/spanqa-json-wrong-types/serve",
            "serve model --port {port}",
            ERROR,
            ("spanqa.json",),
            chain(model_copy(edit=wrong_types), free_port),
            timeout=60,
        ),
        Case("model/spanqa-json-bool-word/ask", ask, ERROR, ("spanqa.json",), model_copy(edit=write_into("spanqa.json", '{"version_2": "no"}'))),
        Case("model/spanqa-json-not-object/ask", ask, ERROR, ("spanqa.json",), model_copy(edit=not_object)),
        Case("model/spanqa-json-not-object/predict", "predict model {good} -o out.jsonl", ERROR, ("spanqa.json",), model_copy(edit=not_object)),
        Case("model/spanqa-json-not-utf8/ask", ask, ERROR, ("spanqa.json",), model_copy(edit=write_into("spanqa.json", '{"a": "ä"}'.encode("latin-1")))),
        Case("model/spanqa-json-invalid/ask", ask, ERROR, ("spanqa.json",), model_copy(edit=write_into("spanqa.json", '{"max_length": '))),
        Case("model/config-json-invalid/ask", ask, ERROR, ("config.json|model",), model_copy(edit=write_into("config.json", "{not json"))),
        Case("model/truncated-safetensors/ask", ask, ERROR, ("safetensors|model",), truncated),
        Case("model/truncated-safetensors/evaluate", "evaluate -m model -d {good} -o eval", ERROR, ("safetensors|model",), truncated),
        Case("model/truncated-safetensors/predict", "predict model {good} -o out.jsonl", ERROR, ("safetensors|model",), truncated),
        Case("model/truncated-safetensors/train", train_model, ERROR, ("safetensors|model",), truncated),
        Case("model/truncated-safetensors/serve", "serve model --port {port}", ERROR, ("safetensors|model",), chain(truncated, free_port), timeout=60),
        Case(
            "model/truncated-safetensors/export",
            "export model onnx-out --onnx",
            ERROR,
            ("safetensors|model|onnx",),
            truncated,
            why="onnx may be missing: then the dependency error comes first",
        ),
        Case("model/no-tokenizer/ask", ask, ERROR, ("tokenizer",), no_tokenizer, why="WRONG if it answers with some other tokenizer"),
        Case("model/no-tokenizer/evaluate", "evaluate -m model -d {good} -o eval", ERROR, ("tokenizer",), no_tokenizer),
        Case("model/no-tokenizer/predict", "predict model {good} -o out.jsonl", ERROR, ("tokenizer",), no_tokenizer),
        Case("model/no-tokenizer/data-check", "data check {good} -m model", ERROR, ("tokenizer",), no_tokenizer),
        Case("model/no-tokenizer/train", train_model, ERROR, ("tokenizer",), no_tokenizer),
        mistyped("model/mistyped-local-name/ask", "ask my-modle 'How long?' --context 'It runs for 14 kilometres.'"),
        mistyped("model/mistyped-local-name/evaluate", "evaluate -m my-modle -d {good} -o eval"),
        mistyped("model/mistyped-local-name/data-check", "data check {good} -m my-modle"),
        Case(
            "model/resume-trainer-state-garbage/train",
            TRAIN_RESUME,
            EITHER,
            resume_mentions,
            run_copy(final=False, edit=poison_all("trainer_state.json", b"\x00\xffgarbage")),
            warns_about_checkpoint,
            timeout=240,
            needs_run=True,
            why="an interrupted run whose checkpoints' trainer_state.json is garbage: refuse, or start afresh saying why",
        ),
        Case(
            "model/resume-trainer-state-wrong-json/train",
            TRAIN_RESUME,
            EITHER,
            resume_mentions,
            run_copy(final=False, edit=poison_newest("trainer_state.json", b"[1, 2, 3]")),
            warns_about_checkpoint,
            timeout=240,
            needs_run=True,
            why="the newest checkpoint's state is JSON but not an object: refuse it by name, or resume from an earlier one saying which was skipped",
        ),
        Case(
            "model/resume-optimizer-garbage/train",
            TRAIN_RESUME,
            ERROR,
            resume_mentions,
            run_copy(final=False, edit=poison_newest("optimizer.pt", b"\x80\x04garbage" * 100)),
            timeout=240,
            needs_run=True,
        ),
    ]


def _output_cases() -> list[Case]:
    blocker = write("blocker", "a file\n")
    full = "{full}"
    return [
        Case(
            "output/evaluate-into-file",
            "evaluate -m {tiny} -d {good} -o results.txt",
            ERROR,
            ("results.txt",),
            write("results.txt", "notes\n"),
            keep=("results.txt",),
            why="an existing file where a folder is expected",
        ),
        Case("output/evaluate-under-file", "evaluate -m {tiny} -d {good} -o blocker/eval", ERROR, ("blocker",), blocker),
        Case("output/predict-under-file", "predict {tiny} {good} -o blocker/out.jsonl", ERROR, ("blocker",), blocker),
        Case("output/convert-under-file", "data convert {good} blocker/out.json", ERROR, ("blocker",), blocker),
        Case("output/score-under-file", "score -d {good} -p {preds} -o blocker/metrics.json", ERROR, ("blocker",), blocker),
        Case("output/train-into-file", TRAIN + " --output_dir blocker --max_steps 1", ERROR, ("blocker",), blocker, keep=("blocker",)),
        Case(
            "output/export-into-file",
            "export {tiny} blocker --onnx",
            ERROR,
            ("blocker|onnx",),
            blocker,
            keep=("blocker",),
            why="onnx may be missing: then the dependency error comes first",
        ),
        Case(
            "output/predict-into-directory",
            "predict {tiny} {good} -o out.jsonl",
            ERROR,
            ("out.jsonl",),
            folder("out.jsonl"),
            why="a folder where a file is expected",
        ),
        Case("output/convert-into-directory", "data convert {good} out.json", ERROR, ("out.json",), folder("out.json")),
        Case("output/split-into-directory", "data split {good} head.json tail.json --articles 1", ERROR, ("head.json",), folder("head.json")),
        Case("output/score-into-directory", "score -d {good} -p {preds} -o metrics.json", ERROR, ("metrics.json",), folder("metrics.json")),
        Case(
            "output/convert-disk-full",
            f"data convert {{good}} {full}",
            ERROR,
            ("space|full",),
            full_device("full.json"),
            device_intact,
            why="every write fails (ENOSPC); WRONG if the device is replaced by a regular file",
        ),
        Case("output/split-disk-full", f"data split {{good}} {full} tail.json --articles 1", ERROR, ("space|full",), full_device("full.json"), device_intact),
        Case("output/score-disk-full", f"score -d {{good}} -p {{preds}} -o {full}", ERROR, ("space|full",), full_device("full.json"), device_intact),
        Case("output/predict-disk-full", f"predict {{tiny}} {{good}} -o {full}", ERROR, ("space|full",), full_device("full.jsonl"), device_intact),
        # The device exists, so a tool may first ask for --overwrite; with it, the write itself must fail cleanly.
        Case("output/convert-disk-full-overwrite", f"data convert {{good}} {full} --overwrite", ERROR, ("space",), full_device("full.json"), device_intact),
        Case(
            "output/score-disk-full-overwrite",
            f"score -d {{good}} -p {{preds}} -o {full} --overwrite",
            ERROR,
            ("space",),
            full_device("full.json"),
            device_intact,
        ),
        Case(
            "output/predict-disk-full-overwrite",
            f"predict {{tiny}} {{good}} -o {full} --overwrite",
            ERROR,
            ("space",),
            full_device("full.jsonl"),
            device_intact,
        ),
        Case("output/convert-read-only", "data convert {good} ro/out.json", ERROR, ("ro|permission",), read_only("ro")),
        Case("output/evaluate-read-only", "evaluate -m {tiny} -d {good} -o ro/eval", ERROR, ("ro|permission",), read_only("ro")),
        Case("output/predict-read-only", "predict {tiny} {good} -o ro/out.jsonl", ERROR, ("ro|permission",), read_only("ro")),
        Case(
            "output/ask-context-file-not-utf8",
            "ask {tiny} 'Where?' --context-file ctx.txt",
            ERROR,
            ("ctx.txt", "utf-8|utf8|encoding"),
            write("ctx.txt", "Bluebell was built in Mönchengladbach.".encode("latin-1")),
        ),
        Case("output/ask-context-file-directory", "ask {tiny} 'Where?' --context-file ctx.txt", ERROR, ("ctx.txt",), folder("ctx.txt")),
    ]


def _replace_cases() -> list[Case]:
    results = chain(
        folder("eval"),
        write("eval/metrics.json", {"exact": 99.0, "f1": 99.0}),
        write("eval/predictions.json", {"q1": "x"}),
    )
    return [
        Case(
            "replace/evaluate-over-results",
            "evaluate -m {tiny} -d {good} -o eval",
            ERROR,
            ("eval", "overwrite|exist|already"),
            results,
            keep=("eval/metrics.json", "eval/predictions.json"),
            why="evaluate -o DIR where DIR already holds results, without --overwrite",
        ),
        Case(
            "replace/evaluate-into-model",
            "evaluate -m model -d {good} -o model",
            ERROR,
            ("model",),
            run_copy(checkpoints=False),
            keep=("model/metrics.json",),
            needs_run=True,
            why="would replace the model's training metrics.json",
        ),
        Case(
            "replace/convert-over-file",
            "data convert {good} out.json",
            ERROR,
            ("out.json", "overwrite|exist|already"),
            write("out.json", {"mine": True}),
            keep=("out.json",),
        ),
        Case(
            "replace/split-over-file",
            "data split {good} head.json tail.json --articles 1",
            ERROR,
            ("head.json", "overwrite|exist|already"),
            write("head.json", {"mine": True}),
            keep=("head.json",),
        ),
        Case(
            "replace/train-resume-finished-run",
            TRAIN_RESUME,
            ERROR,
            ("resume|checkpoint",),
            run_copy(checkpoints=False),
            keep=("model/model.safetensors", "model/metrics.json"),
            timeout=240,
            needs_run=True,
            why="--resume on a finished run without checkpoints: WRONG if the model is replaced, whatever the exit status",
        ),
        Case("replace/umask-convert", "data convert {good} out.json", OK, (), check=modes("out.json"), why="output files follow the umask (022 here)"),
        Case("replace/umask-score", "score -d {good} -p {preds} -o metrics.json", OK, (), check=modes("metrics.json")),
        Case("replace/umask-split", "data split {good} head.json tail.json --articles 1", OK, (), check=modes("head.json", "tail.json")),
        Case("replace/umask-predict", "predict {tiny} {good} -o out.jsonl", OK, (), check=modes("out.jsonl")),
        Case("replace/umask-evaluate", "evaluate -m {tiny} -d {good} -o eval", OK, (), check=modes("eval/*")),
        Case("replace/umask-train", TRAIN + " --max_steps 1", OK, (), check=modes("model/*"), timeout=240),
    ]


def _collection_cases() -> list[Case]:
    """Document indexes, open-domain evaluation, the Ray engine and reports."""
    not_index = folder("notix", with_file="notes.txt")
    return [
        Case("index/empty-folder", "index docs --out ix", ERROR, ("docs",), folder("docs"), why="a folder without .txt or .md files"),
        Case("index/not-utf8", "index notes.txt --out ix", ERROR, ("notes.txt", "UTF-8"), write("notes.txt", "caf\xe9 au lait".encode("latin-1"))),
        Case("index/missing-file", "index nope.txt --out ix", ERROR, ("nope.txt",)),
        Case("index/no-text-column", "index rows.jsonl --out ix", ERROR, ("text", "body"), write("rows.jsonl", '{"body": "Bluebell is a tank engine."}\n')),
        Case(
            "index/append-other-model",
            "index more.txt --out ix --append --embedding-model minilm",
            ERROR,
            ("embedding model",),
            chain(write("one.txt", CTX1), write("more.txt", CTX2), _built_index("one.txt", "ix")),
            why="an index built without embeddings, appended with a model",
        ),
        Case("ask/index-not-an-index", ASK.split(" --context")[0] + " --index notix", ERROR, ("notix", "not a spanqa index"), not_index),
        Case("evaluate/index-not-an-index", "evaluate -m {tiny} -d {good} -o e --index notix", ERROR, ("not a spanqa index",), not_index),
        Case("serve/index-not-an-index", "serve {tiny} --port {port} --index notix", ERROR, ("not a spanqa index",), chain(not_index, free_port), timeout=60),
        Case(
            "predict/ray-into-file",
            "predict {tiny} {good} -o blocker --engine ray",
            ERROR,
            ("blocker", "folder"),
            write("blocker", "a file\n"),
            keep=("blocker",),
        ),
        Case("predict/ray-with-shard", "predict {tiny} {good} -o out --engine ray --shard 0/2", ERROR, ("--shard",)),
        Case("predict/unknown-engine", "predict {tiny} {good} -o out --engine spark", ERROR, ("spark",)),
        Case("report/missing-run", "report nope", ERROR, ("nope",)),
        Case("report/not-a-run", "report empty", ERROR, ("empty",), folder("empty")),
    ]


def _built_index(source: str, out: str) -> Setup:
    def setup(ctx: Ctx, here: Path, state: dict[str, Any]) -> None:
        subprocess.run([*SPANQA, "index", source, "--out", out], cwd=here, check=True, capture_output=True, timeout=120)

    return setup


CASES: list[Case] = (
    _data_cases() + _score_cases() + _option_cases() + _model_cases() + _output_cases() + _replace_cases() + _collection_cases()
)

# Quick ones (no model, no training) that the normal test suite runs.
SAMPLE = [
    "data/deep-nesting-json/convert",
    "data/answer-text-number/score",
    "data/is-impossible-false-string/convert",
    "score/na-probs-nan",
    "output/convert-into-directory",
]


# --------------------------------------------------------------------------- fixtures


def _tiny_model(folder: Path) -> Path:
    """A 2-layer, 32-wide random BERT QA model with a WordPiece tokenizer trained on the sample data (as tests/conftest.py builds it)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForQuestionAnswering, BertTokenizerFast
    from transformers.utils import logging as hf_logging

    from spanqa.jobs.training import sample_data_path

    corpus = [CTX1, CTX2, *(q[2] for q in QUESTIONS)]
    for split in ("train", "dev"):
        for article in json.loads(sample_data_path(split).read_text(encoding="utf-8"))["data"]:
            for paragraph in article["paragraphs"]:
                corpus += [paragraph["context"], *(qa["question"] for qa in paragraph["qas"])]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=1000, special_tokens=specials, show_progress=False))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tokenizer = BertTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]", model_max_length=512
    )
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=514,
        pad_token_id=tokenizer.pad_token_id,
    )
    BertForQuestionAnswering(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_fixtures(root: Path, *, model: bool = True, training: bool = True, log: Callable[[str], None] = print) -> Ctx:
    """The shared inputs: good data in three layouts, correct predictions, the tiny model, a finished two-step run."""
    shared = root / "shared"
    shared.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(root=root)
    ctx.good = shared / "good.json"
    ctx.good.write_text(json.dumps(squad(), indent=1), encoding="utf-8")
    ctx.good_v1 = shared / "good_v1.json"
    ctx.good_v1.write_text(json.dumps(squad(v1=True), indent=1), encoding="utf-8")
    ctx.good_csv = shared / "good.csv"
    ctx.good_csv.write_text(csv_text(records()), encoding="utf-8")
    ctx.preds = shared / "preds.json"
    ctx.preds.write_text(json.dumps({qid: answer or "" for qid, _, _, answer in QUESTIONS}), encoding="utf-8")
    if model:
        import torch

        ctx.cuda = torch.cuda.is_available()
        ctx.tiny = _tiny_model(shared / "tiny")
    if model and training:
        run = shared / "run"
        argv = (
            f"train --model {ctx.tiny} --train {ctx.good} --eval {ctx.good} --output_dir {run} --max_steps 2 --per_device_train_batch_size 2 "
            "--save_strategy steps --save_steps 1 --eval_strategy steps --eval_steps 1 --keep_checkpoints true --cache_features false"
        )
        result = run_spanqa(shlex.split(argv), root, child_env(root), timeout=300)
        if result.rc == 0 and (run / "model.safetensors").is_file() and (run / "metrics.json").is_file():
            ctx.run = run
            ctx.run_note = f"trained in {result.seconds:.0f} s, checkpoints: {', '.join(sorted(p.name for p in run.glob('checkpoint-*'))) or 'none'}"
        else:
            ctx.run_note = f"the fixture run failed (exit {result.rc}): {_last_line(result.stderr)}"
        log(f"fixture run: {ctx.run_note}")
    return ctx


# --------------------------------------------------------------------------- running and classifying


def child_env(root: Path, offline: bool = True) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SPANQA_CACHE=str(root / "cache"),
        TOKENIZERS_PARALLELISM="false",
        TRANSFORMERS_VERBOSITY="error",
        OMP_NUM_THREADS="1",  # two cases at a time on two cores
        PYTHONUNBUFFERED="1",
    )
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if offline:
            env[name] = "1"
        else:
            env.pop(name, None)
    return env


def run_spanqa(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> Run:
    """``spanqa ARGV`` in ``cwd`` under umask 022; killed (its whole process group) at the timeout."""
    command = SPANQA + argv
    started = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
        umask=0o022,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        rc = None
    return Run(rc, out, err, time.monotonic() - started, command)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def _exception_line(stderr: str) -> str:
    """The exception a traceback ended with (its last 'SomeError: ...' line)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", line):
            return line[:200]
    return lines[-1][:200] if lines else "(empty stderr)"


def _mentions(text: str, wanted: tuple[str, ...]) -> list[str]:
    """The entries of ``wanted`` that ``text`` lacks (case-insensitive; 'a|b' accepts either)."""
    low = text.lower()
    return [w for w in wanted if not any(alt.lower() in low for alt in w.split("|"))]


def classify(case: Case, run: Run, reason_of_check: str | None) -> tuple[str, str]:
    stderr = run.stderr
    if "Traceback (most recent call last)" in stderr or "\nTraceback" in stderr or stderr.startswith("Traceback"):
        return TRACEBACK, _exception_line(stderr)
    if run.rc is None:
        return WRONG, f"still running after {case.timeout:.0f} s (killed); {_last_line(stderr)}"
    if run.rc < 0:
        try:
            name = signal.Signals(-run.rc).name
        except ValueError:
            name = "?"
        return TRACEBACK, f"died from signal {-run.rc} ({name})"
    if case.max_seconds is not None and run.seconds > case.max_seconds:
        return WRONG, f"took {run.seconds:.1f} s (over {case.max_seconds:g} s: went looking on the Hub?); exit {run.rc}: {_last_line(stderr)}"
    if run.rc == 0:
        if case.expect == ERROR:
            also = f"; {reason_of_check}" if reason_of_check else ""
            return WRONG, f"exit 0 on garbage: {_last_line(run.stdout) or _last_line(stderr) or '(no output)'}{also}"
        if reason_of_check:
            return WRONG, reason_of_check
        return CLEAN, f"exit 0 ({_last_line(run.stdout)[:100] or 'ok'})"
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    glued = [line for line in stderr.splitlines() if "error:" in line and not line.startswith("error:") and re.search(r"\berror: ", line)]
    if case.expect == OK:
        return WRONG, f"exit {run.rc} on good input: {errors[0] if errors else _last_line(stderr)}"
    if run.rc == 2 and "Usage:" in stderr:  # click's own check of an option's type
        message = " ".join(line.strip(" │╭╮╰╯─") for line in stderr.splitlines() if line.strip(" │╭╮╰╯─"))
        missing = _mentions(message, case.mentions)
        if missing:
            return WRONG, f"usage error does not mention {' / '.join(missing)}: {message[-200:]}"
        return (WRONG, reason_of_check) if reason_of_check else (CLEAN, f"usage error (exit 2): {message[-150:]}")
    if run.rc != 1:
        return WRONG, f"exit {run.rc}: {_last_line(stderr)}"
    if not errors and glued:
        return WRONG, f"the error is not on a line of its own (a progress bar was left open): {glued[-1][-160:]}"
    if not errors:
        return WRONG, f"exit 1 without an 'error:' line: {_last_line(stderr)}"
    if len(errors) > 1:
        return WRONG, f"{len(errors)} 'error:' lines: {errors[0][:150]}"
    line = errors[0]
    if len(line) > MAX_ERROR_CHARS:
        return WRONG, f"the error line is {len(line)} characters long: {line[:150]}..."
    missing = _mentions(line, case.mentions)
    if missing:
        return WRONG, f"error does not mention {' / '.join(missing)}: {line[:200]}"
    if reason_of_check:
        return WRONG, reason_of_check
    return CLEAN, line[:200]


def run_case(case: Case, ctx: Ctx, work: Path) -> Outcome:
    """Set the case up in its own folder under ``work``, run it, classify it."""
    here = work / case.name.replace("/", "__")
    here.mkdir(parents=True)
    state: dict[str, Any] = {}
    try:
        if case.setup is not None:
            case.setup(ctx, here, state)
        values = {**ctx.values(), **state}
        try:
            argv = [token.format_map(values) for token in shlex.split(case.argv)]
        except KeyError as err:
            raise Skip(f"fixture {err} not built") from None
    except Skip as skip:
        return Outcome(case.name, SKIPPED, str(skip))
    kept = {rel: _digest(here / rel) for rel in case.keep}
    run = run_spanqa(argv, here, child_env(ctx.root, case.offline), case.timeout)
    (here / ".command").write_text(shlex.join(run.argv) + f"\nexit {run.rc} after {run.seconds:.1f} s\n", encoding="utf-8")
    (here / ".stdout").write_text(run.stdout, encoding="utf-8")
    (here / ".stderr").write_text(run.stderr, encoding="utf-8")
    changed = [rel for rel, digest in kept.items() if _digest(here / rel) != digest]
    try:
        reason = case.check(ctx, here, state, run) if case.check is not None else None
    except Exception as err:  # a check that cannot read what the command wrote: that output is wrong
        reason = f"output unreadable ({type(err).__name__}: {err})"
    if changed:
        reason = f"replaced finished work: {', '.join(changed)} (exit {run.rc})" + (f"; {reason}" if reason else "")
    verdict, why = classify(case, run, reason)
    return Outcome(case.name, verdict, why, run.seconds)


def select(only: str | None) -> list[Case]:
    return [c for c in CASES if only is None or only in c.name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", metavar="SUBSTRING", help="Run only the cases whose name contains this.")
    parser.add_argument("--list", action="store_true", help="Print the cases (name, expectation, command) and exit.")
    parser.add_argument("--jobs", type=int, default=2, help="Cases run at a time (default 2).")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary folder (its path is printed).")
    parser.add_argument("--json", type=Path, metavar="FILE", help="Also write the results as JSON.")
    opts = parser.parse_args(argv)

    cases = select(opts.only)
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    if opts.list:
        for case in cases:
            mention = f" mentioning {' + '.join(case.mentions)}" if case.mentions and case.expect != OK else ""
            print(f"{case.name}\n    spanqa {case.argv}\n    expects: {case.expect}{mention}" + (f"\n    {case.why}" if case.why else ""))
        print(f"{len(cases)} cases")
        return 0
    if not cases:
        print(f"no case matches {opts.only!r}", file=sys.stderr)
        return 2

    from train_speed import machine

    print(machine(), flush=True)
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="spanqa-bad-inputs-"))
    try:
        needs_model, needs_run = any(c.needs_model for c in cases), any(c.needs_run for c in cases)
        ctx = build_fixtures(root, model=needs_model, training=needs_run, log=lambda s: print(s, flush=True))
        print(f"fixtures ready in {time.monotonic() - started:.0f} s; {len(cases)} cases, {opts.jobs} at a time", flush=True)
        work = root / "cases"
        outcomes: list[Outcome] = []
        width = max(len(c.name) for c in cases)
        with ThreadPoolExecutor(max_workers=max(1, opts.jobs)) as pool:
            for outcome in pool.map(lambda c: run_case(c, ctx, work), cases):
                outcomes.append(outcome)
                print(f"{outcome.verdict:<9}  {outcome.name:<{width}}  {outcome.reason}", flush=True)
        counts = {v: sum(o.verdict == v for o in outcomes) for v in (CLEAN, TRACEBACK, WRONG, SKIPPED)}
        print(
            f"\nCLEAN {counts[CLEAN]} / TRACEBACK {counts[TRACEBACK]} / WRONG {counts[WRONG]}"
            + (f"  (skipped {counts[SKIPPED]})" if counts[SKIPPED] else "")
            + f"  in {time.monotonic() - started:.0f} s",
            flush=True,
        )
        if opts.json:
            opts.json.write_text(json.dumps([vars(o) for o in outcomes], indent=1) + "\n", encoding="utf-8")
        return 1 if counts[TRACEBACK] or counts[WRONG] else 0
    finally:
        if opts.keep:
            print(f"kept {root}")
        else:
            _remove(root)


def _remove(root: Path) -> None:
    """Delete the workspace, read-only folders included."""
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            try:
                os.chmod(os.path.join(dirpath, name), 0o700)
            except OSError:
                pass
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
