"""Wall-clock figures the tests no longer assert (they flake on a loaded machine):

- api: a 429 with Retry-After 0.4 s (target: waits >= 0.4 s, done in < 2 s);
- api: 500, 500, a hung request, malformed, empty, with a 0.5 s timeout (target: < 3 s, i.e. the
  hang cost one timeout, not the server's 5 s);
- api: 24 requests answered in 100 ms each at concurrency 16 (target: < 1.2 s; one at a time 2.4 s);
- clip: an offline hub id fails with its message (target: < 30 s).

Prints each figure beside its target; exits 0 either way (figures, not a test).

    python benchmarks/latency_bench.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
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

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "utkface" / "crop_part1"
KEY_ENV = "VLMFACE_BENCH_KEY"
TEMPLATE = load_template("vlm_question")
GENDER = Question(attribute="gender", kind="categorical", labels=("Male", "Female"),
                  display={"Male": "male", "Female": "female"}, template=TEMPLATE, task="utkface")
FAST = {"timeout": 0.5, "retry_base_delay": 0.01, "retry_max_delay": 0.05, "max_retries": 6}


def _queries(images: list[Image.Image]) -> list[Query]:
    prompt = TEMPLATE.render_question(attribute="gender", choices=GENDER.choices, labels=list(GENDER.labels),
                                      task="utkface", meta={})
    return [Query(sample_id=f"s{i}", image=image, question=GENDER, prompt=prompt) for i, image in enumerate(images)]


def _timed(server: ChatServer, images: list[Image.Image], cache: Path, **options) -> float:
    backend = APIBackend(resolve_model("api:test-model"), {"base_url": server.url, "api_key_env": KEY_ENV,
                                                           "cache_dir": cache, "cache": False, **FAST, **options})
    try:
        started = time.perf_counter()
        backend.answer(_queries(images))
        return time.perf_counter() - started
    finally:
        backend.close()


def _offline_clip_failure() -> float:
    from vlmface.backends.clip import ClipBackend
    from vlmface.errors import BackendError
    from vlmface.registry import ModelEntry

    os.environ["HF_HUB_OFFLINE"] = "1"
    started = time.perf_counter()
    try:
        ClipBackend(ModelEntry(name="bench", backend="clip", weights="hf:google/siglip-base-patch16-224"),
                    {"device": "cpu"})
    except BackendError:
        pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help=f"UTKFace faces (default {DEFAULT_DATA})")
    args = parser.parse_args()
    os.environ[KEY_ENV] = fake_key()
    images = [Image.open(p).convert("RGB") for p in sorted(args.data_dir.glob("*.jpg"))[:12]]
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        with ChatServer({1: "429"}, retry_after="0.4") as server:
            print(f"api 429 Retry-After 0.4 s: {_timed(server, images[:1], cache):.2f} s (target 0.4 to 2.0)")
        with ChatServer({1: "500", 2: "500", 3: "hang", 4: "malformed", 5: "empty"}) as server:
            print(f"api retried faults incl. one hang: {_timed(server, images[:2], cache, concurrency=1):.2f} s "
                  "(target < 3.0)")
        with ChatServer(delay=0.1) as server:
            print(f"api 24 x 100 ms at concurrency 16: {_timed(server, images + images, cache, concurrency=16):.2f} s"
                  " (target < 1.2; one at a time 2.4)")
    print(f"clip offline hub id fails in: {_offline_clip_failure():.2f} s (target < 30)")


if __name__ == "__main__":
    main()
