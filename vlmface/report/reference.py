"""Published reference numbers (vlmface/reference_numbers.yaml) and matching them to our rows.

A reference is shown beside a leaderboard row only when its setting matches: same task, same
attribute (the label scheme, guarded by the number of labels), the run's model alias listed in
the reference's `aliases`, and the same task source (crop) when the reference names one.
Differences that do not change the label scheme (n, split, prompt) are kept as a caveat.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from vlmface.errors import SpecError

REFERENCE_FILE = Path(__file__).resolve().parents[1] / "reference_numbers.yaml"
METRICS = {"accuracy": "percent", "mae": "years"}
REF_COLUMNS = ["citation", "citation_text", "model", "aliases", "task", "split", "n", "metric",
               "unit", "source", "attribute", "n_labels", "group_col", "group", "value", "prompt",
               "note", "match", "why"]
SETTING_KEYS = {"task", "split", "n", "metric", "unit", "source", "note"}


def _fail(path: Path, where: str, problem: str) -> SpecError:
    return SpecError(f"{path}: {where}: {problem}. Fix the entry (see the header of the file)")


def _check_setting(path: Path, where: str, setting: Any) -> dict[str, Any]:
    if not isinstance(setting, dict) or not {"task", "metric", "unit"} <= set(setting):
        raise _fail(path, f"{where}.setting", "needs at least task, metric and unit")
    unknown = set(setting) - SETTING_KEYS
    if unknown:
        raise _fail(path, f"{where}.setting", f"unknown keys {sorted(unknown)}")
    if METRICS.get(setting["metric"]) != setting["unit"]:
        raise _fail(path, f"{where}.setting", f"metric/unit must be one of {METRICS}, got "
                    f"{setting['metric']}/{setting['unit']}")
    return setting


def _model_values(path: Path, where: str, model: dict[str, Any], group_col: str | None):
    """(group, attribute, value) triples of one model row."""
    if group_col is None:
        values = model.get("values")
        if not isinstance(values, dict):
            raise _fail(path, where, "needs `values: {ATTR: number}`")
        return [(None, attr, value) for attr, value in values.items()]
    grouped = model.get("group_values")
    if not isinstance(grouped, dict):
        raise _fail(path, where, "a table with `group` needs `group_values: {GROUP: {ATTR: number}}`")
    return [(group, attr, value) for group, values in grouped.items() for attr, value in values.items()]


def _table_rows(path: Path, index: int, table: dict[str, Any], citations: dict[str, str]):
    where = f"tables[{index}]"
    if table.get("citation") not in citations:
        raise _fail(path, f"{where}.citation", f"{table.get('citation')!r} is not under `citations`")
    setting = _check_setting(path, where, table.get("setting"))
    attributes = table.get("attributes") or {}
    group_col = (table.get("group") or {}).get("col")
    for m_index, model in enumerate(table.get("models") or []):
        m_where = f"{where}.models[{m_index}]"
        if not isinstance(model.get("aliases"), list) or "model" not in model:
            raise _fail(path, m_where, "needs `model` (name as published) and `aliases` (a list)")
        for group, attribute, value in _model_values(path, m_where, model, group_col):
            if attribute not in attributes:
                raise _fail(path, m_where, f"attribute {attribute!r} is not declared under {where}.attributes")
            if not isinstance(value, (int, float)):
                raise _fail(path, m_where, f"{attribute}: {value!r} is not a number")
            notes = [n for n in (setting.get("note"), model.get("note")) if n]
            yield {"citation": table["citation"], "citation_text": citations[table["citation"]],
                   "model": model["model"], "aliases": tuple(model["aliases"]),
                   "task": setting["task"], "split": setting.get("split"), "n": setting.get("n"),
                   "metric": setting["metric"], "unit": setting["unit"], "source": setting.get("source"),
                   "attribute": attribute, "n_labels": (attributes[attribute] or {}).get("n_labels"),
                   "group_col": group_col, "group": group, "value": float(value),
                   "prompt": model.get("prompt"), "note": "; ".join(notes),
                   "match": bool(table.get("match", True)), "why": table.get("why")}


def load_references(path: Path | None = None) -> pd.DataFrame:
    """One row per published number (REF_COLUMNS); `value` as published (percent or years)."""
    path = Path(path) if path is not None else REFERENCE_FILE
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    citations = data.get("citations") or {}
    rows = [row for i, table in enumerate(data.get("tables") or [])
            for row in _table_rows(path, i, table, citations)]
    refs = pd.DataFrame(rows, columns=REF_COLUMNS)
    refs.insert(0, "ref_id", [f"ref{i + 1}" for i in range(len(refs))])
    key = ["task", "attribute", "source", "group_col", "group", "n_labels"]
    exploded = refs[refs["match"]].explode("aliases").dropna(subset=["aliases"])
    clash = exploded[exploded.duplicated(subset=key + ["aliases"], keep=False)]
    if not clash.empty:
        raise _fail(path, "tables", "alias(es) matched by two numbers of the same setting: "
                    + ", ".join(sorted(set(clash["aliases"]))))
    return refs


def as_fraction(value: float, unit: str) -> float:
    """Published percent -> the scorer's 0..1 scale; years stay years."""
    return value / 100.0 if unit == "percent" else value


