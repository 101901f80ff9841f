"""Per-class rates by group, one class against the rest (fairlearn's definitions), and their gaps.

For each label L and group G, over the group's scored items (a non-answer, i.e. invalid,
refused or an answer error, is "not L" for every L, as it is wrong in `accuracy`):

    selection_rate  P(pred = L)              fairlearn selection_rate         (demographic parity)
    tpr             P(pred = L | truth = L)  fairlearn true_positive_rate     (equal opportunity)
    fpr             P(pred = L | truth != L) fairlearn false_positive_rate

A rate is null when its denominator is below `min_cell_n` (default 10: the group's items for
selection_rate, its truths of L for tpr, its other truths for fpr); tables then say "n < 10".
Gaps, over groups with at least `min_group_n` items and a non-null rate:

    dp_gap     largest spread (max - min over groups) of one label's selection rate
    tpr_gap    largest spread of one label's TPR                     (equal opportunity)
    eodds_gap  largest spread of one label's TPR or FPR              (equalized odds)
    eo_gap     alias of tpr_gap (and eo_gap_class of tpr_gap_label), kept one release: for a
               binary attribute with every item answered it equals fairlearn's
               equalized_odds_difference.

Each gap has `_label` (the label) and `_ci`: a percentile bootstrap that resamples each
group's (truth, answer) cells within the group (multinomial, group sizes fixed), in chunks of
resamples so memory stays bounded, recomputing the largest spread in every resample.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from vlmface.scoring.bootstrap import CHUNK_CELLS, percentile_ci, rng_for
from vlmface.scoring.load import OK
from vlmface.scoring.metrics.base import (KINDS_WITH_LABELS, GroupContext, MetricFamily, cell_note, min_cell_of,
                                          register, safe_name)

RATES = ("selection_rate", "tpr", "fpr")


def confusion_by_group(ctx: GroupContext) -> np.ndarray:
    """(groups, k, k + 1) counts of (truth, answer) over scored items; column k = no answer."""
    k, n_groups = len(ctx.data.labels), len(ctx.values)
    keep = ctx.out.scored & (ctx.grouping.codes >= 0)
    answer = np.where(ctx.out.status == OK, ctx.data.pred, k)[keep]
    index = (ctx.grouping.codes[keep] * k + ctx.out.truth[keep]) * (k + 1) + answer
    return np.bincount(index, minlength=n_groups * k * (k + 1)).reshape(n_groups, k, k + 1)


def _rates(matrix: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """rate -> (value, denominator), each (..., groups, k), from (..., groups, k, k + 1) counts."""
    k = matrix.shape[-2]
    n = matrix.sum(axis=(-1, -2))[..., None].astype(float)
    truths = matrix.sum(axis=-1).astype(float)
    predicted = matrix[..., :k].sum(axis=-2).astype(float)
    hits = np.diagonal(matrix[..., :k], axis1=-2, axis2=-1).astype(float)
    others = n - truths
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"selection_rate": (predicted / n, np.broadcast_to(n, predicted.shape)),
                "tpr": (hits / truths, truths),
                "fpr": ((predicted - hits) / others, others)}


def _spread(values: np.ndarray) -> np.ndarray:
    """Max - min over groups (axis -2) per label; NaN where fewer than 2 groups have a value."""
    seen = (~np.isnan(values)).sum(axis=-2)
    with warnings.catch_warnings():  # all-NaN label columns: NaN, handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = np.nanmax(values, axis=-2) - np.nanmin(values, axis=-2)
    return np.where(seen >= 2, spread, np.nan)


def _gaps(rates: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """gap name -> (..., k) spread per label."""
    tpr, fpr = _spread(rates["tpr"]), _spread(rates["fpr"])
    return {"dp_gap": _spread(rates["selection_rate"]), "tpr_gap": tpr, "eodds_gap": np.fmax(tpr, fpr)}


def _largest(per_label: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(per_label, axis=-1) if per_label.shape[-1] else np.full(per_label.shape[:-1], np.nan)


def _masked(rates: dict[str, tuple[np.ndarray, np.ndarray]], valid: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.where(valid[name], value, np.nan) for name, (value, _) in rates.items()}


def _gap_draws(matrix: np.ndarray, valid: dict[str, np.ndarray], n_boot: int,
               rng: np.random.Generator) -> dict[str, np.ndarray]:
    """(n_boot,) resampled largest gaps, resampling each group's cells within the group."""
    groups, k = matrix.shape[0], matrix.shape[1]
    cells = matrix.reshape(groups, -1)
    n = cells.sum(axis=1)
    step = max(1, CHUNK_CELLS // max(1, cells.size))
    draws = {name: np.empty(n_boot) for name in ("dp_gap", "tpr_gap", "eodds_gap")}
    for start in range(0, n_boot, step):
        size = min(n_boot, start + step) - start
        sample = np.stack([rng.multinomial(n[g], cells[g] / n[g], size=size) for g in range(groups)], axis=1)
        gaps = _gaps(_masked(_rates(sample.reshape(size, groups, k, k + 1)), valid))
        for name, per_label in gaps.items():
            draws[name][start:start + size] = _largest(per_label)
    return draws


@register
class ClassRates(MetricFamily):
    name = "class_rates"
    kinds = KINDS_WITH_LABELS
    needs = frozenset({"labels"})

    def _computed(self, ctx: GroupContext) -> dict[str, Any]:
        if "rates" not in ctx.shared:
            matrix = confusion_by_group(ctx)
            rates = _rates(matrix)
            valid = {name: denominator >= ctx.settings.min_cell_n for name, (_, denominator) in rates.items()}
            ctx.shared["rates"] = {"matrix": matrix, "rates": rates, "valid": valid,
                                   "masked": _masked(rates, valid)}
        return ctx.shared["rates"]

    def by_group(self, ctx: GroupContext) -> dict[str, dict[str, Any]]:
        found = self._computed(ctx)
        labels, masked = ctx.data.labels, found["masked"]
        truths = found["matrix"].sum(axis=-1)
        return {value: {**{name: dict(zip(labels, masked[name][g].tolist())) for name in RATES},
                        "n_truth": dict(zip(labels, truths[g].tolist()))}
                for g, value in enumerate(ctx.values)}

    def disparity(self, ctx: GroupContext) -> dict[str, Any]:
        found = self._computed(ctx)
        labels, eligible = ctx.data.labels, ctx.eligible
        valid = {name: found["valid"][name] & eligible[:, None] for name in RATES}
        masked = _masked(found["rates"], valid)
        gaps = _gaps(masked)
        result: dict[str, Any] = {"min_cell_n": ctx.settings.min_cell_n}
        keep = eligible & (found["matrix"].sum(axis=(1, 2)) > 0)
        rng = rng_for(ctx.settings.seed, ctx.data.spec.name, ctx.grouping.name, "class_rates")
        draws = _gap_draws(found["matrix"][keep], {n: v[keep] for n, v in valid.items()},
                           ctx.settings.n_boot, rng) if keep.sum() >= 2 else {}
        for name, per_label in gaps.items():
            defined = ~np.isnan(per_label)
            best = int(np.nanargmax(per_label)) if defined.any() else None
            result[name] = None if best is None else float(per_label[best])
            result[name + "_label"] = None if best is None else labels[best]
            result[name + "_ci"] = ([None, None] if best is None or name not in draws
                                    else percentile_ci(draws[name], ctx.settings.confidence).tolist())
        tpr, fpr = _spread(masked["tpr"]), _spread(masked["fpr"])
        if result["eodds_gap"] is not None:
            j = labels.index(result["eodds_gap_label"])
            larger_tpr = np.nan_to_num(tpr[j], nan=-1) >= np.nan_to_num(fpr[j], nan=-1)
            result["eodds_gap_rate"] = "tpr" if larger_tpr else "fpr"
        else:
            result["eodds_gap_rate"] = None
        result["eo_gap"], result["eo_gap_class"] = result["tpr_gap"], result["tpr_gap_label"]
        return result

    def tables(self, stem: str, attr: dict[str, Any]) -> dict[str, pd.DataFrame]:
        """<attr>__rates_by_<col>: group x label rows, "n < 10" where a rate was left out."""
        min_cell_n = min_cell_of(attr)
        found = {}
        for col, groups in attr["by_group"].items():
            rows = []
            for value, row in groups.items():
                if "tpr" not in row:
                    continue
                for label in row["tpr"]:
                    truths = row["n_truth"][label]
                    denominators = {"selection_rate": row["n"], "tpr": truths, "fpr": row["n"] - truths}
                    rows.append({"group": value, "label": label, "n": row["n"], "n_truth": truths,
                                 **{name: cell_note(row[name][label], denominators[name], min_cell_n)
                                    for name in RATES}})
            if rows:
                found[f"{stem}__rates_by_{safe_name(col)}"] = pd.DataFrame(rows)
        return found
