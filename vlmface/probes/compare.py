"""Comparing models' social-perception scores on the same images (paired).

Input: every model's per-image dimension scores (image_scores.csv: model, sample_id,
dimension, value; `model` is the display name) and the images' factor labels. Every group's
resamples draw the same images (or, with a cluster column, the same identities) for every
model at once, so a difference between two models is bootstrapped paired; groups are
resampled independently of each other (group sizes fixed, as in `social.group_means`).

    model_differences   per model pair x dimension x group: diff = mean_B - mean_A, CI, p, Holm
    gap_differences     per model pair x dimension x factor: gap_A, gap_B (highest minus lowest
                        group mean, the two groups fixed from model A, or a chosen contrast), their
                        difference gap_B - gap_A, CI, p, Holm
    rank_agreement      per model pair x dimension x factor: Kendall's tau-b of the group means
                        with a bootstrap CI when the factor has >= 3 groups; with 2 groups, no
                        rank correlation (it can only be +1 or -1) but whether both models order
                        the pair the same way, and the bootstrap probability that they do

CIs are percentile bootstrap intervals; p-values are two-sided Wald tests of "no difference"
with the bootstrap standard error (not floored at 2 / n_boot); Holm's correction runs over
all the rows of a file (statsmodels).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from vlmface.errors import VlmfaceError
from vlmface.multitest import holm
from vlmface.probes.resample import mean_samples, two_sided_p
from vlmface.probes.social import ALL, groupings
from vlmface.scoring.bootstrap import percentile_ci, rng_for

DIFFERENCE_COLUMNS = ["dimension", "group_col", "group", "model_a", "model_b", "n", "diff", "ci_lo", "ci_hi",
                      "p_value", "p_holm"]
GAP_COLUMNS = ["dimension", "group_col", "model_a", "model_b", "gap_a", "gap_b", "diff", "ci_lo", "ci_hi",
               "p_value", "p_holm"]
GAP_GROUP_COLUMNS = ["dimension", "group_col", "model_a", "model_b", "high_group", "low_group", "chosen_by"]
AGREEMENT_COLUMNS = ["dimension", "group_col", "model_a", "model_b", "n_groups", "kendall_tau", "tau_ci_lo",
                     "tau_ci_hi", "same_order", "p_same_order"]


@dataclass
class Cube:
    """Per-image scores of every model: values (n images, M models, D dimensions)."""

    models: list[str]
    dimensions: list[str]
    values: np.ndarray


@dataclass
class GroupDraws:
    col: str
    group: str
    n: int
    mean: np.ndarray  # (M, D)
    draws: np.ndarray  # (n_boot, M, D)


def score_cube(image_scores: pd.DataFrame, sample_ids: list[str] | np.ndarray, models: list[str]) -> Cube:
    """The scores of `models` on `sample_ids` (in that order) from a tidy image_scores frame."""
    dimensions = list(dict.fromkeys(image_scores["dimension"]))
    wide = image_scores.pivot_table(index="sample_id", columns=["model", "dimension"], values="value",
                                    aggfunc="first")
    want = pd.MultiIndex.from_product([models, dimensions])
    missing = [m for m in models if m not in wide.columns.get_level_values(0)]
    if missing:
        raise VlmfaceError(f"model comparison: no per-image scores for model(s) {missing}")
    wide = wide.reindex(index=pd.Index(np.asarray(sample_ids).astype(str)), columns=want)
    values = wide.to_numpy(dtype=float).reshape(len(wide), len(models), len(dimensions))
    if np.isnan(values).any():
        row = int(np.argwhere(np.isnan(values))[0][0])
        raise VlmfaceError(f"model comparison: sample {wide.index[row]!r} lacks a score for some model; "
                           "models are compared on the same images only")
    return Cube(models, dimensions, values)


def group_draws(cube: Cube, table: pd.DataFrame, columns: list[str], levels: dict[str, list[str]],
                n_boot: int, seed: int, cluster: str | None = None) -> list[GroupDraws]:
    """Every group's means and paired resampled means (whole set first, then each factor's groups)."""
    n, m, d = cube.values.shape
    clusters = table[cluster].astype(str).to_numpy() if cluster else None
    found = []
    for col, group, mask in groupings(table, columns, levels):
        rng = rng_for(seed, "probe-compare", col, group)
        flat = cube.values[mask].reshape(int(mask.sum()), m * d)
        draws = mean_samples(flat, n_boot, rng, None if clusters is None else clusters[mask])
        found.append(GroupDraws(col, group, int(mask.sum()), flat.mean(axis=0).reshape(m, d),
                                draws.reshape(n_boot, m, d)))
    return found


def model_pairs(models: list[str]) -> list[tuple[int, int]]:
    return list(combinations(range(len(models)), 2))


def model_differences(cube: Cube, groups: list[GroupDraws], confidence: float) -> pd.DataFrame:
    rows = []
    for a, b in model_pairs(cube.models):
        for d, dim in enumerate(cube.dimensions):
            for g in groups:
                draws = g.draws[:, b, d] - g.draws[:, a, d]
                lo, hi = percentile_ci(draws, confidence)
                diff = g.mean[b, d] - g.mean[a, d]
                rows.append((dim, g.col, g.group, cube.models[a], cube.models[b], g.n, diff, lo, hi,
                             float(two_sided_p(diff, draws)), np.nan))
    frame = pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS)
    frame["p_holm"] = holm(frame["p_value"])
    return frame


def parse_contrasts(texts: list[str] | None) -> dict[str, tuple[str, str]]:
    """`--contrast C=G1,G2` (repeatable) -> {C: (G1, G2)}: the gap of C is mean(G1) - mean(G2)."""
    found: dict[str, tuple[str, str]] = {}
    for text in texts or []:
        col, _, pair = text.partition("=")
        groups = [g.strip() for g in pair.split(",")]
        if not col.strip() or len(groups) != 2 or not all(groups):
            raise VlmfaceError(f"--contrast {text!r}: write COLUMN=GROUP1,GROUP2 (e.g. race5=Black,White)")
        if col.strip() in found:
            raise VlmfaceError(f"--contrast: column {col.strip()!r} given twice; one contrast per column")
        found[col.strip()] = (groups[0], groups[1])
    return found


def _by_column(groups: list[GroupDraws]) -> dict[str, list[GroupDraws]]:
    found: dict[str, list[GroupDraws]] = {}
    for g in groups:
        if g.col != ALL:
            found.setdefault(g.col, []).append(g)
    return found


def _contrast_groups(col: str, part: list[GroupDraws], contrast: tuple[str, str]) -> tuple[GroupDraws, GroupDraws]:
    named = {g.group: g for g in part}
    unknown = [g for g in contrast if g not in named]
    if unknown:
        raise VlmfaceError(f"--contrast {col}={','.join(contrast)}: no group(s) {unknown} in column {col!r}; "
                           f"its groups are {sorted(named)}")
    return named[contrast[0]], named[contrast[1]]


def gap_differences(cube: Cube, groups: list[GroupDraws], confidence: float,
                    contrasts: dict[str, tuple[str, str]] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(gap_differences, which two groups each gap is between)."""
    contrasts = contrasts or {}
    by_col = _by_column(groups)
    unknown = sorted(set(contrasts) - set(by_col))
    if unknown:
        raise VlmfaceError(f"--contrast: no factor column {unknown}; the columns are {sorted(by_col)}")
    rows, chosen = [], []
    for a, b in model_pairs(cube.models):
        for d, dim in enumerate(cube.dimensions):
            for col, part in by_col.items():
                if len(part) < 2:
                    continue
                if col in contrasts:
                    high, low = _contrast_groups(col, part, contrasts[col])
                    how = "contrast"
                else:
                    means = np.array([g.mean[a, d] for g in part])
                    high, low = part[int(np.argmax(means))], part[int(np.argmin(means))]
                    how = f"highest and lowest of {cube.models[a]}"
                gap_a = high.mean[a, d] - low.mean[a, d]
                gap_b = high.mean[b, d] - low.mean[b, d]
                draws = (high.draws[:, b, d] - low.draws[:, b, d]) - (high.draws[:, a, d] - low.draws[:, a, d])
                lo, hi = percentile_ci(draws, confidence)
                rows.append((dim, col, cube.models[a], cube.models[b], gap_a, gap_b, gap_b - gap_a, lo, hi,
                             float(two_sided_p(gap_b - gap_a, draws)), np.nan))
                chosen.append((dim, col, cube.models[a], cube.models[b], high.group, low.group, how))
    frame = pd.DataFrame(rows, columns=GAP_COLUMNS)
    frame["p_holm"] = holm(frame["p_value"])
    return frame, pd.DataFrame(chosen, columns=GAP_GROUP_COLUMNS)


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between the columns of x and y (..., G), row by row (NaN if either is constant)."""
    i, j = np.triu_indices(x.shape[-1], 1)
    sx, sy = np.sign(x[..., i] - x[..., j]), np.sign(y[..., i] - y[..., j])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sx * sy).sum(axis=-1) / np.sqrt((sx != 0).sum(axis=-1) * (sy != 0).sum(axis=-1))


def rank_agreement(cube: Cube, groups: list[GroupDraws], confidence: float) -> pd.DataFrame:
    """Kendall's tau for factors with >= 3 groups; for 2 groups the order agreement only."""
    rows = []
    for a, b in model_pairs(cube.models):
        for d, dim in enumerate(cube.dimensions):
            for col, part in _by_column(groups).items():
                if len(part) < 2:
                    continue
                means = np.array([g.mean[:, d] for g in part])  # (G, M)
                draws = np.stack([g.draws[:, :, d] for g in part], axis=-1)  # (n_boot, M, G)
                row = {"dimension": dim, "group_col": col, "model_a": cube.models[a], "model_b": cube.models[b],
                       "n_groups": len(part), "kendall_tau": np.nan, "tau_ci_lo": np.nan, "tau_ci_hi": np.nan,
                       "same_order": None, "p_same_order": np.nan}
                if len(part) >= 3:
                    row["kendall_tau"] = float(kendall_tau_b(means[:, a], means[:, b]))
                    row["tau_ci_lo"], row["tau_ci_hi"] = percentile_ci(kendall_tau_b(draws[:, a], draws[:, b]),
                                                                       confidence)
                else:
                    gap = means[0] - means[1]  # (M,)
                    drawn = draws[:, :, 0] - draws[:, :, 1]
                    row["same_order"] = bool(np.sign(gap[a]) == np.sign(gap[b]))
                    row["p_same_order"] = float(np.mean(np.sign(drawn[:, a]) == np.sign(drawn[:, b])))
                rows.append(row)
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


@dataclass
class Comparison:
    differences: pd.DataFrame
    gaps: pd.DataFrame
    gap_groups: pd.DataFrame
    agreement: pd.DataFrame


def compare_models(image_scores: pd.DataFrame, table: pd.DataFrame, columns: list[str],
                   levels: dict[str, list[str]], models: list[str], *, n_boot: int, confidence: float, seed: int,
                   cluster: str | None = None, contrasts: dict[str, tuple[str, str]] | None = None) -> Comparison:
    """Every paired comparison table of `models` (display names, in order) on the images of
    `table` (sample_id + factor columns, + the cluster column if any)."""
    cube = score_cube(image_scores, table["sample_id"].to_numpy(), models)
    groups = group_draws(cube, table, columns, levels, n_boot, seed, cluster)
    gaps, chosen = gap_differences(cube, groups, confidence, contrasts)
    return Comparison(model_differences(cube, groups, confidence), gaps, chosen,
                      rank_agreement(cube, groups, confidence))
