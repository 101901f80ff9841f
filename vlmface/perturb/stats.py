"""Robustness statistics on paired outcomes: per level and group, accuracy, drop from the
clean level, flip rate; between groups, the interaction (difference of drops).

Definitions (per attribute x perturbation x group column x group):
- accuracy(level): share correct (CS@5 for numeric attributes; see `paired`); answer
  errors, invalid and refused answers count wrong, as in `vlmface score`.
- answered_accuracy(level): share correct among answered images; answer_error_rate
  (kept under its old name `error_rate` too), invalid_rate, refusal_rate: shares of images.
- drop(level) = accuracy(clean) - accuracy(level): positive means worse than clean.
- flip_rate(level): share of images whose answer differs from their clean answer.
- interaction(level, a, b) = drop_a(level) - drop_b(level): positive means group a loses
  more than group b under the same change.

CIs are percentile bootstraps that resample images, within groups (group sizes fixed, as
in the scorer), jointly across levels: an image's outcomes at every level travel together,
so the pairing of levels on the same images is kept in every CI. Groups are resampled
independently of each other, so an interaction's CI combines the two groups' draws.
Vectorised: each group's images are reduced to their distinct outcome patterns (a row of
0/1 per level), and one multinomial call of shape (n_boot, patterns) resamples them;
that is exactly the image bootstrap, with no (resamples x images) matrix.
Groups with fewer than `min_group_n` images are reported, flagged `small`, and left out of
the interactions.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from vlmface.perturb.paired import Paired
from vlmface.scoring.bootstrap import percentile_ci, rng_for
from vlmface.scoring.load import INVALID, OK, REFUSED
from vlmface.scoring.settings import ScoreSettings

ALL = "all"  # the group column (and value) of the rows over every image
_KEYS = ["attribute", "metric", "perturbation", "transform", "level"]
LEVEL_COLUMNS = [*_KEYS, "clean", "group_column", "group", "n", "accuracy", "accuracy_ci_lo", "accuracy_ci_hi",
                 "drop", "drop_ci_lo", "drop_ci_hi", "flip_rate", "flip_rate_ci_lo", "flip_rate_ci_hi",
                 "answered_accuracy", "answer_error_rate", "invalid_rate", "refusal_rate",
                 "error_rate", "mae", "small"]
INTERACTION_COLUMNS = [*_KEYS, "group_column", "group_a", "group_b", "n_a", "n_b", "drop_a", "drop_b",
                       "interaction", "interaction_ci_lo", "interaction_ci_hi", "ci_excludes_zero"]


def _patterns_draws(outcomes: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, columns) resampled means of the 0/1 columns of `outcomes` (images x columns)."""
    n = outcomes.shape[0]
    if n == 0:
        return np.full((n_boot, outcomes.shape[1]), np.nan)
    patterns, counts = np.unique(outcomes.astype(np.int8), axis=0, return_counts=True)
    draws = rng.multinomial(n, counts / n, size=n_boot)
    return draws @ patterns / n


def _groupings(paired: Paired) -> list[tuple[str, np.ndarray, list[str]]]:
    """(column, codes, values) for all images and for each group column."""
    n = paired.sample_id.size
    found = [(ALL, np.zeros(n, dtype=np.int64), [ALL])]
    for col, cat in paired.groups.items():
        found.append((col, np.asarray(cat.codes, dtype=np.int64), [str(v) for v in cat.categories]))
    return found


class _Group:
    """Point estimates and bootstrap draws of one group under one perturbation."""

    def __init__(self, paired: Paired, rows: np.ndarray, settings: ScoreSettings, rng: np.random.Generator):
        levels = paired.levels.size
        self.n = int(rows.sum())
        both = np.hstack([paired.correct[rows], paired.flipped[rows]])
        draws = _patterns_draws(both, settings.n_boot, rng)
        self.accuracy_draws, self.flip_draws = draws[:, :levels], draws[:, levels:]
        with np.errstate(invalid="ignore"):
            self.accuracy = paired.correct[rows].mean(axis=0) if self.n else np.full(levels, np.nan)
            self.flip = paired.flipped[rows].mean(axis=0) if self.n else np.full(levels, np.nan)
            self.error_rate = paired.error[rows].mean(axis=0) if self.n else np.full(levels, np.nan)
            status = paired.status[rows]
            answered = (status == OK).sum(axis=0)
            self.answered_accuracy = np.where(answered > 0, paired.correct[rows].sum(axis=0)
                                              / np.maximum(answered, 1), np.nan)
            self.invalid_rate = (status == INVALID).mean(axis=0) if self.n else np.full(levels, np.nan)
            self.refusal_rate = (status == REFUSED).mean(axis=0) if self.n else np.full(levels, np.nan)
        self.mae = np.full(levels, np.nan)
        if paired.abs_error is not None and self.n:
            errors = paired.abs_error[rows]
            answered = ~np.isnan(errors)
            self.mae = np.where(answered.any(axis=0), np.nansum(errors, axis=0) / np.maximum(answered.sum(0), 1),
                                np.nan)
        clean = paired.clean
        self.drop = self.accuracy[clean] - self.accuracy
        self.drop_draws = self.accuracy_draws[:, [clean]] - self.accuracy_draws


