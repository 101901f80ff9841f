"""Prompt-sensitivity plots from the tidy tables: accuracy by variant and group (CI bars), and the
gap between groups across variants (CI bars). matplotlib object API only (no pyplot, no GUI)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from vlmface.perturb.stats import ALL
from vlmface.report.plots import PALETTE


def _errorbars(ax, x: np.ndarray, rows: pd.DataFrame, value: str, colour: str, label: str, faded: bool) -> None:
    y = 100 * rows[value].to_numpy(float)
    err = np.vstack([y - 100 * rows[f"{value}_ci_lo"].to_numpy(float), 100 * rows[f"{value}_ci_hi"].to_numpy(float) - y])
    ax.errorbar(x, y, yerr=np.nan_to_num(err), fmt="o", ms=4, capsize=2, color=colour, alpha=0.5 if faded else 1.0,
                label=label)


def plot_accuracy(variants: pd.DataFrame) -> Figure:
    """One attribute: a panel per group column, variants along x, a dot with CI bar per group."""
    columns = list(dict.fromkeys(variants["group_column"]))
    names = list(dict.fromkeys(variants["variant"]))
    fig = Figure(figsize=(max(4.2, 0.7 * len(names) + 2) * len(columns), 3.8), layout="constrained")
    axes = fig.subplots(1, len(columns), sharey=True, squeeze=False)[0]
    for ax, col in zip(axes, columns):
        rows = variants[variants["group_column"] == col]
        groups = list(dict.fromkeys(rows["group"]))
        width = 0.6 / max(len(groups), 1)
        for i, group in enumerate(groups):
            line = rows[rows["group"] == group].set_index("variant").loc[names].reset_index()
            x = np.arange(len(names)) + (i - (len(groups) - 1) / 2) * width
            colour = "#333333" if col == ALL else PALETTE[i % len(PALETTE)]
            _errorbars(ax, x, line, "accuracy", colour, f"{group} (n={line['n'].iloc[0]})", bool(line["small"].iloc[0]))
        ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(col if col != ALL else "all images", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, framealpha=0.8)
    first = variants.iloc[0]
    axes[0].set_ylabel("CS@5 (%)" if first["metric"] == "cs5" else "accuracy (%)")
    fig.suptitle(f"{first['attribute']} by prompt variant (bars: CI; first: default)", fontsize=11)
    return fig


def plot_gaps(gaps: pd.DataFrame) -> Figure:
    """One attribute: the accuracy gap a - b per group pair across variants, with CIs."""
    pairs = list(dict.fromkeys(zip(gaps["group_column"], gaps["group_a"], gaps["group_b"])))
    names = list(dict.fromkeys(gaps["variant"]))
    fig = Figure(figsize=(max(5.0, 0.7 * len(names) + 3), 3.8), layout="constrained")
    ax = fig.add_subplot()
    width = 0.6 / max(len(pairs), 1)
    for i, (col, a, b) in enumerate(pairs):
        rows = gaps[(gaps["group_column"] == col) & (gaps["group_a"] == a) & (gaps["group_b"] == b)]
        rows = rows.set_index("variant").loc[names].reset_index()
        x = np.arange(len(names)) + (i - (len(pairs) - 1) / 2) * width
        _errorbars(ax, x, rows, "gap", PALETTE[i % len(PALETTE)], f"{col}: {a} − {b}", False)
    ax.axhline(0, color="#333333", lw=0.8)
    ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("gap, percentage points")
    ax.set_title(f"{gaps['attribute'].iloc[0]}: gap between groups across prompt variants (CI)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, framealpha=0.8)
    return fig
