"""Social-perception plots from a probe's deltas.csv (CausalFace method, Hausladen et al.).

deltas.csv is tidy: model, dimension, term, group_col, group, n, delta_cos, ci_lo, ci_hi;
`term` is empty on the row of a dimension's mean over its terms, and delta_cos is
cos(image, term prompt) - cos(image, neutral prompt), x100, averaged over the group's images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from vlmface.errors import VlmfaceError
from vlmface.report.plots import PALETTE

DELTAS_COLUMNS = ["model", "dimension", "term", "group_col", "group", "n", "delta_cos", "ci_lo", "ci_hi"]


def read_deltas(path: Path) -> pd.DataFrame:
    deltas = pd.read_csv(path, dtype={"term": "string", "group": "string", "model": "string"},
                         keep_default_na=False, na_values={"n": [""], "delta_cos": [""],
                                                           "ci_lo": [""], "ci_hi": [""]})
    missing = [c for c in DELTAS_COLUMNS if c not in deltas.columns]
    if missing:
        raise VlmfaceError(f"{path}: missing column(s) {missing}; a probe's deltas.csv has "
                           f"{', '.join(DELTAS_COLUMNS)}")
    return deltas


def dimension_means(deltas: pd.DataFrame) -> pd.DataFrame:
    """The group rows of each dimension's mean over its terms (empty `term`); the whole-set
    row (group_col "all") is no group and is left out."""
    term = deltas["term"].fillna("").astype(str).str.strip()
    return deltas[(term == "") & (deltas["group_col"].astype(str) != "all")].copy()


def _whisker(value: float, lo: float, hi: float) -> np.ndarray:
    """A 2x1 asymmetric error bar; a missing bound draws no whisker."""
    return np.nan_to_num(np.array([[value - lo], [hi - value]], dtype=float), nan=0.0).clip(min=0)


LABEL_OFFSETS = [(5, 4), (5, -11), (-5, 4), (-5, -11), (5, 14), (5, -21), (-5, 14), (-5, -21), (14, -4),
                 (-14, -4), (5, 24), (5, -31), (-5, 24), (-5, -31)]  # points: tried in turn around a marker


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0.0) * max(h, 0.0)


def place_labels(fig: Figure, panels: list[tuple[object, list[tuple[float, float, str, str]]]]) -> None:
    """Annotate each (x, y, text, colour) of each (axes, points) next to its marker at the first
    offset where the label overlaps no label placed before it in that panel and no marker (the
    least-overlapping one if none is free). One layout pass for the whole figure; labels carry
    gid 'point-label' and stay out of the layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()  # runs the layout, so the display positions below are final
    renderer = canvas.get_renderer()
    for ax, points in panels:
        markers = [Bbox.from_bounds(*(ax.transData.transform((x, y)) - 4), 8, 8) for x, y, _, _ in points]
        placed = []
        for x, y, text, colour in points:
            label = ax.annotate(text, (x, y), textcoords="offset points", xytext=LABEL_OFFSETS[0], fontsize=7,
                                color=colour, gid="point-label", annotation_clip=False)
            label.set_in_layout(False)
            best, best_cost = LABEL_OFFSETS[0], np.inf
            for dx, dy in LABEL_OFFSETS:
                label.set_position((dx, dy))
                label.set_horizontalalignment("left" if dx > 0 else "right")
                box = label.get_window_extent(renderer)
                cost = sum(_overlap(box, b) for b in placed) + sum(_overlap(box, m) for m in markers)
                if cost < best_cost:
                    best, best_cost = (dx, dy), cost
                if cost == 0:
                    break
            label.set_position(best)
            label.set_horizontalalignment("left" if best[0] > 0 else "right")
            placed.append(label.get_window_extent(renderer))


