#!/usr/bin/env python
"""Abuse of ``spanqa serve``: each attack of issue 26 against a real server, with its figure.

The server is ``spanqa serve MODEL --port P`` (default settings, loopback) in a subprocess, polled on
``/health`` until ready and stopped afterwards; a fresh one per attack that loads it (a, b), one
shared by the cheap ones (c, d, e), so that the work one attack leaves behind does not slow the next.

a) memory + head-of-line: 7 concurrent ~1 MB requests (five documents of 199,000 characters of
   English-like text each; ``--text dense``: nearly a token per character, ~4x the windows) while
   the server's RSS (children included) is sampled every 0.1 s, until ``--settle`` s after the last
   answer; ~1 s in, a small request is sent and timed. Targets: peak RSS <= 2048 MB, the small one
   200 in <= 5 s, each big one 200 or 413.
b) index: the server started with ``--index`` (a BM25-only index built from generated text files);
   a ~2.5 KB batch of 32 questions each with ``"passages": 100``, and ~1 s in a small context
   request. Targets: the batch refused (4xx) or answered (200), the small one 200 in <= 5 s.
c) Host: ``POST /answer`` with ``Host: attacker.example``. Target: 4xx.
d) idle connections: a TCP connection that sends nothing, and one that sends a header line every
   2 s, each watched until the server closes it (capped at ``--idle-cap`` s). Target: closed <= 30 s.
e) 1,000 idle connections, then a normal request. Target: 200.

Every client call has a timeout (``--timeout``); one that runs out is recorded as ``timeout`` with
its seconds, so the bench always finishes. One summary line per attack with PASS/FAIL; exit status 1
if any attack fails.

    python bench/abuse_serve.py                                    # every attack on minilm
    python bench/abuse_serve.py --skip a,b --idle-cap 40
    python bench/abuse_serve.py --skip b,c,d,e --text dense          # the memory attack at its worst
    python bench/abuse_serve.py --quick --model tiny-model/ --json figures.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from train_speed import machine  # noqa: E402  (the machine, printed first)

HOST = "127.0.0.1"
ATTACKS = {"a": "memory", "b": "index", "c": "host", "d": "idle", "e": "connections"}
RSS_TARGET_MB = 2048.0
SMALL_TARGET_S = 5.0
IDLE_TARGET_S = 30.0
SMALL = {"question": "Who wrote it?", "context": "The book was written by Ada Lovelace in 1843."}


# --------------------------------------------------------------------------- generated text


def sample_texts() -> tuple[list[str], list[str]]:
    """The English contexts and questions of spanqa's sample data (those in ASCII: the data holds other languages too)."""
    contexts, questions = [], []
    for split in ("train", "dev"):
        data = json.loads((resources.files("spanqa") / "sample_data" / f"{split}.json").read_text(encoding="utf-8"))
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                if paragraph["context"].isascii():
                    contexts.append(paragraph["context"])
                    questions.extend(q["question"] for q in paragraph["qas"] if q["question"].isascii())
    return contexts, questions


class Babbler:
    """Generated text. ``english``: a word-bigram chain over the sample contexts (real words and punctuation, not one
    repeated word), about 0.22 WordPiece tokens per character; ``dense``: letters and digits between punctuation, about
    0.9 tokens per character (an attacker's choice: four times as many windows per byte)."""

    def __init__(self) -> None:
        contexts, self.questions = sample_texts()
        self.next: dict[str, list[str]] = {}
        self.starts: list[str] = []
        for context in contexts:
            words = context.split()
            self.starts.append(words[0])
            for a, b in zip(words, words[1:]):
                self.next.setdefault(a, []).append(b)

    def text(self, chars: int, seed: int, kind: str = "english") -> str:
        return self.dense(chars, seed) if kind == "dense" else self.english(chars, seed)

    def english(self, chars: int, seed: int) -> str:
        rng = random.Random(seed)
        out, size, word = [], 0, rng.choice(self.starts)
        while size < chars:
            out.append(word)
            size += len(word) + 1
            followers = self.next.get(word)
            word = rng.choice(followers) if followers and rng.random() > 0.02 else rng.choice(self.starts)
        return " ".join(out)[:chars]

    def dense(self, chars: int, seed: int) -> str:
        rng = random.Random(seed)
        out, size = [], 0
        while size < chars:  # "k.3;x-q": letters and digits between punctuation, nearly one token per character
            word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") + rng.choice(".,;:-/") for _ in range(rng.randint(2, 6)))[:-1]
            out.append(word)
            size += len(word) + 1
        return " ".join(out)[:chars]


