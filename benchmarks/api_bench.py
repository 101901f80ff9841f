"""Throughput of the api backend against a local chat-completions server that answers in 100 ms.

Prints requests/s sent one at a time (concurrency 1) and with --concurrency (default 16), and
their ratio, for (a) the backend's answer() on real UTKFace faces and (b) the runner's batch loop
(`vlmface eval`, gender only; prompt rendering and writing included, dataset listing not).
The cache is off, so every query is a request.

    python benchmarks/api_bench.py [--n 320] [--concurrency 16] [--delay 0.1] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from chat_server import ChatServer, fake_key  # noqa: E402

from vlmface.backends.api import APIBackend  # noqa: E402
from vlmface.backends.base import Query, Question  # noqa: E402
from vlmface.prompts import load_template  # noqa: E402
from vlmface.registry import resolve_model  # noqa: E402
from vlmface.runner import EvalConfig, evaluate  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "utkface" / "crop_part1"
KEY_ENV = "VLMFACE_BENCH_KEY"


def _queries(data_dir: Path, n: int) -> list[Query]:
    template = load_template("vlm_question")
    question = Question(attribute="gender", kind="categorical", labels=("Male", "Female"),
                        display={"Male": "male", "Female": "female"}, template=template, task="utkface")
    prompt = template.render_question(attribute="gender", choices=question.choices, labels=list(question.labels),
                                      task="utkface", meta={})
    paths = sorted(data_dir.glob("*.jpg"))[:n]
    return [Query(sample_id=p.name, image=Image.open(p).convert("RGB"), question=question, prompt=prompt)
            for p in paths]


def _backend_rate(url: str, queries: list[Query], concurrency: int) -> float:
    backend = APIBackend(resolve_model("api:bench-model"), {"base_url": url, "api_key_env": KEY_ENV,
                                                            "concurrency": concurrency, "cache": False})
    try:
        backend.answer(queries[:2])  # connection and client warm-up
        started = time.perf_counter()
        answers = backend.answer(queries)
        seconds = time.perf_counter() - started
    finally:
        backend.close()
    assert all(a.status == "ok" for a in answers), "the bench server should answer every request"
    return len(queries) / seconds


def _runner_rate(url: str, data_dir: Path, n: int, concurrency: int) -> float:
    """Queries/s of the runner's batch loop (prompt rendering, requests, writing predictions),
    from run.json's timings, so listing the dataset is not counted."""
    with tempfile.TemporaryDirectory() as out:
        result = evaluate(EvalConfig(task="utkface", model="api:bench-model", data_dir=data_dir, limit=n, out=out,
                                     attributes=["gender"], score=False, progress=False,
                                     options={"base_url": url, "api_key_env": KEY_ENV, "concurrency": concurrency,
                                              "cache": False}))
        seconds = json.loads((result.run_dir / "run.json").read_text())["timings"]["seconds"]
    return sum(result.counts.values()) / seconds


def _serve(delay: float, urls: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    with ChatServer(delay=delay) as server:
        urls.put(server.url)
        stop.wait(3600)


@contextlib.contextmanager
def _server_process(delay: float):
    """The server in a process of its own, as a real one would be: it does not share our GIL."""
    urls, stop = multiprocessing.Queue(), multiprocessing.Event()
    process = multiprocessing.Process(target=_serve, args=(delay, urls, stop), daemon=True)
    process.start()
    try:
        yield urls.get(timeout=60)
    finally:
        stop.set()
        process.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=320, help="requests of the concurrent measurement")
    parser.add_argument("--n-sequential", type=int, default=30, help="requests of the sequential one")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--delay", type=float, default=0.1, help="server answer time in seconds")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--no-runner", action="store_true", help="skip the end-to-end runner measurement")
    args = parser.parse_args()

    os.environ[KEY_ENV] = fake_key()
    queries = _queries(args.data_dir, args.n)
    with _server_process(args.delay) as url:
        sequential = _backend_rate(url, queries[:args.n_sequential], 1)
        concurrent = _backend_rate(url, queries, args.concurrency)
        print(f"server answer time: {args.delay * 1000:.0f} ms; requests: {args.n_sequential} sequential, "
              f"{len(queries)} concurrent")
        print(f"backend, concurrency 1:  {sequential:7.1f} requests/s")
        print(f"backend, concurrency {args.concurrency}: {concurrent:7.1f} requests/s  "
              f"({concurrent / sequential:.1f}x sequential)")
        if not args.no_runner:
            with contextlib.redirect_stdout(io.StringIO()):  # the runner's per-run notes
                runner_sequential = _runner_rate(url, args.data_dir, args.n_sequential, 1)
                runner_concurrent = _runner_rate(url, args.data_dir, args.n, args.concurrency)
            print(f"vlmface eval, concurrency 1:  {runner_sequential:7.1f} queries/s")
            print(f"vlmface eval, concurrency {args.concurrency}: {runner_concurrent:7.1f} queries/s  "
                  f"({runner_concurrent / runner_sequential:.1f}x sequential)")


if __name__ == "__main__":
    main()