def plot_warmth_competence(deltas: pd.DataFrame, x_dim: str = "warmth", y_dim: str = "competence",
                           title: str = "") -> Figure:
    """One panel per model (columns) x group column (rows), every panel on the same axes: each
    group's mean delta cosine on two dimensions with CI crosses; colour = group (the same
    in every panel), labels placed so they do not collide."""
    means = dimension_means(deltas)
    means = means[means["dimension"].isin([x_dim, y_dim])]
    wide = means.pivot_table(index=["model", "group_col", "group"], columns="dimension",
                             values=["delta_cos", "ci_lo", "ci_hi"], aggfunc="first", sort=False)
    columns = list(dict.fromkeys(means["group_col"]))
    models = list(dict.fromkeys(means["model"]))
    fig = Figure(figsize=(3.9 * max(1, len(models)) + 0.6, 3.6 * max(1, len(columns)) + 0.5), layout="constrained")
    grid = fig.subplots(max(1, len(columns)), max(1, len(models)), squeeze=False, sharex=True, sharey=True)
    lows = wide["ci_lo"].min().reindex([x_dim, y_dim]).fillna(wide["delta_cos"].min())
    highs = wide["ci_hi"].max().reindex([x_dim, y_dim]).fillna(wide["delta_cos"].max())
    pad = (highs - lows).abs().fillna(1.0) * 0.12 + 1e-9
    labels = []
    for r, col in enumerate(columns):
        groups = list(dict.fromkeys(means.loc[means["group_col"] == col, "group"]))
        for c, model in enumerate(models):
            ax = grid[r, c]
            points = []
            if (model, col) in {(m, g) for m, g, _ in wide.index}:
                part = wide.xs((model, col), level=["model", "group_col"])
                for group, row in part.iterrows():
                    x, y = row[("delta_cos", x_dim)], row[("delta_cos", y_dim)]
                    colour = PALETTE[groups.index(group) % len(PALETTE)]
                    ax.errorbar(x, y, xerr=_whisker(x, row[("ci_lo", x_dim)], row[("ci_hi", x_dim)]),
                                yerr=_whisker(y, row[("ci_lo", y_dim)], row[("ci_hi", y_dim)]),
                                fmt="o", markersize=4, capsize=2, color=colour, elinewidth=1)
                    points.append((x, y, str(group), colour))
            ax.axhline(0, color="#888888", linewidth=0.8)
            ax.axvline(0, color="#888888", linewidth=0.8)
            ax.set_xlim(lows[x_dim] - pad[x_dim], highs[x_dim] + pad[x_dim])
            ax.set_ylim(lows[y_dim] - pad[y_dim], highs[y_dim] + pad[y_dim])
            ax.grid(alpha=0.3)
            ax.set_title(f"{model} · by {col}", fontsize=9)
            if r == len(columns) - 1:
                ax.set_xlabel(f"{x_dim} (delta cosine x100)")
            if c == 0:
                ax.set_ylabel(f"{y_dim} (delta cosine x100)")
            labels.append((ax, points))
    fig.suptitle(title or f"{x_dim} vs {y_dim} by group")
    place_labels(fig, labels)
    return fig