def _candidates(refs: pd.DataFrame, row: pd.Series) -> pd.DataFrame:
    if row.get("perturbed") is True:  # published numbers are for the images as distributed
        return refs.iloc[0:0]
    metric = "mae" if row["kind"] == "numeric" else "accuracy"
    hit = refs[refs["match"] & refs["group"].isna() & (refs["task"] == row["task"])
               & (refs["attribute"] == row["attribute"]) & (refs["metric"] == metric)
               & refs["aliases"].map(lambda aliases: row["model"] in aliases)]
    hit = hit[hit["source"].isna() | (hit["source"] == row["data_source"])]
    n_labels = row.get("n_labels")
    return hit[hit["n_labels"].isna() | (hit["n_labels"] == n_labels)]


def caveats(ref: pd.Series, row: pd.Series) -> list[str]:
    """What differs between our run and the published setting, short enough for a table cell."""
    notes = []
    if pd.notna(row.get("limit")):
        notes.append(f"subsample (--limit {int(row['limit'])})")
    if pd.notna(ref["n"]) and int(ref["n"]) != int(row["n"]):
        notes.append(f"n {int(row['n']):,} vs published {int(ref['n']):,}")
    if ref["prompt"] and ref["prompt"] != row.get("prompt"):
        notes.append(f"prompt differs (published: {ref['prompt']})")
    if ref["note"]:
        notes.append(ref["note"])
    return notes


def _reference_cells(ref: pd.Series, row: pd.Series) -> dict[str, Any]:
    value = as_fraction(ref["value"], ref["unit"])
    metric = ref["metric"]
    lo, hi = row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    inside = bool(lo <= value <= hi) if pd.notna(lo) and pd.notna(hi) else None
    return {"ref_id": ref["ref_id"], "ref_value": value, "ref_metric": metric, "ref_model": ref["model"],
            "ref_citation": ref["citation"], "ref_split": ref["split"], "ref_n": ref["n"],
            "ref_delta": row.get(metric) - value if pd.notna(row.get(metric)) else None,
            "ref_in_ci": inside, "ref_caveat": "; ".join(caveats(ref, row))}


REF_CELLS = ["ref_id", "ref_value", "ref_metric", "ref_model", "ref_citation", "ref_split", "ref_n",
             "ref_delta", "ref_in_ci", "ref_caveat"]


def match_references(board: pd.DataFrame, refs: pd.DataFrame) -> pd.DataFrame:
    """`board` with the REF_CELLS columns filled where a published number's setting matches.

    `ref_in_ci`: whether the published value lies inside our CI (None when we have no CI).
    """
    cells = []
    for _, row in board.iterrows():
        hit = _candidates(refs, row)
        cells.append(_reference_cells(hit.iloc[0], row) if len(hit) else dict.fromkeys(REF_CELLS))
    matched = pd.DataFrame(cells, columns=REF_CELLS, index=board.index)
    return pd.concat([board.drop(columns=[c for c in REF_CELLS if c in board]), matched], axis=1)
