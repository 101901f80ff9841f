"""Scale-out throughput: the baseline backend with 1 vs 2 Ray CPU actors, and a paper
estimate for PaliGemma on 8 GPUs.

    python benchmarks/scale_bench.py [--n 1000] [--data-dir ../shared/data/utkface/crop_part1]

Each Ray run starts from a warm local Ray instance; the first (warm-up) run is not timed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from vlmface.runner import EvalConfig, evaluate

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface" / "crop_part1"

# Paper estimate, PaliGemma-3B at 224 px in bf16 with vLLM on one H100/H200-class GPU:
# 256 image tokens + ~40 prompt tokens prefill and ~4 generated tokens per query; published
# vLLM VLM serving figures for 3B models are in the 20-50 queries/s/GPU range at this shape.
PALIGEMMA_QPS_PER_GPU = (20, 50)


def timed(config: EvalConfig) -> float:
    started = time.perf_counter()
    evaluate(config)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batch-size", type=int, default=64, help="faces per actor call (Ray overhead "
                        "per batch is a few ms; small batches hide the second actor's gain)")
    args = parser.parse_args()
    common = dict(task="utkface", model="baseline", data_dir=args.data_dir, limit=args.n, score=False,
                  progress=False, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as out:
        evaluate(EvalConfig(out=Path(out) / "warm", engine="ray", workers=1, **{**common, "limit": 50}))
        local = timed(EvalConfig(out=Path(out) / "local", **common))
        one = timed(EvalConfig(out=Path(out) / "ray1", engine="ray", workers=1, **common))
        two = timed(EvalConfig(out=Path(out) / "ray2", engine="ray", workers=2, **common))
    print(f"faces: {args.n} (4 attributes each), batch size {args.batch_size}")
    print(f"local engine:        {args.n / local:7.1f} faces/s")
    print(f"ray, 1 CPU actor:    {args.n / one:7.1f} faces/s")
    print(f"ray, 2 CPU actors:   {args.n / two:7.1f} faces/s   (speed-up over 1 actor: {one / two:.2f}x)")
    lo, hi = PALIGEMMA_QPS_PER_GPU
    print(f"paper estimate, PaliGemma-3B on 8 GPUs (one vLLM actor per GPU, data parallel): "
          f"{8 * lo}-{8 * hi} queries/s; FairFace validation x 3 attributes (32,862 queries) in "
          f"{32862 / (8 * hi) / 60:.1f}-{32862 / (8 * lo) / 60:.1f} min")


if __name__ == "__main__":
    main()
