"""Published reference numbers (vlmface/reference_numbers.yaml) and where each may be placed.

Each number carries the full setting it was measured in: dataset, split, image variant (our
task sources holding those images), label scheme, n, sha256 of the exact prompt text, answer
mode, model id, how non-answers count (and the model snapshot, when the source names it). It is
placed beside a run only when every one of those fields equals the run's. A field the source does
not state ("unknown") means the number is never placed; a field the run did not record likewise.
`placements` gives every number x run with the reasons, for the report's references.csv.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from vlmface.errors import SpecError

REFERENCE_FILE = Path(__file__).resolve().parents[1] / "reference_numbers.yaml"
REFERENCES_CSV = "references.csv"
METRICS = {"accuracy": "percent", "mae": "years"}
UNKNOWN = "unknown"
NO_PROMPT = ("supervised", "human")  # modes without a prompt to compare
SETTING_KEYS = {"task", "split", "n", "metric", "unit", "images", "sources", "mode", "non_answers", "note"}
MODEL_KEYS = {"model", "weights", "snapshot", "aliases", "prompt", "prompt_sha256", "values", "group_values",
              "note"} | (SETTING_KEYS - {"task", "metric", "unit", "note"})
REF_COLUMNS = ["citation", "citation_text", "model", "aliases", "weights", "snapshot", "task", "split", "n",
               "metric", "unit", "images", "sources", "mode", "non_answers", "attribute", "n_labels",
               "group_col", "group", "value", "prompt", "prompt_sha256", "note", "match", "why"]
PLACEMENT_COLUMNS = ["ref_id", "citation", "ref_model", "task", "attribute", "group", "value", "unit",
                     "run_id", "run_model", "run_attribute", "placed", "reason_fields", "reasons", "caveats"]


def _fail(path: Path, where: str, problem: str) -> SpecError:
    return SpecError(f"{path}: {where}: {problem}. Fix the entry (see the header of the file)")


def _check_setting(path: Path, where: str, setting: Any) -> dict[str, Any]:
    if not isinstance(setting, dict) or not {"task", "metric", "unit"} <= set(setting):
        raise _fail(path, f"{where}.setting", "needs at least task, metric and unit")
    unknown = set(setting) - SETTING_KEYS
    if unknown:
        raise _fail(path, f"{where}.setting", f"unknown keys {sorted(unknown)}; use {sorted(SETTING_KEYS)}")
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


def _ids(value: Any) -> tuple[str, ...] | str:
    """A list field (weights, sources): a tuple of names, or "unknown" / "none" as written."""
    if value is None or value == UNKNOWN:
        return UNKNOWN
    if isinstance(value, str):
        return value
    return tuple(str(v) for v in value)


def _prompt_sha(path: Path, where: str, model: dict[str, Any], attribute: str) -> str:
    declared = model.get("prompt_sha256", UNKNOWN)
    sha = declared.get(attribute, UNKNOWN) if isinstance(declared, dict) else declared
    if sha != UNKNOWN and (not isinstance(sha, str) or len(sha) != 64):
        raise _fail(path, where, f"prompt_sha256 of {attribute}: {sha!r} is neither 64 hex digits nor 'unknown'")
    return sha


def _check_model(path: Path, where: str, model: Any) -> None:
    if not isinstance(model, dict) or "model" not in model or not isinstance(model.get("aliases"), list):
        raise _fail(path, where, "needs `model` (name as published) and `aliases` (a list)")
    unknown = set(model) - MODEL_KEYS
    if unknown:
        raise _fail(path, where, f"unknown keys {sorted(unknown)}; use {sorted(MODEL_KEYS)}")


def _table_rows(path: Path, index: int, table: dict[str, Any], citations: dict[str, str]):
    where = f"tables[{index}]"
    if table.get("citation") not in citations:
        raise _fail(path, f"{where}.citation", f"{table.get('citation')!r} is not under `citations`")
    setting = _check_setting(path, where, table.get("setting"))
    attributes = table.get("attributes") or {}
    group_col = (table.get("group") or {}).get("col")
    for m_index, model in enumerate(table.get("models") or []):
        m_where = f"{where}.models[{m_index}]"
        _check_model(path, m_where, model)
        merged = {**setting, **{k: v for k, v in model.items() if k in SETTING_KEYS - {"note"}}}
        for group, attribute, value in _model_values(path, m_where, model, group_col):
            if attribute not in attributes:
                raise _fail(path, m_where, f"attribute {attribute!r} is not declared under {where}.attributes")
            if not isinstance(value, (int, float)):
                raise _fail(path, m_where, f"{attribute}: {value!r} is not a number")
            n = merged.get("n", UNKNOWN)
            yield {"citation": table["citation"], "citation_text": citations[table["citation"]],
                   "model": model["model"], "aliases": tuple(model["aliases"]),
                   "weights": _ids(model.get("weights")), "snapshot": model.get("snapshot") or UNKNOWN,
                   "task": setting["task"], "split": merged.get("split") or UNKNOWN,
                   "n": None if n in (None, UNKNOWN) else int(n),
                   "metric": setting["metric"], "unit": setting["unit"],
                   "images": merged.get("images") or UNKNOWN, "sources": _ids(merged.get("sources")),
                   "mode": merged.get("mode") or UNKNOWN, "non_answers": merged.get("non_answers") or UNKNOWN,
                   "attribute": attribute, "n_labels": (attributes[attribute] or {}).get("n_labels"),
                   "group_col": group_col, "group": group, "value": float(value),
                   "prompt": model.get("prompt"), "prompt_sha256": _prompt_sha(path, m_where, model, attribute),
                   "note": "; ".join(n for n in (setting.get("note"), model.get("note")) if n),
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
    key = ["task", "attribute", "split", "n", "sources", "mode", "group_col", "group", "n_labels", "prompt_sha256"]
    listed = refs[refs["match"] & refs["weights"].map(lambda w: isinstance(w, tuple))]
    exploded = listed.explode("weights").dropna(subset=["weights"])
    clash = exploded[exploded.astype(str).duplicated(subset=key + ["weights"], keep=False)]
    if not clash.empty:
        raise _fail(path, "tables", "weights given two numbers in the same setting: "
                    + ", ".join(sorted(set(clash["weights"]))))
    return refs


def as_fraction(value: float, unit: str) -> float:
    """Published percent -> the scorer's 0..1 scale; years stay years."""
    return value / 100.0 if unit == "percent" else value


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and pd.isna(value))


