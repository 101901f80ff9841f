"""--shard K/N + merge: shards cover the selection exactly once and score like one process."""

from __future__ import annotations

import pytest

from vlmface.errors import VlmfaceError
from vlmface.merge import merge_runs
from vlmface.predictions import read_records
from vlmface.runner import EvalConfig, evaluate
from vlmface.scoring import score_run


def _run(tmp_path, utkface_dir, shard=None, limit=90):
    return evaluate(EvalConfig(task="utkface", model="fake:none", data_dir=utkface_dir, limit=limit, seed=3,
                               out=tmp_path, shard=shard, score=False, progress=False)).run_dir


def test_merged_shards_score_like_a_single_process(tmp_path, utkface_dir, fake_backend):
    shards = [_run(tmp_path, utkface_dir, (k, 3)) for k in range(3)]
    ids = [{r["sample_id"] for r in read_records(d / "predictions.jsonl")} for d in shards]
    assert [len(i) for i in ids] == [30, 30, 30] and not (ids[0] & ids[1] or ids[1] & ids[2])
    merged = merge_runs(list(reversed(shards)), tmp_path / "merged")
    single = _run(tmp_path, utkface_dir)
    key = lambda r: (r["sample_id"], r["attribute"])  # noqa: E731
    assert sorted(map(key, read_records(merged / "predictions.jsonl"))) == \
        sorted(map(key, read_records(single / "predictions.jsonl")))
    assert score_run(merged)["attributes"] == score_run(single)["attributes"]


def test_merge_names_missing_duplicated_and_unfinished_shards(tmp_path, utkface_dir, fake_backend):
    shards = [_run(tmp_path, utkface_dir, (k, 3)) for k in range(3)]
    with pytest.raises(VlmfaceError, match=r"missing \[2\]"):
        merge_runs(shards[:2], tmp_path / "m1")
    with pytest.raises(VlmfaceError, match=r"given twice \[1\]"):
        merge_runs([shards[0], shards[1], shards[1], shards[2]], tmp_path / "m2")
    lines = (shards[2] / "predictions.jsonl").read_text().splitlines(keepends=True)
    (shards[2] / "predictions.jsonl").write_text("".join(lines[:-7]))
    with pytest.raises(VlmfaceError, match=r"shard-2-of-3: \d sample\(s\) not finished.*rerun"):
        merge_runs(shards, tmp_path / "m3")
    single = _run(tmp_path, utkface_dir)
    with pytest.raises(VlmfaceError, match="not a shard run"):
        merge_runs([single], tmp_path / "m4")


def test_shards_are_stable_under_limit_and_seed(tmp_path, utkface_dir, fake_backend):
    first = _run(tmp_path / "a", utkface_dir, (1, 4), limit=80)
    second = _run(tmp_path / "b", utkface_dir, (1, 4), limit=80)
    assert read_records(first / "predictions.jsonl") == read_records(second / "predictions.jsonl")
    with pytest.raises(VlmfaceError, match="K must be in 0..3"):
        _run(tmp_path / "c", utkface_dir, (4, 4))
