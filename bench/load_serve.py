#!/usr/bin/env python
"""Bounded load test of ``spanqa`` serving, on loopback only.

Starts the server (``spanqa.interfaces.serve``) in a subprocess on 127.0.0.1 with a free
port, runs N concurrent clients for D seconds, each posting ``/answer``
requests in a loop (single contexts of varied length, document rankings,
small batches, and a few deliberately invalid requests that must get 422),
then stops the server and prints requests, throughput, latency percentiles,
status counts and the server's micro-batching counters.

``--offline N`` first answers N requests of the same mix in this process, all at once with
``Reader.answer_batch`` (no HTTP, no scheduling, every window in shared length-sorted passes),
twice, and prints the faster rate beside the server's: the model's own rate on this mix with no
server around it (not a strict ceiling: one pass over 200 requests moves with other load on the
machine, and the server reads in smaller steps), so the ratio says what the server adds or costs.

Exit status 1 if any request got a 5xx, an unexpected status, or was dropped
(connection error or client timeout).

    python bench/load_serve.py                       # a tiny random model built in a temp folder
    python bench/load_serve.py --model minilm --clients 8 --duration 30
    python bench/load_serve.py --model M-int8 --offline 200     # and the model's own rate on the same mix
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

HOST = "127.0.0.1"


# --------------------------------------------------------------------------- data and model


def sample_paragraphs() -> list[tuple[str, list[str]]]:
    out = []
    for split in ("train", "dev"):
        data = json.loads((resources.files("spanqa") / "sample_data" / f"{split}.json").read_text(encoding="utf-8"))
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                out.append((paragraph["context"], [q["question"] for q in paragraph["qas"]]))
    return out


def build_tiny_model(folder: Path) -> Path:
    """A tiny random BERT QA model with a WordPiece tokenizer trained on the sample data."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForQuestionAnswering, BertTokenizerFast

    texts = [t for context, questions in sample_paragraphs() for t in [context, *questions]]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=1000, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tokenizer = BertTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=512,
    )
    torch.manual_seed(0)
    model = BertForQuestionAnswering(
        BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, max_position_embeddings=514, pad_token_id=tokenizer.pad_token_id)
    )
    path = folder / "tiny-bert"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# --------------------------------------------------------------------------- server subprocess


def serve_only(args: argparse.Namespace) -> None:
    """Child process: bind a free loopback port, print it, serve until SIGINT/SIGTERM."""
    import uvicorn

    from spanqa.interfaces.serve import ServeSettings, create_app
    from spanqa.reading.reader import Reader
    from spanqa.runtime.options import LoadOptions

    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    settings = ServeSettings(max_wait_ms=args.max_wait_ms, max_batch_items=args.max_batch_items)
    reader = Reader.from_pretrained(args.model, LoadOptions(device=args.device))
    app = create_app(reader, settings, model_name=args.model)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=30, backlog=1024))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it shut down on
        pass


def start_server(args: argparse.Namespace, model: str) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, __file__, "--serve-only", "--model", model, "--max-wait-ms", str(args.max_wait_ms),
               "--max-batch-items", str(args.max_batch_items)]
    if args.device:
        command += ["--device", args.device]
    if args.torch_threads:
        command += ["--torch-threads", str(args.torch_threads)]
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "TOKENIZERS_PARALLELISM": "false",
           "TRANSFORMERS_VERBOSITY": "error"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    deadline = time.monotonic() + args.start_timeout
    port = None
    while port is None:
        line = process.stdout.readline()
        if not line:
            raise SystemExit(f"error: the server exited before it started (status {process.wait()})")
        if line.startswith("PORT "):
            port = int(line.split()[1])
        if time.monotonic() > deadline:
            stop_server(process)
            raise SystemExit("error: the server did not start in time")
    url = f"http://{HOST}:{port}"
    import httpx

    while True:
        try:
            if httpx.get(url + "/health", timeout=2, trust_env=False).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_server(process)
            raise SystemExit("error: the server did not answer /health in time")
        time.sleep(0.1)


