"""The scorer's numbers equal an independent sklearn / fairlearn computation on the same data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame
from sklearn import metrics as skm

from scoring_fixtures import LABELS, planted_records, record, run_json, write_run
from vlmface.scoring import score_run

TOL = 1e-9


def sk_labels(records: list[dict], answered_only: bool = False) -> pd.DataFrame:
    """y_true / y_pred as sklearn sees them: a non-answer is a pseudo-label that is never a
    class, so it counts against recall and never for any class."""
    rows = [r for r in records if r["status"] != "error"
            and (not answered_only or r["status"] == "ok")]
    return pd.DataFrame({
        "y_true": [r["truth"] for r in rows],
        "y_pred": [r["label"] if r["status"] == "ok" else f"<{r['status']}>" for r in rows],
        "race": [r["groups"]["race"] for r in rows],
        "gender": [r["groups"]["gender"] for r in rows]})


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    rng = np.random.default_rng(7)
    records = planted_records(rng, 400)
    for r in records[::97]:  # a few items without an answer at all
        r.update(status="error", label=None)
    run_dir = write_run(tmp_path_factory.mktemp("run"), records, run_json())
    return records, score_run(run_dir, n_boot=200)


def test_overall_matches_sklearn(planted):
    records, metrics = planted
    overall = metrics["attributes"]["emotion"]["overall"]
    df = sk_labels(records)
    present = sorted(set(df.y_true) | set(df.y_pred[df.y_pred.isin(LABELS)]))
    assert overall["n"] == len(df)
    assert overall["accuracy"] == pytest.approx(skm.accuracy_score(df.y_true, df.y_pred), abs=TOL)
    assert overall["balanced_accuracy"] == pytest.approx(
        np.mean(skm.recall_score(df.y_true, df.y_pred, labels=sorted(set(df.y_true)),
                                 average=None)), abs=TOL)
    assert overall["macro_f1"] == pytest.approx(
        skm.f1_score(df.y_true, df.y_pred, labels=present, average="macro", zero_division=0),
        abs=TOL)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        df.y_true, df.y_pred, labels=list(LABELS), zero_division=0)
    for i, label in enumerate(LABELS):
        got = overall["per_class"][label]
        assert got["precision"] == pytest.approx(precision[i], abs=TOL)
        assert got["recall"] == pytest.approx(recall[i], abs=TOL)
        assert got["f1"] == pytest.approx(f1[i], abs=TOL)
        assert got["support"] == support[i]


def test_confusion_matches_sklearn_with_non_answer_columns(planted):
    records, metrics = planted
    df = sk_labels(records)
    columns = list(LABELS) + ["<invalid>", "<refused>"]
    expected = skm.confusion_matrix(df.y_true, df.y_pred, labels=columns)[:len(LABELS)]
    confusion = metrics["attributes"]["emotion"]["overall"]["confusion"]
    got = np.array([[confusion[t][p] for p in columns] for t in LABELS])
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("column", ["race", "gender", "racexgender"])
def test_by_group_gap_and_ratio_match_fairlearn(planted, column):
    records, metrics = planted
    df = sk_labels(records)
    features = (df.race + " x " + df.gender) if column == "racexgender" else df[column]
    frame = MetricFrame(metrics=skm.accuracy_score, y_true=df.y_true, y_pred=df.y_pred,
                        sensitive_features=features)
    by_group = metrics["attributes"]["emotion"]["by_group"][column]
    assert set(by_group) == set(frame.by_group.index)
    for value, accuracy in frame.by_group.items():
        assert by_group[value]["accuracy"] == pytest.approx(accuracy, abs=TOL)
        assert by_group[value]["n"] == (features == value).sum()
    disparity = metrics["attributes"]["emotion"]["disparity"][column]
    assert disparity["gap"] == pytest.approx(frame.difference(), abs=TOL)
    assert disparity["ratio"] == pytest.approx(frame.ratio(), abs=TOL)
    assert disparity["worst_group"] == frame.by_group.idxmin()
    assert disparity["best_group"] == frame.by_group.idxmax()
    assert disparity["std"] == pytest.approx(np.std(frame.by_group.to_numpy()), abs=TOL)


def test_equal_opportunity_gap_matches_fairlearn_per_class(planted):
    records, metrics = planted
    df = sk_labels(records)
    gaps = {}
    for label in LABELS:
        frame = MetricFrame(metrics=skm.recall_score, y_true=df.y_true == label,
                            y_pred=df.y_pred == label, sensitive_features=df.race)
        gaps[label] = frame.difference()
    disparity = metrics["attributes"]["emotion"]["disparity"]["race"]
    assert disparity["eo_gap_class"] == max(gaps, key=gaps.get)
    assert disparity["eo_gap"] == pytest.approx(max(gaps.values()), abs=TOL)


def test_small_groups_are_shown_but_left_out_of_the_gap(tmp_path):
    rng = np.random.default_rng(3)
    records = planted_records(rng, 100) + planted_records(
        rng, 10, accuracy={"Pacific": 0.0}, invalid=0, refused=0)
    metrics = score_run(write_run(tmp_path, records, run_json()), n_boot=50, min_group_n=30)
    by_race = metrics["attributes"]["emotion"]["by_group"]["race"]
    disparity = metrics["attributes"]["emotion"]["disparity"]["race"]
    assert by_race["Pacific"]["small"] is True and by_race["Pacific"]["accuracy"] == 0.0
    assert disparity["excluded_groups"] == ["Pacific"]
    assert disparity["worst_group"] != "Pacific"
    large = [row["accuracy"] for value, row in by_race.items() if value != "Pacific"]
    assert disparity["gap"] == pytest.approx(max(large) - min(large), abs=TOL)


def test_answered_only_matches_sklearn_on_ok_items(tmp_path):
    records = planted_records(np.random.default_rng(5), 200, invalid=0.1, refused=0.05)
    metrics = score_run(write_run(tmp_path, records, run_json()), n_boot=50, answered_only=True)
    overall = metrics["attributes"]["emotion"]["overall"]
    df = sk_labels(records, answered_only=True)
    assert overall["n"] == len(df) < len(records)
    assert overall["accuracy"] == pytest.approx(skm.accuracy_score(df.y_true, df.y_pred), abs=TOL)
    assert overall["macro_f1"] == pytest.approx(
        skm.f1_score(df.y_true, df.y_pred, average="macro", zero_division=0), abs=TOL)
    assert overall["invalid_rate"] == pytest.approx(
        sum(r["status"] == "invalid" for r in records) / len(records), abs=TOL)


def test_ordinal_off_by_one(tmp_path):
    bins = ("0-9", "10-19", "20-29", "30-39")
    pairs = [("0-9", "0-9"), ("0-9", "10-19"), ("0-9", "20-29"), ("30-39", "10-19"),
             ("20-29", "30-39"), ("10-19", None)]
    records = [record(f"s{i}", "age_bin", pred, truth, "ok" if pred else "refused",
                      race="A", gender="F") for i, (truth, pred) in enumerate(pairs)]
    run = run_json("age_bin", "ordinal", bins)
    overall = score_run(write_run(tmp_path, records, run), n_boot=20)["attributes"]["age_bin"][
        "overall"]
    assert overall["off_by_one_accuracy"] == pytest.approx(3 / 6, abs=TOL)
    assert overall["accuracy"] == pytest.approx(1 / 6, abs=TOL)


def test_numeric_mae_and_cs5_match_sklearn(tmp_path):
    rng = np.random.default_rng(11)
    truth = rng.integers(1, 90, size=300).astype(float)
    pred = truth + rng.normal(0, 6, size=300).round(1)
    races = rng.choice(["A", "B", "C"], size=300)
    records = [record(f"s{i}", "age", float(p), float(t), race=str(g), gender="F")
               for i, (p, t, g) in enumerate(zip(pred, truth, races))]
    records[0].update(status="invalid", label=None)
    metrics = score_run(write_run(tmp_path, records, run_json("age", "numeric", ())), n_boot=100)
    age = metrics["attributes"]["age"]
    answered = slice(1, None)
    assert age["overall"]["mae"] == pytest.approx(
        skm.mean_absolute_error(truth[answered], pred[answered]), abs=TOL)
    within = np.abs(pred - truth) <= 5
    within[0] = False  # the invalid answer is a miss
    assert age["overall"]["cs5"] == pytest.approx(within.mean(), abs=TOL)
    frame = MetricFrame(metrics=skm.mean_absolute_error, y_true=truth[answered],
                        y_pred=pred[answered], sensitive_features=races[answered])
    for value, mae in frame.by_group.items():
        assert age["by_group"]["race"][value]["mae"] == pytest.approx(mae, abs=TOL)
    disparity = age["disparity"]["race"]
    assert disparity["gap"] == pytest.approx(frame.difference(), abs=TOL)
    assert disparity["worst_group"] == frame.by_group.idxmax()
    lo, hi = age["overall"]["mae_ci"]
    assert lo < age["overall"]["mae"] < hi


def test_the_gap_ci_uses_only_groups_of_at_least_min_group_n(tmp_path):
    """Two large groups with accuracies 0.9 and 0.65 and a tiny all-wrong one: the gap and its
    CI are those of the two large groups (a CI over all three would sit near 0.9)."""
    records = []
    for group, n, right in (("A", 200, 180), ("B", 200, 130), ("Tiny", 4, 0)):
        for i in range(n):
            label = "happy" if i < right else "sad"
            records.append(record(f"{group}-{i}", "emotion", label, "happy", race=group, gender="Female"))
    metrics = score_run(write_run(tmp_path, records, run_json()), n_boot=2000, min_group_n=30)
    disparity = metrics["attributes"]["emotion"]["disparity"]["race"]
    assert disparity["gap"] == pytest.approx(0.25, abs=TOL)
    assert disparity["excluded_groups"] == ["Tiny"]
    low, high = disparity["gap_ci"]
    # the normal-approximation 95% interval of 0.9 - 0.65 at n = 200 each is 0.25 +- 0.08
    half = 1.96 * np.sqrt(0.9 * 0.1 / 200 + 0.65 * 0.35 / 200)
    assert low == pytest.approx(0.25 - half, abs=0.02) and high == pytest.approx(0.25 + half, abs=0.02)


def test_macro_f1_counts_a_label_that_is_predicted_but_never_true(tmp_path):
    """sklearn's macro F1 over the union of true and predicted labels: "fear" is never the
    truth but is predicted, so its F1 of 0 is part of the mean."""
    truth = ["happy"] * 6 + ["sad"] * 6
    pred = ["happy", "happy", "happy", "happy", "fear", "fear", "sad", "sad", "sad", "happy", "fear", "sad"]
    records = [record(f"s{i}", "emotion", p, t, race="White", gender="Male")
               for i, (t, p) in enumerate(zip(truth, pred))]
    overall = score_run(write_run(tmp_path, records, run_json()), n_boot=20)["attributes"]["emotion"]["overall"]
    union = sorted(set(truth) | set(pred))
    expected = skm.f1_score(truth, pred, labels=union, average="macro", zero_division=0)
    assert overall["macro_f1"] == pytest.approx(expected, abs=TOL)
    assert overall["macro_f1"] != pytest.approx(
        skm.f1_score(truth, pred, labels=sorted(set(truth)), average="macro", zero_division=0), abs=1e-3)
    assert overall["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(truth, pred), abs=TOL)
    assert overall["per_class"]["fear"]["f1"] == 0.0 and overall["per_class"]["fear"]["support"] == 0


def test_intersections_go_only_as_deep_as_asked(tmp_path):
    records = planted_records(np.random.default_rng(9), 40)
    for i, r in enumerate(records):
        r["groups"]["age"] = ("young", "old")[i % 2]
    run_dir = write_run(tmp_path, records, run_json(group_columns=("race", "gender", "age")))
    by_group = score_run(run_dir, n_boot=20)["attributes"]["emotion"]["by_group"]
    assert set(by_group) == {"race", "gender", "age", "racexgender", "racexage", "genderxage"}
    white_female = [r for r in records if r["groups"]["race"] == "White" and r["groups"]["gender"] == "Female"]
    assert by_group["racexgender"]["White x Female"]["n"] == len(white_female)
