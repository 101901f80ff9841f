"""metrics.json (the contract), tables, the summary, and inference without run.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scoring_fixtures import planted_records, record, run_json, write_run
from vlmface.scoring import format_summary, score_run


def strict_load(path):
    def reject(token):
        raise AssertionError(f"non-strict JSON token {token} in {path}")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    rng = np.random.default_rng(1)
    records = planted_records(rng, 60) + planted_records(
        rng, 5, accuracy={"Pacific": 0.5}, invalid=0.1, refused=0.1)
    records += [record(f"a{i}", "age", None, 40.0, "error", race="White", gender="Male")
                for i in range(3)]
    run = run_json()
    run["attributes"]["age"] = {"kind": "numeric", "labels": []}
    folder = write_run(tmp_path_factory.mktemp("run"), records, run)
    (folder / "tables").mkdir()
    (folder / "tables" / "emotion__by_stale.csv").write_text("old")
    (folder / "tables" / "notes.txt").write_text("mine")
    score_run(folder, n_boot=100)
    return folder


def test_metrics_json_is_strict_and_follows_the_contract(run_dir):
    metrics = strict_load(run_dir / "metrics.json")
    assert list(metrics)[:2] == ["attributes", "run"]
    assert metrics["run"]["task"] == "test"
    emotion = metrics["attributes"]["emotion"]
    for key in ("n", "accuracy", "accuracy_ci", "balanced_accuracy", "macro_f1", "invalid_rate",
                "refusal_rate", "per_class", "confusion"):
        assert key in emotion["overall"]
    assert list(emotion["by_group"]) == ["race", "gender", "racexgender"]
    group = emotion["by_group"]["racexgender"]["Black x Female"]
    assert {"n", "accuracy", "accuracy_ci", "invalid_rate", "refusal_rate"} <= set(group)
    for key in ("gap", "gap_ci", "ratio", "worst_group", "best_group", "eo_gap", "eo_gap_class"):
        assert key in emotion["disparity"]["race"]
    age = metrics["attributes"]["age"]["overall"]
    assert age["mae"] is None and age["mae_ci"] == [None, None] and age["n_error"] == 3


def test_rescoring_is_byte_identical(run_dir):
    before = (run_dir / "metrics.json").read_bytes()
    score_run(run_dir, n_boot=100)
    assert (run_dir / "metrics.json").read_bytes() == before


def test_tables_are_written_and_stale_ones_removed(run_dir):
    tables = run_dir / "tables"
    by_race = pd.read_csv(tables / "emotion__by_race.csv")
    metrics = strict_load(run_dir / "metrics.json")["attributes"]["emotion"]["by_group"]["race"]
    assert list(by_race["group"]) == list(metrics)
    assert by_race["accuracy"].tolist() == pytest.approx([r["accuracy"] for r in metrics.values()])
    assert by_race.loc[by_race.group == "Pacific", "small"].item()
    for stem in ("overall", "per_class", "confusion", "by_gender", "by_racexgender",
                 "disparity"):
        frame = pd.read_csv(tables / f"emotion__{stem}.csv")
        assert len(frame) > 0 and len(frame.columns) > 1, stem
        assert (tables / f"emotion__{stem}.md").read_text().startswith("# emotion: ")
    assert "| Black x Female" in (tables / "emotion__by_racexgender.md").read_text()
    assert not (tables / "emotion__by_stale.csv").exists()
    assert (tables / "notes.txt").read_text() == "mine"


def test_summary_names_the_key_numbers(run_dir):
    metrics = strict_load(run_dir / "metrics.json")
    text = format_summary(metrics)
    overall = metrics["attributes"]["emotion"]["overall"]
    race = metrics["attributes"]["emotion"]["disparity"]["race"]
    assert f"n={overall['n']}" in text and f"accuracy {overall['accuracy']:.3f}" in text
    assert f"invalid {overall['n_invalid']}" in text and f"refused {overall['n_refused']}" in text
    assert f"worst {race['worst_group']}" in text and f"gap {race['gap']:.3f}" in text
    assert "3 data error(s)" in text and "1 small group(s) left out" in text
    assert len(text.splitlines()) <= 12


def test_kinds_are_inferred_without_run_json(tmp_path):
    records = [record("s0", "age", 31, 30, race="A", gender="F"),
               record("s1", "age", 52.5, 41, race="B", gender="F"),
               record("s0", "mood", "sad", "happy", race="A", gender="F"),
               record("s1", "mood", "calm", "sad", race="B", gender="F")]
    metrics = score_run(write_run(tmp_path, records), n_boot=20)
    assert metrics["run"] == {} and metrics["scoring"]["run_json_found"] is False
    age, mood = metrics["attributes"]["age"], metrics["attributes"]["mood"]
    assert (age["kind"], age["kind_inferred"]) == ("numeric", True)
    assert age["overall"]["mae"] == pytest.approx((1 + 11.5) / 2)
    assert mood["kind"] == "categorical" and mood["labels"] == ["calm", "happy", "sad"]
