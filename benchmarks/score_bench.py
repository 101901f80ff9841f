"""Scorer benchmark: 1,000,000 predictions, 7 classes, 3 group columns, 1,000 resamples.

    python benchmarks/score_bench.py [--n 1000000] [--boot 1000] [--dir /tmp/vlmface-bench]
                                     [--basic]

Writes a synthetic predictions.jsonl (not timed; reused when present), then times
`score_run` end to end (read + validate + score + write) and prints wall time and the
process's peak resident memory. The file is written in chunks so that its generation
does not set the peak. Target on 2 cores: under 30 s and under 2 GiB.

By default every metric family is on: each line carries probabilities (calibration), some
errors are answer errors and some data errors, three-way intersections are scored and
every race is compared to a reference group. `--basic` scores as before issue 15 (no
probabilities, pairs only, no reference group) for a before/after comparison.
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


def _chunk_lines(rng: np.random.Generator, start: int, size: int, with_probs: bool) -> str:
    truth = rng.integers(len(LABELS), size=size)
    groups = {col: rng.integers(len(values), size=size) for col, values in GROUPS.items()}
    p_right = 0.5 + 0.06 * groups["race"]  # a planted race gradient
    right = rng.random(size) < p_right
    pred = np.where(right, truth, (truth + rng.integers(1, len(LABELS), size=size)) % 7)
    status = np.where(right, 0, rng.choice(4, size=size, p=[0.9, 0.05, 0.04, 0.01]))
    names = ("ok", "invalid", "refused", "error")
    logits = rng.normal(size=(size, len(LABELS)))
    logits[np.arange(size), pred] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True) if with_probs else None
    lines = []
    for i in range(size):
        s = names[status[i]]
        label = LABELS[pred[i]] if s == "ok" else None
        record = {"sample_id": f"s{start + i:07d}", "attribute": "emotion", "label": label,
                  "status": s, "raw": label,
                  "probs": dict(zip(LABELS, np.round(probs[i], 4).tolist())) if with_probs and label else None,
                  "groups": {col: GROUPS[col][groups[col][i]] for col in GROUPS},
                  "truth": LABELS[truth[i]]}
        if s == "error":
            record["error_kind"] = "answer" if i % 2 else "data"
        lines.append(json.dumps(record))
    return "\n".join(lines) + "\n"


def write_predictions(run_dir: Path, n: int, with_probs: bool = True) -> None:
    path = run_dir / "predictions.jsonl"
    marker = run_dir / f".n{n}{'p' if with_probs else ''}"
    if path.exists() and marker.exists():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    for old in run_dir.glob(".n*"):
        old.unlink()
    rng = np.random.default_rng(0)
    with path.open("w", encoding="utf-8") as handle:
        for start in range(0, n, CHUNK):
            handle.write(_chunk_lines(rng, start, min(CHUNK, n - start), with_probs))
    (run_dir / "run.json").write_text(json.dumps({
        "task": "bench", "group_columns": list(GROUPS),
        "attributes": {"emotion": {"kind": "categorical", "labels": LABELS}}}))
    marker.touch()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 1024 ** 2 if sys.platform == "darwin" else peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/vlmface-bench"))
    parser.add_argument("--basic", action="store_true",
                        help="as before issue 15: no probabilities, pairs only, no reference group")
    args = parser.parse_args()
    started = time.perf_counter()
    write_predictions(args.dir, args.n, with_probs=not args.basic)
    before = peak_rss_mib()
    print(f"predictions ready in {time.perf_counter() - started:.1f} s "
          f"({(args.dir / 'predictions.jsonl').stat().st_size / 2**20:.0f} MiB); "
          f"peak RSS so far {before:.0f} MiB")
    started, cpu = time.perf_counter(), cpu_seconds()
    extra = {} if args.basic else {"intersections": 3, "reference_group": ("race", "White")}
    metrics = score_run(args.dir, n_boot=args.boot, **extra)
    wall = time.perf_counter() - started
    print(format_summary(metrics))
    families = ", ".join(metrics["attributes"]["emotion"]["metric_families"])
    print(f"score_run: {args.n:,} predictions, {len(LABELS)} classes, {len(GROUPS)} group "
          f"columns (+{len(metrics['attributes']['emotion']['by_group']) - len(GROUPS)} intersections), "
          f"{args.boot} resamples, metric families: {families}: wall {wall:.1f} s "
          f"(CPU {cpu_seconds() - cpu:.1f} s), peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
