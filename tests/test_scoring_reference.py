"""`--reference-group COLUMN=GROUP`: score_run's check of the column (vlmface/scoring/score.py), and
the reference-group family's numbers (vlmface/scoring/metrics/reference.py) against scipy's
Fisher exact and Welch t-tests on counts and errors taken from the records themselves."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from scoring_fixtures import planted_records, record, run_json, write_run
from vlmface.errors import VlmfaceError
from vlmface.scoring import score_run


def test_a_reference_group_of_an_existing_column_is_scored(tmp_path):
    run_dir = write_run(tmp_path / "run", planted_records(np.random.default_rng(9), 20), run_json())
    metrics = score_run(run_dir, n_boot=20, reference_group=("race", "White"))
    reference = metrics["attributes"]["emotion"]["disparity"]["race"]["reference"]
    assert reference["group"] == "White" and set(reference["groups"]) == {"Black", "East Asian", "Indian"}
    assert metrics["scoring"]["reference_group"] == ["race", "White"]


def test_a_reference_column_the_run_lacks_is_refused_naming_both(tmp_path):
    run_dir = write_run(tmp_path / "run", planted_records(np.random.default_rng(9), 20), run_json())
    with pytest.raises(VlmfaceError, match=r"^--reference-group site=North: this run has no group column 'site'; "
                                           r"its group columns are race, gender$"):
        score_run(run_dir, n_boot=20, reference_group=("site", "North"))


def test_a_run_without_group_columns_says_none(tmp_path):
    records = [record(f"s{i}", "emotion", "happy", ("happy", "sad")[i % 2]) for i in range(6)]
    run_dir = write_run(tmp_path / "run", records, run_json(labels=("happy", "sad"), group_columns=()))
    with pytest.raises(VlmfaceError, match=r"no group column 'race'; its group columns are none$"):
        score_run(run_dir, n_boot=20, reference_group=("race", "White"))


def _reference(tmp_path, records, run, group="White"):
    metrics = score_run(write_run(tmp_path / "run", records, run), n_boot=50, min_group_n=1,
                        reference_group=("race", group))
    return next(iter(metrics["attributes"].values()))["disparity"]["race"]["reference"]


def test_categorical_difference_ratio_and_fisher_p_from_the_records(tmp_path):
    records = planted_records(np.random.default_rng(12), 25)
    records += [record("Solo-0", "emotion", "happy", "happy", race="Solo")]  # n = 1: still tested
    records += [record(f"Lost-{i}", "emotion", None, "happy", "error", race="Lost") for i in range(2)]
    reference = _reference(tmp_path, records, run_json())
    right = {race: [r["status"] == "ok" and r["label"] == r["truth"] for r in records
                    if r["groups"]["race"] == race and r["status"] != "error"]
             for race in ("Black", "East Asian", "Indian", "White", "Solo")}
    ref = right["White"]
    assert (reference["group"], reference["metric"], reference["n"]) == ("White", "accuracy", 25)
    assert reference["accuracy"] == pytest.approx(np.mean(ref))
    assert set(reference["groups"]) == {"Black", "East Asian", "Indian", "Solo", "Lost"}
    for race in ("Black", "East Asian", "Indian", "Solo"):
        row, mine = reference["groups"][race], right[race]
        assert row["n"] == len(mine) and row["accuracy"] == pytest.approx(np.mean(mine))
        assert row["difference"] == pytest.approx(np.mean(mine) - np.mean(ref))
        assert row["ratio"] == pytest.approx(np.mean(mine) / np.mean(ref))
        table = [[sum(mine), len(mine) - sum(mine)], [sum(ref), len(ref) - sum(ref)]]
        assert row["p_value"] == pytest.approx(stats.fisher_exact(table).pvalue)
        assert row["test"] == "fisher exact"
        lo, hi = row["difference_ci"]
        assert lo <= row["difference"] <= hi
    assert reference["groups"]["Lost"]["n"] == 0 and reference["groups"]["Lost"]["p_value"] is None
    # Solo's one answer is right, so each of its draws is 1 and each ratio draw is 1 / (a White draw) >= 1
    solo = reference["groups"]["Solo"]
    lo, hi = solo["ratio_ci"]
    assert 1 <= lo <= solo["ratio"] <= hi and solo["ratio"] == pytest.approx(1 / np.mean(ref))


def test_numeric_p_is_welch_on_the_answered_absolute_errors(tmp_path):
    rng = np.random.default_rng(13)
    records = []
    for race, spread in (("White", 3), ("Black", 9)):
        for i in range(30):
            truth = float(rng.integers(18, 70))
            records.append(record(f"{race}{i}", "age", truth + float(rng.integers(-spread, spread + 1)), truth,
                                  race=race))
    records += [record("Pair0", "age", 31.0, 30.0, race="Pair"), record("Pair1", "age", 46.0, 50.0, race="Pair")]
    # non-answers carry no error: left out of the t-test (an invalid and a refused line per group)
    records += [record(f"{race}-x{i}", "age", None, 40.0, status, race=race)
                for race in ("White", "Black", "Pair") for i, status in enumerate(("invalid", "refused"))]
    records += [record("Single0", "age", 40.0, 41.0, race="Single")]
    reference = _reference(tmp_path, records, run_json("age", "numeric", (), ("race",)))
    errors = {race: [abs(r["label"] - r["truth"]) for r in records
                     if r["groups"]["race"] == race and r["status"] == "ok"] for race in ("White", "Black", "Pair")}
    black = reference["groups"]["Black"]
    assert black["test"] == "welch t-test" and reference["metric"] == "mae"
    assert black["p_value"] == pytest.approx(stats.ttest_ind(errors["Black"], errors["White"],
                                                             equal_var=False).pvalue)
    assert black["mae"] == pytest.approx(np.mean(errors["Black"]))
    assert black["difference"] == pytest.approx(np.mean(errors["Black"]) - np.mean(errors["White"]))
    assert black["ratio"] == pytest.approx(np.mean(errors["Black"]) / np.mean(errors["White"]))
    assert reference["groups"]["Pair"]["p_value"] == pytest.approx(
        stats.ttest_ind(errors["Pair"], errors["White"], equal_var=False).pvalue)  # 2 answered: tested
    assert reference["groups"]["Single"]["p_value"] is None  # 1 answered: no variance
    against_pair = _reference(tmp_path / "pair", records, run_json("age", "numeric", (), ("race",)), group="Pair")
    assert against_pair["groups"]["Black"]["p_value"] == pytest.approx(  # a reference of 2 answered: tested
        stats.ttest_ind(errors["Black"], errors["Pair"], equal_var=False).pvalue)
