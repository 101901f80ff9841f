"""`--limit N`: a seeded sample stratified by the group columns, never the first N."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from vlmface.data.samples import Sample


def _allocate(sizes: dict[tuple, int], limit: int) -> dict[tuple, int]:
    """Largest-remainder allocation of `limit` proportional to stratum sizes."""
    total = sum(sizes.values())
    exact = {key: limit * size / total for key, size in sizes.items()}
    quota = {key: int(value) for key, value in exact.items()}
    leftover = limit - sum(quota.values())
    by_remainder = sorted(sizes, key=lambda key: (-(exact[key] - quota[key]), -sizes[key], str(key)))
    for key in by_remainder[:leftover]:
        quota[key] += 1
    return quota


def stratified_limit(samples: list[Sample], group_columns: list[str], limit: int | None,
                     seed: int = 0) -> list[Sample]:
    """The same `limit` samples for the same inputs and seed, with each group-column
    combination represented in proportion to the full set. Order: by sample id."""
    if limit is None or limit >= len(samples):
        return sorted(samples, key=lambda s: s.id)
    if limit <= 0:
        raise ValueError("--limit must be a positive number of samples")
    strata: dict[tuple, list[Sample]] = defaultdict(list)
    for sample in sorted(samples, key=lambda s: s.id):
        strata[tuple(str(sample.labels.get(col)) for col in group_columns)].append(sample)
    quota = _allocate({key: len(members) for key, members in strata.items()}, limit)
    rng = np.random.default_rng(seed)
    chosen: list[Sample] = []
    for key in sorted(strata):
        members = strata[key]
        picks = rng.permutation(len(members))[: quota[key]]
        chosen.extend(members[i] for i in sorted(picks))
    return sorted(chosen, key=lambda s: s.id)
