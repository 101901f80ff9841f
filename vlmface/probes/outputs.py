"""Writes a probe's folder: tidy CSVs, one table per model, the model comparison, plots.

    probe.json          what ran: probe spec + sha256, task, data, models (identity, cache
                        counters, timings), settings, counts
    samples.csv         sample_id and factor labels of every image used (all models saw the same)
    deltas.csv          model, dimension, term, group_col, group, n, delta_cos, ci_lo, ci_hi
    markedness.csv, ranking.csv, intersections.csv (deltas format), extremes.csv,
    factor_pairs.csv, factor_effects.csv, factor_tests.csv         (social perception)
    denigration.csv, labels.csv                                    (denigration)
    (each method's tables: its `tables`, vlmface.probes.methods; probe.json `outputs` lists them)
    models/<model>.csv|.md   one wide table per model: groups x dimensions (or categories)
    comparison.csv|.md       per model: highest and lowest group of each dimension x factor
    model_differences.csv, gap_differences.csv, gap_groups.csv, rank_agreement.csv,
    side_by_side.csv|.md     the paired model comparison (see `comparison`)
    plots/*.png|.svg         the method's figures (vlmface.report.probe_plots)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

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


# ----- what a folder holds ------------------------------------------------------------------------
TEXT_COLUMNS = ("sample_id", "group", "model", "model_a", "model_b", "term", "word", "group_col", "category",
                "label", "dimension", "measure", "factor", "highest", "lowest")


def read_table(path: Path) -> pd.DataFrame:
    """A table written by `write_table`, labels as strings (an empty term stays ''), numbers as numbers."""
    frame = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False, na_values=[""])
    return frame.fillna({c: "" for c in TEXT_COLUMNS if c in frame})


def outputs_record(method, tables: dict[str, pd.DataFrame], figures: list[Path], out: Path) -> dict[str, Any]:
    """probe.json's `outputs`: the method, each table's file, the tables the report shows, the figures."""
    return {"method": method.name, "tables": {name: f"{name}.csv" for name in tables},
            "shown": [name for name in method.shown if name in tables],
            "figures": [p.relative_to(out).as_posix() for p in figures]}


def draw_figures(out: Path, method, tables: dict[str, pd.DataFrame]) -> list[Path]:
    """The method's figures of `tables` into OUT/plots/ (none, with a note, without matplotlib)."""
    try:
        from vlmface.report.probe_plots import write_figures

        return write_figures(out, method.figures(tables))
    except ImportError as exc:  # matplotlib is the optional `report` extra
        print(f"note: no plots ({exc.name} is not installed: pip install 'vlmface[report]')")
        return []