def _level_rows(paired: Paired, col: str, value: str, group: _Group, settings: ScoreSettings) -> list[dict]:
    accuracy_ci = percentile_ci(group.accuracy_draws, settings.confidence)
    drop_ci = percentile_ci(group.drop_draws, settings.confidence)
    flip_ci = percentile_ci(group.flip_draws, settings.confidence)
    rows = []
    for j, level in enumerate(paired.levels):
        rows.append({
            "attribute": paired.attribute, "metric": paired.metric, "perturbation": paired.perturbation,
            "transform": paired.transform, "level": float(level), "clean": j == paired.clean,
            "group_column": col, "group": value, "n": group.n,
            "accuracy": group.accuracy[j], "accuracy_ci_lo": accuracy_ci[0, j], "accuracy_ci_hi": accuracy_ci[1, j],
            "drop": group.drop[j], "drop_ci_lo": drop_ci[0, j], "drop_ci_hi": drop_ci[1, j],
            "flip_rate": group.flip[j], "flip_rate_ci_lo": flip_ci[0, j], "flip_rate_ci_hi": flip_ci[1, j],
            "answered_accuracy": group.answered_accuracy[j], "answer_error_rate": group.error_rate[j],
            "invalid_rate": group.invalid_rate[j], "refusal_rate": group.refusal_rate[j],
            "error_rate": group.error_rate[j], "mae": group.mae[j],
            "small": group.n < max(settings.min_group_n, 1)})
    return rows


def _interaction_rows(paired: Paired, col: str, groups: dict[str, _Group], settings: ScoreSettings) -> list[dict]:
    eligible = [value for value, group in groups.items() if group.n >= max(settings.min_group_n, 1)]
    rows = []
    for a, b in combinations(eligible, 2):
        ga, gb = groups[a], groups[b]
        draws = ga.drop_draws - gb.drop_draws
        bounds = percentile_ci(draws, settings.confidence)
        for j, level in enumerate(paired.levels):
            if j == paired.clean:
                continue
            rows.append({
                "attribute": paired.attribute, "metric": paired.metric, "perturbation": paired.perturbation,
                "transform": paired.transform, "level": float(level), "group_column": col,
                "group_a": a, "group_b": b, "n_a": ga.n, "n_b": gb.n,
                "drop_a": ga.drop[j], "drop_b": gb.drop[j], "interaction": ga.drop[j] - gb.drop[j],
                "interaction_ci_lo": bounds[0, j], "interaction_ci_hi": bounds[1, j],
                "ci_excludes_zero": bool(bounds[0, j] > 0 or bounds[1, j] < 0)})
    return rows


def analyze_paired(paired: Paired, settings: ScoreSettings) -> tuple[list[dict], list[dict]]:
    """(level rows, interaction rows) of one attribute under one perturbation."""
    level_rows, interaction_rows = [], []
    for col, codes, values in _groupings(paired):
        groups = {}
        for g, value in enumerate(values):
            rng = rng_for(settings.seed, paired.attribute, paired.perturbation, col, value)
            groups[value] = _Group(paired, codes == g, settings, rng)
            level_rows += _level_rows(paired, col, value, groups[value], settings)
        if col != ALL:
            interaction_rows += _interaction_rows(paired, col, groups, settings)
    return level_rows, interaction_rows


def robustness_tables(paired: list[Paired], settings: ScoreSettings) -> dict[str, pd.DataFrame]:
    levels: list[dict[str, Any]] = []
    interactions: list[dict[str, Any]] = []
    for item in paired:
        rows, pairs = analyze_paired(item, settings)
        levels += rows
        interactions += pairs
    return {"levels": pd.DataFrame(levels, columns=LEVEL_COLUMNS),
            "interactions": pd.DataFrame(interactions, columns=INTERACTION_COLUMNS)}
