"""The typed run record (run.json) and metrics record (metrics.json) of vlmface.run_record:
files read and written again keep their bytes (keys, order, values), older files still read,
unknown keys are kept, and a field of the wrong type is one error naming the file and the field."""

from __future__ import annotations

import json

import pytest

from vlmface.errors import PredictionsError
from vlmface.run_record import (METRICS_FILE, RUN_FILE, RunRecordError, json_text, read_metrics,
                                read_run, write_metrics, write_run)
from vlmface.runner import EvalConfig, evaluate
from vlmface.scoring import score_run


@pytest.fixture(scope="module")
def scored_run(utkface_dir, tmp_path_factory):
    return evaluate(EvalConfig(task="utkface", model="baseline", data_dir=utkface_dir, limit=16,
                               out=tmp_path_factory.mktemp("run"), progress=False)).run_dir


def test_a_run_s_files_read_and_written_again_keep_their_bytes(scored_run, tmp_path):
    run, metrics = read_run(scored_run), read_metrics(scored_run)
    assert run.status == "complete" and run.shard is None and run.template("gender") is None
    assert run.run_identity() is not None and run.declared("gender").labels == ["Male", "Female"]
    assert metrics.run.as_json() == run.as_json() and metrics.scoring.group_columns == run.group_columns
    write_run(tmp_path, run)
    write_metrics(tmp_path, metrics)
    for name in (RUN_FILE, METRICS_FILE):
        assert (tmp_path / name).read_bytes() == (scored_run / name).read_bytes(), name


def test_an_older_run_json_reads_keeps_unknown_keys_and_writes_only_what_it_holds(tmp_path):
    """A run.json of an older vlmface: no identity, no text_sha256, a key this version does not know."""
    old = {"task": "utkface", "model": "baseline", "legacy_note": {"kept": [1, 2]}, "limit": 50,
           "templates": {"gender": {"name": "direct", "sha256": "ab"}}, "timings": {"seconds": 3}}
    (tmp_path / RUN_FILE).write_text(json_text(old), encoding="utf-8")
    run = read_run(tmp_path)
    assert run.run_identity() is None and run.identity is None and not run.has("identity")
    assert run.template("gender").text_sha256 is None and run.answer_options() == {}
    run.status = "complete"
    write_run(tmp_path, run)
    assert json.loads((tmp_path / RUN_FILE).read_text()) == {**old, "status": "complete"}
    assert '"seconds": 3\n' in (tmp_path / RUN_FILE).read_text()  # an int stays an int


def test_a_field_of_the_wrong_type_names_the_file_and_the_field(tmp_path):
    (tmp_path / RUN_FILE).write_text(json.dumps({"task": "t", "attributes": {"emotion": ["happy"]}}))
    with pytest.raises(RunRecordError, match=r"run\.json: attributes\.emotion: .*dictionary") as caught:
        read_run(tmp_path)
    assert isinstance(caught.value, PredictionsError)  # the scorer's error for a broken run file
    assert read_run(tmp_path / "elsewhere") is None


def test_the_scorer_reports_a_broken_run_json_by_file_and_field(scored_run, tmp_path):
    for path in scored_run.glob("*.jsonl"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / RUN_FILE).write_text(json.dumps({**read_run(scored_run).as_json(), "group_columns": "race5"}))
    with pytest.raises(PredictionsError, match=r"run\.json: group_columns: .*list"):
        score_run(tmp_path, n_boot=10)
