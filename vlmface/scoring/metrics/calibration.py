"""Calibration of the answer probabilities (runs that save `probs`, e.g. CLIP zero-shot).

Over answered items (status "ok"; a non-answer has no probability):

    confidence  the probability of the answered label
    ece         expected calibration error of that top label: 10 equal-width confidence bins,
                sum over bins of (bin share) x |accuracy in bin - mean confidence in bin|; the
                bins are sklearn's calibration_curve(strategy="uniform", n_bins=10) ones
    brier       multiclass Brier score: mean over items of sum over labels (p_label - [truth == label])^2
                (0 is perfect, 2 the worst)
    reliability per non-empty bin: mean confidence, accuracy, count (the reliability curve)

Null where fewer than `min_cell_n` answered items carry probabilities. Per-item values are
computed once per attribute; each grouping is then a few bincounts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlmface.scoring.load import OK, AttributeData
from vlmface.scoring.metrics.base import KINDS_WITH_LABELS, GroupContext, MetricFamily, register
from vlmface.scoring.outcomes import Outcomes
from vlmface.scoring.settings import ScoreSettings

N_BINS = 10


def _items(data: AttributeData, out: Outcomes) -> dict[str, np.ndarray]:
    """Per answered item: its bin, confidence, correctness and Brier term (cached on `data`)."""
    if "calibration" in data.cache:
        return data.cache["calibration"]
    rows = np.flatnonzero((out.status == OK) & out.scored)
    probs, pred, truth = data.probs[rows], data.pred[rows], data.truth[rows]
    confidence = probs[np.arange(rows.size), pred]
    onehot = np.zeros_like(probs)
    onehot[np.arange(rows.size), truth] = 1.0
    bins = np.linspace(0.0, 1.0, N_BINS + 1)
    data.cache["calibration"] = found = {
        "rows": rows, "bin": np.searchsorted(bins[1:-1], confidence),  # calibration_curve's binning
        "confidence": confidence, "correct": (pred == truth).astype(float),
        "brier": np.sum((probs - onehot) ** 2, axis=1)}
    return found


def _summaries(items: dict[str, np.ndarray], codes: np.ndarray, n_groups: int,
               min_n: int) -> list[dict[str, Any]]:
    cells = codes * N_BINS + items["bin"]
    keep = codes >= 0
    size = n_groups * N_BINS

    def binned(weights: np.ndarray | None) -> np.ndarray:
        w = None if weights is None else weights[keep]
        return np.bincount(cells[keep], weights=w, minlength=size).reshape(n_groups, N_BINS)

    total, sums, hits = binned(None), binned(items["confidence"]), binned(items["correct"])
    brier = np.bincount(codes[keep], weights=items["brier"][keep], minlength=n_groups)
    found = []
    for g in range(n_groups):
        n = int(total[g].sum())
        if n < min_n or n == 0:
            found.append({"n_calibrated": n, "ece": None, "brier": None, "reliability": None})
            continue
        used = total[g] > 0
        mean_conf, accuracy = sums[g][used] / total[g][used], hits[g][used] / total[g][used]
        found.append({"n_calibrated": n,
                      "ece": float(np.sum(total[g][used] / n * np.abs(accuracy - mean_conf))),
                      "brier": float(brier[g] / n),
                      "reliability": {"confidence": mean_conf.tolist(), "accuracy": accuracy.tolist(),
                                      "count": total[g][used].tolist()}})
    return found


@register
class Calibration(MetricFamily):
    name = "calibration"
    kinds = KINDS_WITH_LABELS
    needs = frozenset({"labels", "probs"})

    def overall(self, data: AttributeData, out: Outcomes, settings: ScoreSettings) -> dict[str, Any]:
        items = _items(data, out)
        return _summaries(items, np.zeros(items["rows"].size, dtype=np.int64), 1, settings.min_cell_n)[0]

    def by_group(self, ctx: GroupContext) -> dict[str, dict[str, Any]]:
        items = _items(ctx.data, ctx.out)
        codes = ctx.grouping.codes[items["rows"]]
        return dict(zip(ctx.values, _summaries(items, codes, len(ctx.values), ctx.settings.min_cell_n)))