def stop_server(process: subprocess.Popen) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    return process.returncode


# --------------------------------------------------------------------------- the model alone


def offline_rate(args: argparse.Namespace, model: str) -> tuple[float, int]:
    """Requests/s of ``args.offline`` requests of the clients' mix answered in one ``answer_batch`` call (after a warm-up;
    the faster of two passes), the invalid ones counted as answered (the server refuses them before the model), and how
    many questions they held."""
    from spanqa.reading.reader import Reader
    from spanqa.runtime.options import LoadOptions

    rng = random.Random(10_000)  # not a client's seed: another draw of the same mix
    paragraphs = sample_paragraphs()
    payloads = [make_payload(rng, paragraphs) for _ in range(args.offline)]
    # a valid body's questions, each a mapping of QARequest's fields and answer options (answer_batch takes those)
    requests = [item for payload, _, status in payloads if status == 200 for item in payload.get("questions") or [payload]]
    reader = Reader.from_pretrained(model, LoadOptions(device=args.device))
    reader.answer_batch(requests[:8])
    seconds = []
    for _ in range(2):  # the faster pass: less moved by whatever else the machine runs
        started = time.perf_counter()
        reader.answer_batch(requests)
        seconds.append(time.perf_counter() - started)
    return args.offline / min(seconds), len(requests)


# --------------------------------------------------------------------------- clients


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    status: dict[int, int] = field(default_factory=dict)
    questions: int = 0
    expected_4xx: int = 0
    unexpected: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def make_payload(rng: random.Random, paragraphs: list[tuple[str, list[str]]]) -> tuple[dict, int, int]:
    """A request body, how many questions it holds, and the status it must get."""
    roll = rng.random()

    def context() -> tuple[str, str]:
        picked = rng.sample(paragraphs, rng.choice([1, 1, 1, 2, 4, 8]))  # 1 to ~8 paragraphs: 1 to many windows
        text = "\n\n".join(p[0] for p in picked)
        return rng.choice(picked[0][1]) if picked[0][1] else "What is it?", text

    if roll < 0.05:  # deliberately invalid: empty question / wrong type
        bad = rng.choice([{"question": "  ", "context": "Some text."}, {"question": "Who?", "context": "x", "top_k": "2"}])
        return bad, 0, 422
    if roll < 0.20:
        question, _ = context()
        docs = [p[0] for p in rng.sample(paragraphs, rng.randint(2, 4))]
        return {"question": question, "documents": docs, "top_k": rng.randint(1, 5)}, 1, 200
    if roll < 0.30:
        items = []
        for _ in range(rng.randint(2, 4)):
            question, text = context()
            items.append({"question": question, "context": text, "top_k": rng.randint(1, 3)})
        return {"questions": items}, len(items), 200
    question, text = context()
    return {"question": question, "context": text, "top_k": rng.randint(1, 5)}, 1, 200


async def client_loop(client, url: str, deadline: float, stats: Stats, seed: int, paragraphs) -> None:
    import httpx

    rng = random.Random(seed)
    while time.monotonic() < deadline:
        payload, questions, expected = make_payload(rng, paragraphs)
        started = time.perf_counter()
        try:
            response = await client.post(url + "/answer", json=payload)
        except httpx.HTTPError as err:
            stats.dropped.append(f"{type(err).__name__}: {err}")
            continue
        stats.latencies.append(time.perf_counter() - started)
        stats.status[response.status_code] = stats.status.get(response.status_code, 0) + 1
        if response.status_code == expected:
            if expected == 200:
                stats.questions += questions
            else:
                stats.expected_4xx += 1
        elif len(stats.unexpected) < 1000:
            stats.unexpected.append(f"{response.status_code} (expected {expected}): {response.text[:200]}")


