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
MARKERS = "osD^vP*X"


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


def plot_warmth_competence(deltas: pd.DataFrame, x_dim: str = "warmth", y_dim: str = "competence",
                           title: str = "") -> Figure:
    """One panel per group column: each group's mean delta cosine on two dimensions, with CIs.
    Colour = group, marker = model."""
    means = dimension_means(deltas)
    means = means[means["dimension"].isin([x_dim, y_dim])]
    wide = means.pivot_table(index=["model", "group_col", "group"], columns="dimension",
                             values=["delta_cos", "ci_lo", "ci_hi"], aggfunc="first")
    columns = list(dict.fromkeys(means["group_col"]))
    fig = Figure(figsize=(5.0 * max(1, len(columns)), 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(1, len(columns)), squeeze=False)[0])
    models = list(dict.fromkeys(means["model"]))
    for ax, col in zip(axes, columns):
        part = wide.xs(col, level="group_col")
        groups = list(dict.fromkeys(part.index.get_level_values("group")))
        for (model, group), row in part.iterrows():
            x, y = row[("delta_cos", x_dim)], row[("delta_cos", y_dim)]
            ax.errorbar(x, y, xerr=_whisker(x, row[("ci_lo", x_dim)], row[("ci_hi", x_dim)]),
                        yerr=_whisker(y, row[("ci_lo", y_dim)], row[("ci_hi", y_dim)]),
                        fmt=MARKERS[models.index(model) % len(MARKERS)], capsize=2,
                        color=PALETTE[groups.index(group) % len(PALETTE)],
                        label=f"{group}" + (f" ({model})" if len(models) > 1 else ""))
            ax.annotate(str(group), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.axhline(0, color="#888888", linewidth=0.8)
        ax.axvline(0, color="#888888", linewidth=0.8)
        ax.set_xlabel(f"{x_dim} (delta cosine x100)")
        ax.set_ylabel(f"{y_dim} (delta cosine x100)")
        ax.set_title(f"by {col}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, framealpha=0.8)
    fig.suptitle(title or f"{x_dim} vs {y_dim} by group")
    return fig


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
