"""Robustness plots from the tidy tables: accuracy-vs-level curves by group with CI bands,
and a forest plot of the interactions. matplotlib object API only (no pyplot, no GUI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from vlmface.perturb.stats import ALL
from vlmface.report.plots import PALETTE

AXES = {"gamma": "gamma (<1 brighter, >1 darker)", "exposure": "exposure (EV stops)",
        "contrast": "contrast factor", "grayscale": "desaturation", "gaussian_blur": "blur sigma",
        "downscale": "downscale factor", "jpeg": "JPEG quality", "occlude": "occluded share",
        "rotate": "rotation (degrees)", "flip": "flipped", "gaussian_noise": "noise sigma (0-255)"}


def _score_label(metric: str) -> str:
    return "CS@5 (%)" if metric == "cs5" else "accuracy (%)"


def plot_curves(levels: pd.DataFrame) -> Figure:
    """One attribute x one perturbation: a panel per group column, a line per group, CI bands.
    Small groups are drawn dashed and faded; the clean level is marked."""
    columns = list(dict.fromkeys(levels["group_column"]))
    first = levels.iloc[0]
    fig = Figure(figsize=(4.2 * len(columns), 3.8), layout="constrained")
    axes = fig.subplots(1, len(columns), sharey=True, squeeze=False)[0]
    clean = levels.loc[levels["clean"], "level"].iloc[0]
    for ax, col in zip(axes, columns):
        rows = levels[levels["group_column"] == col]
        for i, (group, line) in enumerate(rows.groupby("group", sort=False)):
            line = line.sort_values("level")
            small = bool(line["small"].iloc[0])
            colour = "#333333" if col == ALL else PALETTE[i % len(PALETTE)]
            x = line["level"].to_numpy(float)
            ax.plot(x, 100 * line["accuracy"], marker="o", ms=3, color=colour, ls="--" if small else "-",
                    alpha=0.5 if small else 1.0, label=f"{group} (n={line['n'].iloc[0]})")
            ax.fill_between(x, 100 * line["accuracy_ci_lo"].astype(float), 100 * line["accuracy_ci_hi"].astype(float),
                            color=colour, alpha=0.08 if small else 0.18, lw=0)
        ax.axvline(clean, color="#999999", lw=0.8, ls=":")
        ax.set_title(col if col != ALL else "all images", fontsize=10)
        ax.set_xlabel(AXES.get(first["transform"], "level"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left", framealpha=0.8)
    axes[0].set_ylabel(_score_label(first["metric"]))
    fig.suptitle(f"{first['attribute']} under {first['perturbation']} (clean = {clean:g}; bands: CI)", fontsize=11)
    return fig


def plot_interactions(interactions: pd.DataFrame) -> Figure:
    """One attribute x one perturbation: drop(a) - drop(b) with CI per group pair and level."""
    rows = interactions.sort_values(["group_column", "group_a", "group_b", "level"]).reset_index(drop=True)
    first = rows.iloc[0]
    fig = Figure(figsize=(7.0, 1.0 + 0.24 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    values = 100 * rows["interaction"].to_numpy(float)
    lo, hi = 100 * rows["interaction_ci_lo"].to_numpy(float), 100 * rows["interaction_ci_hi"].to_numpy(float)
    colours = [PALETTE[1] if flag else PALETTE[0] for flag in rows["ci_excludes_zero"]]
    ax.hlines(y, lo, hi, colors=colours, lw=1.5)
    ax.scatter(values, y, c=colours, s=14, zorder=3)
    ax.axvline(0, color="#333333", lw=0.8)
    ax.set_ylim(-0.8, len(rows) - 0.2)
    labels = [f"{r.group_column}: {r.group_a} − {r.group_b} @ {r.level:g}" for r in rows.itertuples()]
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel(f"difference of drops, percentage points ({'CS@5' if first['metric'] == 'cs5' else 'accuracy'});"
                  " > 0: first group loses more")
    ax.set_title(f"{first['attribute']} under {first['perturbation']}: interaction with CI "
                 "(red: CI excludes 0)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    return path
