"""Empirical-Bayes shrinkage (vlmface/scoring/metrics/shrinkage.py) against hand-computed
method-of-moments priors, and the posterior means of a scored run's intersection cells."""

from __future__ import annotations

import numpy as np
import pytest

from scoring_fixtures import planted_records, record, run_json, write_run
from vlmface.scoring import score_run
from vlmface.scoring.metrics.shrinkage import FULL_POOLING, beta_prior


def test_method_of_moments_prior_worked_by_hand():
    # cells 10/50 and 40/100: pooled mean 1/3; weights 1/3, 2/3; observed variance of the shares
    # 1/3 (0.2 - 1/3)^2 + 2/3 (0.4 - 1/3)^2 = 2/225; binomial noise (2/9)(1/150 + 1/150) = 4/1350;
    # between-cell variance 8/1350, so a + b = (2/9) / (8/1350) - 1 = 36.5: a = 36.5 / 3, b = 73 / 3
    a, b = beta_prior(np.array([10, 40]), np.array([50, 100]))
    assert (a, b) == pytest.approx((36.5 / 3, 73 / 3))


def test_cells_no_more_varied_than_binomial_noise_pool_fully():
    a, b = beta_prior(np.array([10, 20, 30]), np.array([50, 100, 150]))  # every share 0.2
    assert a + b == pytest.approx(FULL_POOLING) and a / (a + b) == pytest.approx(0.2)


def test_empty_cells_are_left_out_of_the_prior():
    with_empty = beta_prior(np.array([10, 0, 40]), np.array([50, 0, 100]))
    assert with_empty == pytest.approx(beta_prior(np.array([10, 40]), np.array([50, 100])))


@pytest.mark.parametrize("k, n", [([10], [50]), ([10, 0], [50, 0]), ([0, 0], [20, 30]), ([20, 30], [20, 30])],
                         ids=["one cell", "one non-empty cell", "all wrong", "all right"])
def test_no_prior_without_two_cells_or_with_a_pooled_share_of_0_or_1(k, n):
    assert beta_prior(np.array(k), np.array(n)) is None


def test_intersection_cells_get_the_posterior_mean_under_the_recorded_prior(tmp_path):
    records = planted_records(np.random.default_rng(11), 40)
    records.append(record("Solo-0", "emotion", "happy", "happy", race="Solo", gender="Female"))  # a cell of 1
    records += [record(f"Lost-{i}", "emotion", None, "happy", "error", race="Lost", gender="Male")
                for i in range(2)]  # a cell of data errors only: n = 0
    metrics = score_run(write_run(tmp_path / "run", records, run_json()), n_boot=20, min_group_n=5)
    attr = metrics["attributes"]["emotion"]
    a, b = attr["disparity"]["racexgender"]["shrinkage_prior"]
    cells = {value: row for value, row in attr["by_group"]["racexgender"].items() if row["n"] > 0}
    k = np.array([round(row["accuracy"] * row["n"]) for row in cells.values()])
    n = np.array([row["n"] for row in cells.values()])
    assert (a, b) == pytest.approx(beta_prior(k, n))
    assert [row["accuracy_shrunk"] for row in cells.values()] == pytest.approx(list((k + a) / (n + a + b)))
    assert cells["Solo x Female"]["accuracy_shrunk"] == pytest.approx((1 + a) / (1 + a + b))
    assert attr["by_group"]["racexgender"]["Lost x Male"]["accuracy_shrunk"] is None
    assert "shrinkage_prior" not in attr["disparity"]["race"]
