"""Scorer edge cases that mutation testing (benchmarks/mutation.py) found no test for: each test
below fails on a named mutant of the module it covers, and passes on the real code."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring_fixtures import record, run_json, write_run
from vlmface.scoring import score_run


def _with_null_groups() -> list[dict]:
    """A quarter of the rows have no race (all answered wrong); X is all women, Y half and half."""
    records = []
    for i in range(80):
        race = None if i % 4 == 0 else "X" if i % 4 == 1 else "Y"
        truth = "sad" if race is None or i % 3 == 0 else "happy"
        records.append(record(f"s{i}", "emotion", "happy", truth, race=race,
                              gender="Female" if i % 2 else "Male"))
    return records


def test_an_intersection_leaves_out_rows_with_a_null_in_either_column(tmp_path):
    """groups.py `_intersection`: valid = both codes >= 0 (the `|` mutant keeps half-null rows)."""
    records = _with_null_groups()
    attr = score_run(write_run(tmp_path, records, run_json()), n_boot=20, min_group_n=1)["attributes"]["emotion"]
    frame = pd.DataFrame([{**r["groups"], "right": r["label"] == r["truth"]} for r in records])
    expected = frame.dropna().groupby(["race", "gender"])["right"].agg(["size", "mean"])
    cells = attr["by_group"]["racexgender"]
    assert set(cells) == {f"{race} x {gender}" for race, gender in expected.index}
    for (race, gender), row in expected.iterrows():
        assert cells[f"{race} x {gender}"]["n"] == row["size"]
        assert cells[f"{race} x {gender}"]["accuracy"] == pytest.approx(row["mean"], abs=1e-12)
    assert sum(c["n"] for c in cells.values()) == frame["race"].notna().sum() == 60
    assert sum(g["n"] for g in attr["by_group"]["gender"].values()) == 80  # gender is never null
    # the gap and spread are over the three real cells only (no cell made of the race-less rows)
    disparity = attr["disparity"]["racexgender"]
    assert disparity["gap"] == pytest.approx(expected["mean"].max() - expected["mean"].min(), abs=1e-12)
    assert disparity["std"] == pytest.approx(expected["mean"].std(ddof=0), abs=1e-12)


def test_an_undeclared_ordinal_truth_is_never_off_by_one(tmp_path):
    """outcomes.py: only declared bins have a place in the order (truth < k). A truth outside the
    declared bins (kept, with the code after the last bin) is not "off by one" from the last bin.
    (An ok answer outside them never gets this far: load.py refuses it.)"""
    bins = ("0-9", "10-19", "20-29", "30-39")
    pairs = [("40-49", "30-39"), ("20-29", "30-39"), ("30-39", "30-39"), ("40-49", "20-29")]
    records = [record(f"s{i}", "age_bin", pred, truth, race="A", gender="F")
               for i, (truth, pred) in enumerate(pairs)]
    overall = score_run(write_run(tmp_path, records, run_json("age_bin", "ordinal", bins)),
                        n_boot=20)["attributes"]["age_bin"]["overall"]
    assert overall["n"] == 4
    assert overall["accuracy"] == pytest.approx(1 / 4)
    assert overall["off_by_one_accuracy"] == pytest.approx(2 / 4)  # 20-29 vs 30-39, and the exact one


def test_a_group_of_one_has_a_rate_and_an_empty_one_has_none(tmp_path):
    """outcomes.py `ratio`: a share wherever the denominator is above 0 (a group of one item is 0 or
    1, never null)."""
    records = [record("a0", "emotion", "happy", "happy", race="A", gender="F"),
               record("b0", "emotion", "sad", "happy", race="B", gender="F"),
               record("c0", "emotion", None, "happy", "refused", race="C", gender="F")]
    attr = score_run(write_run(tmp_path, records, run_json()), n_boot=20, min_group_n=1)["attributes"]["emotion"]
    groups = attr["by_group"]["race"]
    assert (groups["A"]["accuracy"], groups["B"]["accuracy"], groups["C"]["accuracy"]) == (1.0, 0.0, 0.0)
    assert groups["A"]["answered_accuracy"] == 1.0 and groups["B"]["answered_accuracy"] == 0.0
    assert groups["C"]["answered_accuracy"] is None and groups["C"]["refusal_rate"] == 1.0


def test_a_small_table_gets_a_permutation_test_of_pearsons_chi_square(tmp_path):
    """metrics/significance.py: with an expected count under 5 the accuracy-by-group test is a
    permutation test whose statistic is Pearson's chi-square (scipy, no continuity correction) and
    whose p-value is the share of label shuffles at least as extreme (checked against our own shuffles)."""
    from scipy import stats

    right = {"A": (6, 5), "B": (6, 1), "C": (5, 3), "D": (1, 1)}  # group: (n, correct); D has one item
    records = [record(f"{g}{i}", "emotion", "happy", "happy" if i < k else "sad", race=g, gender="Female")
               for g, (n, k) in right.items() for i in range(n)]
    attr = score_run(write_run(tmp_path, records, run_json()), n_boot=2000, min_group_n=1)["attributes"]["emotion"]
    test = attr["disparity"]["race"]["test"]
    table = np.array([[k, n - k] for n, k in right.values()])
    assert test["method"] == "permutation chi-square"
    assert test["statistic"] == pytest.approx(stats.chi2_contingency(table, correction=False).statistic, abs=1e-9)
    rng = np.random.default_rng(0)
    outcomes = np.repeat([1, 0], table.sum(axis=0))  # every item's correctness, shuffled over the items
    groups = np.repeat(np.arange(len(right)), table.sum(axis=1))
    shuffled = []
    for _ in range(4000):
        correct = np.bincount(groups, weights=rng.permutation(outcomes), minlength=len(right))
        shuffled.append(stats.chi2_contingency(np.column_stack([correct, table.sum(axis=1) - correct]),
                                               correction=False).statistic)
    p = np.mean(np.array(shuffled) >= test["statistic"] - 1e-9)
    assert test["p_value"] == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) * (1 / 2000 + 1 / 4000)) + 0.002)


@pytest.mark.parametrize("per_group, method, statistic, p_value", [
    ({"A": (12, 12), "B": (12, 12)}, "none (every item alike)", 0.0, 1.0),  # nothing to test
    ({"A": (10, 5), "B": (10, 5)}, "chi-square", 0.0, 1.0),  # every expected count exactly 5: chi-square
])
def test_the_accuracy_test_at_its_boundaries(tmp_path, per_group, method, statistic, p_value):
    """metrics/significance.py: a table whose items are all right (or all wrong) is not tested (statistic 0,
    p 1); chi-square is used once every expected count is at least 5 (MIN_EXPECTED)."""
    records = [record(f"{g}{i}", "emotion", "happy", "happy" if i < k else "sad", race=g, gender="Female")
               for g, (n, k) in per_group.items() for i in range(n)]
    test = score_run(write_run(tmp_path, records, run_json()), n_boot=50,
                     min_group_n=1)["attributes"]["emotion"]["disparity"]["race"]["test"]
    assert (test["method"], test["statistic"], test["p_value"]) == (method, statistic, p_value)


@pytest.mark.parametrize("n_perm", [2000, 999])  # n_perm is --n-boot: an odd count too (999 ^ 1 is 998)
def test_a_permutation_p_value_is_never_zero_but_one_over_n_perm_plus_one(n_perm):
    """All 4 correct answers in the group of 4, none in the group of 30: expected counts below 5, so
    the permutation test runs; 1 in C(34, 4) = 46,376 shuffles ties the observed table, so with 2,000
    (or 999) shuffles (this seed) none does, and p is (1 + 0) / (1 + n_perm) (Phipson & Smyth 2010), not 0."""
    from vlmface.scoring.metrics.significance import accuracy_test

    test = accuracy_test(np.array([4, 0]), np.array([4, 30]), n_perm=n_perm, rng=np.random.default_rng(0))
    assert test["method"] == "permutation chi-square"
    assert test["statistic"] == pytest.approx(34.0)  # Pearson chi-square of [[4, 0], [0, 30]]: N
    assert test["p_value"] == 1 / (1 + n_perm)