# --------------------------------------------------------------------------- the server subprocess


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def spanqa_command() -> list[str]:
    beside = Path(sys.executable).with_name("spanqa")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("spanqa")
    return [found] if found else [sys.executable, "-m", "spanqa"]


class Server:
    """``spanqa serve`` in a subprocess; ``url`` once ``/health`` answers 200."""

    def __init__(self, args: argparse.Namespace, log: Path, index: Path | None = None) -> None:
        port = args.port or free_port()
        self.command = [*spanqa_command(), "serve", args.model, "--host", HOST, "--port", str(port)]
        if index is not None:
            self.command += ["--index", str(index)]
        if args.device:
            self.command += ["--device", args.device]
        self.command += args.serve_arg
        self.url = f"http://{HOST}:{port}"
        self.log = log
        env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "TOKENIZERS_PARALLELISM": "false",
               "TRANSFORMERS_VERBOSITY": "error"}
        started = time.monotonic()
        with open(log, "ab") as handle:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, env=env)
        import httpx

        deadline = started + args.start_timeout
        while True:
            try:
                response = httpx.get(self.url + "/health", timeout=2, trust_env=False)
                if response.status_code == 200:
                    self.health = response.json()
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not start (status {self.process.returncode}); its log ends:\n{self.log_tail()}")
            time.sleep(0.2)
        self.start_seconds = time.monotonic() - started
        print(f"  server: {' '.join(self.command[1:])} ready in {self.start_seconds:.1f} s "
              f"(device {self.health.get('device')}), RSS {rss_mb(self.process.pid):.0f} MB", flush=True)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children, in MB (0 once it is gone)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            parent = psutil.Process(pid)
            total = parent.memory_info().rss
            for child in parent.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            return total / 2**20
        except psutil.Error:
            return 0.0

    def one(p: int) -> int:
        try:
            with open(f"/proc/{p}/status", encoding="ascii") as handle:
                return next((int(line.split()[1]) for line in handle if line.startswith("VmRSS:")), 0) * 1024
        except OSError:
            return 0

    def children(p: int) -> list[int]:
        found = []
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children", encoding="ascii") as handle:
                    found += [int(c) for c in handle.read().split()]
        except OSError:
            pass
        return found

    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += one(p)
        todo += children(p)
    return total / 2**20


