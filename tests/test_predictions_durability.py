"""Finished work survives a kill: one fsync per predictions batch, and a resume after a kill
mid-write drops the truncated last line and redoes exactly that (sample, attribute) pair.
Real FER2013 faces, the deterministic fake backend (tests/fake_backends.py)."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from vlmface.predictions import Prediction, PredictionWriter, read_records
from vlmface.runner import EvalConfig, evaluate

EMOTIONS = ("happy", "sad", "fear")
PER_EMOTION = 3


@pytest.fixture
def folder(tmp_path, fer_dir) -> Path:
    root = tmp_path / "fer"
    for emotion in EMOTIONS:
        (root / emotion).mkdir(parents=True)
        for face in sorted((fer_dir / emotion).glob("*.jpg"))[:PER_EMOTION]:
            shutil.copy(face, root / emotion / face.name)
    return root


@pytest.fixture
def fsyncs(monkeypatch) -> Counter:
    """Counts os.fsync calls per file path (through /proc/self/fd), still syncing for real."""
    calls: Counter = Counter()
    real = os.fsync

    def counting(fd):
        calls[os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))] += 1
        return real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def _config(folder: Path, out: Path, batch_size: int = 2) -> EvalConfig:
    return EvalConfig(task="fer2013", model="fake:none", data_dir=folder, out=out, progress=False,
                      score=False, batch_size=batch_size)


def _pairs(records) -> list[tuple[str, str]]:
    return [(r["sample_id"], r["attribute"]) for r in records]


def test_the_writer_fsyncs_once_per_batch(tmp_path, fsyncs):
    writer = PredictionWriter(tmp_path / "predictions.jsonl")
    for batch in range(3):
        writer.write_batch([Prediction(sample_id=f"{batch}-{i}", attribute="emotion", label="happy",
                                       status="ok", truth="sad", groups={}) for i in range(2)])
    writer.write_batch([])  # nothing to write: nothing to sync
    writer.close()
    assert fsyncs["predictions.jsonl"] == 3
    assert len(read_records(tmp_path / "predictions.jsonl")) == 6


def test_an_eval_fsyncs_predictions_once_per_batch(folder, tmp_path, fake_backend, fsyncs):
    result = evaluate(_config(folder, tmp_path / "out", batch_size=2))
    records = read_records(result.run_dir / "predictions.jsonl")
    n_images = len(EMOTIONS) * PER_EMOTION
    assert len(records) == n_images and len(set(_pairs(records))) == n_images
    assert fsyncs["predictions.jsonl"] == -(-n_images // 2)  # ceil(9 / 2) = 5 batches


def test_resume_after_a_truncated_last_line_redoes_exactly_that_pair(folder, tmp_path, fake_backend):
    config = _config(folder, tmp_path / "out")
    run_dir = evaluate(config).run_dir
    path = run_dir / "predictions.jsonl"
    complete = read_records(path)
    data = path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    lost = json.loads(data[last_start:])
    path.write_bytes(data[: last_start + (len(data) - last_start) // 2])  # killed mid-write
    assert len(read_records(path)) == len(complete) - 1  # readers skip the partial line
    fake_backend.instances.clear()

    evaluate(config)

    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])  # every line whole JSON
    resumed = read_records(path)
    assert len(set(_pairs(resumed))) == len(resumed) == len(complete)  # no duplicates, none lost
    assert sorted(_pairs(resumed)) == sorted(_pairs(complete))
    assert resumed[-1] == lost  # the cut pair, redone (the fake backend is deterministic)
    assert resumed[:-1] == complete[:-1]  # finished work kept as it was
    assert sum(len(b.prompts) for b in fake_backend.instances) == 1  # only that pair was asked again
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["counts"]["resumed_skipped_pairs"] == len(complete) - 1


def test_a_writer_opened_on_a_partial_line_cuts_it_before_appending(tmp_path):
    path = tmp_path / "predictions.jsonl"
    whole = Prediction(sample_id="a", attribute="emotion", label="sad", status="ok", truth="sad", groups={})
    path.write_text(whole.to_json() + "\n" + whole.to_json()[:17], encoding="utf-8")
    writer = PredictionWriter(path)
    writer.write_batch([Prediction(sample_id="b", attribute="emotion", label="fear", status="ok",
                                   truth="sad", groups={})])
    writer.close()
    assert [r["sample_id"] for r in read_records(path)] == ["a", "b"]
    assert path.read_text(encoding="utf-8").count("\n") == 2


def test_lines_are_utf8_text_and_refuse_non_finite_numbers(tmp_path):
    """A prediction line keeps non-ASCII ids as UTF-8 (not \\u escapes) and never writes NaN."""
    line = Prediction(sample_id="sad/café.jpg", attribute="emotion", label="sad", status="ok", truth="sad",
                      groups={"race": "Métis"}).to_json()
    assert "café" in line and "Métis" in line and "\\u" not in line
    with pytest.raises(ValueError):
        Prediction(sample_id="a", attribute="age", label=float("nan"), status="ok", truth=3.0, groups={}).to_json()


@pytest.mark.parametrize("truncate_fails", [False, True])
def test_a_batch_that_cannot_be_synced_is_cut_off_and_named(tmp_path, monkeypatch, truncate_fails):
    """Disk full at the fsync: the batch is cut off again (the file keeps the earlier whole lines)
    and the error is an OutputError naming the file and the errno; if cutting it off fails too,
    still that OutputError (the next writer drops a partial tail)."""
    import errno

    from vlmface.run_record import OutputError

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    path = tmp_path / "predictions.jsonl"
    first = Prediction(sample_id="a", attribute="emotion", label="sad", status="ok", truth="sad", groups={})
    with PredictionWriter(path) as writer:
        writer.write_batch([first])
        size = path.stat().st_size
        monkeypatch.setattr(os, "fsync", full)
        if truncate_fails:
            monkeypatch.setattr(os, "ftruncate", lambda fd, length: full(fd))
        with pytest.raises(OutputError, match=rf"cannot write {path}: ENOSPC \(No space left on device\)"):
            writer.write_batch([Prediction(sample_id=s, attribute="emotion", label="fear", status="ok", truth="sad",
                                           groups={}) for s in "bc"])
    monkeypatch.undo()
    if not truncate_fails:
        assert path.stat().st_size == size and [r["sample_id"] for r in read_records(path)] == ["a"]


def test_the_writer_makes_the_folders_of_a_new_run(tmp_path):
    path = tmp_path / "results" / "utkface" / "baseline" / "none" / "predictions.jsonl"
    with PredictionWriter(path) as writer:
        writer.write_batch([Prediction(sample_id="a", attribute="emotion", label="sad", status="ok", truth="sad",
                                       groups={})])
    assert [r["sample_id"] for r in read_records(path)] == ["a"]
