"""Shift of a per-image continuous measure under a perturbation, per dimension and group.

Made for the social-perception probes (delta cosine of an image to a trait text vs. a
neutral text, per trait dimension), but any per-image score works. Input: a tidy frame
with one row per (sample_id, level, dimension): `value` plus the group columns.

- mean(level): the group's mean value; shift(level) = mean(level) - mean(clean).
- interaction(level, a, b) = shift_a(level) - shift_b(level).

CIs: percentile bootstrap resampling images within each group, jointly across levels and
dimensions (one multinomial weight vector per resample, applied to every column), so the
pairing on the same images is kept. Images missing any (level, dimension) are left out.
"""

from __future__ import annotations

from itertools import combinations

import pandas as pd

from vlmface.errors import VlmfaceError
from vlmface.scoring.bootstrap import percentile_ci, rng_for, row_mean_samples
from vlmface.scoring.settings import ScoreSettings

ALL = "all"


def _wide(frame: pd.DataFrame, group_columns: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    missing = [c for c in ("sample_id", "level", "dimension", "value", *group_columns) if c not in frame]
    if missing:
        raise VlmfaceError(f"shift analysis: the frame lacks column(s) {missing}")
    wide = frame.pivot_table(index="sample_id", columns=["dimension", "level"], values="value", aggfunc="first")
    wide = wide.dropna().sort_index(axis=1)
    groups = frame.drop_duplicates("sample_id").set_index("sample_id").loc[wide.index, group_columns]
    return wide, groups


def shift_tables(frame: pd.DataFrame, clean_level: float, group_columns: list[str],
                 settings: ScoreSettings, label: str = "") -> dict[str, pd.DataFrame]:
    """{"levels": per dimension x level x group rows, "interactions": group pair rows}."""
    wide, groups = _wide(frame, group_columns)
    dimensions = list(dict.fromkeys(wide.columns.get_level_values(0)))
    levels = sorted(set(wide.columns.get_level_values(1)))
    if clean_level not in levels:
        raise VlmfaceError(f"shift analysis: no values at the clean level {clean_level:g} (levels: {levels})")
    values = wide.to_numpy(dtype=float).reshape(len(wide), len(dimensions), len(levels))
    clean = levels.index(clean_level)
    level_rows, interaction_rows = [], []
    columns = [(ALL, pd.Series(ALL, index=wide.index))] + [(c, groups[c].astype(str)) for c in group_columns]
    for col, assigned in columns:
        found = {}
        for value in sorted(assigned.dropna().unique()):
            rows = (assigned == value).to_numpy()
            rng = rng_for(settings.seed, label, "shift", col, value)
            draws = row_mean_samples(values[rows].reshape(rows.sum(), -1), settings.n_boot, rng)
            draws = draws.reshape(settings.n_boot, len(dimensions), len(levels))
            mean = values[rows].mean(axis=0)
            found[value] = (int(rows.sum()), mean - mean[:, [clean]], draws - draws[:, :, [clean]])
            mean_ci = percentile_ci(draws.reshape(settings.n_boot, -1), settings.confidence).reshape(2, *mean.shape)
            shift_ci = percentile_ci(found[value][2].reshape(settings.n_boot, -1),
                                     settings.confidence).reshape(2, *mean.shape)
            for d, dimension in enumerate(dimensions):
                for j, level in enumerate(levels):
                    level_rows.append({
                        "dimension": dimension, "level": level, "clean": j == clean, "group_column": col,
                        "group": value, "n": int(rows.sum()), "mean": mean[d, j],
                        "mean_ci_lo": mean_ci[0, d, j], "mean_ci_hi": mean_ci[1, d, j],
                        "shift": found[value][1][d, j], "shift_ci_lo": shift_ci[0, d, j],
                        "shift_ci_hi": shift_ci[1, d, j], "small": rows.sum() < max(settings.min_group_n, 1)})
        if col != ALL:
            interaction_rows += _interactions(found, dimensions, levels, clean, col, settings)
    return {"levels": pd.DataFrame(level_rows), "interactions": pd.DataFrame(interaction_rows)}


def _interactions(found: dict, dimensions: list, levels: list, clean: int, col: str,
                  settings: ScoreSettings) -> list[dict]:
    eligible = [v for v, (n, _, _) in found.items() if n >= max(settings.min_group_n, 1)]
    rows = []
    for a, b in combinations(eligible, 2):
        (n_a, shift_a, draws_a), (n_b, shift_b, draws_b) = found[a], found[b]
        bounds = percentile_ci((draws_a - draws_b).reshape(settings.n_boot, -1),
                               settings.confidence).reshape(2, len(dimensions), len(levels))
        for d, dimension in enumerate(dimensions):
            for j, level in enumerate(levels):
                if j == clean:
                    continue
                rows.append({"dimension": dimension, "level": level, "group_column": col, "group_a": a,
                             "group_b": b, "n_a": n_a, "n_b": n_b, "shift_a": shift_a[d, j],
                             "shift_b": shift_b[d, j], "interaction": shift_a[d, j] - shift_b[d, j],
                             "interaction_ci_lo": bounds[0, d, j], "interaction_ci_hi": bounds[1, d, j]})
    return rows
