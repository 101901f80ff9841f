"""predictions.py's per-line checks (read_records): a line the scorer cannot trust is refused with
its file:line and what to do; the lines a run really writes (answers, non-answers with a null label,
errors with their kind) are read as they are."""

from __future__ import annotations

import json

import pytest

from scoring_fixtures import record
from vlmface.errors import PredictionsError
from vlmface.predictions import read_records


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _lines_a_run_writes() -> list[dict]:
    lines = [record("a", "gender", "Male", "Male"),
             record("b", "gender", None, "Male", "invalid"),
             record("c", "gender", None, "Female", "refused"),
             {**record("d", "gender", None, "Female", "error"), "error_kind": "answer"},
             {**record("e", "gender", None, "Female", "error"), "error_kind": "data"}]
    for line in lines:
        line["groups"] = {"race": "White"}
    return lines


def test_non_answers_with_a_null_label_and_errors_with_a_kind_are_read_as_written(tmp_path):
    lines = _lines_a_run_writes()
    assert read_records(_write(tmp_path / "predictions.jsonl", lines)) == lines


@pytest.mark.parametrize("change, message", [
    ({"status": "ok", "label": None}, r"predictions.jsonl:2: status 'ok' but label is null"),
    ({"status": "invalid", "error_kind": "answer"},
     r"predictions.jsonl:2: error_kind 'answer' on a line with status 'invalid'; only status 'error' lines"),
    ({"status": "error", "error_kind": "disk"}, r"predictions.jsonl:2: unknown error_kind 'disk'"),
    ({"sample_id": None}, r"predictions.jsonl:2: sample_id is None; every line names its sample and attribute"),
    ({"sample_id": ""}, r"predictions.jsonl:2: sample_id is ''; every line names"),
    ({"sample_id": True}, r"predictions.jsonl:2: sample_id is True; every line names"),
    ({"attribute": None}, r"predictions.jsonl:2: attribute is None; every line names"),
    ({"attribute": ["gender"]}, r"predictions.jsonl:2: attribute is \['gender'\]; every line names"),
])
def test_a_line_that_contradicts_itself_is_refused_naming_its_line(tmp_path, change, message):
    lines = _lines_a_run_writes()
    lines[1] = {**lines[1], **change}
    with pytest.raises(PredictionsError, match=message):
        read_records(_write(tmp_path / "predictions.jsonl", lines))


def test_an_integer_sample_id_is_read_as_written(tmp_path):
    lines = _lines_a_run_writes()
    lines[0] = {**lines[0], "sample_id": 17}
    assert read_records(_write(tmp_path / "predictions.jsonl", lines))[0]["sample_id"] == 17


def test_only_a_last_line_cut_before_its_newline_is_tolerated(tmp_path):
    """iter_records skips a truncated last line (no newline: the run was killed mid-write); a broken
    last line that does end with a newline is corruption, not a kill, and is refused."""
    whole = "".join(json.dumps(r) + "\n" for r in _lines_a_run_writes())
    cut = tmp_path / "cut.jsonl"
    cut.write_text(whole + '{"sample_id": "f", "attri', encoding="utf-8")
    assert len(read_records(cut)) == 5
    broken = tmp_path / "broken.jsonl"
    broken.write_text(whole + '{"sample_id": "f", "attri\n', encoding="utf-8")
    with pytest.raises(PredictionsError, match=r"broken.jsonl:6: not valid JSON"):
        read_records(broken)


def test_the_writer_drops_a_partial_first_line_of_a_single_byte(tmp_path):
    """PredictionWriter cuts a truncated tail back to the last whole line, even when the file holds
    nothing but one byte of a first line."""
    from vlmface.predictions import PredictionWriter

    path = tmp_path / "predictions.jsonl"
    path.write_bytes(b"{")
    PredictionWriter(path)
    assert path.read_bytes() == b""


@pytest.mark.parametrize("probs, message", [
    (["Male", "Female"], r"'probs' must be an object of label -> probability or null"),
    ({"Male": True, "Female": False}, r"probs\['Male'\] is True"),
    ({"Male": "0.9", "Female": 0.1}, r"probs\['Male'\] is '0.9'"),
])
def test_probabilities_that_are_not_numbers_by_label_are_refused_on_any_line(tmp_path, probs, message):
    """The per-probability check runs on every line, not only on one with a NaN/Infinity literal:
    before, a list was read as no probabilities (the attribute lost its calibration without a word)
    and true as 1.0."""
    lines = _lines_a_run_writes()
    lines[0]["probs"] = probs
    with pytest.raises(PredictionsError, match=r"predictions.jsonl:1: " + message):
        read_records(_write(tmp_path / "predictions.jsonl", lines))
