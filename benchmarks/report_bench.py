"""Report benchmark: a results folder of M models x 3 tasks x 3 attributes, then `build_report`.

    python benchmarks/report_bench.py [--models 12] [--n 600] [--dir /tmp/vlmface-report-bench]

Writes synthetic scored runs (predictions.jsonl + run.json scored by the real scorer with 100
resamples; not timed; reused when present), then times build_report with and without plots and
prints the size of report.html. Plots dominate: about one figure per task x attribute x 2-3
kinds plus one confusion heatmap per run x attribute.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from vlmface.report import build_report
from vlmface.scoring import score_run

TASKS = {"fairface": {"race7": 7, "gender": 2, "age9": 9}, "utkface": {"race5": 5, "gender": 2, "age5": 5},
         "affectnet": {"emotion": 8}}
RACES = ["Black", "East Asian", "Indian", "White", "Latino_Hispanic"]


def _run(folder: Path, task: str, model: str, n: int, rng: np.random.Generator) -> None:
    attributes = {a: {"kind": "categorical", "labels": [f"c{i}" for i in range(k)]}
                  for a, k in TASKS[task].items()}
    lines = []
    for i in range(n):
        groups = {"race": RACES[i % len(RACES)], "gender": "FM"[i % 2]}
        for attribute, k in TASKS[task].items():
            truth = int(rng.integers(k))
            right = rng.random() < 0.5 + 0.08 * (i % len(RACES))
            status = "ok" if right or rng.random() < 0.8 else "refused"
            label = None if status != "ok" else f"c{truth if right else (truth + 1) % k}"
            lines.append(json.dumps({"sample_id": str(i), "attribute": attribute, "label": label, "status": status,
                                     "raw": label, "probs": None, "groups": groups, "truth": f"c{truth}"}))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "run.json").write_text(json.dumps({"task": task, "model": model, "backend": "hf",
                                                 "attributes": attributes, "group_columns": ["race", "gender"],
                                                 "status": "complete"}))
    score_run(folder, n_boot=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("--n", type=int, default=600, help="faces per run")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/vlmface-report-bench"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for m in range(args.models):
        for task in TASKS:
            folder = args.dir / task / f"model{m:02d}" / "default"
            if not (folder / "metrics.json").exists():
                _run(folder, task, f"model{m:02d}", args.n, rng)
    for plots in (False, True):
        start = time.perf_counter()
        result = build_report(args.dir, plots=plots)
        seconds = time.perf_counter() - start
        size = result.html.stat().st_size / 2**20
        print(f"plots={plots!s:<5} runs={len(result.collection.runs)} rows={len(result.leaderboard)} "
              f"figures={len(result.plots) // 2} time={seconds:.1f}s report.html={size:.1f} MiB")


if __name__ == "__main__":
    main()
