"""Disparity against a reference group (`--reference-group COLUMN=GROUP`, Aequitas-style).

For the group column named, `disparity.COLUMN.reference` gives every other group's headline
score beside the reference group's:

    difference   score(group) - score(reference), with a percentile-bootstrap CI (the groups'
                 within-group draws, as for `gap`)
    ratio        score(group) / score(reference), with a CI from the same draws
    p_value      accuracy (or CS@5): Fisher's exact test on the 2 x 2 (group, correct) table;
                 MAE: Welch's t-test on the absolute errors
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from vlmface.errors import VlmfaceError
from vlmface.scoring.bootstrap import percentile_ci
from vlmface.scoring.load import OK
from vlmface.scoring.metrics.base import GroupContext, MetricFamily, register
from vlmface.scoring.metrics.accuracy import group_score


def _p_value(ctx: GroupContext, g: int, r: int) -> float | None:
    table = ctx.table
    if ctx.data.spec.is_numeric:
        answered = ctx.out.status == OK
        a = ctx.out.abs_error[answered & (ctx.grouping.codes == g)]
        b = ctx.out.abs_error[answered & (ctx.grouping.codes == r)]
        if a.size < 2 or b.size < 2:
            return None
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    right = table["n_correct"][[g, r]]
    wrong = table["n"][[g, r]] - right
    if table["n"][g] == 0 or table["n"][r] == 0:
        return None
    return float(stats.fisher_exact([[right[0], wrong[0]], [right[1], wrong[1]]]).pvalue)


@register
class ReferenceGroup(MetricFamily):
    name = "reference_group"
    kinds = ("categorical", "ordinal", "numeric")

    def disparity(self, ctx: GroupContext) -> dict[str, Any]:
        reference = ctx.settings.reference_group
        if reference is None or ctx.grouping.name != reference[0]:
            return {}
        column, group = reference
        if group not in ctx.values:
            raise VlmfaceError(f"--reference-group {column}={group}: {column!r} has no group {group!r}; "
                               f"its groups are {', '.join(ctx.values)}")
        score = group_score(ctx)
        r = ctx.values.index(group)
        rows = {}
        for g, value in enumerate(ctx.values):
            if g == r:
                continue
            with np.errstate(invalid="ignore", divide="ignore"):
                difference = score.samples[:, g] - score.samples[:, r]
                ratio = score.samples[:, g] / score.samples[:, r]
                point_ratio = score.point[g] / score.point[r] if score.point[r] else np.nan
            ratio[~np.isfinite(ratio)] = np.nan
            rows[value] = {"n": int(score.n[g]), score.key: float(score.point[g]),
                           "difference": float(score.point[g] - score.point[r]),
                           "difference_ci": percentile_ci(difference, ctx.settings.confidence).tolist(),
                           "ratio": float(point_ratio),
                           "ratio_ci": percentile_ci(ratio, ctx.settings.confidence).tolist(),
                           "p_value": _p_value(ctx, g, r),
                           "test": "welch t-test" if ctx.data.spec.is_numeric else "fisher exact"}
        return {"reference": {"group": group, "metric": score.key, "n": int(score.n[r]),
                              score.key: float(score.point[r]), "groups": rows}}
