"""Signed error of a numeric attribute (age in years): who is aged up and who down.

    mean_error   mean of (prediction - truth) over answered items, with a bootstrap CI:
                 positive = estimated older than they are ("aged up"), negative = younger
    direction    "aged up" / "aged down" when the CI excludes 0, else "no clear bias"
    mae, cs5     (from `accuracy`) beside it, with their CIs

By group, and in `disparity`: the group aged up most and the one aged down most.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlmface.scoring.bootstrap import mean_samples, percentile_ci, rng_for
from vlmface.scoring.load import OK, AttributeData
from vlmface.scoring.metrics.base import GroupContext, MetricFamily, register
from vlmface.scoring.outcomes import Outcomes
from vlmface.scoring.settings import ScoreSettings


def _direction(bounds: list) -> str | None:
    lo, hi = bounds
    if lo is None or np.isnan(lo):
        return None
    return "aged up" if lo > 0 else "aged down" if hi < 0 else "no clear bias"


def _signed(data: AttributeData, rows: np.ndarray, settings: ScoreSettings,
            rng: np.random.Generator) -> dict[str, Any]:
    errors = (data.pred - data.truth)[rows & (data.status == OK)]
    bounds = percentile_ci(mean_samples(errors, settings.n_boot, rng), settings.confidence).tolist()
    return {"mean_error": float(errors.mean()) if errors.size else None, "mean_error_ci": bounds,
            "direction": _direction(bounds)}


@register
class SignedError(MetricFamily):
    name = "signed_error"
    kinds = ("numeric",)
    needs = frozenset({"numeric"})

    def overall(self, data: AttributeData, out: Outcomes, settings: ScoreSettings) -> dict[str, Any]:
        rng = rng_for(settings.seed, data.spec.name, "overall", "signed")
        return _signed(data, out.scored, settings, rng)

    def by_group(self, ctx: GroupContext) -> dict[str, dict[str, Any]]:
        rng = rng_for(ctx.settings.seed, ctx.data.spec.name, ctx.grouping.name, "signed")
        rows = {value: _signed(ctx.data, ctx.out.scored & (ctx.grouping.codes == g), ctx.settings, rng)
                for g, value in enumerate(ctx.values)}
        ctx.shared["signed"] = rows
        return rows

    def disparity(self, ctx: GroupContext) -> dict[str, Any]:
        rows = ctx.shared.get("signed") or self.by_group(ctx)
        means = {v: rows[v]["mean_error"] for v, e in zip(ctx.values, ctx.eligible)
                 if e and rows[v]["mean_error"] is not None}
        if not means:
            return {"aged_up_most": None, "aged_down_most": None, "mean_error_spread": None}
        up, down = max(means, key=means.get), min(means, key=means.get)
        return {"aged_up_most": up, "aged_down_most": down, "mean_error_spread": means[up] - means[down]}
