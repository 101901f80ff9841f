"""The leaderboard: one row per run x attribute (model x task x attribute x prompt/mode).

Every number is copied from one metrics.json (its path is the `source` column), never
recomputed: overall scores from `overall`, the gap and worst group from `disparity[group_col]`,
the worst group's score from `by_group[group_col][worst_group]`. Accuracy-like values stay on the
scorer's 0..1 scale in the CSV; Markdown and HTML show percent (see `display`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vlmface.report.collect import Collection
from vlmface.report.display import display_table
from vlmface.report.reference import REF_CELLS, match_references

COLUMNS = [
    "task", "task_label", "data_source", "attribute", "kind", "model", "backend", "prompt", "prompt_sha256",
    "mode", "n", "n_total", "limit", "accuracy", "accuracy_lo", "accuracy_hi", "balanced_accuracy",
    "macro_f1", "mae", "mae_lo", "mae_hi", "group_col", "worst_group", "worst_group_n", "worst_group_accuracy",
    "worst_group_mae", "best_group", "gap", "gap_lo", "gap_hi", "invalid_rate", "refusal_rate",
    "error_rate", *REF_CELLS, "status", "stale", "n_labels", "run_id", "source",
]
DISPARITY_COLUMNS = ["gap", "gap_lo", "gap_hi", "worst_group", "best_group"]
KEY = ["run_id", "attribute", "group_col"]
LEGEND = ("n: faces scored (\"n of N\" when errors were left out). Accuracy, macro-F1, worst-group "
          "accuracy, gap, invalid, refusal and error rates in percent "
          "(gap in percentage points; MAE and its gap in years); bootstrap CIs in brackets, at the "
          "level the runs were scored with (95% by default). "
          "`published`: the number of the paper whose setting matches (task, label scheme, model); "
          "`agrees`: whether it lies inside our CI. `source`: the metrics.json each row is copied "
          "from, relative to the results folder.")


def primary_group_columns(collection: Collection) -> dict[str, str | None]:
    """run_id -> the first group column the scorer used (the task's first group column)."""
    primary = {}
    for run_id, metrics in collection.metrics.items():
        columns = metrics.scoring.group_columns
        primary[run_id] = columns[0] if columns else None
    return primary


def _with_group_col(overall: pd.DataFrame, collection: Collection, group_col: str | None) -> pd.DataFrame:
    board = overall.copy()
    if group_col is not None:
        board["group_col"] = group_col
    else:
        board["group_col"] = board["run_id"].map(primary_group_columns(collection))
    return board


def _with_disparity(board: pd.DataFrame, disparity: pd.DataFrame) -> pd.DataFrame:
    if disparity.empty:
        return board.assign(**dict.fromkeys(DISPARITY_COLUMNS))
    return board.merge(disparity[KEY + DISPARITY_COLUMNS], on=KEY, how="left")


def _worst_group_scores(board: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    if groups.empty:
        return board.assign(worst_group_n=None, worst_group_accuracy=None, worst_group_mae=None)
    worst = groups.rename(columns={"group": "worst_group", "n": "worst_group_n",
                                   "accuracy": "worst_group_accuracy", "mae": "worst_group_mae"})
    worst = worst[[*KEY, "worst_group", "worst_group_n", "worst_group_accuracy", "worst_group_mae"]]
    return board.merge(worst, on=[*KEY, "worst_group"], how="left")


def _sorted(board: pd.DataFrame) -> pd.DataFrame:
    """Per task and attribute, best first (accuracy high, MAE low)."""
    key = board["accuracy"].fillna(-board["mae"].astype(float))
    order = board.assign(_key=key).sort_values(["task", "data_source", "attribute", "_key", "model"],
                                               ascending=[True, True, True, False, True],
                                               na_position="last", kind="stable")
    return order.drop(columns="_key").reset_index(drop=True)


def leaderboard(collection: Collection, refs: pd.DataFrame | None = None,
                group_col: str | None = None) -> pd.DataFrame:
    """The tidy leaderboard (COLUMNS). `group_col`: the group column of the worst-group and gap
    columns; default each run's first group column (e.g. race for UTKFace and FairFace)."""
    if collection.overall.empty:
        return pd.DataFrame(columns=COLUMNS)
    board = _with_group_col(collection.overall, collection, group_col)
    board = _worst_group_scores(_with_disparity(board, collection.disparity), collection.groups)
    if refs is not None:
        board = match_references(board, refs)
    return _sorted(board.reindex(columns=COLUMNS))


def write_leaderboard(board: pd.DataFrame, out_dir: Path) -> tuple[Path, Path]:
    """leaderboard.csv (every column, full precision) and leaderboard.md (display strings)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "leaderboard.csv", out_dir / "leaderboard.md"
    board.to_csv(csv_path, index=False)
    shown = display_table(board)
    text = "_no scored runs found_" if shown.empty else shown.to_markdown(index=False, disable_numparse=True)
    md_path.write_text("# vlmface leaderboard\n\n" + LEGEND + "\n\n" + text + "\n", encoding="utf-8")
    return csv_path, md_path