class RssSampler(threading.Thread):
    """Samples ``rss_mb(pid)`` every ``interval`` seconds until stopped; ``peak`` and ``last``."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = self.last = 0.0
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.last = rss_mb(self.pid)
            self.peak = max(self.peak, self.last)
            self.samples += 1
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


# --------------------------------------------------------------------------- clients


def post(url: str, body: bytes, timeout: float, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """POST ``body`` (JSON bytes); ``{"status": code | "timeout" | "error: ...", "seconds": s}``."""
    import httpx

    started = time.perf_counter()
    try:
        response = httpx.post(url, content=body, headers={"content-type": "application/json", **(headers or {})},
                              timeout=timeout, trust_env=False)
        status: int | str = response.status_code
        detail = response.text[:160] if response.status_code != 200 else ""
    except httpx.TimeoutException:
        status, detail = "timeout", ""
    except httpx.HTTPError as err:
        status, detail = f"error: {type(err).__name__}", str(err)[:160]
    return {"status": status, "seconds": round(time.perf_counter() - started, 3), "detail": detail}


def in_thread(results: list, slot: int, *args: Any, **kwargs: Any) -> threading.Thread:
    def work() -> None:
        results[slot] = post(*args, **kwargs)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def describe(result: dict[str, Any]) -> str:
    return f"{result['status']} in {result['seconds']:.2f} s"


def status_counts(results: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        counts[str(result["status"])] = counts.get(str(result["status"]), 0) + 1
    return counts


def small_ok(result: dict[str, Any]) -> bool:
    return result["status"] == 200 and result["seconds"] <= SMALL_TARGET_S


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# --------------------------------------------------------------------------- the attacks


def attack_memory(args: argparse.Namespace, folder: Path, babbler: Babbler) -> dict[str, Any]:
    requests, documents, chars = (2, 2, 20_000) if args.quick else (7, 5, 199_000)
    bodies = []
    for r in range(requests):
        docs = [babbler.text(chars, seed=1000 * r + d, kind=args.text) for d in range(documents)]
        bodies.append(json.dumps({"question": babbler.questions[r % len(babbler.questions)], "documents": docs}, ensure_ascii=False).encode())
    tokens = count_tokens(args.model, json.loads(bodies[0])["documents"])
    print(f"  {requests} requests of {documents} documents x {chars:,} characters of {args.text} text ({len(bodies[0]) / 1000:.0f} KB each"
          + (f", {tokens:,} tokens each by the model's tokenizer" if tokens else "") + ")", flush=True)
    small = json.dumps(SMALL).encode()
    with Server(args, folder / "server-a.log") as server:
        baseline = rss_mb(server.process.pid)
        sampler = RssSampler(server.process.pid)
        sampler.start()
        big: list = [None] * requests
        threads = [in_thread(big, i, server.url + "/answer", body, args.timeout) for i, body in enumerate(bodies)]
        time.sleep(1.0)
        small_result: list = [None]
        in_thread(small_result, 0, server.url + "/answer", small, args.timeout).join()
        for thread in threads:
            thread.join()
        time.sleep(args.settle)  # the server may go on with work nobody waits for: keep sampling a while
        sampler.stop()
        after = rss_mb(server.process.pid)
    figures = {
        "requests": requests, "documents": documents, "chars": chars, "text": args.text, "tokens": tokens, "body_bytes": len(bodies[0]),
        "rss_before_mb": round(baseline, 1), "peak_rss_mb": round(sampler.peak, 1), "rss_after_mb": round(after, 1),
        "rss_samples": sampler.samples, "big": big, "big_status": status_counts(big), "small": small_result[0],
    }
    for i, result in enumerate(big):
        print(f"  big {i + 1}: {describe(result)}" + (f"  {result['detail']}" if result["detail"] else ""))
    print(f"  RSS before {baseline:.0f} MB, peak {sampler.peak:.0f} MB ({sampler.samples} samples), {args.settle:g} s after the last answer {after:.0f} MB")
    print(f"  small request: {describe(small_result[0])}")
    checks = {
        "peak_rss": sampler.peak <= RSS_TARGET_MB,
        "small": small_ok(small_result[0]),
        "big_200_or_413": all(r["status"] in (200, 413) for r in big),
    }
    figures["checks"] = checks
    figures["pass"] = all(checks.values())
    figures["summary"] = (f"peak RSS {sampler.peak:.0f} MB [<= {RSS_TARGET_MB:.0f}] {verdict(checks['peak_rss'])}; "
                          f"small {describe(small_result[0])} [200 in <= {SMALL_TARGET_S:g} s] {verdict(checks['small'])}; "
                          f"big: {', '.join(f'{n} x {code}' for code, n in figures['big_status'].items())} [200 or 413] {verdict(checks['big_200_or_413'])}")
    return figures


def count_tokens(model: str, texts: list[str]) -> int | None:
    """Tokens of ``texts`` by ``model``'s tokenizer (None when it cannot be loaded here)."""
    try:
        from spanqa.runtime.models import load_tokenizer, resolve_model

        tokenizer = load_tokenizer(resolve_model(model))
        return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"])
    except Exception:  # noqa: BLE001 - a figure for people only
        return None


