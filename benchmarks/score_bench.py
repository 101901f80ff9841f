"""Scorer benchmark: 1,000,000 predictions, 7 classes, 3 group columns, 1,000 resamples.

    python benchmarks/score_bench.py [--n 1000000] [--boot 1000] [--dir /tmp/vlmface-bench]

Writes a synthetic predictions.jsonl (not timed; reused when present), then times
`score_run` end to end (read + validate + score + write) and prints wall time and the
process's peak resident memory. The file is written in chunks so that its generation
does not set the peak. Target on 2 cores: under 30 s and under 2 GiB.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from vlmface.scoring import format_summary, score_run

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
GROUPS = {"race": ["Black", "East Asian", "Indian", "Latino", "Middle Eastern", "SE Asian",
                   "White"],
          "gender": ["Female", "Male"],
          "age_bin": ["0-19", "20-39", "40-59", "60+"]}
CHUNK = 100_000


def _chunk_lines(rng: np.random.Generator, start: int, size: int) -> str:
    truth = rng.integers(len(LABELS), size=size)
    groups = {col: rng.integers(len(values), size=size) for col, values in GROUPS.items()}
    p_right = 0.5 + 0.06 * groups["race"]  # a planted race gradient
    right = rng.random(size) < p_right
    pred = np.where(right, truth, (truth + rng.integers(1, len(LABELS), size=size)) % 7)
    status = np.where(right, 0, rng.choice(4, size=size, p=[0.9, 0.05, 0.04, 0.01]))
    names = ("ok", "invalid", "refused", "error")
    lines = []
    for i in range(size):
        s = names[status[i]]
        label = LABELS[pred[i]] if s == "ok" else None
        lines.append(json.dumps({
            "sample_id": f"s{start + i:07d}", "attribute": "emotion", "label": label,
            "status": s, "raw": label, "probs": None,
            "groups": {col: GROUPS[col][groups[col][i]] for col in GROUPS},
            "truth": LABELS[truth[i]]}))
    return "\n".join(lines) + "\n"


def write_predictions(run_dir: Path, n: int) -> None:
    path = run_dir / "predictions.jsonl"
    marker = run_dir / f".n{n}"
    if path.exists() and marker.exists():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with path.open("w", encoding="utf-8") as handle:
        for start in range(0, n, CHUNK):
            handle.write(_chunk_lines(rng, start, min(CHUNK, n - start)))
    (run_dir / "run.json").write_text(json.dumps({
        "task": "bench", "group_columns": list(GROUPS),
        "attributes": {"emotion": {"kind": "categorical", "labels": LABELS}}}))
    marker.touch()


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 1024 ** 2 if sys.platform == "darwin" else peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/vlmface-bench"))
    args = parser.parse_args()
    started = time.perf_counter()
    write_predictions(args.dir, args.n)
    before = peak_rss_mib()
    print(f"predictions ready in {time.perf_counter() - started:.1f} s "
          f"({(args.dir / 'predictions.jsonl').stat().st_size / 2**20:.0f} MiB); "
          f"peak RSS so far {before:.0f} MiB")
    started = time.perf_counter()
    metrics = score_run(args.dir, n_boot=args.boot)
    wall = time.perf_counter() - started
    print(format_summary(metrics))
    print(f"score_run: {args.n:,} predictions, {len(LABELS)} classes, {len(GROUPS)} group "
          f"columns (+3 intersections), {args.boot} resamples: wall {wall:.1f} s, "
          f"peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
