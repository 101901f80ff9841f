"""Writes a probe's folder: tidy CSVs, one table per model, the model comparison, plots.

    probe.json          what ran: probe spec + sha256, task, data, models (identity, cache
                        counters, timings), settings, counts
    samples.csv         sample_id and factor labels of every image used (all models saw the same)
    deltas.csv          model, dimension, term, group_col, group, n, delta_cos, ci_lo, ci_hi
    markedness.csv, ranking.csv, intersections.csv (deltas format), extremes.csv,
    factor_pairs.csv, factor_effects.csv, factor_tests.csv         (social perception)
    denigration.csv, labels.csv                                    (denigration)
    models/<model>.csv|.md   one wide table per model: groups x dimensions (or categories)
    comparison.csv|.md       per model: highest and lowest group of each dimension x factor
    model_differences.csv, gap_differences.csv, gap_groups.csv, rank_agreement.csv,
    side_by_side.csv|.md     the paired model comparison (see `comparison`)
    plots/*.png|.svg
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vlmface.probes.social import ALL

COMPARISON_COLUMNS = ["model", "measure", "group_col", "highest", "highest_value", "lowest", "lowest_value"]


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:120] or "model"


def write_table(frame: pd.DataFrame, path: Path, markdown: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    if markdown:
        path.with_suffix(".md").write_text(frame.to_markdown(index=False, floatfmt=".2f") + "\n", encoding="utf-8")


def write_json(data: dict[str, Any], path: Path) -> None:
    from vlmface.scoring.tables import json_ready

    path.write_text(json.dumps(json_ready(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")


# ----- per model and across models --------------------------------------------------------------
def dimension_long(deltas: pd.DataFrame) -> pd.DataFrame:
    """model, measure, group_col, group, n, value: the dimension means, one row per group."""
    means = deltas[deltas["term"] == ""]
    return means.rename(columns={"dimension": "measure", "delta_cos": "value"})[
        ["model", "measure", "group_col", "group", "n", "value"]]


def wide_table(long: pd.DataFrame, model: str, extra: pd.DataFrame | None = None) -> pd.DataFrame:
    """One model: rows group_col, group, n; one column per measure (+ extra columns by group)."""
    part = long[long["model"] == model]
    keys = list(dict.fromkeys(zip(part["group_col"], part["group"])))
    wide = part.pivot_table(index=["group_col", "group"], columns="measure", values="value", aggfunc="first",
                            sort=False)
    wide = wide.reindex(pd.MultiIndex.from_tuples(keys, names=["group_col", "group"]))
    wide = wide[list(dict.fromkeys(part["measure"]))]
    n = part.drop_duplicates(["group_col", "group"]).set_index(["group_col", "group"])["n"]
    wide.insert(0, "n", n.reindex(wide.index).to_numpy())
    if extra is not None and len(extra):
        wide = wide.join(extra.set_index(["group_col", "group"]), how="left")
    return wide.reset_index()


def comparison(long: pd.DataFrame) -> pd.DataFrame:
    """Per model x measure x factor: the groups scoring highest and lowest."""
    rows = []
    parts = long[long["group_col"] != ALL].dropna(subset=["value"])
    for (model, measure, col), part in parts.groupby(["model", "measure", "group_col"], sort=False):
        high, low = part.loc[part["value"].idxmax()], part.loc[part["value"].idxmin()]
        rows.append((model, measure, col, high["group"], high["value"], low["group"], low["value"]))
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def write_model_tables(out: Path, long: pd.DataFrame, extras: dict[str, pd.DataFrame],
                       compared: pd.DataFrame) -> None:
    names: dict[str, str] = {}
    for model in dict.fromkeys(long["model"]):
        name = safe_name(model)
        name = name if name not in names.values() else f"{name}_{len(names)}"  # two specs, one sanitised name
        names[model] = name
        write_table(wide_table(long, model, extras.get(model)), out / "models" / f"{name}.csv", markdown=True)
    write_table(compared, out / "comparison.csv", markdown=True)


# ----- plots -------------------------------------------------------------------------------------
def social_plots(out: Path, deltas: pd.DataFrame, effects: pd.DataFrame, dimensions: list[str]) -> list[Path]:
    from vlmface.report.plots import save_figure
    from vlmface.report.social_plots import plot_factor_effects, plot_warmth_competence

    written = []
    x, y = ("warmth", "competence") if {"warmth", "competence"} <= set(dimensions) else (dimensions + [None])[:2]
    groups = deltas[deltas["group_col"] != ALL]
    if y is not None and len(groups):
        fig = plot_warmth_competence(groups, x, y, title=f"{x} vs {y} by group (delta cosine x100)")
        written.append(save_figure(fig, out / "plots", f"{x}_{y}")[0])
    if len(effects):
        fig = plot_factor_effects(effects, title="factor effects: median |delta delta cos| over pairs "
                                                 "differing in that factor only",
                                  ylabel="median |delta delta cos|\n(x100)")
        written.append(save_figure(fig, out / "plots", "factor_effects")[0])
    return written


def plot_denigration(rates: pd.DataFrame):
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
    fig.suptitle("denigration probe: share of faces given a harmful label")
    return fig


def denigration_plots(out: Path, rates: pd.DataFrame) -> list[Path]:
    from vlmface.report.plots import save_figure

    return [save_figure(plot_denigration(rates), out / "plots", "denigration")[0]] if len(rates) else []
