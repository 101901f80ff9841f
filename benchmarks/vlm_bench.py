"""Generative VLM backend throughput: samples/s of generate vs choice mode, and batch-size
scaling, on a tiny random LLaVA (built offline from a config) over real UTKFace faces.

    python benchmarks/vlm_bench.py [--model-dir DIR] [--n 32] [--batch-sizes 1,4,16]

Figures on a tiny model measure the harness (prompting, batching, padding, parsing), not a
real model's speed; pass --model-dir with real weights on a GPU machine for those.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "utkface" / "crop_part1"


def run(model_dir: Path, data_dir: Path, n: int, batch_size: int, mode: str, device: str) -> float:
    from vlmface.runner import EvalConfig, evaluate

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        evaluate(EvalConfig(task="utkface", model=f"hf:{model_dir}", data_dir=data_dir, limit=n,
                            attributes=["gender", "race5"], batch_size=batch_size, out=out, score=False,
                            progress=False, cache_dir=False,
                            options={"mode": mode, "device": device, "max_new_tokens": 4}))
        return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", type=Path, help="a saved VLM (default: build a tiny random LLaVA)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--batch-sizes", default="1,4,16")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            sys.path.insert(0, str(ROOT / "tests"))
            from tiny_vlms import build_llava

            model_dir = build_llava(Path(tmp) / "llava")
        run(model_dir, args.data_dir, 4, 4, "generate", args.device)  # warm-up: imports, first load
        print(f"model: {model_dir}; {args.n} faces x 2 attributes (gender, race5)")
        for mode in ("generate", "choice"):
            for batch_size in (int(b) for b in args.batch_sizes.split(",")):
                rate = run(model_dir, args.data_dir, args.n, batch_size, mode, args.device)
                print(f"{mode:<9} batch {batch_size:>3}: {rate:7.1f} samples/s (model load included)")


if __name__ == "__main__":
    main()
