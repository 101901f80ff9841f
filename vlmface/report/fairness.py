"""The report's fairness section: per run and attribute, read from metrics.json (never rescored).

Tables: accuracy and non-answers by group (the error policy's two accuracies side by side),
the across-group tests with Holm/BH-adjusted p-values and the parity / equal-opportunity /
equalized-odds gaps, per-class selection rate / TPR / FPR by group ("n < 10" where left out),
signed age error by group, "predicted as" shares (e.g. misgendering by race) and intersection
cells raw vs empirical-Bayes shrunk. Figures (`fairness_plan`): reliability curves by group,
signed error by group, TPR/FPR by group, and every sweep's robustness curves.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from vlmface.report import fairness_plots
from vlmface.report.collect import Collection
from vlmface.report.gallery import Plot, plot_stem, single_group_columns
from vlmface.scoring.metrics import REGISTRY

ROBUSTNESS_LEVELS = Path("robustness") / "levels.csv"


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 0.001 and value != 0 else f"{value:.3f}"
    return str(value)


def _table(frame: pd.DataFrame, caption: str) -> str:
    if frame.empty:
        return ""
    head = "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return (f'<p class="muted">{escape(caption)}</p><div class="scroll"><table class="sortable">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def _ci(pair: Any) -> str:
    return "" if not pair or pair[0] is None else f"[{pair[0]:.3f}, {pair[1]:.3f}]"


def _by_group(attr: dict[str, Any], col: str) -> pd.DataFrame:
    key = "mae" if attr["kind"] == "numeric" else "accuracy"
    rows = []
    for group, row in (attr["by_group"].get(col) or {}).items():
        rows.append({"group": group, "n": row.get("n"), key: row.get(key), "CI": _ci(row.get(key + "_ci")),
                     "answered accuracy": row.get("answered_accuracy"),
                     "answer errors": row.get("answer_error_rate"), "invalid": row.get("invalid_rate"),
                     "refused": row.get("refusal_rate"), "small": row.get("small")})
    return pd.DataFrame(rows)


def _tests(attr: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for col, d in attr["disparity"].items():
        test = d.get("test") or {}
        rows.append({"group column": col, d.get("metric", "score") + " gap": d.get("gap"),
                     "gap CI": _ci(d.get("gap_ci")), "test": test.get("method"), "p": test.get("p_value"),
                     "p Holm": test.get("p_holm"), "p BH": test.get("p_bh"),
                     "DP gap": d.get("dp_gap"), "DP label": d.get("dp_gap_label"),
                     "TPR gap": d.get("tpr_gap"), "TPR label": d.get("tpr_gap_label"),
                     "EOdds gap": d.get("eodds_gap"), "EOdds label": d.get("eodds_gap_label")})
    frame = pd.DataFrame(rows)
    return frame.dropna(axis=1, how="all") if not frame.empty else frame


def _signed(attr: dict[str, Any], col: str) -> pd.DataFrame:
    return pd.DataFrame([{"group": g, "n answered": r.get("n_answered"), "mean error (years)": r.get("mean_error"),
                          "CI": _ci(r.get("mean_error_ci")), "direction": r.get("direction"), "MAE": r.get("mae")}
                         for g, r in (attr["by_group"].get(col) or {}).items() if "mean_error" in r])


def _shrunk(attr: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for col, groups in attr["by_group"].items():
        for group, row in groups.items():
            key = "accuracy_shrunk" if "accuracy_shrunk" in row else "cs5_shrunk" if "cs5_shrunk" in row else None
            if key:
                raw = row.get("accuracy", row.get("cs5"))
                rows.append({"cells": col, "group": group, "n": row["n"], "raw": raw, "shrunk": row[key]})
    return pd.DataFrame(rows)


def _family_tables(attr: dict[str, Any], name: str, col: str) -> str:
    parts = []
    for family in REGISTRY.values():
        for stem, frame in family.tables(name, attr).items():
            if stem.endswith(f"_by_{col}"):
                parts.append(_table(frame, stem.split("__", 1)[1].replace("_", " ")))
    return "".join(parts)


def attribute_html(name: str, attr: dict[str, Any], columns: list[str]) -> str:
    col = next((c for c in columns if c in attr["by_group"]), None)
    parts = [_table(_tests(attr), "differences across groups: chi-square (or permutation) test of the headline "
                                  "score, p-values adjusted over every test of the run; per-class gaps")]
    if col:
        parts.append(_table(_by_group(attr, col), f"by {col}: accuracy counts answer errors, invalid and refused "
                                                   "as wrong; answered accuracy leaves them out"))
        parts.append(_table(_signed(attr, col), f"signed error by {col} (prediction - truth)"))
        parts.append(_family_tables(attr, name, col))
    parts.append(_table(_shrunk(attr), "intersection cells: raw and empirical-Bayes shrunk score"))
    return "".join(p for p in parts if p)


def fairness_html(collection: Collection) -> str:
    parts = []
    for run_id, metrics in collection.metrics.items():
        columns = single_group_columns(collection, [run_id])
        for name, attr in metrics.attributes.items():
            body = attribute_html(name, attr.as_json(), columns)
            if body:
                parts.append(f'<details class="fairness" data-run="{escape(run_id)}" data-attribute="{escape(name)}">'
                             f"<summary>{escape(run_id)} · {escape(name)}</summary>{body}</details>")
    return "\n".join(parts) or '<p class="muted">no scored runs</p>'


def _run_plots(collection: Collection, run_id: str) -> Iterator[Plot]:
    columns = single_group_columns(collection, [run_id])
    for name, attr in ((n, a.as_json()) for n, a in collection.metrics[run_id].attributes.items()):
        col = next((c for c in columns if c in attr["by_group"]), None)
        if col is None:
            continue
        where, groups = f"fairness · {run_id}", attr["by_group"][col]
        if attr["overall"].get("reliability"):
            yield Plot(where, plot_stem("reliability", run_id, name, col), f"{name}: reliability curves by {col}",
                       lambda g=groups, o=attr["overall"], t=f"{name}: calibration by {col}":
                       fairness_plots.plot_reliability(g, o, t))
        if any(r.get("mean_error") is not None for r in groups.values()):
            yield Plot(where, plot_stem("signed_error", run_id, name, col), f"{name}: signed error by {col}",
                       lambda g=groups, t=f"{name}: who is aged up / down, by {col}":
                       fairness_plots.plot_signed_error(g, t))
        if any(any(v is not None for v in (r.get("tpr") or {}).values()) for r in groups.values()):
            yield Plot(where, plot_stem("class_rates", run_id, name, col), f"{name}: TPR and FPR per class by {col}",
                       lambda g=groups, labels=attr["labels"], t=f"{name}: per-class rates by {col}":
                       fairness_plots.plot_class_rates(g, labels, t))


def _robustness_plots(collection: Collection) -> Iterator[Plot]:
    for path in sorted(collection.results_dir.rglob(str(ROBUSTNESS_LEVELS))):
        levels = pd.read_csv(path)
        overall = levels[levels["group_column"] == "all"]
        name = path.parent.parent.relative_to(collection.results_dir).as_posix()
        for (attribute, perturbation), rows in overall.groupby(["attribute", "perturbation"], sort=False):
            yield Plot(f"robustness · {name}", plot_stem("robustness", name, attribute, perturbation),
                       f"{attribute} under {perturbation}: accuracy, answered accuracy, answer errors",
                       lambda r=rows, t=f"{attribute} under {perturbation}": fairness_plots.plot_robustness(r, t))


def fairness_plan(collection: Collection) -> list[Plot]:
    plots = [p for run_id in collection.metrics for p in _run_plots(collection, run_id)]
    return plots + list(_robustness_plots(collection))
