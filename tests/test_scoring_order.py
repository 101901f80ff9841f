"""The scorer's numbers do not depend on the order of predictions.jsonl's lines (Ray's actors
write them as batches finish): scoring sorts the records by (attribute, sample_id) first."""

from __future__ import annotations

import random

from vlmface.runner import EvalConfig, evaluate
from vlmface.scoring import score_run


def _files(run_dir):
    return {path.relative_to(run_dir).as_posix(): path.read_bytes()
            for path in [run_dir / "metrics.json", *sorted((run_dir / "tables").iterdir())]}


def test_shuffled_prediction_lines_give_the_same_metrics_json_byte_for_byte(utkface_dir, tmp_path):
    run_dir = evaluate(EvalConfig(task="utkface", model="baseline", data_dir=utkface_dir, limit=150,
                                  out=tmp_path, score=False, progress=False)).run_dir
    score_run(run_dir, n_boot=100)
    before = _files(run_dir)
    predictions = run_dir / "predictions.jsonl"
    lines = predictions.read_text(encoding="utf-8").splitlines(keepends=True)
    shuffled = lines[:]
    random.Random(7).shuffle(shuffled)
    assert shuffled != lines and sorted(shuffled) == sorted(lines)
    predictions.write_text("".join(shuffled), encoding="utf-8")
    score_run(run_dir, n_boot=100)
    assert _files(run_dir) == before
