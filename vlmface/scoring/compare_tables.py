"""`compare_many`'s result as Markdown tables: one summary row per run, then per attribute
the pairwise table and the flip rates by group. Runs are named R1, R2... in the summary."""

from __future__ import annotations

from typing import Any


def _num(value: Any, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows)]


def summary_table(result: dict[str, Any]) -> list[str]:
    attributes = sorted({name for run in result["runs"] for name in run["score"]})
    metrics = {name: metric for run in result["runs"] for name, metric in run.get("metric", {}).items()}
    named = [f"{name} ({metrics[name]})" if metrics.get(name, "accuracy") != "accuracy" else name for name in attributes]
    header = ["run", "model", "backend", "mode", "dtype", "choice_score", *named, "s/sample", "cost USD", "path"]
    rows = [[f"R{i}", str(run["model"] or ""), str(run["backend"] or ""), str(run["mode"] or ""),
             str(run["dtype"] or ""), str(run["choice_score"] or ""),
             *(_num(run["score"].get(name)) for name in attributes),
             _num(run["seconds_per_sample"], 4), _num(run["cost_usd"], 4), run["run"]]
            for i, run in enumerate(result["runs"], start=1)]
    return _table(header, rows)


def _names(result: dict[str, Any]) -> dict[str, str]:
    return {run["run"]: f"R{i}" for i, run in enumerate(result["runs"], start=1)}


def pair_table(result: dict[str, Any], attribute: str) -> list[str]:
    names, rows = _names(result), []
    for pair in result["pairs"]:
        r = pair["attributes"].get(attribute)
        if r is None:
            continue
        ci = r["difference_ci"]
        ci_text = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci and ci[0] is not None else ""
        probs = r.get("prob_diff") or {}
        rows.append([f"{names[pair['run_a']]} vs {names[pair['run_b']]}", str(r["n_paired"]),
                     _num(r["agreement"]), _num(r["accuracy_a"]), _num(r["accuracy_b"]),
                     f"{r['difference']:+.3f}{ci_text}" if r["difference"] is not None else "",
                     f"{r['mcnemar_p']:.3g}", _num(probs.get("max"), 4), _num(probs.get("mean"), 4)])
    metric = next((p["attributes"][attribute]["metric"] for p in result["pairs"] if attribute in p["attributes"]),
                  "accuracy")
    return _table(["pair", "n", "agreement", f"{metric} A", f"{metric} B", "B - A [CI]", "McNemar p",
                   "max |dp|", "mean |dp|"], rows)


def flip_table(result: dict[str, Any], attribute: str, column: str) -> list[str]:
    names, rows, values = _names(result), [], []
    for pair in result["pairs"]:
        groups = (pair["attributes"].get(attribute) or {}).get("flips_by_group", {}).get(column, {})
        values += [v for v in groups if v not in values]
    for pair in result["pairs"]:
        groups = (pair["attributes"].get(attribute) or {}).get("flips_by_group", {}).get(column)
        if groups is None:
            continue
        rows.append([f"{names[pair['run_a']]} vs {names[pair['run_b']]}",
                     *(f"{_num(groups[v]['flip_rate'])} (n={groups[v]['n']})" if v in groups else "" for v in values)])
    return _table(["pair", *values], rows) if rows else []


def format_many(result: dict[str, Any]) -> str:
    lines = ["## Runs", "", *summary_table(result)]
    attributes = [name for name in {n: None for p in result["pairs"] for n in p["attributes"]}]
    for attribute in attributes:
        lines += ["", f"## {attribute}: pairwise", "", *pair_table(result, attribute)]
        columns = {c: None for p in result["pairs"]
                   for c in (p["attributes"].get(attribute) or {}).get("flips_by_group", {})}
        for column in columns:
            lines += ["", f"### {attribute}: flip rate by {column}", "", *flip_table(result, attribute, column)]
    skipped = {name: why for p in result["pairs"] for name, why in p["skipped"].items()}
    lines += [f"\n{name}: skipped ({why})" for name, why in skipped.items()]
    return "\n".join(lines)
