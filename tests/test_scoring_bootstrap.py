"""Bootstrap CIs: seeded, vectorised, and covering planted values at about the nominal rate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from vlmface.scoring.attributes import ScoredAttribute
from vlmface.scoring.bootstrap import (mean_samples, paired_difference_samples, percentile_ci,
                                       proportion_ci, proportion_samples, row_mean_samples, spread_samples,
                                       wilson_ci)
from vlmface.scoring.load import _group_values, encode_attribute
from vlmface.scoring.score import score_attribute
from vlmface.scoring.settings import ScoreSettings

PLANTED = {"A": 0.55, "B": 0.70, "C": 0.80, "D": 0.90}
LABELS = ("x", "y", "z")


def draw_attribute(rng: np.random.Generator, n_per_group: int):
    """One synthetic sample of the planted population, encoded as the scorer reads it."""
    groups = np.repeat(list(PLANTED), n_per_group)
    right = rng.random(groups.size) < np.repeat(list(PLANTED.values()), n_per_group)
    truth = rng.integers(3, size=groups.size)
    pred = np.where(right, truth, (truth + rng.integers(1, 3, size=groups.size)) % 3)
    frame = pd.DataFrame({"sample_id": np.arange(groups.size).astype(str), "status": "ok",
                          "truth": np.array(LABELS)[truth], "label": np.array(LABELS)[pred],
                          "g:race": _group_values(list(groups))})
    return encode_attribute(frame, ScoredAttribute("emotion", "categorical", LABELS), ["race"])


def covers(bounds: list[float], value: float) -> bool:
    return bounds[0] <= value <= bounds[1]


def test_cis_cover_planted_values_at_nominal_rate():
    rng = np.random.default_rng(2024)
    draws, confidence = 200, 0.95
    hits = {"group": 0, "gap": 0, "overall": 0}
    true_gap = max(PLANTED.values()) - min(PLANTED.values())
    true_overall = np.mean(list(PLANTED.values()))
    for draw in range(draws):
        result = score_attribute(draw_attribute(rng, 150),
                                 ScoreSettings(n_boot=1000, seed=draw, confidence=confidence))
        by_group = result["by_group"]["race"]
        hits["group"] += sum(covers(by_group[g]["accuracy_ci"], p) for g, p in PLANTED.items())
        hits["gap"] += covers(result["disparity"]["race"]["gap_ci"], true_gap)
        hits["overall"] += covers(result["overall"]["accuracy_ci"], true_overall)
    for name, trials in (("group", draws * len(PLANTED)), ("gap", draws)):
        # two-sided 99.9% binomial acceptance region around the nominal rate
        lo, hi = stats.binom.interval(0.999, trials, confidence)
        assert lo <= hits[name] <= hi, (name, hits[name] / trials)
    # resampling all items ignores the fixed group sizes of this design: conservative
    assert hits["overall"] >= stats.binom.interval(0.999, draws, confidence)[0]


def test_same_seed_same_intervals_other_seed_differs():
    data = draw_attribute(np.random.default_rng(0), 60)
    first = score_attribute(data, ScoreSettings(n_boot=300, seed=1))
    again = score_attribute(data, ScoreSettings(n_boot=300, seed=1))
    other = score_attribute(data, ScoreSettings(n_boot=300, seed=2))
    assert first == again
    assert first["disparity"]["race"]["gap_ci"] != other["disparity"]["race"]["gap_ci"]


def _moment_tolerances(mean: float, var: float, mu4: float, n_boot: int, sigmas: float = 6.0):
    """Tolerances on the sample mean and the sample variance of n_boot independent draws of a
    distribution with this mean, variance and fourth central moment: `sigmas` standard errors
    (SE of a mean: sqrt(var / n_boot); SE of a variance: sqrt((mu4 - var^2) / n_boot))."""
    return sigmas * np.sqrt(var / n_boot), sigmas * np.sqrt((mu4 - var ** 2) / n_boot)


@pytest.mark.parametrize("k,n", [(8, 20), (30, 100), (1, 7), (49, 50)])
def test_proportion_samples_have_the_binomials_exact_mean_and_variance(k, n):
    """A group's resampled accuracy is Binomial(n, k/n) / n: mean k/n, variance p(1-p)/n.
    The tolerances come from the number of draws, so drawing Binomial(n - 1, p) (a bias of
    p/n in the mean) or any other n fails."""
    n_boot = 400_000
    samples = proportion_samples(np.array([k, 0, 0]), np.array([n, 0, 9]), n_boot, np.random.default_rng(n))
    assert samples.shape == (n_boot, 3)
    p = k / n
    var = p * (1 - p) / n
    mu4 = var ** 2 * (3 + (1 - 6 * p * (1 - p)) / (n * p * (1 - p)))  # binomial's 4th central moment / n^4
    mean_tol, var_tol = _moment_tolerances(p, var, mu4, n_boot)
    assert mean_tol < p / n / 3  # the test can see a bias of p/n
    assert abs(samples[:, 0].mean() - p) < mean_tol
    assert abs(samples[:, 0].var(ddof=1) - var) < var_tol
    assert np.isnan(samples[:, 1]).all() and (samples[:, 2] == 0).all()


def test_proportion_samples_of_several_groups_are_independent_columns():
    samples = proportion_samples(np.array([10, 40]), np.array([20, 50]), 100_000, np.random.default_rng(4))
    assert abs(np.corrcoef(samples.T)[0, 1]) < 6 / np.sqrt(100_000)
    assert samples[:, 0].mean() == pytest.approx(0.5, abs=6 * np.sqrt(0.25 / 20 / 100_000))
    assert samples[:, 1].mean() == pytest.approx(0.8, abs=6 * np.sqrt(0.16 / 50 / 100_000))


def test_mean_samples_have_the_exact_mean_and_variance_of_the_mean():
    values = np.array([0.0, 1.0, 1.0, 5.0, 2.5, 7.0, 1.0, 3.0])
    n_boot = 200_000
    means = mean_samples(values, n_boot, np.random.default_rng(5))
    var = values.var() / values.size  # bootstrap variance of a mean: population variance / n
    mean_tol = 6 * np.sqrt(var / n_boot)
    assert abs(means.mean() - values.mean()) < mean_tol
    assert means.var() == pytest.approx(var, rel=6 * np.sqrt(3 / n_boot))
    assert np.isnan(mean_samples(np.array([]), 5, np.random.default_rng(0))).all()


def test_row_mean_samples_resample_rows_jointly_with_exact_moments():
    rng = np.random.default_rng(6)
    values = np.column_stack([rng.integers(0, 2, 40), rng.integers(0, 2, 40)]).astype(float)
    values[:, 1] = values[:, 0]  # two identical columns: every resample must give equal means
    n_boot = 100_000
    means = row_mean_samples(values, n_boot, np.random.default_rng(7))
    assert means.shape == (n_boot, 2) and (means[:, 0] == means[:, 1]).all()
    var = values[:, 0].var() / len(values)
    assert abs(means[:, 0].mean() - values[:, 0].mean()) < 6 * np.sqrt(var / n_boot)
    assert means[:, 0].var() == pytest.approx(var, rel=6 * np.sqrt(3 / n_boot))
    assert np.isnan(row_mean_samples(np.empty((0, 3)), 4, rng)).all()


def test_spread_is_max_minus_min_per_resample_ignoring_empty_groups():
    samples = np.array([[0.2, 0.9, np.nan], [0.5, 0.1, np.nan]])
    assert spread_samples(samples) == pytest.approx([0.7, 0.4])


def test_mean_samples_match_the_standard_error_of_the_mean():
    rng = np.random.default_rng(1)
    values = rng.exponential(4.0, size=2_000).round(1)
    means = mean_samples(values, 4_000, np.random.default_rng(2))
    assert means.mean() == pytest.approx(values.mean(), abs=0.01)
    assert means.std() == pytest.approx(values.std() / np.sqrt(values.size), rel=0.05)


def test_paired_difference_resamples_the_four_cells_jointly():
    cells = np.array([500, 40, 80, 380])  # both, a only, b only, neither
    samples = paired_difference_samples(cells, 20_000, np.random.default_rng(3))
    n = cells.sum()
    p10, p01 = cells[1] / n, cells[2] / n
    assert samples.mean() == pytest.approx((80 - 40) / n, abs=0.001)
    # variance of a paired difference of proportions (depends on the discordant cells only)
    assert samples.std() == pytest.approx(np.sqrt((p10 + p01 - (p01 - p10) ** 2) / n), rel=0.03)


def test_percentile_ci_bounds_and_all_nan_columns():
    samples = np.column_stack([np.linspace(0, 1, 1001), np.full(1001, np.nan)])
    bounds = percentile_ci(samples, 0.9)
    assert bounds[:, 0] == pytest.approx([0.05, 0.95])
    assert np.isnan(bounds[:, 1]).all()


def test_collapsed_groups_get_wilson_intervals_and_empty_groups_none():
    """0 of 10 or 10 of 10 right: the bootstrap would be a point, so the Wilson interval
    (statsmodels); an empty group: no interval, computed without 0/0 warnings."""
    import warnings

    from statsmodels.stats.proportion import proportion_confint

    successes, n = np.array([0, 0, 10, 6]), np.array([0, 10, 10, 10])
    samples = proportion_samples(successes, n, 2000, np.random.default_rng(8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bounds, methods = proportion_ci(successes, n, samples, 0.95)
        empty = wilson_ci(np.array([0]), np.array([0]), 0.95)
    assert methods == ["bootstrap", "wilson", "wilson", "bootstrap"]
    assert np.isnan(bounds[:, 0]).all() and np.isnan(empty).all()
    for i in (1, 2):
        assert bounds[:, i] == pytest.approx(proportion_confint(successes[i], n[i], alpha=0.05, method="wilson"))
    assert bounds[0, 3] < 0.6 < bounds[1, 3]
