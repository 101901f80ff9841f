"""Accuracy and bias plots. Each function takes tidy rows (see `collect`) and returns a Figure.

Figures are built with matplotlib's object API (no pyplot, no global state, no GUI backend),
so they can be drawn in any process and never leak; `save_figure` writes PNG and SVG.
Accuracy-like values are drawn in percent, MAE in years.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

PALETTE = ["#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB",
           "#000000"]  # Paul Tol's colour-blind safe qualitative scheme
NON_ANSWERS = ("<invalid>", "<refused>")


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _scale(kind: str) -> tuple[str, float, str]:
    """(column, factor, axis label) of the score drawn for an attribute kind."""
    return ("mae", 1.0, "MAE (years)") if kind == "numeric" else ("accuracy", 100.0, "accuracy (%)")


def ci_whiskers(values: pd.Series, lo: pd.Series, hi: pd.Series, factor: float) -> np.ndarray:
    """Asymmetric whiskers; a missing CI draws none (never a fake zero-width interval)."""
    v, lo, hi = (np.asarray(s, dtype=float) * factor for s in (values, lo, hi))
    return np.nan_to_num(np.vstack([v - lo, hi - v]), nan=0.0).clip(min=0)


def _grouped_bars(ax, table: pd.DataFrame, value: str, factor: float, with_ci: bool) -> None:
    """Bars per group (x) and run (hue); small groups are drawn faded and marked."""
    groups = list(dict.fromkeys(table["group"]))
    key = "run_id" if "run_id" in table else "label"  # one hue per run directory, shown by its label
    runs = list(dict.fromkeys(table[key]))
    width = 0.8 / max(1, len(runs))
    x = np.arange(len(groups))
    for i, run in enumerate(runs):
        rows = table[table[key] == run].set_index("group").reindex(groups)
        label = str(rows["label"].dropna().iloc[0]) if rows["label"].notna().any() else str(run)
        heights = rows[value].astype(float) * factor
        err = ci_whiskers(rows[value], rows[f"{value}_lo"], rows[f"{value}_hi"], factor) if with_ci else None
        bars = ax.bar(x + (i - (len(runs) - 1) / 2) * width, heights.fillna(0), width,
                      yerr=err, capsize=3, color=PALETTE[i % len(PALETTE)], label=_short(label),
                      error_kw={"elinewidth": 1, "ecolor": "#333333"})
        for bar, small in zip(bars, rows.get("small", pd.Series(False, index=rows.index)).fillna(False)):
            if small:
                bar.set_alpha(0.35)
    ax.set_xticks(x, [_short(str(g), 18) for g in groups], rotation=30 if len(groups) > 4 else 0,
                  ha="right" if len(groups) > 4 else "center")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def plot_group_scores(groups: pd.DataFrame, title: str = "") -> Figure:
    """Per-group accuracy (or MAE) bars with CI whiskers, one colour per run.

    `groups`: rows of one task x attribute x group column (`collect` groups table); groups
    flagged `small` by the scorer are faded (too few faces to rank).
    """
    kind = groups["kind"].iloc[0]
    value, factor, axis = _scale(kind)
    fig = Figure(figsize=(max(6.0, 0.9 * groups["group"].nunique() + 3), 4.2), layout="constrained")
    ax = fig.add_subplot()
    _grouped_bars(ax, groups, value, factor, with_ci=True)
    ax.set_ylabel(axis)
    if kind != "numeric":
        ax.set_ylim(0, 105)
    ax.set_xlabel(groups["group_col"].iloc[0])
    ax.set_title(title or f"{groups['attribute'].iloc[0]} by {groups['group_col'].iloc[0]}")
    ax.legend(fontsize=8, loc="lower left" if kind != "numeric" else "upper left", framealpha=0.8)
    return fig


def plot_group_rates(groups: pd.DataFrame, title: str = "") -> Figure:
    """Refusal (left) and invalid-answer (right) rate per group, one colour per run."""
    fig = Figure(figsize=(max(8.0, 1.6 * groups["group"].nunique() + 4), 4.0), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, column, name in zip(axes, ("refusal_rate", "invalid_rate"), ("refused", "invalid")):
        table = groups.assign(**{f"{column}_lo": np.nan, f"{column}_hi": np.nan})
        _grouped_bars(ax, table, column, 100.0, with_ci=False)
        ax.set_title(f"{name} (% of faces)")
        ax.set_xlabel(groups["group_col"].iloc[0])
    axes[0].set_ylabel("% of faces")
    axes[0].legend(fontsize=8, framealpha=0.8)
    fig.suptitle(title or f"{groups['attribute'].iloc[0]}: refusals and invalid answers by "
                 f"{groups['group_col'].iloc[0]}")
    return fig


def plot_gap_forest(disparity: pd.DataFrame, title: str = "") -> Figure:
    """Gap (best - worst group) with its CI, one row per run x group column: a forest plot."""
    kind = disparity["kind"].iloc[0]
    factor = 1.0 if kind == "numeric" else 100.0
    rows = disparity.sort_values(["group_col", "gap"], ascending=[True, False]).reset_index(drop=True)
    fig = Figure(figsize=(7.5, 1.2 + 0.38 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    columns = list(dict.fromkeys(rows["group_col"]))
    y = np.arange(len(rows))[::-1]
    for i, col in enumerate(columns):
        mask = (rows["group_col"] == col).to_numpy()
        part = rows[mask]
        ax.errorbar(part["gap"].astype(float) * factor, y[mask],
                    xerr=ci_whiskers(part["gap"], part["gap_lo"], part["gap_hi"], factor),
                    fmt="o", capsize=3, color=PALETTE[i % len(PALETTE)], label=col)
    ax.set_yticks(y, [_short(f"{r.label}  (worst {r.worst_group}, best {r.best_group})", 80)
                      for r in rows.itertuples()], fontsize=8)
    ax.axvline(0, color="#888888", linewidth=0.8)
    ax.set_xlabel("MAE gap, worst - best group (years)" if kind == "numeric"
                  else "accuracy gap, best - worst group (percentage points)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(title="group column", fontsize=8, loc="lower right")
    ax.set_title(title or f"{rows['attribute'].iloc[0]}: gap across runs")
    return fig


def confusion_frame(confusion: dict[str, dict[str, Any]], labels: list[str] | None = None) -> pd.DataFrame:
    """metrics.json `confusion` -> truth x predicted counts (labels first, non-answers last)."""
    frame = pd.DataFrame(confusion).T.fillna(0).astype(int)
    order = labels or [c for c in frame.index]
    cols = [c for c in order if c in frame.columns] + [c for c in frame.columns
                                                       if c not in order and c not in NON_ANSWERS]
    cols += [c for c in NON_ANSWERS if c in frame.columns and frame[c].sum() > 0]
    rows = [r for r in order if r in frame.index] + [r for r in frame.index if r not in order]
    return frame.reindex(index=rows, columns=cols, fill_value=0)


def plot_confusion(confusion: dict[str, dict[str, Any]], labels: list[str] | None = None,
                   title: str = "") -> Figure:
    """Row-normalised confusion heatmap (share of each true class), counts in the cells."""
    counts = confusion_frame(confusion, labels)
    totals = counts.sum(axis=1).replace(0, np.nan)
    shares = counts.div(totals, axis=0).fillna(0.0)
    size = max(3.8, 0.55 * max(counts.shape) + 2.2)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(shares.to_numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(counts.shape[1]), [_short(str(c), 14) for c in counts.columns],
                  rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(counts.shape[0]), [_short(str(r), 14) for r in counts.index], fontsize=8)
    if counts.size <= 144:
        for (i, j), n in np.ndenumerate(counts.to_numpy()):
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                    color="white" if shares.iat[i, j] > 0.6 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, label="share of true class", shrink=0.8)
    ax.set_title(title, fontsize=9)
    return fig


def save_figure(fig: Figure, plots_dir: Path, stem: str) -> tuple[Path, Path, bytes]:
    """Write STEM.png and STEM.svg; return both paths and the PNG bytes (for embedding)."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    png, svg = plots_dir / f"{stem}.png", plots_dir / f"{stem}.svg"
    png.write_bytes(buffer.getvalue())
    fig.set_layout_engine("none")  # laid out once already: the SVG reuses the positions
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": stem}):  # text stays text: smaller, faster
        fig.savefig(svg, format="svg", metadata={"Date": None})
    return png, svg, buffer.getvalue()
