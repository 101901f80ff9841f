"""`vlmface.multitest.holm` (the p_holm of metrics.json and of the probes' comparison tables) is
statsmodels' `multipletests(p, method="holm")[1]`, value for value: on random p-values, on ties,
on ones and on a single test; and Holm's textbook example (Holm 1979's step-down, written out)."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from vlmface.multitest import holm


@pytest.fixture
def cheap_collections():
    """statsmodels' Holm calls gc.collect() each time (why vlmface has its own): with every object
    of this test process frozen, that collection has nothing to walk."""
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.mark.parametrize("n", [1, 2, 3, 7, 40, 300])
def test_holm_equals_statsmodels(n, cheap_collections):
    rng = np.random.default_rng(n)
    for trial in range(30):
        p = rng.uniform(0, 1, n) ** rng.uniform(0.5, 4)
        if trial % 3 == 0:
            p = np.round(p, 2)  # ties
        if trial % 5 == 0:
            p[: n // 2] = 1.0
        np.testing.assert_array_equal(holm(p), multipletests(p, method="holm")[1])


def test_holm_by_hand_and_in_the_order_given():
    # sorted 0.01, 0.02, 0.03, 0.04 of m = 4: 4 x 0.01, max(that, 3 x 0.02), max(.., 2 x 0.03), max(.., 1 x 0.04)
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]).shape == (0,)
    # a missing p-value stays missing and is not counted: Holm over the other three
    three = holm([0.03, 0.01, 0.02])
    np.testing.assert_array_equal(holm([0.03, np.nan, 0.01, 0.02]), [three[0], np.nan, three[1], three[2]])
    np.testing.assert_array_equal(holm([np.nan]), [np.nan])
    for not_a_list in ([[0.1, 0.2]], 0.3):  # a table, a single number
        with pytest.raises(ValueError, match="1-d"):
            holm(not_a_list)