def plot_difference_forest(differences: pd.DataFrame, title: str = "") -> Figure:
    """One panel per dimension: each group's paired difference (model B - model A) with its CI,
    one colour per model pair; filled where Holm-adjusted p < 0.05."""
    frame = differences.copy()
    frame["row"] = np.where(frame["group_col"] == "all", "all images", frame["group_col"] + ": " + frame["group"])
    frame["pair"] = frame["model_b"] + " - " + frame["model_a"]
    dims = list(dict.fromkeys(frame["dimension"]))
    rows = list(dict.fromkeys(frame["row"]))
    pairs = list(dict.fromkeys(frame["pair"]))
    per_row = min(4, max(1, len(dims)))
    n_rows = int(np.ceil(len(dims) / per_row))
    fig = Figure(figsize=(3.3 * per_row + 1.6, (0.26 * len(rows) * max(1, len(pairs)) ** 0.5 + 1.3) * n_rows),
                 layout="constrained")
    axes = fig.subplots(n_rows, per_row, squeeze=False, sharey=True)
    step = 0.7 / max(1, len(pairs))
    for i, dim in enumerate(dims):
        ax = axes[i // per_row, i % per_row]
        part = frame[frame["dimension"] == dim]
        for j, pair in enumerate(pairs):
            sub = part[part["pair"] == pair].set_index("row").reindex(rows)
            y = np.arange(len(rows)) + (j - (len(pairs) - 1) / 2) * step
            err = np.nan_to_num(np.vstack([sub["diff"] - sub["ci_lo"], sub["ci_hi"] - sub["diff"]])).clip(min=0)
            colour = PALETTE[j % len(PALETTE)]
            ax.errorbar(sub["diff"], y, xerr=err, fmt="none", ecolor=colour, elinewidth=1, capsize=2)
            strong = (sub["p_holm"] < 0.05).to_numpy()
            ax.scatter(sub["diff"][strong], y[strong], color=colour, s=16, zorder=3,
                       label=pair if i == 0 else None)
            ax.scatter(sub["diff"][~strong], y[~strong], facecolor="white", edgecolor=colour, s=16, zorder=3)
        ax.axvline(0, color="#444444", linewidth=0.8)
        ax.set_yticks(np.arange(len(rows)), rows, fontsize=7)
        ax.set_title(dim, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("difference (delta cosine x100)", fontsize=8)
    axes[0, 0].invert_yaxis()  # shared: the first row (all images) on top in every panel
    for k in range(len(dims), n_rows * per_row):
        axes[k // per_row, k % per_row].set_visible(False)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncols=min(4, len(pairs)),
               fontsize=8, title="paired difference (filled: Holm p < 0.05)", title_fontsize=8)
    fig.suptitle(title or "paired model differences of group means, with 95% CIs")
    return fig


def plot_model_heatmap(deltas: pd.DataFrame, title: str = "") -> Figure:
    """One panel per dimension: models (rows) x groups (columns), colour = mean delta cosine
    (one symmetric scale for all panels), each cell's value written in it."""
    means = dimension_means(deltas)
    means = means.assign(column=means["group_col"] + ": " + means["group"])
    dims = list(dict.fromkeys(means["dimension"]))
    models = list(dict.fromkeys(means["model"]))
    cols = list(dict.fromkeys(means["column"]))
    limit = float(np.nanmax(np.abs(means["delta_cos"]))) if len(means) else 1.0
    per_row = 2 if len(dims) > 1 else 1
    n_rows = int(np.ceil(len(dims) / per_row))
    fig = Figure(figsize=((0.55 * len(cols) + 1.8) * per_row + 1.0, (0.35 * len(models) + 1.4) * n_rows),
                 layout="constrained")
    axes = fig.subplots(n_rows, per_row, squeeze=False)
    image = None
    for i, dim in enumerate(dims):
        ax = axes[i // per_row, i % per_row]
        grid = means[means["dimension"] == dim].pivot_table(index="model", columns="column", values="delta_cos",
                                                            aggfunc="first").reindex(index=models, columns=cols)
        image = ax.imshow(grid.to_numpy(dtype=float), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        for (r, c), value in np.ndenumerate(grid.to_numpy(dtype=float)):
            if np.isfinite(value):
                ax.text(c, r, f"{value:.1f}", ha="center", va="center", fontsize=6,
                        color="white" if abs(value) > 0.6 * limit else "black")
        ax.set_xticks(np.arange(len(cols)), cols, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(np.arange(len(models)), models, fontsize=7)
        ax.set_title(dim, fontsize=9)
    for k in range(len(dims), n_rows * per_row):
        axes[k // per_row, k % per_row].set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="mean delta cosine x100")
    fig.suptitle(title or "group means per model (delta cosine x100)")
    return fig


def comparison_figures(deltas: pd.DataFrame | None, differences: pd.DataFrame | None):
    """(stem, figure) of the model comparison: the forest plot and the heatmap (two or more models)."""
    if differences is not None and len(differences):
        yield "model_differences", plot_difference_forest(differences)
    if deltas is not None and dimension_means(deltas)["model"].nunique() >= 2:
        yield "model_heatmap", plot_model_heatmap(deltas)


def factor_effects(deltas: pd.DataFrame) -> pd.DataFrame:
    """Per model x dimension x factor (group column): the spread of the group means,
    max - min delta cosine, i.e. how far changing that factor alone moves the dimension."""
    means = dimension_means(deltas).dropna(subset=["delta_cos"])
    rows = []
    for (model, dimension, factor), part in means.groupby(["model", "dimension", "group_col"], sort=False):
        high, low = part.loc[part["delta_cos"].idxmax()], part.loc[part["delta_cos"].idxmin()]
        rows.append({"model": model, "dimension": dimension, "factor": factor,
                     "effect": high["delta_cos"] - low["delta_cos"],
                     "high_group": high["group"], "low_group": low["group"]})
    return pd.DataFrame(rows, columns=["model", "dimension", "factor", "effect", "high_group", "low_group"])


def plot_factor_effects(effects: pd.DataFrame, title: str = "",
                        ylabel: str = "max - min group mean\n(delta cosine x100)") -> Figure:
    """Bars per dimension, one colour per factor; one panel per model."""
    models = list(dict.fromkeys(effects["model"]))
    fig = Figure(figsize=(max(6.0, 0.9 * effects["dimension"].nunique() + 3), 3.6 * len(models)),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(models), 1, squeeze=False)[:, 0])
    for ax, model in zip(axes, models):
        part = effects[effects["model"] == model]
        dims, factors = list(dict.fromkeys(part["dimension"])), list(dict.fromkeys(part["factor"]))
        width = 0.8 / max(1, len(factors))
        for i, factor in enumerate(factors):
            values = part[part["factor"] == factor].set_index("dimension").reindex(dims)["effect"]
            ax.bar(np.arange(len(dims)) + (i - (len(factors) - 1) / 2) * width, values.fillna(0), width,
                   color=PALETTE[i % len(PALETTE)], label=factor)
        ax.set_xticks(np.arange(len(dims)), dims, rotation=20, ha="right")
        ax.set_ylabel(ylabel)
        ax.set_title(str(model), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.legend(title="factor", fontsize=8)
    fig.suptitle(title or "factor effects: spread of group means per dimension")
    return fig
