"""predictions.jsonl -> encoded columns (vlmface/scoring/load.py): probabilities land under the
right label whatever key order a line uses, and a null group value is in no group."""

from __future__ import annotations

import numpy as np

from scoring_fixtures import record, run_json, write_run
from vlmface.scoring.load import OK, load_run

LABELS = ("happy", "sad", "fear")


def test_probabilities_follow_the_labels_whatever_the_key_order(tmp_path):
    records = [record("s0", "emotion", "happy", "happy", race="A"), record("s1", "emotion", "sad", "happy", race="A"),
               record("s2", "emotion", "happy", "sad", race="B"), record("s3", "emotion", None, "sad", "invalid",
                                                                        race="B")]
    records[0]["probs"] = {"happy": 0.7, "sad": 0.2, "fear": 0.1}
    records[1]["probs"] = {"fear": 0.15, "sad": 0.6, "happy": 0.25}
    records[2]["probs"] = {"happy": 0.9, "sad": 0.1}  # no "fear": probability 0
    data = load_run(write_run(tmp_path / "run", records, run_json(labels=LABELS))).attributes["emotion"]
    assert list(data.sample_id) == ["s0", "s1", "s2", "s3"] and list(data.status == OK) == [True] * 3 + [False]
    expected = [[0.7, 0.2, 0.1], [0.25, 0.6, 0.15], [0.9, 0.1, 0.0], [np.nan] * 3]
    np.testing.assert_array_equal(data.probs, np.array(expected))


def test_an_answered_line_without_probabilities_leaves_the_attribute_without_them(tmp_path):
    records = [record("s0", "emotion", "happy", "happy", race="A"), record("s1", "emotion", "sad", "happy", race="A")]
    records[0]["probs"] = {"happy": 0.7, "sad": 0.2, "fear": 0.1}
    assert load_run(write_run(tmp_path / "run", records, run_json(labels=LABELS))).attributes["emotion"].probs is None


def test_a_null_group_value_is_in_no_group(tmp_path):
    records = [record(f"s{i}", "emotion", "happy", "happy", race=race) for i, race in enumerate(["B", None, "A", "B"])]
    data = load_run(write_run(tmp_path / "run", records, run_json(labels=LABELS))).attributes["emotion"]
    race = data.groups["race"]
    assert list(race.categories) == ["A", "B"]
    assert list(np.asarray(race.codes)) == [1, -1, 0, 1]  # s0..s3
