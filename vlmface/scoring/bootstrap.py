"""Seeded, vectorised bootstrap: resample counts, never a (resamples x items) index matrix.

Resampling is within groups (group sizes fixed, as in the sample design). For a 0/1
score the bootstrap total of a group of n items with k correct is exactly
Binomial(n, k/n), so one `rng.binomial` call of shape (n_boot, n_groups) gives every
group's resampled accuracy; the gap is computed row by row from those same draws. A
mean of real values (MAE) resamples the counts of its distinct values (multinomial),
in chunks so memory stays bounded. A paired comparison resamples the four cells of
the (a correct, b correct) table jointly.
"""

from __future__ import annotations

import zlib

import numpy as np

CHUNK_CELLS = 20_000_000  # floats held at once by the chunked mean bootstrap


def rng_for(seed: int, *keys: str) -> np.random.Generator:
    """A generator per (seed, attribute, table): results do not depend on scoring order."""
    return np.random.default_rng([seed, *(zlib.crc32(key.encode()) for key in keys)])


def proportion_samples(successes: np.ndarray, n: np.ndarray, n_boot: int,
                       rng: np.random.Generator) -> np.ndarray:
    """(n_boot, groups) resampled shares; a column is NaN where its group has n = 0."""
    n = np.asarray(n, dtype=np.int64)
    p = np.divide(successes, n, out=np.zeros(n.shape), where=n > 0)
    draws = rng.binomial(n, p, size=(n_boot, n.size))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, draws / np.where(n > 0, n, 1), np.nan)


def mean_samples(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot,) resampled means of `values` (NaN when empty)."""
    if values.size == 0:
        return np.full(n_boot, np.nan)
    distinct, counts = np.unique(values, return_counts=True)
    step = max(1, CHUNK_CELLS // distinct.size)
    means = np.empty(n_boot)
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        draws = rng.multinomial(values.size, counts / values.size, size=stop - start)
        means[start:stop] = draws @ distinct / values.size
    return means


def row_mean_samples(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, K) means of the rows of `values` (n, K) resampled with replacement. One
    multinomial count vector per resample weights every column at once, so all K columns
    (terms, dimensions, levels) share each resample; chunks keep memory bounded."""
    n = len(values)
    if n == 0:
        return np.full((n_boot, values.shape[1]), np.nan)
    out = np.empty((n_boot, values.shape[1]))
    step = max(1, CHUNK_CELLS // n)
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=stop - start)
        out[start:stop] = counts @ values / n
    return out


def spread_samples(samples: np.ndarray) -> np.ndarray:
    """Per resample, max minus min across the columns (groups)."""
    return np.nanmax(samples, axis=1) - np.nanmin(samples, axis=1)


def paired_difference_samples(cells: np.ndarray, n_boot: int,
                              rng: np.random.Generator) -> np.ndarray:
    """Resampled (acc_b - acc_a) from the 2x2 counts [both, a only, b only, neither]."""
    n = int(cells.sum())
    draws = rng.multinomial(n, cells / n, size=n_boot)
    return (draws[:, 2] - draws[:, 1]) / n


def percentile_ci(samples: np.ndarray, confidence: float) -> np.ndarray:
    """(2, ...) lower and upper percentile bounds along axis 0, NaN where all are NaN."""
    alpha = (1 - confidence) / 2
    samples = np.asarray(samples, dtype=float)
    if samples.ndim == 1:
        samples = samples[:, None]
        return percentile_ci(samples, confidence)[:, 0]
    bounds = np.full((2, samples.shape[1]), np.nan)
    has = ~np.all(np.isnan(samples), axis=0)
    if has.any():
        bounds[:, has] = np.nanquantile(samples[:, has], [alpha, 1 - alpha], axis=0)
    return bounds


def wilson_ci(successes: np.ndarray, n: np.ndarray, confidence: float) -> np.ndarray:
    """(2, groups) Wilson score interval (statsmodels' proportion_confint "wilson"); NaN at n = 0."""
    from statsmodels.stats.proportion import proportion_confint

    successes, n = np.asarray(successes, dtype=float), np.asarray(n, dtype=float)
    bounds = np.full((2, n.size), np.nan)
    has = n > 0
    if has.any():
        lo, hi = proportion_confint(successes[has], n[has], alpha=1 - confidence, method="wilson")
        bounds[0, has], bounds[1, has] = lo, hi
    return bounds


def proportion_ci(successes: np.ndarray, n: np.ndarray, samples: np.ndarray,
                  confidence: float) -> tuple[np.ndarray, list[str]]:
    """(2, groups) bounds and the method per group: the percentile bootstrap, except where it
    would collapse to a point (0 or n successes), which gets the Wilson interval instead."""
    successes, n = np.asarray(successes), np.asarray(n)
    bounds = percentile_ci(samples, confidence)
    if bounds.ndim == 1:
        bounds = bounds[:, None]
    collapsed = (n > 0) & ((successes == 0) | (successes == n))
    if collapsed.any():
        bounds[:, collapsed] = wilson_ci(successes[collapsed], n[collapsed], confidence)
    return bounds, ["wilson" if c else "bootstrap" for c in collapsed]
