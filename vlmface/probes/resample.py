"""Bootstrap resampling of a probe's images: by image, or by cluster (identity) when the
dataset declares one.

CausalFace renders each pseudo-identity dozens of times (race x gender x factor levels);
those renders are not independent draws, so resampling renders makes CIs too narrow. With a
cluster column, each resample draws identities with replacement and keeps all their rows:
the mean of a resample is sum(cluster sums x draw counts) / sum(cluster sizes x draw counts).
Rates of independent images (markedness, denigration) get Wilson score intervals instead.
The image bootstrap is `vlmface.scoring.bootstrap.row_mean_samples` (one multinomial weight
vector per resample, shared by every column, so paired columns stay paired).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vlmface.scoring.bootstrap import CHUNK_CELLS, row_mean_samples


def cluster_mean_samples(values: np.ndarray, clusters: np.ndarray, n_boot: int,
                         rng: np.random.Generator) -> np.ndarray:
    """(n_boot, K) means of the rows of `values` (n, K), resampling whole clusters."""
    codes, _ = pd.factorize(np.asarray(clusters, dtype=str))
    n_clusters = int(codes.max()) + 1 if len(codes) else 0
    if n_clusters == 0:
        return np.full((n_boot, values.shape[1]), np.nan)
    sums = np.zeros((n_clusters, values.shape[1]))
    np.add.at(sums, codes, values)
    sizes = np.bincount(codes, minlength=n_clusters).astype(float)
    out = np.empty((n_boot, values.shape[1]))
    step = max(1, CHUNK_CELLS // n_clusters)
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        counts = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=stop - start)
        out[start:stop] = (counts @ sums) / (counts @ sizes)[:, None]
    return out


def mean_samples(values: np.ndarray, n_boot: int, rng: np.random.Generator,
                 clusters: np.ndarray | None = None) -> np.ndarray:
    """(n_boot, K) resampled row means: by cluster when `clusters` is given, else by image."""
    values = np.asarray(values, dtype=float)
    if clusters is None:
        return row_mean_samples(values, n_boot, rng)
    return cluster_mean_samples(values, clusters, n_boot, rng)


def index_samples(n: int, n_boot: int, rng: np.random.Generator,
                  clusters: np.ndarray | None = None):
    """Yield n_boot index arrays into range(n): images drawn with replacement, or, with
    `clusters`, whole clusters drawn with replacement (for measures that are no mean, e.g.
    a ranking's Skew@k)."""
    if clusters is None:
        for _ in range(n_boot):
            yield rng.integers(0, n, size=n)
        return
    codes, _ = pd.factorize(np.asarray(clusters, dtype=str))
    members = [np.flatnonzero(codes == c) for c in range(int(codes.max()) + 1)] if n else []
    for _ in range(n_boot):
        drawn = rng.integers(0, len(members), size=len(members))
        yield np.concatenate([members[c] for c in drawn])


def two_sided_p(estimate: np.ndarray | float, draws: np.ndarray) -> np.ndarray:
    """p-value of 'the statistic is 0': two-sided Wald test with the bootstrap standard error
    (z = estimate / sd of the draws). Unlike counting draws beyond 0, it is not floored at
    ~2 / n_boot, so Holm's correction over hundreds of rows can still reach significance.
    NaN where no draw is finite; 0 when the draws do not vary but the estimate is not 0."""
    from scipy.stats import norm

    draws = np.asarray(draws, dtype=float)
    estimate = np.asarray(estimate, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.nanstd(draws, axis=0, ddof=1) if len(draws) > 1 else np.full(estimate.shape, np.nan)
        z = np.abs(estimate) / se
    p = 2 * norm.sf(z)
    p = np.where(se == 0, np.where(estimate == 0, 1.0, 0.0), p)
    return np.where(np.isfinite(se) | (se == 0), p, np.nan)


def wilson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of k successes in n (statsmodels); NaN for n = 0."""
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return np.nan, np.nan
    lo, hi = proportion_confint(k, n, alpha=1 - confidence, method="wilson")
    return (0.0 if k == 0 else float(lo)), (1.0 if k == n else float(hi))  # exact ends, no float dust
