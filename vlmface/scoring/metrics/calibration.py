"""Calibration of the answer probabilities (runs that save `probs`, e.g. CLIP zero-shot).

Over answered items (status "ok"; a non-answer has no probability):

    confidence  the probability of the answered label
    ece         expected calibration error of that top label: 10 equal-width confidence bins,
                sum over bins of (bin share) x |accuracy in bin - mean confidence in bin|; the
                bins are sklearn's calibration_curve(strategy="uniform", n_bins=10) ones
    brier       multiclass Brier score: mean over items of sum over labels (p_label - [truth == label])^2
                (0 is perfect, 2 the worst)
    reliability per non-empty bin: mean confidence, accuracy, count (the reliability curve)

Null where fewer than `min_cell_n` answered items carry probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlmface.scoring.load import OK, AttributeData
from vlmface.scoring.metrics import KINDS_WITH_LABELS, GroupContext, MetricFamily, register
from vlmface.scoring.outcomes import Outcomes
from vlmface.scoring.settings import ScoreSettings

N_BINS = 10


def _calibration(probs: np.ndarray, pred: np.ndarray, truth: np.ndarray, min_n: int) -> dict[str, Any]:
    n = len(pred)
    if n < min_n or n == 0:
        return {"n_calibrated": n, "ece": None, "brier": None, "reliability": None}
    confidence = probs[np.arange(n), pred]
    correct = (pred == truth).astype(float)
    bins = np.linspace(0.0, 1.0, N_BINS + 1)
    ids = np.searchsorted(bins[1:-1], confidence)  # exactly calibration_curve's binning
    total = np.bincount(ids, minlength=N_BINS)
    sums = np.bincount(ids, weights=confidence, minlength=N_BINS)
    hits = np.bincount(ids, weights=correct, minlength=N_BINS)
    used = total > 0
    mean_conf, accuracy = sums[used] / total[used], hits[used] / total[used]
    onehot = np.zeros_like(probs)
    onehot[np.arange(n), truth] = 1.0
    return {"n_calibrated": n,
            "ece": float(np.sum(total[used] / n * np.abs(accuracy - mean_conf))),
            "brier": float(np.mean(np.sum((probs - onehot) ** 2, axis=1))),
            "reliability": {"confidence": mean_conf.tolist(), "accuracy": accuracy.tolist(),
                            "count": total[used].tolist()}}


def _rows(data: AttributeData, out: Outcomes, mask: np.ndarray) -> tuple[np.ndarray, ...]:
    rows = mask & (out.status == OK) & out.scored
    return data.probs[rows], data.pred[rows], data.truth[rows]


@register
class Calibration(MetricFamily):
    name = "calibration"
    kinds = KINDS_WITH_LABELS
    needs = frozenset({"labels", "probs"})

    def overall(self, data: AttributeData, out: Outcomes, settings: ScoreSettings) -> dict[str, Any]:
        return _calibration(*_rows(data, out, np.ones(len(out.status), bool)), settings.min_cell_n)

    def by_group(self, ctx: GroupContext) -> dict[str, dict[str, Any]]:
        return {value: _calibration(*_rows(ctx.data, ctx.out, ctx.grouping.codes == g), ctx.settings.min_cell_n)
                for g, value in enumerate(ctx.values)}
