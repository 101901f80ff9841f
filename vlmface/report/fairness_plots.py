"""Fairness figures of one run x attribute, drawn from its metrics.json block (never rescored):
reliability curves by group, signed age error by group, per-class TPR/FPR by group, and the
robustness curves of a sweep (vlmface robustness's levels table)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from vlmface.report.plots import PALETTE


def plot_reliability(by_group: dict[str, dict[str, Any]], overall: dict[str, Any], title: str) -> Figure:
    """Accuracy vs confidence per bin (the reliability curve), one line per group with an ECE."""
    fig = Figure(figsize=(5.2, 4.6), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls=":", label="perfectly calibrated")
    lines = [("all", overall)] + list(by_group.items())
    for i, (group, row) in enumerate(lines):
        curve = row.get("reliability")
        if not curve:
            continue
        ax.plot(curve["confidence"], curve["accuracy"], marker="o", ms=3, color=PALETTE[i % len(PALETTE)],
                lw=2 if group == "all" else 1, label=f"{group} (ECE {row['ece']:.3f}, n={row['n_calibrated']})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence of the answered label")
    ax.set_ylabel("accuracy in bin")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", framealpha=0.8)
    return fig


def plot_signed_error(by_group: dict[str, dict[str, Any]], title: str) -> Figure:
    """Mean (prediction - truth) per group with CI: above 0 aged up, below 0 aged down."""
    rows = [(g, r) for g, r in by_group.items() if r.get("mean_error") is not None]
    fig = Figure(figsize=(max(5.0, 0.8 * len(rows) + 2.5), 4.0), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    values = np.array([r["mean_error"] for _, r in rows], dtype=float)
    lo = np.array([r["mean_error_ci"][0] if r["mean_error_ci"][0] is not None else np.nan for _, r in rows])
    hi = np.array([r["mean_error_ci"][1] if r["mean_error_ci"][1] is not None else np.nan for _, r in rows])
    colours = [(PALETTE[1] if v > 0 else PALETTE[0]) + ("73" if r.get("small") else "ff")  # faded: small
               for v, (_, r) in zip(values, rows)]
    ax.bar(x, values, color=colours)
    ax.errorbar(x, values, yerr=np.nan_to_num(np.vstack([values - lo, hi - values]), nan=0).clip(min=0),
                fmt="none", ecolor="#333333", lw=1)
    ax.axhline(0, color="#333333", lw=0.8)
    ax.set_xticks(x, [f"{g}\n(n={r['n_answered']})" for g, r in rows], fontsize=8)
    ax.set_ylabel("mean signed error, years (> 0: aged up)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_class_rates(by_group: dict[str, dict[str, Any]], labels: list[str], title: str) -> Figure:
    """TPR (left) and FPR (right) per label (x) and group (colour); blank where n < min cell."""
    fig = Figure(figsize=(max(7.0, 1.3 * len(labels) + 5), 4.0), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    groups = list(by_group)
    width = 0.8 / max(len(groups), 1)
    for ax, rate in zip(axes, ("tpr", "fpr")):
        for i, group in enumerate(groups):
            values = [by_group[group][rate].get(label) for label in labels]
            heights = np.array([np.nan if v is None else 100 * v for v in values])
            ax.bar(np.arange(len(labels)) + i * width - 0.4 + width / 2, np.nan_to_num(heights), width,
                   color=PALETTE[i % len(PALETTE)], label=group)
        ax.set_xticks(np.arange(len(labels)), labels, fontsize=8, rotation=30 if len(labels) > 5 else 0)
        ax.set_title(f"{rate.upper()} (%)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("% (blank: fewer truths than the minimum cell)")
    axes[0].legend(fontsize=7, framealpha=0.8)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_robustness(levels: pd.DataFrame, title: str) -> Figure:
    """Accuracy (solid) and answered accuracy (dashed) over the levels, all images."""
    rows = levels.sort_values("level")
    fig = Figure(figsize=(5.6, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(rows["level"], 100 * rows["accuracy"], marker="o", color=PALETTE[0], label="accuracy")
    ax.fill_between(rows["level"], 100 * rows["accuracy_ci_lo"], 100 * rows["accuracy_ci_hi"],
                    color=PALETTE[0], alpha=0.18, lw=0)
    if "answered_accuracy" in rows:
        ax.plot(rows["level"], 100 * rows["answered_accuracy"], marker="o", ls="--", color=PALETTE[1],
                label="answered accuracy")
    if "answer_error_rate" in rows:
        ax.plot(rows["level"], 100 * rows["answer_error_rate"], marker=".", ls=":", color=PALETTE[3],
                label="answer errors (%)")
    ax.set_xlabel("level")
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, framealpha=0.8)
    return fig