def build_index(folder: Path, babbler: Babbler, files: int, words: int) -> tuple[Path, float]:
    docs = folder / "docs"
    docs.mkdir(exist_ok=True)
    for f in range(files):
        (docs / f"doc{f:03d}.txt").write_text(babbler.text(words * 6, seed=50_000 + f) + "\n", encoding="utf-8")
    out = folder / "index"
    started = time.perf_counter()
    proc = subprocess.run([*spanqa_command(), "index", str(docs), "--out", str(out), "--embedding-model", "none"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"spanqa index failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-1000:]}")
    return out, time.perf_counter() - started


def attack_index(args: argparse.Namespace, folder: Path, babbler: Babbler) -> dict[str, Any]:
    files, words, questions, passages = (10, 1000, 4, 20) if args.quick else (60, 1500, 32, 100)
    index, seconds = build_index(folder, babbler, files, words)
    body = json.dumps({"questions": [{"question": q, "passages": passages} for q in babbler.questions[:questions]]}, ensure_ascii=False).encode()
    small = json.dumps(SMALL).encode()
    with Server(args, folder / "server-b.log", index=index) as server:
        ix = server.health.get("index") or {}
        print(f"  index: {ix.get('passages')} passages of {ix.get('documents')} documents, built in {seconds:.1f} s; "
              f"batch of {questions} questions x passages {passages} ({len(body)} bytes)", flush=True)
        sampler = RssSampler(server.process.pid)
        sampler.start()
        big: list = [None]
        thread = in_thread(big, 0, server.url + "/answer", body, args.timeout)
        time.sleep(1.0)
        small_result: list = [None]
        in_thread(small_result, 0, server.url + "/answer", small, args.timeout).join()
        thread.join()
        sampler.stop()
    big_status = big[0]["status"]
    checks = {
        "big_refused_or_answered": isinstance(big_status, int) and (big_status == 200 or 400 <= big_status < 500),
        "small": small_ok(small_result[0]),
    }
    print(f"  batch: {describe(big[0])}" + (f"  {big[0]['detail']}" if big[0]["detail"] else ""))
    print(f"  small request: {describe(small_result[0])}; server peak RSS {sampler.peak:.0f} MB")
    return {
        "index_passages": ix.get("passages"), "index_seconds": round(seconds, 2), "questions": questions, "passages": passages,
        "body_bytes": len(body), "big": big[0], "small": small_result[0], "peak_rss_mb": round(sampler.peak, 1),
        "checks": checks, "pass": all(checks.values()),
        "summary": (f"batch {questions}x{passages} {describe(big[0])} [4xx or 200] {verdict(checks['big_refused_or_answered'])}; "
                    f"small {describe(small_result[0])} [200 in <= {SMALL_TARGET_S:g} s] {verdict(checks['small'])}"),
    }


def attack_host(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    result = post(server.url + "/answer", json.dumps(SMALL).encode(), args.timeout, headers={"Host": "attacker.example"})
    ok = isinstance(result["status"], int) and 400 <= result["status"] < 500
    print(f"  Host: attacker.example -> {describe(result)}")
    return {**result, "pass": ok, "summary": f"POST /answer with Host: attacker.example -> {result['status']} [4xx] {verdict(ok)}"}


def watch_connection(port: int, cap: float, trickle: float | None) -> dict[str, Any]:
    """Open a connection; send nothing (``trickle`` None) or a header line every ``trickle`` s; seconds until the server closes it."""
    started = time.monotonic()
    received = b""
    sent_lines = 0
    try:
        sock = socket.create_connection((HOST, port), timeout=10)
    except OSError as err:
        return {"closed": "connect failed", "seconds": 0.0, "detail": str(err)}
    try:
        if trickle is not None:
            sock.sendall(f"POST /answer HTTP/1.1\r\nHost: {HOST}:{port}\r\n".encode())
        next_send = started + (trickle or cap)
        while True:
            now = time.monotonic()
            if now - started >= cap:
                return {"closed": None, "seconds": round(now - started, 2), "lines_sent": sent_lines, "received": received[:80].decode("latin-1")}
            wait = max(0.0, min(next_send, started + cap) - now)
            readable, _, _ = select.select([sock], [], [], wait)
            if readable:
                try:
                    data = sock.recv(4096)
                except ConnectionResetError:
                    return {"closed": "reset", "seconds": round(time.monotonic() - started, 2), "lines_sent": sent_lines,
                            "received": received[:80].decode("latin-1")}
                if not data:
                    return {"closed": "closed", "seconds": round(time.monotonic() - started, 2), "lines_sent": sent_lines,
                            "received": received[:80].decode("latin-1")}
                received += data
            elif trickle is not None and time.monotonic() >= next_send:
                try:
                    sock.sendall(f"X-Slow-{sent_lines}: {'v' * 10}\r\n".encode())
                    sent_lines += 1
                except (BrokenPipeError, ConnectionResetError):
                    return {"closed": "reset on send", "seconds": round(time.monotonic() - started, 2), "lines_sent": sent_lines,
                            "received": received[:80].decode("latin-1")}
                next_send += trickle
    finally:
        sock.close()


def attack_idle(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    port = int(server.url.rsplit(":", 1)[1])
    results: dict[str, Any] = {}

    def watch(name: str, trickle: float | None) -> None:
        results[name] = watch_connection(port, args.idle_cap, trickle)

    threads = [threading.Thread(target=watch, args=("idle", None), daemon=True),
               threading.Thread(target=watch, args=("slow_header", 2.0), daemon=True)]
    print(f"  watching an idle and a slow-header connection (cap {args.idle_cap:g} s)...", flush=True)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=args.idle_cap + 30)
    parts, ok = [], True
    for name in ("idle", "slow_header"):
        r = results.get(name, {"closed": None, "seconds": args.idle_cap})
        closed = r["closed"] is not None and r["closed"] != "connect failed"
        good = closed and r["seconds"] <= IDLE_TARGET_S
        ok &= good
        text = f"{r['closed']} after {r['seconds']:.1f} s" if closed else f"still open after {r['seconds']:.1f} s"
        if r.get("received"):
            text += f" (got {r['received'].splitlines()[0]!r})"
        print(f"  {name.replace('_', '-')}: {text}" + (f", {r['lines_sent']} header lines sent" if name == "slow_header" else ""))
        parts.append(f"{name.replace('_', '-')} {text} [closed <= {IDLE_TARGET_S:g} s] {verdict(good)}")
    return {**results, "cap_s": args.idle_cap, "pass": ok, "summary": "; ".join(parts)}


def attack_connections(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    count = 100 if args.quick else 1000
    port = int(server.url.rsplit(":", 1)[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count + 256:  # this client's limit only; the server keeps its own
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 256) if hard != resource.RLIM_INFINITY else count + 256, hard))
    sockets, failures, first_error = [], 0, ""
    started = time.monotonic()
    for _ in range(count):
        try:
            sockets.append(socket.create_connection((HOST, port), timeout=5))
        except OSError as err:
            failures += 1
            first_error = first_error or f"{type(err).__name__}: {err}"
            if failures >= 20 and not sockets:
                break
    opened = time.monotonic() - started
    try:
        print(f"  {len(sockets)} idle connections open in {opened:.1f} s ({failures} failed{': ' + first_error if first_error else ''})", flush=True)
        result = post(server.url + "/answer", json.dumps(SMALL).encode(), args.timeout)
        print(f"  normal request: {describe(result)}" + (f"  {result['detail']}" if result["detail"] else ""))
        closed = 0
        for sock in sockets:  # how many the server has closed by now
            try:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable and not sock.recv(1, socket.MSG_PEEK):
                    closed += 1
            except OSError:
                closed += 1
        print(f"  of the idle connections, {closed} closed by the server by then")
    finally:
        for sock in sockets:
            sock.close()
    ok = result["status"] == 200
    return {"connections": count, "opened": len(sockets), "failed": failures, "open_seconds": round(opened, 2), "request": result,
            "closed_by_server": closed, "pass": ok,
            "summary": f"{len(sockets)} idle connections, normal request {describe(result)} [200] {verdict(ok)}"}


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="model folder or alias (default minilm)")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument("--skip", action="append", default=[], help="attacks to leave out, e.g. a,b (letters or names: "
                        + ", ".join(f"{k}={v}" for k, v in ATTACKS.items()) + ")")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    parser.add_argument("--timeout", type=float, default=60.0, help="client timeout per request in seconds (default 60)")
    parser.add_argument("--text", choices=("english", "dense"), default="english",
                        help="text of the big documents (a): english (English-like words, the default) or dense (~4x the tokens per byte)")
    parser.add_argument("--settle", type=float, help="seconds RSS is still sampled after the last answer in (a) (default 5, 1 with --quick)")
    parser.add_argument("--idle-cap", type=float, default=60.0, help="seconds an idle connection is watched at most (default 60)")
    parser.add_argument("--device", help="server device (default: the server's choice)")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra argument for spanqa serve (repeat), e.g. --serve-arg=--workers=2")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--start-timeout", type=float, default=300.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.settle is None:
        args.settle = 1.0 if args.quick else 5.0
    names = {v: k for k, v in ATTACKS.items()}
    skip = set()
    for item in ",".join(args.skip).split(","):
        item = item.strip().lower()
        if item:
            if item not in ATTACKS and item not in names:
                parser.error(f"--skip: unknown attack {item!r} (one of {', '.join(ATTACKS)} or {', '.join(names)})")
            skip.add(names.get(item, item))

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    print(machine(), flush=True)
    print(f"model {args.model}, client timeout {args.timeout:g} s{', quick' if args.quick else ''}", flush=True)
    figures: dict[str, Any] = {"machine": machine(), "model": args.model, "quick": args.quick, "attacks": {}}
    babbler = Babbler()
    run = [k for k in ATTACKS if k not in skip]

    def attempt(key: str, work) -> None:
        print(f"\n{key}) {ATTACKS[key]}", flush=True)
        started = time.monotonic()
        try:
            result = work()
        except Exception as err:  # noqa: BLE001 - one attack's failure must not stop the others
            print(f"  error: {err}", flush=True)
            result = {"error": str(err), "pass": False, "summary": f"error: {str(err).splitlines()[0]}"}
        result["wall_seconds"] = round(time.monotonic() - started, 1)
        figures["attacks"][key] = result

    with tempfile.TemporaryDirectory(prefix="spanqa-abuse-") as tmp:
        folder = Path(tmp)
        if "a" in run:
            attempt("a", lambda: attack_memory(args, folder, babbler))
        if "b" in run:
            attempt("b", lambda: attack_index(args, folder, babbler))
        shared = [k for k in ("c", "d", "e") if k in run]
        if shared:
            server = None
            try:
                print("\nserver for " + ", ".join(shared), flush=True)
                server = Server(args, folder / "server-cde.log")
            except Exception as err:  # noqa: BLE001
                print(f"  error: {err}", flush=True)
                for key in shared:
                    figures["attacks"][key] = {"error": str(err), "pass": False, "summary": f"error: {str(err).splitlines()[0]}"}
            if server is not None:
                with server:
                    work = {"c": attack_host, "d": attack_idle, "e": attack_connections}
                    for key in shared:
                        attempt(key, lambda key=key: work[key](args, server))

    print("\nsummary")
    for key, name in ATTACKS.items():
        if key in figures["attacks"]:
            result = figures["attacks"][key]
            print(f"{key} {name:<12} {verdict(result['pass'])}  {result['summary']}")
        else:
            print(f"{key} {name:<12} SKIP")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0 if all(r["pass"] for r in figures["attacks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