def run_setting(row: pd.Series | dict[str, Any]) -> dict[str, Any]:
    """The fields of a leaderboard row that a published setting is compared with."""
    get = row.get
    metric = "mae" if get("kind") == "numeric" else "accuracy"
    answered_only = get("answered_only")  # the scorer's setting; MAE is always over answered items
    if metric == "mae":
        non_answers = "left out"
    else:
        non_answers = None if not _given(answered_only) else "left out" if bool(answered_only) else "counted wrong"
    n = get("n_total") if _given(get("n_total")) else get("n")
    return {"task": get("task"), "split": get("split"), "source": get("data_source"),
            "attribute": get("attribute"), "n_labels": get("n_labels"), "metric": metric,
            "n": int(n) if _given(n) else None, "prompt_sha256": get("prompt_text_sha256"),
            "mode": get("answer_mode"), "weights": get("weights"), "revision": get("revision"),
            "non_answers": non_answers, "perturbed": _given(get("perturbed")) and bool(get("perturbed"))}


def _compare(field: str, published: Any, ours: Any, detail: str = "") -> tuple[str, str] | None:
    """(field, reason) when a published field does not equal the run's; None when it does."""
    if not _given(published) or published == UNKNOWN:
        return field, f"{field}: not stated by the source" + (f" ({detail})" if detail else "")
    if not _given(ours):
        return field, f"{field}: not recorded by the run (published {_shown(published)})"
    if published != ours:
        return field, f"{field}: published {_shown(published)}, run {_shown(ours)}"
    return None


