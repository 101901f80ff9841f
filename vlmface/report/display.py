"""Leaderboard rows -> display cells (text + the raw value it was formatted from).

Markdown and HTML both use these cells, so the two always show the same numbers. Accuracy-like
values are shown in percent with one decimal, MAE in years with two; a CI as "[lo, hi]".
"""

from __future__ import annotations

import math
from typing import Any, Callable

import pandas as pd

Cell = tuple[str, Any]  # (text shown, value to sort by)


def _num(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def pct(value: Any) -> str:
    v = _num(value)
    return "" if v is None else f"{100 * v:.1f}"


def years(value: Any) -> str:
    v = _num(value)
    return "" if v is None else f"{v:.2f}"


def _with_ci(fmt: Callable[[Any], str], value: Any, lo: Any, hi: Any) -> str:
    text = fmt(value)
    if text and _num(lo) is not None and _num(hi) is not None:
        text += f" [{fmt(lo)}, {fmt(hi)}]"
    return text


def _numeric(row: pd.Series) -> bool:
    return row["kind"] == "numeric"


def _text(value: Any) -> Cell:
    return ("" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value),
            value if _num(value) is None else _num(value))


def score_cell(row: pd.Series) -> Cell:
    if _numeric(row):
        return "MAE " + _with_ci(years, row["mae"], row["mae_lo"], row["mae_hi"]), _num(row["mae"])
    return _with_ci(pct, row["accuracy"], row["accuracy_lo"], row["accuracy_hi"]), _num(row["accuracy"])


def worst_cell(row: pd.Series) -> Cell:
    if not isinstance(row["worst_group"], str):
        return "", None
    value = row["worst_group_mae"] if _numeric(row) else row["worst_group_accuracy"]
    fmt = years if _numeric(row) else pct
    return f"{row['worst_group']}: {fmt(value)}", _num(value)


def gap_cell(row: pd.Series) -> Cell:
    fmt = years if _numeric(row) else pct
    return _with_ci(fmt, row["gap"], row["gap_lo"], row["gap_hi"]), _num(row["gap"])


def published_cell(row: pd.Series) -> Cell:
    """The value and its citation; the published model name is in `ref_model` (and the HTML
    tooltip): it is, by construction, the model of the row."""
    value = _num(row.get("ref_value"))
    if value is None:
        return "", None
    fmt = years if row.get("ref_metric") == "mae" else pct
    return f"{fmt(value)} ({row['ref_citation']})", value


def delta_cell(row: pd.Series) -> Cell:
    value = _num(row.get("ref_delta"))
    if value is None:
        return "", None
    text = f"{value:+.2f}" if row.get("ref_metric") == "mae" else f"{100 * value:+.1f}"
    return text, value


def agrees_cell(row: pd.Series) -> Cell:
    inside = row.get("ref_in_ci")
    if inside is None or (isinstance(inside, float) and math.isnan(inside)):
        return "", None
    return ("yes" if inside else "no"), int(bool(inside))


def prompt_cell(row: pd.Series) -> Cell:
    mode = row["mode"] if isinstance(row["mode"], str) and row["mode"] else None
    text = f"{row['prompt']} / {mode}" if mode else str(row["prompt"])
    return text, text


def n_cell(row: pd.Series) -> Cell:
    """Faces scored; "n of N" when errors (failed images, backend errors) were left out."""
    n, total = _num(row["n"]), _num(row.get("n_total"))
    if n is None:
        return "", None
    text = f"{int(n)} of {int(total)}" if total is not None and total != n else str(int(n))
    return text, n


def task_cell(row: pd.Series) -> Cell:
    return _text(row["task_label"])


COLUMNS: list[tuple[str, Callable[[pd.Series], Cell]]] = [
    ("model", lambda r: _text(r["model"])),
    ("task", task_cell),
    ("attribute", lambda r: _text(r["attribute"])),
    ("prompt / mode", prompt_cell),
    ("n", n_cell),
    ("accuracy % [CI] / MAE", score_cell),
    # the published number right beside ours, so agreement is seen at once
    ("published", published_cell),
    ("ours - published", delta_cell),
    ("agrees (in CI)", agrees_cell),
    ("macro-F1 %", lambda r: (pct(r["macro_f1"]), _num(r["macro_f1"]))),
    ("group col", lambda r: _text(r["group_col"])),
    ("worst group", worst_cell),
    ("gap [CI]", gap_cell),
    ("invalid %", lambda r: (pct(r["invalid_rate"]), _num(r["invalid_rate"]))),
    ("refused %", lambda r: (pct(r["refusal_rate"]), _num(r["refusal_rate"]))),
    ("errors %", lambda r: (pct(r["error_rate"]), _num(r["error_rate"]))),
    ("caveat", lambda r: _text(r.get("ref_caveat"))),
    ("source", lambda r: _text(r["source"])),
]
HEADERS = [name for name, _ in COLUMNS]


def display_cells(board: pd.DataFrame) -> list[list[Cell]]:
    return [[cell(row) for _, cell in COLUMNS] for _, row in board.iterrows()]


def display_table(board: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([[text for text, _ in cells] for cells in display_cells(board)], columns=HEADERS)
