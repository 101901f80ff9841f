"""Empirical-Bayes (beta-binomial) shrunk accuracies for intersection cells.

Small intersection cells (e.g. "Indian x 60+") have noisy raw accuracies. Beside each raw
accuracy of an intersection grouping, `accuracy_shrunk` is the posterior mean under a
Beta(a, b) prior fitted to that grouping's cells by the method of moments (weighted by
cell size): (correct + a) / (n + a + b). Cells with little data move towards the pooled
accuracy; large cells barely move. When the cells vary no more than binomial noise would
explain, the prior is the pooled accuracy itself (full pooling). `shrinkage_prior` in the
disparity entry records (a, b). Numeric attributes shrink CS@5 the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlmface.scoring.metrics.base import GroupContext, MetricFamily, register

FULL_POOLING = 1e9  # a + b when the cells show no extra-binomial variation


def beta_prior(successes: np.ndarray, n: np.ndarray) -> tuple[float, float] | None:
    """Method-of-moments Beta(a, b) across cells (weighted by n); None without 2 cells."""
    has = n > 0
    k, n = successes[has].astype(float), n[has].astype(float)
    if k.size < 2:
        return None
    mean = k.sum() / n.sum()
    if mean in (0.0, 1.0):
        return None
    shares = k / n
    weights = n / n.sum()
    observed = np.sum(weights * (shares - mean) ** 2)
    binomial = mean * (1 - mean) * np.sum(weights / n)  # what sampling noise alone gives
    between = observed - binomial
    total = FULL_POOLING if between <= 0 else max(mean * (1 - mean) / between - 1, 1e-6)
    return mean * total, (1 - mean) * total


@register
class Shrinkage(MetricFamily):
    name = "shrinkage"
    kinds = ("categorical", "ordinal", "numeric")

    def _prior(self, ctx: GroupContext) -> tuple[float, float] | None:
        if ctx.is_single_column:
            return None
        return beta_prior(ctx.table["n_correct"], ctx.table["n"])

    def by_group(self, ctx: GroupContext) -> dict[str, dict[str, Any]]:
        prior = self._prior(ctx)
        if prior is None:
            return {}
        a, b = prior
        k, n = ctx.table["n_correct"], ctx.table["n"]
        key = "cs5_shrunk" if ctx.data.spec.is_numeric else "accuracy_shrunk"
        return {value: {key: float((k[g] + a) / (n[g] + a + b)) if n[g] > 0 else None}
                for g, value in enumerate(ctx.values)}

    def disparity(self, ctx: GroupContext) -> dict[str, Any]:
        prior = self._prior(ctx)
        return {} if prior is None else {"shrinkage_prior": [float(prior[0]), float(prior[1])]}
