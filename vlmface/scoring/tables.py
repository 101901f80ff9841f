"""The tidy tables of a scored run (metrics.json itself: vlmface.run_record.write_metrics).

tables/<attr>__overall      one row: n, scores with CI bounds, rates
tables/<attr>__per_class    categorical/ordinal: precision, recall, f1, support per label
tables/<attr>__confusion    categorical/ordinal: truth rows x predicted columns, plus the
                            non-answer columns <invalid> and <refused>
tables/<attr>__by_<col>     one row per group value of a group column or pair ("race5xgender")
tables/<attr>__disparity    one row per group column or pair: gap [CI], ratio, worst/best,
                            dp/tpr/eodds gaps [CI], the test with Holm/BH p-values...
plus each metric family's tables (vlmface.scoring.metrics): __rates_by_<col> (selection
rate, TPR, FPR per group x label, "n < 10" where left out), __predicted_as_by_<col>.
each as .csv and .md. Names are sanitised to letters, digits, '_', '.', '-'.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from vlmface.run_record import strict_json_text, write_atomic
from vlmface.scoring.metrics import REGISTRY, safe_name

TABLES_DIR = "tables"


def json_ready(value: Any) -> Any:
    """numpy -> Python, NaN/inf -> None, tuples -> lists; dict order is kept."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Strict JSON, atomically (a reader never sees half a file)."""
    write_atomic(path, strict_json_text(json_ready(content)))




def _flatten(row: dict[str, Any]) -> dict[str, Any]:
    """[lo, hi] pairs become two columns; nested dicts are dropped (they get own tables)."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, list) and len(value) == 2 and key.endswith("_ci"):
            flat[key + "_lo"], flat[key + "_hi"] = value
        elif isinstance(value, list):
            flat[key] = ", ".join(map(str, value))
        elif not isinstance(value, dict):
            flat[key] = value
    return flat


def attribute_tables(attr: str, metrics: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Every table of one attribute, keyed by file stem."""
    stem = safe_name(attr)
    overall = metrics["overall"]
    tables = {f"{stem}__overall": pd.DataFrame([_flatten(overall)])}
    if "per_class" in overall:
        tables[f"{stem}__per_class"] = pd.DataFrame.from_dict(
            overall["per_class"], orient="index").rename_axis("label").reset_index()
        tables[f"{stem}__confusion"] = pd.DataFrame.from_dict(
            overall["confusion"], orient="index").rename_axis("truth").reset_index()
    for col, groups in metrics["by_group"].items():
        rows = [{"group": value, **_flatten(row)} for value, row in groups.items()]
        tables[f"{stem}__by_{safe_name(col)}"] = pd.DataFrame(rows)
    rows = [{"group_column": col, **_flatten(row), **_flatten_test(row)}
            for col, row in metrics["disparity"].items()]
    if rows:
        tables[f"{stem}__disparity"] = pd.DataFrame(rows)
    for family in REGISTRY.values():  # each metric family's own tables
        tables.update(family.tables(stem, metrics))
    return tables


def _flatten_test(row: dict[str, Any]) -> dict[str, Any]:
    test = row.get("test") or {}
    return {f"test_{key}": value for key, value in test.items()}


def _markdown(title: str, frame: pd.DataFrame) -> str:
    """What `frame.to_markdown(index=False, floatfmt=".4f")` writes, with missing values blank
    (tabulate blanks None, not NaN); tabulate is called on plain rows, which is a third faster than
    going through pandas (a run writes dozens of tables)."""
    values = frame.to_numpy(dtype=object, copy=True)
    values[pd.isna(values)] = None
    body = tabulate(values.tolist(), headers=[str(c) for c in frame.columns], tablefmt="pipe", floatfmt=".4f",
                    missingval="", showindex=False)
    return f"# {title}\n\n{body}\n"


def write_tables(run_dir: Path, metrics: dict[str, Any]) -> list[Path]:
    """Replace the scorer's tables in RUN_DIR/tables; other files there are left alone."""
    folder = run_dir / TABLES_DIR
    folder.mkdir(exist_ok=True)
    for old in [*folder.glob("*__*.csv"), *folder.glob("*__*.md")]:
        old.unlink()
    written = []
    for attr, attr_metrics in metrics["attributes"].items():
        written += write_table_files(folder, attribute_tables(attr, json_ready(attr_metrics)),
                                     title=lambda stem: stem.replace("__", ": "))
    return written


def write_table_files(folder: Path, tables: dict[str, pd.DataFrame], title=lambda stem: stem) -> list[Path]:
    """STEM.csv and STEM.md for every table, each written atomically; returns the paths."""
    written = []
    for stem, frame in tables.items():
        write_atomic(folder / f"{stem}.csv", frame.to_csv(index=False))
        write_atomic(folder / f"{stem}.md", _markdown(title(stem), frame))
        written += [folder / f"{stem}.csv", folder / f"{stem}.md"]
    return written
