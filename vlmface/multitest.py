"""Holm's step-down adjustment of p-values, the one the scorer and the probes report as p_holm.

It is statsmodels' `multipletests(p, method="holm")[1]` (tests/test_multitest.py checks it equals
that), written out because statsmodels runs a full garbage collection on every Holm call: about
0.3 s in a process holding torch and pandas, paid once per scored run. Sorted ascending, the i-th
of m p-values (0-based) becomes max over j <= i of (m - j) * p_(j), capped at 1.
"""

from __future__ import annotations

import numpy as np


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values, in the order given (a 1-d array); over the non-missing ones only,
    a missing (NaN) p-value stays missing."""
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"holm: expected a 1-d array of p-values, got shape {p.shape}")
    adjusted = np.full(p.size, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="mergesort")]
    m = order.size
    adjusted[order] = np.minimum(np.maximum.accumulate(p[order] * np.arange(m, 0, -1)), 1.0)
    return adjusted
