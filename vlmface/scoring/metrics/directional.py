"""Directional errors by group: which class is taken for which (e.g. misgendering rate by race).

    predicted_as       per group (plain group columns): truth -> {answer: share of that truth's
                       scored items}, answers being the labels and "<no answer>" (invalid, refused
                       or an answer error); a truth row is null below `min_cell_n` items
    confusion          the same as counts
    misclassified_rate share of the group's scored items answered with a wrong label (a
                       non-answer is not a misclassification); null below `min_cell_n`
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from vlmface.scoring.metrics.base import (KINDS_WITH_LABELS, GroupContext, MetricFamily, min_cell_of, register,
                                          safe_name)
from vlmface.scoring.metrics.rates import confusion_by_group

NO_ANSWER = "<no answer>"


@register
class Directional(MetricFamily):
    name = "directional"
    kinds = KINDS_WITH_LABELS
    needs = frozenset({"labels"})

    def by_group(self, ctx: GroupContext) -> dict[str, dict[str, Any]]:
        matrix = ctx.shared["rates"]["matrix"] if "rates" in ctx.shared else confusion_by_group(ctx)
        labels, min_n = ctx.data.labels, ctx.settings.min_cell_n
        columns = [*labels, NO_ANSWER]
        k = len(labels)
        rows = {}
        for g, value in enumerate(ctx.values):
            cells = matrix[g]
            n = int(cells.sum())
            wrong = int(cells[:, :k].sum() - np.trace(cells[:, :k]))
            row: dict[str, Any] = {"misclassified_rate": wrong / n if n >= min_n else None}
            if ctx.is_single_column:
                truths = cells.sum(axis=1)
                row["predicted_as"] = {
                    truth: (dict(zip(columns, (cells[t] / truths[t]).tolist())) if truths[t] >= min_n else None)
                    for t, truth in enumerate(labels)}
                row["confusion"] = {truth: dict(zip(columns, cells[t].tolist())) for t, truth in enumerate(labels)}
            rows[value] = row
        return rows

    def tables(self, stem: str, attr: dict[str, Any]) -> dict[str, pd.DataFrame]:
        """<attr>__predicted_as_by_<col>: group x truth rows, one column per answer."""
        found = {}
        for col, groups in attr["by_group"].items():
            rows = []
            for value, row in groups.items():
                for truth, shares in (row.get("predicted_as") or {}).items():
                    n_truth = sum(row["confusion"][truth].values())
                    rows.append({"group": value, "truth": truth, "n_truth": n_truth,
                                 **(shares or {"note": f"n < {min_cell_of(attr)}"})})
            if rows:
                found[f"{stem}__predicted_as_by_{safe_name(col)}"] = pd.DataFrame(rows)
        return found
