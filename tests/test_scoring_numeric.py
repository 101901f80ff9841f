"""Numeric attributes (age in years) and directional errors: every number the scorer writes equals a
direct numpy / pandas computation on the same planted predictions.

Numeric: MAE over answered items, CS@5 over scored items (a non-answer is a miss), the signed
error (prediction - truth) with its direction and bootstrap CI, and the groups aged up / down most
among groups of at least min_group_n. Directional: predicted_as / confusion / misclassified_rate
against pd.crosstab."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring_fixtures import record, run_json, write_run
from vlmface.scoring import score_run

TOL = 1e-12
BIAS = {"A": 4, "B": -3, "C": 0, "D": 20}  # planted signed error per group; D is below min_group_n
SIZE = {"A": 120, "B": 120, "C": 120, "D": 8}
N_BOOT = 400


def _age_records() -> list[dict]:
    rng = np.random.default_rng(3)
    records = []
    for group, bias in BIAS.items():
        for i in range(SIZE[group]):
            truth = int(rng.integers(10, 70))
            status = "invalid" if i % 10 == 3 else "refused" if i % 10 == 7 and group == "B" else "ok"
            pred = truth + bias + int(rng.integers(-6, 7)) if status == "ok" else None
            records.append(record(f"{group}-{i}", "age", pred, truth, status, race=group,
                                  gender="Female" if i % 2 else "Male"))
    return records


@pytest.fixture(scope="module")
def age(tmp_path_factory):
    records = _age_records()
    run_dir = write_run(tmp_path_factory.mktemp("age"), records, run_json("age", "numeric", ()))
    metrics = score_run(run_dir, n_boot=N_BOOT, min_group_n=30)
    frame = pd.DataFrame([{"race": r["groups"]["race"], "status": r["status"], "truth": r["truth"],
                           "pred": r["label"]} for r in records])
    frame["error"] = frame["pred"] - frame["truth"]
    return frame, metrics["attributes"]["age"]


def _expected(frame: pd.DataFrame) -> dict:
    answered = frame[frame["status"] == "ok"]
    hits = (answered["error"].abs() <= 5).sum()
    return {"n": len(frame), "n_answered": len(answered), "mae": answered["error"].abs().mean(),
            "cs5": hits / len(frame), "mean_error": answered["error"].mean(),
            "n_invalid": int((frame["status"] == "invalid").sum()),
            "n_refused": int((frame["status"] == "refused").sum()), "sd": answered["error"].std()}


def _check(row: dict, want: dict) -> None:
    for key in ("n", "n_answered", "n_invalid", "n_refused"):
        assert row[key] == want[key], key
    for key in ("mae", "cs5", "mean_error"):
        assert row[key] == pytest.approx(want[key], abs=TOL), key
    lo, hi = row["mean_error_ci"]
    assert lo < want["mean_error"] < hi
    normal = 2 * 1.96 * want["sd"] / np.sqrt(want["n_answered"])  # the CI of a mean: about +-1.96 SE
    assert hi - lo == pytest.approx(normal, rel=0.2)
    assert row["mae_ci"][0] < want["mae"] < row["mae_ci"][1]
    assert row["cs5_ci"][0] < want["cs5"] < row["cs5_ci"][1]


def test_overall_mae_cs5_and_signed_error_equal_a_direct_computation(age):
    frame, attr = age
    _check(attr["overall"], _expected(frame))


def test_each_groups_numbers_and_direction_follow_its_planted_bias(age):
    frame, attr = age
    groups = attr["by_group"]["race"]
    assert set(groups) == set(BIAS)
    for group in ("A", "B", "C"):
        _check(groups[group], _expected(frame[frame["race"] == group]))
    assert groups["A"]["direction"] == "aged up"
    assert groups["B"]["direction"] == "aged down"
    assert groups["C"]["direction"] == "no clear bias"
    assert groups["D"]["mean_error"] == pytest.approx(_expected(frame[frame["race"] == "D"])["mean_error"])


def test_disparity_names_the_groups_aged_up_and_down_most_among_large_groups(age):
    frame, attr = age
    disparity = attr["disparity"]["race"]
    means = {g: _expected(frame[frame["race"] == g])["mean_error"] for g in ("A", "B", "C")}
    maes = {g: _expected(frame[frame["race"] == g])["mae"] for g in ("A", "B", "C")}
    # D is aged up far more (+20) but has 8 items, under min_group_n=30: never named
    assert disparity["aged_up_most"] == "A" and disparity["aged_down_most"] == "B"
    assert disparity["mean_error_spread"] == pytest.approx(means["A"] - means["B"], abs=TOL)
    assert disparity["metric"] == "mae"
    gap = max(maes.values()) - min(maes.values())
    assert disparity["gap"] == pytest.approx(gap, abs=TOL)
    # the gap CI bootstraps each group's answered errors: about +-1.96 SE of a difference of two MAEs
    lo, hi = disparity["gap_ci"]
    assert lo < gap < hi and 0.5 < (hi - lo) / gap < 2.5
    assert disparity["worst_group"] == max(maes, key=maes.get)
    assert disparity["best_group"] == min(maes, key=maes.get)
    assert disparity["excluded_groups"] == ["D"]


def test_no_answered_item_gives_null_signed_error_not_a_number(tmp_path):
    records = [record(f"s{i}", "age", None, 30, "invalid", race="A", gender="Male") for i in range(5)]
    records += [record(f"t{i}", "age", 40 + i, 30, race="B", gender="Male") for i in range(5)]
    attr = score_run(write_run(tmp_path, records, run_json("age", "numeric", ())),
                     n_boot=50, min_group_n=1)["attributes"]["age"]
    a, b = attr["by_group"]["race"]["A"], attr["by_group"]["race"]["B"]
    assert a["mean_error"] is None and a["direction"] is None and a["mae"] is None
    assert b["mean_error"] == pytest.approx(12.0) and b["direction"] == "aged up"
    assert attr["disparity"]["race"]["aged_up_most"] == "B" == attr["disparity"]["race"]["aged_down_most"]
    assert attr["disparity"]["race"]["mean_error_spread"] == 0


# --- directional errors of a categorical attribute

GENDER = ("Female", "Male")


def _gender_records() -> list[dict]:
    """Race X misgenders women 30% of the time, race Y 5%; some non-answers; race Z is tiny."""
    rng = np.random.default_rng(11)
    records = []
    for race, (n, wrong_f) in {"X": (200, 0.30), "Y": (200, 0.05), "Z": (6, 0.5)}.items():
        for i in range(n):
            truth = GENDER[i % 2]
            flip = rng.random() < (wrong_f if truth == "Female" else 0.02)
            status = "invalid" if i % 17 == 0 else "ok"
            label = None if status != "ok" else ("Male" if truth == "Female" else "Female") if flip else truth
            records.append(record(f"{race}-{i}", "gender", label, truth, status, race=race,
                                  gender=truth))
    return records


@pytest.fixture(scope="module")
def gender(tmp_path_factory):
    records = _gender_records()
    run_dir = write_run(tmp_path_factory.mktemp("gender"), records, run_json("gender", "categorical", GENDER))
    metrics = score_run(run_dir, n_boot=50, min_group_n=30, min_cell_n=10)
    frame = pd.DataFrame([{"race": r["groups"]["race"], "truth": r["truth"],
                           "answer": r["label"] if r["status"] == "ok" else "<no answer>"} for r in records])
    return run_dir, frame, metrics["attributes"]["gender"]


def test_predicted_as_and_confusion_equal_a_crosstab(gender):
    _, frame, attr = gender
    for race in ("X", "Y"):
        row = attr["by_group"]["race"][race]
        part = frame[frame["race"] == race]
        counts = pd.crosstab(part["truth"], part["answer"]).reindex(
            index=list(GENDER), columns=[*GENDER, "<no answer>"], fill_value=0)
        shares = counts.div(counts.sum(axis=1), axis=0)
        for truth in GENDER:
            assert row["confusion"][truth] == counts.loc[truth].to_dict()
            assert row["predicted_as"][truth] == pytest.approx(shares.loc[truth].to_dict(), abs=TOL)
        answered_wrong = ((part["answer"] != part["truth"]) & (part["answer"] != "<no answer>")).sum()
        assert row["misclassified_rate"] == pytest.approx(answered_wrong / len(part), abs=TOL)
    x, y = attr["by_group"]["race"]["X"], attr["by_group"]["race"]["Y"]
    assert x["predicted_as"]["Female"]["Male"] > 0.2 > 0.1 > y["predicted_as"]["Female"]["Male"]


def test_a_truth_row_under_min_cell_n_is_null_and_noted_in_the_table(gender):
    run_dir, frame, attr = gender
    tiny = attr["by_group"]["race"]["Z"]
    assert tiny["misclassified_rate"] is None
    assert tiny["predicted_as"] == {"Female": None, "Male": None}
    assert sum(tiny["confusion"]["Female"].values()) == 3  # the counts are still there
    table = pd.read_csv(run_dir / "tables" / "gender__predicted_as_by_race.csv")
    assert len(table) == 3 * 2  # group x truth
    z = table[table["group"] == "Z"]
    assert set(z["note"]) == {"n < 10"} and z["Male"].isna().all()
    x_female = table[(table["group"] == "X") & (table["truth"] == "Female")].iloc[0]
    assert x_female["n_truth"] == (frame[(frame["race"] == "X") & (frame["truth"] == "Female")]).shape[0]
    assert x_female["Male"] == pytest.approx(attr["by_group"]["race"]["X"]["predicted_as"]["Female"]["Male"])


def test_direction_follows_the_ci_bounds_at_zero(tmp_path):
    """signed_error.py `_direction`: aged up iff the CI's lower bound is above 0, aged down iff its
    upper bound is below 0. Constant errors give a CI of one point: 0, +0.5, -0.5."""
    records = [record(f"{group}{i}", "age", 30 + shift, 30, race=group, gender="Male")
               for group, shift in {"Z": 0, "U": 0.5, "D": -0.5}.items() for i in range(12)]
    groups = score_run(write_run(tmp_path, records, run_json("age", "numeric", ())),
                       n_boot=50, min_group_n=1)["attributes"]["age"]["by_group"]["race"]
    assert groups["Z"]["mean_error_ci"] == [0.0, 0.0] and groups["Z"]["direction"] == "no clear bias"
    assert groups["U"]["mean_error_ci"] == [0.5, 0.5] and groups["U"]["direction"] == "aged up"
    assert groups["D"]["mean_error_ci"] == [-0.5, -0.5] and groups["D"]["direction"] == "aged down"


def test_a_group_of_exactly_min_cell_n_gets_its_directional_rates(tmp_path):
    """directional.py: rates are reported from min_cell_n items on (n >= min_cell_n), null below."""
    records = [record(f"w{i}", "gender", "Male" if i < 3 else "Female", "Female", race="W", gender="Female")
               for i in range(10)]
    records += [record(f"v{i}", "gender", "Female", "Female", race="V", gender="Female") for i in range(9)]
    groups = score_run(write_run(tmp_path, records, run_json("gender", "categorical", GENDER)),
                       n_boot=20, min_group_n=1, min_cell_n=10)["attributes"]["gender"]["by_group"]["race"]
    assert groups["W"]["misclassified_rate"] == pytest.approx(0.3)
    assert groups["W"]["predicted_as"]["Female"] == {"Female": 0.7, "Male": 0.3, "<no answer>": 0.0}
    assert groups["V"]["misclassified_rate"] is None and groups["V"]["predicted_as"]["Female"] is None


def test_the_overall_cis_are_the_draws_of_the_overall_generator(age):
    """The overall CS@5 and MAE CIs are the bootstrap of one overall group with
    rng_for(seed, attribute, "overall"), CS@5 drawn first: a rerun, or another version that keeps
    the scheme, writes the same bits (an extra, empty group would shift the stream)."""
    from vlmface.scoring.bootstrap import mean_samples, percentile_ci, proportion_samples, rng_for

    frame, attr = age
    answered = frame[frame["status"] == "ok"]
    hits = np.array([(answered["error"].abs() <= 5).sum()])
    rng = rng_for(0, "age", "overall")
    cs5 = percentile_ci(proportion_samples(hits, np.array([len(frame)]), N_BOOT, rng), 0.95)[:, 0]
    mae = percentile_ci(mean_samples(answered["error"].abs().to_numpy(dtype=float), N_BOOT, rng), 0.95)
    assert attr["overall"]["cs5_ci"] == cs5.tolist() and attr["overall"]["mae_ci"] == mae.tolist()
