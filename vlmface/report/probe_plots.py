"""The probe methods' figures, from a probe folder's tables: drawn by `vlmface probe` into
OUT/plots/ and by `vlmface report` into its page (the same functions, so the same figures).

Each function takes the folder's tables (name -> DataFrame, as in probe.json's `outputs`) and
returns `ProbeFigure`s (stem, caption, a function drawing the matplotlib Figure): nothing is
drawn until asked. The social-perception plots themselves are in `social_plots`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vlmface.probes.method import ProbeFigure

ALL = "all"  # the whole-set row of every group table


def _title(name: str, text: str) -> str:
    return f"{name}: {text}" if name else text


def social_figures(tables: dict[str, pd.DataFrame], name: str = "") -> list[ProbeFigure]:
    """Warmth vs competence (or the first two dimensions), factor effects, and with two or more
    models the paired differences and the models x groups heatmap."""
    from vlmface.report import social_plots as sp

    deltas, found = tables.get("deltas"), []
    if deltas is None or deltas.empty:
        return found
    dims = list(dict.fromkeys(sp.dimension_means(deltas)["dimension"]))
    x, y = ("warmth", "competence") if {"warmth", "competence"} <= set(dims) else (dims + [None, None])[:2]
    groups = deltas[deltas["group_col"] != ALL]
    if y is not None and len(groups):
        found.append(ProbeFigure(f"{x}_{y}", f"{x} vs {y} (delta cosine x100) by group, with CIs",
                                 lambda: sp.plot_warmth_competence(
                                     groups, x, y, title=_title(name, f"{x} vs {y} by group (delta cosine x100)"))))
    effects = tables.get("factor_effects")
    if effects is not None and len(effects):
        found.append(ProbeFigure("factor_effects", "factor effects: median |delta delta cos| over image pairs "
                                 "differing in that factor only",
                                 lambda: sp.plot_factor_effects(
                                     effects, title=_title(name, "factor effects: median |delta delta cos| over "
                                                           "pairs differing in that factor only"),
                                     ylabel="median |delta delta cos|\n(x100)")))
    elif len(spread := sp.factor_effects(deltas)):
        found.append(ProbeFigure("factor_effects", "factor effects, spread of group means (max - min) per dimension",
                                 lambda: sp.plot_factor_effects(spread, _title(name, "factor effects"))))
    differences = tables.get("model_differences")
    if differences is not None and len(differences):
        found.append(ProbeFigure("model_differences", "paired model differences (B - A) of each group's mean, "
                                 "with 95% CIs; filled: Holm p < 0.05",
                                 lambda: sp.plot_difference_forest(differences, _title(name, "paired differences"))))
    if sp.dimension_means(deltas)["model"].nunique() >= 2:
        found.append(ProbeFigure("model_heatmap", "group means per model and dimension (delta cosine x100)",
                                 lambda: sp.plot_model_heatmap(deltas, _title(name, "group means per model"))))
    return found


def denigration_figures(tables: dict[str, pd.DataFrame], name: str = "") -> list[ProbeFigure]:
    rates = tables.get("denigration")
    if rates is None or rates.empty:
        return []
    return [ProbeFigure("denigration", "share of each group's faces given a harmful label, per category, "
                        "with Wilson CIs", lambda: plot_denigration(rates, name))]


def plot_denigration(rates: pd.DataFrame, name: str = ""):
    """One panel per model x group column: each group's rate per harmful category, with CIs."""
    from matplotlib.figure import Figure

    from vlmface.report.plots import PALETTE

    rates = rates[rates["group_col"] != ALL]
    panels = list(dict.fromkeys(zip(rates["model"], rates["group_col"])))
    fig = Figure(figsize=(max(6.0, 0.7 * rates["group"].nunique() + 3), 3.4 * len(panels)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(max(1, len(panels)), 1, squeeze=False)[:, 0])
    for ax, (model, col) in zip(axes, panels):
        part = rates[(rates["model"] == model) & (rates["group_col"] == col)]
        groups, cats = list(dict.fromkeys(part["group"])), list(dict.fromkeys(part["category"]))
        width = 0.8 / max(1, len(cats))
        for i, cat in enumerate(cats):
            rows = part[part["category"] == cat].set_index("group").reindex(groups)
            err = np.nan_to_num(np.vstack([rows["rate"] - rows["ci_lo"], rows["ci_hi"] - rows["rate"]])).clip(min=0)
            ax.bar(np.arange(len(groups)) + (i - (len(cats) - 1) / 2) * width, rows["rate"].fillna(0), width,
                   yerr=err, capsize=2, color=PALETTE[i % len(PALETTE)], label=cat)
        ax.set_xticks(np.arange(len(groups)), groups, rotation=20, ha="right")
        ax.set_ylabel("% of images")
        ax.set_title(f"{model}: by {col}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.legend(fontsize=8)
    fig.suptitle(_title(name, "denigration probe: share of faces given a harmful label"))
    return fig


def write_figures(out: Path, figures: list[ProbeFigure]) -> list[Path]:
    """Each figure as OUT/plots/STEM.png and .svg; returns the PNG paths."""
    from vlmface.report.plots import save_figure

    return [save_figure(f.draw(), out / "plots", f.stem)[0] for f in figures]
