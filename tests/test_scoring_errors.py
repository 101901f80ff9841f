"""Malformed inputs give errors that name the file and line and say what to do."""

from __future__ import annotations

import json

import pytest

from scoring_fixtures import record, run_json, write_run
from vlmface.errors import PredictionsError, VlmfaceError
from vlmface.scoring import score_run


def good_records(n: int = 6) -> list[dict]:
    return [record(f"s{i}", "emotion", "happy", "happy" if i % 2 else "sad", race="A",
                   gender="F") for i in range(n)]


def lines_with(bad_line: str, at: int = 3) -> str:
    lines = [json.dumps(r) for r in good_records()]
    lines.insert(at - 1, bad_line)
    return "\n".join(lines) + "\n"


def score_text(tmp_path, text: str):
    (tmp_path / "predictions.jsonl").write_text(text, encoding="utf-8")
    return score_run(tmp_path, n_boot=10)


def test_bad_json_in_the_middle_names_the_line(tmp_path):
    with pytest.raises(PredictionsError, match=r"predictions\.jsonl:3: not valid JSON"):
        score_text(tmp_path, lines_with('{"sample_id": "x", "attribute": '))


def test_unknown_status_names_the_line(tmp_path):
    bad = dict(good_records(1)[0], sample_id="x", status="maybe")
    with pytest.raises(PredictionsError, match=r":3: unknown status 'maybe'"):
        score_text(tmp_path, lines_with(json.dumps(bad)))


def test_missing_truth_names_the_line(tmp_path):
    bad = dict(good_records(1)[0], sample_id="x", truth=None)
    with pytest.raises(PredictionsError, match=r":4: missing truth"):
        score_text(tmp_path, lines_with(json.dumps(bad), at=4))


def test_truncated_last_line_is_tolerated(tmp_path):
    write_run(tmp_path, good_records(), run_json(), tail='{"sample_id": "s9", "attr')
    metrics = score_run(tmp_path, n_boot=10)
    assert metrics["attributes"]["emotion"]["overall"]["n"] == 6


def test_duplicate_pair_names_both_lines(tmp_path):
    records = good_records()
    records.insert(4, dict(records[1]))
    write_run(tmp_path, records, run_json())
    with pytest.raises(PredictionsError, match=r"'s1', attribute 'emotion'.*lines 2, 5"):
        score_run(tmp_path, n_boot=10)


def test_same_sample_for_two_attributes_is_fine(tmp_path):
    records = good_records() + [dict(r, attribute="gender_guess") for r in good_records()]
    metrics = score_run(write_run(tmp_path, records), n_boot=10)
    assert set(metrics["attributes"]) == {"emotion", "gender_guess"}


def test_bad_run_json_names_the_file(tmp_path):
    write_run(tmp_path, good_records())
    (tmp_path / "run.json").write_text('{"attributes": ', encoding="utf-8")
    with pytest.raises(PredictionsError, match=r"run\.json:1: not valid JSON"):
        score_run(tmp_path, n_boot=10)


def test_non_number_truth_for_a_numeric_attribute(tmp_path):
    records = [record("s0", "age", 30, 31, race="A", gender="F"),
               record("s1", "age", 30, "thirty", race="A", gender="F")]
    write_run(tmp_path, records, run_json("age", "numeric", ()))
    with pytest.raises(PredictionsError,
                       match=r"predictions\.jsonl:2: sample 's1': truth 'thirty' is not a number"):
        score_run(tmp_path, n_boot=10)


def test_missing_or_empty_predictions(tmp_path):
    with pytest.raises(PredictionsError, match="no predictions file"):
        score_run(tmp_path, n_boot=10)
    (tmp_path / "predictions.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(PredictionsError, match="no predictions to score"):
        score_run(tmp_path, n_boot=10)


def test_bad_settings_are_user_errors(tmp_path):
    write_run(tmp_path, good_records())
    with pytest.raises(VlmfaceError, match="confidence must be between 0 and 1"):
        score_run(tmp_path, confidence=95)
