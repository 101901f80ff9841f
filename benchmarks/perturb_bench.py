"""Perturbation costs: each transform's throughput on real 200x200 faces (decode included, as in
the loader), and the robustness analysis on a large synthetic sweep.

    python benchmarks/perturb_bench.py [--n 300] [--images 20000] [--n-boot 1000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vlmface.data import Sample
from vlmface.data.samples import FileImage
from vlmface.perturb.apply import Perturbation
from vlmface.perturb.paired import Paired
from vlmface.perturb.spec import perturbation_set
from vlmface.perturb.stats import robustness_tables
from vlmface.scoring.settings import ScoreSettings

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface" / "crop_part1"
CASES = {"gamma": ({}, 0.5), "exposure": ({}, -1), "contrast": ({}, 0.5), "grayscale": ({}, 1),
         "gaussian_blur": ({}, 4), "downscale": ({}, 4), "jpeg": ({}, 20), "occlude": ({"region": "random"}, 0.3),
         "rotate": ({}, 15), "flip": ({}, 1), "gaussian_noise": ({}, 20)}


def transform_rates(samples: list[Sample]) -> pd.DataFrame:
    rows = []
    started = time.perf_counter()
    for sample in samples:
        sample.load_image()
    decode = time.perf_counter() - started
    rows.append({"transform": "(decode only)", "faces_per_s": len(samples) / decode})
    for name, (params, level) in CASES.items():
        spec = perturbation_set({"perturbations": {"p": {"transform": name, "levels": [level], **params}}},
                                "bench", "bench").perturbations["p"]
        wrapped = Perturbation("p", spec, level).wrap(samples)
        started = time.perf_counter()
        for sample in wrapped:
            sample.load_image()
        seconds = time.perf_counter() - started
        rows.append({"transform": name, "faces_per_s": len(samples) / seconds,
                     "ms_over_decode": 1000 * (seconds - decode) / len(samples)})
    return pd.DataFrame(rows)


def analysis_time(n: int, n_boot: int) -> tuple[float, int]:
    rng = np.random.default_rng(0)
    levels = np.array([0.4, 0.6, 1.0, 1.6, 2.5])
    u = rng.random(n)
    accuracy = np.array([0.75, 0.8, 0.85, 0.83, 0.78])
    correct = u[:, None] < accuracy[None, :]
    groups = {"race": pd.Categorical(rng.choice(list("ABCDE"), n)), "gender": pd.Categorical(rng.choice(["F", "M"], n)),
              "age": pd.Categorical(rng.choice(list("01234"), n))}
    paired = [Paired(attribute=f"attr{k}", kind="categorical", metric="accuracy", perturbation="exposure",
                     transform="gamma", levels=levels, clean=2, sample_id=np.arange(n).astype(str), correct=correct,
                     flipped=correct != correct[:, [2]], error=np.zeros_like(correct), abs_error=None, groups=groups,
                     counts={}) for k in range(4)]
    started = time.perf_counter()
    tables = robustness_tables(paired, ScoreSettings(n_boot=n_boot))
    return time.perf_counter() - started, len(tables["levels"]) + len(tables["interactions"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300, help="real faces per transform")
    parser.add_argument("--images", type=int, default=20000, help="images in the synthetic sweep")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    files = sorted(args.data_dir.glob("*.jpg"))[: args.n]
    samples = [Sample(id=f.name, image=FileImage(f), labels={}) for f in files]
    print(transform_rates(samples).to_markdown(index=False, floatfmt=".1f"))
    seconds, rows = analysis_time(args.images, args.n_boot)
    print(f"\nanalysis: {args.images} images x 5 levels x 4 attributes x 3 group columns, n_boot={args.n_boot}: "
          f"{seconds:.2f} s for {rows} table rows")


if __name__ == "__main__":
    main()
