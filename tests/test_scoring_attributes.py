"""What the scorer knows about an attribute (vlmface/scoring/attributes.py): the kind and labels
run.json declares, or those inferred from the records, and whether they were inferred (which
metrics.json reports as `kind_inferred`). Tiny runs read through `load_run`."""

from __future__ import annotations

import pytest

from scoring_fixtures import record, run_json, write_run
from vlmface.errors import PredictionsError
from vlmface.scoring.load import load_run


def _spec(tmp_path, records, run=None, attribute="emotion"):
    data = load_run(write_run(tmp_path / "run", records, run)).attributes[attribute]
    return data.spec, data.labels


def test_number_truths_without_run_json_are_numeric_and_marked_inferred(tmp_path):
    records = [record(f"s{i}", "age", 30 + i, [25, 40.5, 61][i % 3], race="A") for i in range(6)]
    spec, labels = _spec(tmp_path, records, attribute="age")
    assert (spec.kind, spec.labels, spec.inferred, labels) == ("numeric", (), True, ())


def test_boolean_truths_are_labels_not_numbers(tmp_path):
    records = [record(f"s{i}", "smiling", [True, False][i % 2], [True, False][i // 2 % 2], race="A")
               for i in range(4)]
    spec, labels = _spec(tmp_path, records, attribute="smiling")
    assert (spec.kind, spec.labels, spec.inferred) == ("categorical", ("False", "True"), True)


def test_inferred_labels_are_the_sorted_truths_and_ok_answers_only(tmp_path):
    # "angry" is answered but never true; the invalid and refused lines carry no answer
    records = [record("s0", "emotion", "angry", "sad"), record("s1", "emotion", "happy", "happy"),
               record("s2", "emotion", None, "sad", "invalid"),
               record("s3", "emotion", "surprise", "happy", "refused")]
    spec, labels = _spec(tmp_path, records)
    assert (spec.kind, spec.labels, spec.inferred) == ("categorical", ("angry", "happy", "sad"), True)
    assert labels == ("angry", "happy", "sad")


def test_declared_labels_are_used_as_given_and_not_marked_inferred(tmp_path):
    records = [record("s0", "emotion", "sad", "happy"), record("s1", "emotion", "happy", "happy")]
    spec, labels = _spec(tmp_path, records, run_json(labels=("sad", "happy", "fear")))
    assert (spec.kind, spec.labels, spec.inferred, labels) == \
        ("categorical", ("sad", "happy", "fear"), False, ("sad", "happy", "fear"))


def test_declared_numeric_is_not_marked_inferred(tmp_path):
    records = [record(f"s{i}", "age", 30.0 + i, 31.0, race="A") for i in range(3)]
    spec, _ = _spec(tmp_path, records, run_json("age", "numeric", ()), attribute="age")
    assert (spec.kind, spec.inferred) == ("numeric", False)


@pytest.mark.parametrize("kind", ["categorical", "ordinal"])
def test_a_declared_kind_without_labels_keeps_its_kind_and_infers_the_labels(tmp_path, kind):
    records = [record("s0", "emotion", "sad", "happy"), record("s1", "emotion", "angry", "happy")]
    spec, labels = _spec(tmp_path, records, run_json(kind=kind, labels=()))
    assert (spec.kind, spec.labels, spec.inferred, labels) == (kind, ("angry", "happy", "sad"), True,
                                                               ("angry", "happy", "sad"))


@pytest.mark.parametrize("kind", ["categorical", "ordinal"])
def test_duplicate_declared_labels_are_refused_naming_the_field(tmp_path, kind):
    records = [record("s0", "emotion", "sad", "happy")]
    with pytest.raises(PredictionsError, match=r"run.json: attributes.emotion.labels: duplicate labels"):
        _spec(tmp_path, records, run_json(kind=kind, labels=("happy", "sad", "happy")))


def test_an_unknown_declared_kind_is_refused_naming_the_field(tmp_path):
    records = [record("s0", "emotion", "sad", "happy")]
    with pytest.raises(PredictionsError, match=r"run.json: attributes.emotion.kind: unknown kind 'nominal'"):
        _spec(tmp_path, records, run_json(kind="nominal", labels=("happy", "sad")))


def test_group_columns_follow_run_json_then_the_order_seen(tmp_path):
    records = [record("s0", "emotion", "sad", "happy", site="x", race="A", gender="F")]
    run = load_run(write_run(tmp_path / "run", records, run_json(group_columns=("gender", "race", "absent"))))
    assert run.group_columns == ["gender", "race", "site"]
