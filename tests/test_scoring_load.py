"""predictions.jsonl -> encoded columns (vlmface/scoring/load.py): probabilities land under the
right label whatever key order a line uses, and a null group value is in no group."""

from __future__ import annotations

import numpy as np
import pytest

from scoring_fixtures import record, run_json, write_run
from vlmface.errors import PredictionsError
from vlmface.scoring.load import OK, UNIQUE_CHECK_FLOOR, load_run

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


def test_a_non_answer_has_the_label_code_minus_one(tmp_path):
    """AttributeData's contract: `pred` is -1 where status is not ok (perturb/paired.py reads
    `pred >= 0` as an answer, so a non-answer coded 1 would read as the label 'sad')."""
    records = [record("s0", "emotion", "sad", "sad", race="A"),
               record("s1", "emotion", None, "sad", "invalid", race="A"),
               record("s2", "emotion", None, "happy", "refused", race="B"),
               record("s3", "emotion", "fear", "happy", race="B")]
    data = load_run(write_run(tmp_path / "run", records, run_json(labels=LABELS))).attributes["emotion"]
    assert list(data.pred) == [1, -1, -1, 2] and list(data.truth) == [1, 1, 0, 0]


def test_a_non_finite_probability_is_refused_naming_its_line(tmp_path):
    """1e999 is valid JSON that reads as inf (no NaN/Infinity literal for the reader's hook to
    note): it is refused all the same, naming the file, the line (here the second) and the sample."""
    records = [record("s0", "emotion", "happy", "happy", race="A"), record("s1", "emotion", "sad", "happy", race="B")]
    records[0]["probs"] = {"happy": 0.7, "sad": 0.3}
    records[1]["probs"] = {"happy": 0.25, "sad": 0.75}
    run = write_run(tmp_path / "run", records, run_json(labels=LABELS))
    path = run / "predictions.jsonl"
    path.write_text(path.read_text(encoding="utf-8").replace("0.75", "1e999"), encoding="utf-8")
    with pytest.raises(PredictionsError, match=r"predictions\.jsonl:2: .*'s1'.*finite number"):
        load_run(run)


@pytest.mark.parametrize("distinct, refused", [(UNIQUE_CHECK_FLOOR, False), (UNIQUE_CHECK_FLOOR + 1, True)])
def test_the_near_unique_group_rule_applies_above_the_floor_only(tmp_path, distinct, refused):
    """A group column with more distinct values than half the samples looks like an id, but only
    above UNIQUE_CHECK_FLOOR values: 20 values over 30 faces is a small study's 20 groups."""
    records = [record(f"s{i}", "emotion", "happy", "happy", race=f"r{i % distinct}") for i in range(30)]
    run = write_run(tmp_path / "run", records, run_json(labels=LABELS, group_columns=("race",)))
    if refused:
        with pytest.raises(PredictionsError, match=f"group column 'race' has {distinct} distinct values"):
            load_run(run)
    else:
        assert len(load_run(run).attributes["emotion"].groups["race"].categories) == distinct
