"""Factor analysis: how far changing one factor alone moves a face's social scores.

A pair for factor f is two images whose factor codes differ at f and agree everywhere else
(Hausladen et al., CausalFace: same pseudo-identity, race and gender, two smiling levels).
The effect of f on a dimension is the distribution of |score(a) - score(b)| over its pairs
(|delta delta cos|); factors are compared with two-sided Mann-Whitney U tests.

Pairs depend only on the factor codes, never on a model, so every model is scored on the
same pairs. When a factor has at most `n_pairs` pairs, all are used; up to
`ENUMERATE_LIMIT` candidates they are listed and `n_pairs` drawn without replacement;
beyond that, `n_pairs` are drawn uniformly with replacement without listing them.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import mannwhitneyu

ENUMERATE_LIMIT = 2_000_000
MAX_TRIES = 50  # draws per wanted pair before giving up, when min_distance rejects most of them


def _blocks(codes: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images sorted by (all other factors, factor f): (order, block starts, block ends),
    a block holding the images that agree on every factor but f."""
    others = np.delete(codes, f, axis=1)
    if others.shape[1]:
        group = np.unique(others, axis=0, return_inverse=True)[1].ravel()
    else:
        group = np.zeros(len(codes), dtype=np.int64)
    order = np.lexsort((codes[:, f], group))
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]]) if len(order) else np.array([], int)
    ends = np.r_[starts[1:], len(order)]
    return order, starts, ends


def _cross_pairs(values: np.ndarray) -> int:
    """Unordered pairs of a block whose values differ: (m^2 - sum of squared run lengths) / 2."""
    counts = np.unique(values, return_counts=True)[1]
    return int((len(values) ** 2 - (counts ** 2).sum()) // 2)


def _far_enough(levels: np.ndarray | None, min_distance: float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if levels is None or min_distance <= 0:
        return np.ones(len(a), dtype=bool)
    gap = np.abs(levels[a] - levels[b])
    return np.isnan(gap) | (gap > min_distance)  # a non-numeric level is not constrained


def count_pairs(codes: np.ndarray, f: int) -> int:
    """How many unordered image pairs differ in factor f only."""
    order, starts, ends = _blocks(codes, f)
    return sum(_cross_pairs(codes[order[s:e], f]) for s, e in zip(starts, ends))


def one_factor_pairs(codes: np.ndarray, f: int, n_pairs: int, rng: np.random.Generator,
                     levels: np.ndarray | None = None, min_distance: float = 0.0) -> np.ndarray:
    """(m, 2) image indices of pairs that differ in factor f only (and, with `levels` and
    `min_distance`, whose numeric levels are more than min_distance apart); m <= n_pairs."""
    codes = np.asarray(codes)
    order, starts, ends = _blocks(codes, f)
    sizes = np.array([_cross_pairs(codes[order[s:e], f]) for s, e in zip(starts, ends)], dtype=np.int64)
    if sizes.sum() == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if sizes.sum() <= ENUMERATE_LIMIT:
        pairs = _all_pairs(codes, f, order, starts, ends, sizes)
        pairs = pairs[_far_enough(levels, min_distance, pairs[:, 0], pairs[:, 1])]
        if len(pairs) > n_pairs:
            pairs = pairs[np.sort(rng.choice(len(pairs), n_pairs, replace=False))]
        return pairs
    return _drawn_pairs(codes, f, order, starts, ends, sizes, n_pairs, rng, levels, min_distance)


def _all_pairs(codes, f, order, starts, ends, sizes) -> np.ndarray:
    found = []
    for s, e, size in zip(starts, ends, sizes):
        if size == 0:
            continue
        members = order[s:e]
        i, j = np.triu_indices(len(members), 1)
        values = codes[members, f]
        keep = values[i] != values[j]
        found.append(np.stack([members[i[keep]], members[j[keep]]], axis=1))
    return np.concatenate(found)


def _drawn_pairs(codes, f, order, starts, ends, sizes, n_pairs, rng, levels, min_distance) -> np.ndarray:
    """Uniform over all qualifying unordered pairs, with replacement: a block by its pair count,
    then an image by its number of partners, then a partner with another value of f."""
    found: list[tuple[int, int]] = []
    for _ in range(n_pairs * MAX_TRIES):
        if len(found) == n_pairs:
            break
        b = rng.choice(len(sizes), p=sizes / sizes.sum())
        members = order[starts[b]:ends[b]]
        values = codes[members, f]
        run_start = np.searchsorted(values, values, side="left")
        run_len = np.searchsorted(values, values, side="right") - run_start
        partners = len(members) - run_len
        p = rng.choice(len(members), p=partners / partners.sum())
        r = rng.integers(partners[p])
        q = r if r < run_start[p] else r + run_len[p]
        a, c = members[p], members[q]
        if _far_enough(levels, min_distance, np.array([a]), np.array([c]))[0]:
            found.append((min(a, c), max(a, c)))
    return np.array(found, dtype=np.int64).reshape(-1, 2)


def pair_differences(scores: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """(m, dims) |score(a) - score(b)| per pair: the |delta delta cos| of each dimension."""
    return np.abs(scores[pairs[:, 0]] - scores[pairs[:, 1]])


def compare_factors(effects: dict[str, np.ndarray]) -> list[dict]:
    """Two-sided Mann-Whitney U for every pair of factors (1-D arrays of |delta delta cos|)."""
    names = [name for name, values in effects.items() if len(values)]
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            u, p = mannwhitneyu(effects[a], effects[b], alternative="two-sided")
            rows.append({"factor_a": a, "factor_b": b, "n_a": len(effects[a]), "n_b": len(effects[b]),
                         "median_a": float(np.median(effects[a])), "median_b": float(np.median(effects[b])),
                         "u": float(u), "p": float(p)})
    return rows
