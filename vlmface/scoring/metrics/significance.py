"""Is the headline score different across groups at all? One test per (attribute, grouping),
corrected for the number of tests the run prints.

`disparity.C.test` = {"method", "statistic", "p_value", "p_holm", "p_bh"}:

- "chi-square": scipy.stats.chi2_contingency on the groups x (correct, wrong) table (scipy's
  Yates correction when there are 2 groups), over every group with scored items; correct is
  accuracy's (CS@5 for numeric attributes), so non-answers count wrong as in `accuracy`;
- "permutation chi-square" where an expected cell is below 5: the same (uncorrected)
  statistic under `n_boot` seeded reshuffles of correct/wrong across the items (each a
  multivariate hypergeometric draw of the correct counts given the group sizes), p =
  (1 + #(stat >= observed)) / (1 + reshuffles);
- p_holm, p_bh: Holm and Benjamini-Hochberg adjustments (`vlmface.multitest.holm`, which equals
  statsmodels multipletests "holm", and multipletests "fdr_bh") over every test of the run: every
  attribute x every group column and intersection.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from vlmface.multitest import holm
from vlmface.scoring.bootstrap import rng_for
from vlmface.scoring.metrics.base import GroupContext, MetricFamily, register

MIN_EXPECTED = 5


def _statistic(correct: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Pearson chi-square of groups x (correct, wrong), rows of `correct` being tables."""
    total, k = n.sum(), correct.sum(axis=-1, keepdims=True)
    expected_right = n * k / total
    expected_wrong = n * (total - k) / total
    wrong = n - correct
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = (correct - expected_right) ** 2 / expected_right + (wrong - expected_wrong) ** 2 / expected_wrong
    return np.nansum(terms, axis=-1)


def accuracy_test(correct: np.ndarray, n: np.ndarray, n_perm: int, rng: np.random.Generator) -> dict[str, Any]:
    has = n > 0
    correct, n = correct[has].astype(np.int64), n[has].astype(np.int64)
    if n.size < 2:
        return {"method": None, "statistic": None, "p_value": None}
    table = np.column_stack([correct, n - correct])
    if (table.sum(axis=0) == 0).any():
        return {"method": "none (every item alike)", "statistic": 0.0, "p_value": 1.0}
    result = stats.chi2_contingency(table)
    if (result.expected_freq >= MIN_EXPECTED).all():
        return {"method": "chi-square", "statistic": float(result.statistic), "p_value": float(result.pvalue)}
    observed = _statistic(correct.astype(float), n.astype(float))
    draws = rng.multivariate_hypergeometric(n, int(correct.sum()), size=n_perm)
    permuted = _statistic(draws.astype(float), n.astype(float))
    p = (1 + np.sum(permuted >= observed - 1e-9)) / (1 + n_perm)
    return {"method": "permutation chi-square", "statistic": float(observed), "p_value": float(p)}


def adjust_run(metrics: dict[str, Any]) -> None:
    """p_holm and p_bh on every test of the run (in place)."""
    from statsmodels.stats.multitest import multipletests

    tests = [entry["test"] for attr in metrics["attributes"].values()
             for entry in attr["disparity"].values() if entry.get("test")]
    found = [t for t in tests if t["p_value"] is not None]
    for t in tests:
        t["p_holm"] = t["p_bh"] = None
    if not found:
        return
    p = np.array([t["p_value"] for t in found])
    for key, adjusted in (("p_holm", holm(p)), ("p_bh", multipletests(p, method="fdr_bh")[1])):
        for t, value in zip(found, adjusted):
            t[key] = float(value)
    metrics.setdefault("scoring", {})["n_tests"] = len(found)


@register
class Significance(MetricFamily):
    name = "significance"
    kinds = ("categorical", "ordinal", "numeric")

    def disparity(self, ctx: GroupContext) -> dict[str, Any]:
        rng = rng_for(ctx.settings.seed, ctx.data.spec.name, ctx.grouping.name, "test")
        test = accuracy_test(ctx.table["n_correct"], ctx.table["n"], ctx.settings.n_boot, rng)
        return {"test": {**test, "p_holm": None, "p_bh": None}}

    def finish_run(self, metrics: dict[str, Any]) -> None:
        adjust_run(metrics)