async def run_clients(url: str, clients: int, duration: float, timeout: float) -> tuple[Stats, float]:
    import httpx

    paragraphs = sample_paragraphs()
    stats = Stats()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
        started = time.monotonic()
        deadline = started + duration
        await asyncio.gather(*(client_loop(client, url, deadline, stats, seed, paragraphs) for seed in range(clients)))
        elapsed = time.monotonic() - started
    return stats, elapsed


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def report(stats: Stats, elapsed: float, health: dict | None, args: argparse.Namespace, model: str, offline: tuple[float, int] | None = None) -> int:
    total = sum(stats.status.values())
    by_class = {f"{c}xx": sum(n for s, n in stats.status.items() if s // 100 == c) for c in (2, 3, 4, 5)}
    ms = [x * 1000 for x in stats.latencies]
    print(f"model          {model}")
    threads = f", torch threads {args.torch_threads}" if args.torch_threads else ""
    print(f"clients        {args.clients} for {elapsed:.1f} s (loopback{threads})")
    print(f"requests       {total} answered, {len(stats.dropped)} dropped/failed")
    print(f"throughput     {total / elapsed:.1f} req/s, {stats.questions / elapsed:.1f} questions/s")
    if offline:
        rate, questions = offline
        print(f"offline        {rate:.1f} req/s: {args.offline} requests of the same mix ({questions} questions) in one answer_batch "
              f"call (faster of 2), no HTTP; the server delivers {total / elapsed / rate:.2f} of it")
    if ms:
        print(f"latency (ms)   p50 {percentile(ms, 50):.1f}  p90 {percentile(ms, 90):.1f}  p99 {percentile(ms, 99):.1f}  "
              f"max {max(ms):.1f}  mean {statistics.fmean(ms):.1f}")
    print(f"status         2xx {by_class['2xx']}  4xx {by_class['4xx']} ({stats.expected_4xx} expected)  5xx {by_class['5xx']}  "
          f"other {by_class['3xx']}  by code {dict(sorted(stats.status.items()))}")
    if health:
        b = health.get("batching", {})
        print(f"micro-batches  {b.get('batches')} batches for {b.get('questions')} questions "
              f"(mean {b.get('mean_batch')}, largest {b.get('largest_batch')}) on {health.get('device')}")
    for line in stats.unexpected[:5]:
        print(f"unexpected     {line}")
    for line in stats.dropped[:5]:
        print(f"dropped        {line}")
    failed = by_class["5xx"] > 0 or bool(stats.dropped) or bool(stats.unexpected)
    print("result         " + ("FAIL" if failed else "ok"))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder or alias (default: a tiny random model built in a temp folder)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--timeout", type=float, default=60.0, help="client timeout per request in seconds (default 60)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="server micro-batch window (default 5)")
    parser.add_argument("--max-batch-items", type=int, default=32, help="server micro-batch size (default 32)")
    parser.add_argument("--device", help="server device, e.g. cpu or cuda")
    parser.add_argument("--torch-threads", type=int, help="torch intra-op threads in the server (default: torch's choice)")
    parser.add_argument("--offline", type=int, default=0, metavar="N", help="first time N requests of the mix answered in-process (0: no)")
    parser.add_argument("--start-timeout", type=float, default=180.0, help=argparse.SUPPRESS)
    parser.add_argument("--serve-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.clients < 1 or args.duration <= 0:
        parser.error("--clients must be >= 1 and --duration > 0")

    if args.serve_only:
        serve_only(args)
        return 0

    import httpx

    with tempfile.TemporaryDirectory(prefix="spanqa-load-") as tmp:
        model = args.model or str(build_tiny_model(Path(tmp)))
        offline = offline_rate(args, model) if args.offline > 0 else None  # before the server: not beside it
        process, url = start_server(args, model)
        health = None
        try:
            stats, elapsed = asyncio.run(run_clients(url, args.clients, args.duration, args.timeout))
            try:
                health = httpx.get(url + "/health", timeout=10, trust_env=False).json()
            except (httpx.HTTPError, ValueError):
                pass
        finally:
            code = stop_server(process)
        status = report(stats, elapsed, health, args, args.model or "tiny random BERT (built in a temp folder)", offline)
        if code not in (0, None, -signal.SIGINT):
            print(f"server exit    {code}")
        return status


if __name__ == "__main__":
    sys.exit(main())
