"""invalid / refused / error items: own counts and rates, never a silently chosen label."""

from __future__ import annotations

import pytest

from scoring_fixtures import record, run_json, write_run
from vlmface.errors import PredictionsError
from vlmface.scoring import score_run

LABELS = ("happy", "sad")


def mixed_records() -> list[dict]:
    """10 items: 4 right, 2 wrong, 2 invalid, 1 refused, 1 error; all truths 'happy'."""
    statuses = ["ok"] * 6 + ["invalid", "invalid", "refused", "error"]
    labels = ["happy"] * 4 + ["sad"] * 2 + [None] * 4
    return [record(f"s{i}", "emotion", label, "happy", status, race="A", gender="F")
            for i, (label, status) in enumerate(zip(labels, statuses))]


@pytest.fixture
def scored(tmp_path):
    run = run_json(labels=LABELS)
    return score_run(write_run(tmp_path, mixed_records(), run), n_boot=50, min_group_n=1)


def test_non_answers_are_wrong_and_counted_on_their_own(scored):
    overall = scored["attributes"]["emotion"]["overall"]
    assert (overall["n_total"], overall["n"], overall["n_error"]) == (10, 9, 1)
    assert overall["accuracy"] == pytest.approx(4 / 9)
    assert overall["invalid_rate"] == pytest.approx(2 / 9)
    assert overall["refusal_rate"] == pytest.approx(1 / 9)
    assert overall["error_rate"] == pytest.approx(1 / 10)


def test_non_answers_never_become_a_label(scored):
    overall = scored["attributes"]["emotion"]["overall"]
    row = overall["confusion"]["happy"]
    assert row == {"happy": 4, "sad": 2, "<invalid>": 2, "<refused>": 1}
    assert overall["per_class"]["sad"]["precision"] == 0.0  # only the 2 real 'sad' answers
    assert overall["per_class"]["happy"]["precision"] == 1.0
    assert overall["per_class"]["happy"]["recall"] == pytest.approx(4 / 9)
    assert scored["attributes"]["emotion"]["labels"] == list(LABELS)


def test_group_rows_carry_the_same_rates(scored):
    row = scored["attributes"]["emotion"]["by_group"]["race"]["A"]
    assert (row["n"], row["n_invalid"], row["n_refused"], row["n_error"]) == (9, 2, 1, 1)
    assert row["refusal_rate"] == pytest.approx(1 / 9)


def test_answered_only_drops_non_answers_from_accuracy_but_keeps_rates(tmp_path):
    run = run_json(labels=LABELS)
    metrics = score_run(write_run(tmp_path, mixed_records(), run), n_boot=50, answered_only=True)
    overall = metrics["attributes"]["emotion"]["overall"]
    assert overall["n"] == 6 and overall["accuracy"] == pytest.approx(4 / 6)
    assert overall["invalid_rate"] == pytest.approx(2 / 9)
    assert metrics["scoring"]["answered_only"] is True


def test_null_group_values_leave_only_that_table(tmp_path):
    records = mixed_records()
    records[0]["groups"]["race"] = None
    metrics = score_run(write_run(tmp_path, records, run_json(labels=LABELS)), n_boot=20)
    attr = metrics["attributes"]["emotion"]
    assert attr["by_group"]["race"]["A"]["n_total"] == 9
    assert attr["by_group"]["gender"]["F"]["n_total"] == 10
    assert attr["by_group"]["racexgender"]["A x F"]["n_total"] == 9


def test_an_undeclared_answer_is_an_error_naming_the_line(tmp_path):
    """Issue 13: an ok label outside the declared labels never becomes a class of its own."""
    records = mixed_records()
    records[4]["label"] = "furious"
    with pytest.raises(PredictionsError, match=r"predictions.jsonl:5: sample 's4': status 'ok' with "
                                               r"label 'furious'.*mark the line status 'invalid'"):
        score_run(write_run(tmp_path, records, run_json(labels=LABELS)), n_boot=20)
