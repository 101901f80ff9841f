"""Groupings (each group column and each intersection of 2 or 3 of them) and the headline
score per group with its disparity summary (used by `metrics.accuracy`).

Names follow fairlearn's MetricFrame: `gap` is its difference() (max - min over
groups), `ratio` its ratio() (min / max), worst/best the group_min/group_max (for
MAE, where lower is better, worst is the highest). `std` is the population standard
deviation across groups. Groups with fewer than `min_group_n` scored items are
reported but flagged `small` and left out of gap, ratio and std. Rows with a null
group value are left out of that column's table. The gap CI is a percentile bootstrap
of max - min; when groups truly differ little that statistic is biased upward, so read
a gap CI that sits just above 0 as "no clear gap", not as proof of one.
Intersections are built from the observed combinations only (never a dense product).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from vlmface.scoring.bootstrap import (mean_samples, percentile_ci, proportion_samples,
                                       rng_for, spread_samples)
from vlmface.scoring.load import OK, AttributeData
from vlmface.scoring.outcomes import Outcomes, counts, ratio
from vlmface.scoring.settings import ScoreSettings

PAIR_JOIN, VALUE_JOIN = "x", " x "


@dataclass
class Grouping:
    name: str
    codes: np.ndarray  # index into values; -1 where the value is null
    values: list[str]
    columns: tuple[str, ...] = ()  # the group columns crossed (one for a plain column)


def _intersection(a: Grouping, b: Grouping) -> Grouping:
    """Sparse: only the combinations observed in the data become cells (no dense product)."""
    valid = (a.codes >= 0) & (b.codes >= 0)
    combo = a.codes[valid] * len(b.values) + b.codes[valid]  # int64: no overflow below 3e9 x 3e9
    used, inverse = np.unique(combo, return_inverse=True)
    codes = np.full(a.codes.size, -1, dtype=np.int64)
    codes[valid] = inverse
    values = [a.values[i // len(b.values)] + VALUE_JOIN + b.values[i % len(b.values)]
              for i in used.tolist()]
    return Grouping(a.name + PAIR_JOIN + b.name, codes, values, a.columns + b.columns)


def groupings(data: AttributeData, depth: int = 2) -> list[Grouping]:
    """Every group column, then every intersection of 2 .. `depth` of them."""
    singles = [Grouping(col, np.asarray(cat.codes, dtype=np.int64), list(cat.categories), (col,))
               for col, cat in data.groups.items()]
    found = list(singles)
    for size in range(2, depth + 1):
        for combo in combinations(singles, size):
            grouping = combo[0]
            for other in combo[1:]:
                grouping = _intersection(grouping, other)
            found.append(grouping)
    return found


@dataclass
class GroupScore:
    """One score per group, its bootstrap draws and which direction is better."""

    key: str  # "accuracy" or "mae"
    n: np.ndarray  # the score's denominator per group
    point: np.ndarray
    samples: np.ndarray  # (n_boot, groups)
    higher_is_better: bool


def _accuracy_score(table: dict, settings: ScoreSettings, rng: np.random.Generator) -> GroupScore:
    samples = proportion_samples(table["n_correct"], table["n"], settings.n_boot, rng)
    return GroupScore("accuracy", table["n"], ratio(table["n_correct"], table["n"]), samples, True)


def _mae_score(out: Outcomes, grouping: Grouping, table: dict, settings: ScoreSettings,
               rng: np.random.Generator) -> GroupScore:
    answered = out.status == OK
    samples = np.column_stack([
        mean_samples(out.abs_error[answered & (grouping.codes == g)], settings.n_boot, rng)
        for g in range(len(grouping.values))]) if grouping.values else np.empty((1, 0))
    point = ratio(table["sum_abs_error"], table["n_answered"])
    return GroupScore("mae", table["n_answered"], point, samples, False)


def _disparity(score: GroupScore, values: list[str], eligible: np.ndarray,
               settings: ScoreSettings) -> dict[str, Any]:
    result: dict[str, Any] = {"metric": score.key, "gap": None, "gap_ci": [None, None],
                              "ratio": None, "worst_group": None, "best_group": None,
                              "std": None}
    if eligible.sum() < 2:
        return result
    point, names = score.point[eligible], [v for v, e in zip(values, eligible) if e]
    worst = int(np.argmin(point) if score.higher_is_better else np.argmax(point))
    best = int(np.argmax(point) if score.higher_is_better else np.argmin(point))
    low, high = point.min(), point.max()
    gap_samples = spread_samples(score.samples[:, eligible])
    result.update(gap=float(high - low), gap_ci=percentile_ci(gap_samples, settings.confidence)
                  .tolist(), ratio=float(low / high) if high > 0 else None,
                  worst_group=names[worst], best_group=names[best], std=float(point.std()))
    return result