def _shown(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _images(ref: pd.Series, run: dict[str, Any]) -> tuple[str, str] | None:
    sources = ref["sources"]
    if sources == UNKNOWN:
        return "images", f"images: not stated by the source ({ref['images']})"
    if sources == "none" or not sources:
        return "images", f"images: no task source holds the published images ({ref['images']})"
    if run["source"] not in sources:
        return "images", f"images: published {ref['images']} (source {', '.join(sources)}), run source {run['source']}"
    return None


def _model(ref: pd.Series, run: dict[str, Any]) -> tuple[str, str] | None:
    weights = ref["weights"]
    if weights == UNKNOWN:
        return "model", f"model: not stated by the source ({ref['model']})"
    if not weights:
        return "model", f"model: {ref['model']} is not available as a run"
    if run["weights"] not in weights:
        return "model", f"model: published {', '.join(weights)}, run {run['weights']}"
    if ref["snapshot"] != UNKNOWN and ref["snapshot"] != run["revision"]:
        return "model", f"model: published snapshot {ref['snapshot']}, run {run['revision'] or 'not recorded'}"
    return None


def _label_scheme(ref: pd.Series, run: dict[str, Any]) -> tuple[str, str] | None:
    if ref["attribute"] != run["attribute"]:
        return "label scheme", f"label scheme: published {ref['attribute']}, run {run['attribute']}"
    if ref["metric"] != run["metric"]:
        return "label scheme", f"label scheme: published {ref['metric']}, run {run['metric']}"
    if pd.notna(ref["n_labels"]) and run["n_labels"] != ref["n_labels"]:
        return "label scheme", (f"label scheme: published {int(ref['n_labels'])} labels, "
                                f"run {run['n_labels']}")
    return None


def placement_reasons(ref: pd.Series, row: pd.Series | dict[str, Any]) -> list[tuple[str, str]]:
    """(field, reason) for every setting field in which `row` differs from the published number;
    empty when it may be placed beside the row."""
    run = run_setting(row)
    checks = [
        ("listed", f"never placed: {ref['why']}") if not ref["match"] else None,
        ("group", f"group: published for {ref['group_col']} = {ref['group']} only")
        if isinstance(ref["group"], str) else None,
        ("perturbed", "perturbed: published numbers are for the images as distributed") if run["perturbed"] else None,
        None if ref["task"] == run["task"] else ("dataset", f"dataset: published {ref['task']}, run {run['task']}"),
        _compare("split", ref["split"], run["split"]),
        _images(ref, run),
        _label_scheme(ref, run),
        _compare("n", ref["n"], run["n"]),
        _model(ref, run),
        None if ref["mode"] in NO_PROMPT else _compare("prompt text", ref["prompt_sha256"], run["prompt_sha256"]),
        _compare("mode", ref["mode"], run["mode"]),
        _compare("non-answers", ref["non_answers"], run["non_answers"]),
    ]
    return [check for check in checks if check is not None]


def caveats(ref: pd.Series, row: pd.Series | dict[str, Any]) -> list[str]:
    """What a placed number's reader should still know."""
    notes = []
    if ref["snapshot"] == UNKNOWN and isinstance(ref["weights"], tuple) and ref["weights"]:
        notes.append("the source does not name the model snapshot; the model served today under this "
                     "name may differ")
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


def _candidates(refs: pd.DataFrame, row: pd.Series) -> pd.DataFrame:
    near = refs[(refs["task"] == row.get("task")) & (refs["attribute"] == row.get("attribute"))]
    return near[[not placement_reasons(ref, row) for _, ref in near.iterrows()]]


def match_references(board: pd.DataFrame, refs: pd.DataFrame) -> pd.DataFrame:
    """`board` with the REF_CELLS columns filled where a published number's setting equals the run's.

    `ref_in_ci`: whether the published value lies inside our CI (None when we have no CI).
    """
    cells = []
    for _, row in board.iterrows():
        hit = _candidates(refs, row)
        cells.append(_reference_cells(hit.iloc[0], row) if len(hit) else dict.fromkeys(REF_CELLS))
    matched = pd.DataFrame(cells, columns=REF_CELLS, index=board.index)
    return pd.concat([board.drop(columns=[c for c in REF_CELLS if c in board]), matched], axis=1)


def _row_for(ref: pd.Series, rows: pd.DataFrame) -> pd.Series:
    """The run's row to compare a number with: the same attribute if the run has it, else its first."""
    same = rows[rows["attribute"] == ref["attribute"]]
    return (same if len(same) else rows).iloc[0]


def placements(board: pd.DataFrame, refs: pd.DataFrame) -> pd.DataFrame:
    """Every published number x every run (PLACEMENT_COLUMNS): placed or not, and why not."""
    out = []
    runs = [rows for _, rows in board.groupby("run_id", sort=True)] if len(board) else []
    for _, ref in refs.iterrows():
        base = {"ref_id": ref["ref_id"], "citation": ref["citation"], "ref_model": ref["model"],
                "task": ref["task"], "attribute": ref["attribute"], "group": ref["group"], "value": ref["value"],
                "unit": ref["unit"]}
        if not runs:
            out.append({**base, "placed": False, "reason_fields": "no run", "reasons": "no scored run"})
        for rows in runs:
            row = _row_for(ref, rows)
            reasons = placement_reasons(ref, row)
            out.append({**base, "run_id": row["run_id"], "run_model": row.get("model"),
                        "run_attribute": row["attribute"], "placed": not reasons,
                        "reason_fields": "; ".join(f for f, _ in reasons), "reasons": "; ".join(r for _, r in reasons),
                        "caveats": "" if reasons else "; ".join(caveats(ref, row))})
    return pd.DataFrame(out, columns=PLACEMENT_COLUMNS)


def write_placements(board: pd.DataFrame, refs: pd.DataFrame, out_dir: Path) -> tuple[Path, pd.DataFrame]:
    """references.csv beside report.html: every published number x run, placed or not and why."""
    table = placements(board, refs)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REFERENCES_CSV
    table.to_csv(path, index=False)
    return path, table
