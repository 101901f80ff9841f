"""`vlmface report` keys runs by their directory: runs sharing a label (a copied run folder, a
shard-merged run beside the full run, an --attributes subset) all report, told apart by a suffix.

Before (issue 13): build_report crashed with "cannot reindex on an axis with duplicate labels".
"""

from __future__ import annotations

import shutil

import pytest

from vlmface.merge import merge_runs
from vlmface.report import build_report
from vlmface.report.collect import _distinct_suffixes
from vlmface.runner import EvalConfig, evaluate
from vlmface.scoring import score_run


def _eval(out, utkface_dir, **kwargs):
    config = EvalConfig(task="utkface", model="baseline", data_dir=utkface_dir, limit=40, seed=0, out=out,
                        progress=False, **kwargs)
    return evaluate(config).run_dir


@pytest.fixture(scope="module")
def results(tmp_path_factory, utkface_dir):
    out = tmp_path_factory.mktemp("results")
    full = _eval(out, utkface_dir)
    shutil.copytree(full, full.parent / "copy_of_none")
    _eval(out, utkface_dir, attributes=["gender"])
    shards = [_eval(out, utkface_dir, shard=(k, 2), score=False) for k in range(2)]
    merged = merge_runs(shards, full.parent / "merged")
    score_run(merged)
    for shard in shards:
        shutil.rmtree(shard)
    return out


def test_runs_sharing_a_label_all_report(results):
    report = build_report(results)
    runs = report.collection.runs
    assert len(runs) == len(set(runs["run_id"])) >= 4
    overall = report.collection.overall
    gender = overall[overall["attribute"] == "gender"]
    assert len(gender) == len(runs)  # every run has a gender row
    assert gender["label"].is_unique  # each run shown under its own name
    assert set(gender["label"]) >= {"baseline / none [none]", "baseline / none [copy_of_none]",
                                    "baseline / none [merged]"}
    group_plot = [p for p in report.plots if p.suffix == ".svg" and "groups__utkface__gender" in p.name]
    assert group_plot, [p.name for p in report.plots]
    svg = group_plot[0].read_text(encoding="utf-8")
    assert "[copy_of_none]" in svg and "[merged]" in svg
    board = report.out_dir / "leaderboard.csv"
    assert "copy_of_none" in board.read_text(encoding="utf-8")


def test_distinct_suffixes_are_the_fewest_trailing_folders():
    assert _distinct_suffixes(["a/m/none", "b/m/none", "a/m/merged"]) == \
        {"a/m/none": "a/m/none", "b/m/none": "b/m/none", "a/m/merged": "a/m/merged"}
    assert _distinct_suffixes(["t/m/none", "t/m/merged"]) == {"t/m/none": "none", "t/m/merged": "merged"}
