"""The headline score: accuracy (categorical, ordinal) or MAE and CS@5 (numeric), overall and by
group, with its disparity summary (gap, ratio, worst and best group; `vlmface.scoring.groups`).

A proportion whose bootstrap would collapse to a point (0 or n of n correct) gets the Wilson
interval instead (`accuracy_ci_method` says which)."""

from __future__ import annotations

from typing import Any



from vlmface.scoring.bootstrap import percentile_ci, proportion_ci, proportion_samples, rng_for
from vlmface.scoring.classification import overall_classification, status_block
from vlmface.scoring.groups import GroupScore, _accuracy_score, _disparity, _mae_score
from vlmface.scoring.load import AttributeData
from vlmface.scoring.metrics.base import GroupContext, MetricFamily, register
from vlmface.scoring.numeric import overall_numeric
from vlmface.scoring.outcomes import Outcomes, ratio
from vlmface.scoring.settings import ScoreSettings


def group_score(ctx: GroupContext) -> GroupScore:
    """The headline score per group and its draws, computed once per grouping and shared."""
    if "score" not in ctx.shared:
        rng = rng_for(ctx.settings.seed, ctx.data.spec.name, ctx.grouping.name)
        ctx.shared["score"] = (_mae_score(ctx.out, ctx.grouping, ctx.table, ctx.settings, rng)
                               if ctx.data.spec.is_numeric else _accuracy_score(ctx.table, ctx.settings, rng))
        ctx.shared["rng"] = rng
    return ctx.shared["score"]


@register
class Accuracy(MetricFamily):
    name = "accuracy"
    kinds = ("categorical", "ordinal", "numeric")

    def overall(self, data: AttributeData, out: Outcomes, settings: ScoreSettings) -> dict[str, Any]:
        return (overall_numeric if data.spec.is_numeric else overall_classification)(data, out, settings)

    def by_group(self, ctx: GroupContext) -> dict[str, dict[str, Any]]:
        score, table = group_score(ctx), ctx.table
        numeric = ctx.data.spec.is_numeric
        if numeric:
            bounds, methods = percentile_ci(score.samples, ctx.settings.confidence), ["bootstrap"] * len(ctx.values)
            cs5 = proportion_samples(table["n_correct"], table["n"], ctx.settings.n_boot, ctx.shared["rng"])
            cs5_bounds, _ = proportion_ci(table["n_correct"], table["n"], cs5, ctx.settings.confidence)
        else:
            bounds, methods = proportion_ci(table["n_correct"], table["n"], score.samples, ctx.settings.confidence)
        rows = {}
        for g, value in enumerate(ctx.values):
            row = {"n": int(table["n"][g]), score.key: float(score.point[g]),
                   score.key + "_ci": bounds[:, g].tolist(), score.key + "_ci_method": methods[g],
                   **status_block(table, g), "small": bool(not ctx.eligible[g])}
            if numeric:
                row["cs5"] = float(ratio(table["n_correct"], table["n"])[g])
                row["cs5_ci"] = cs5_bounds[:, g].tolist()
            rows[value] = row
        return rows

    def disparity(self, ctx: GroupContext) -> dict[str, Any]:
        result = _disparity(group_score(ctx), ctx.values, ctx.eligible, ctx.settings)
        result["excluded_groups"] = [v for v, e in zip(ctx.values, ctx.eligible) if not e]
        return result


