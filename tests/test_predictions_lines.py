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
])
def test_a_line_that_contradicts_itself_is_refused_naming_its_line(tmp_path, change, message):
    lines = _lines_a_run_writes()
    lines[1] = {**lines[1], **change}
    with pytest.raises(PredictionsError, match=message):
        read_records(_write(tmp_path / "predictions.jsonl", lines))
