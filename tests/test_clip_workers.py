"""CLIP preprocessing in the loader's worker processes gives the same answers as in-process."""

from __future__ import annotations

import pytest

from vlmface.predictions import read_records
from vlmface.runner import EvalConfig, evaluate

from tiny_models import build_tiny_hf_siglip2, build_tiny_open_clip


@pytest.mark.parametrize("build", [build_tiny_open_clip, build_tiny_hf_siglip2], ids=["open_clip", "siglip2"])
def test_worker_preprocessing_equals_in_process(build, tmp_path, utkface_dir):
    model_dir = build(tmp_path / "model")
    prefix = "local-dir:" if build is build_tiny_open_clip else "hf:"
    def run(workers):
        return evaluate(EvalConfig(task="utkface", model=f"clip:{prefix}{model_dir}", data_dir=utkface_dir,
                                   limit=24, batch_size=8, workers=workers, attributes=["gender", "race5"],
                                   out=tmp_path / f"w{workers}", cache_dir=False, score=False, progress=False))
    in_process = {(r["sample_id"], r["attribute"]): r for r in read_records(run(0).predictions_path)}
    in_workers = {(r["sample_id"], r["attribute"]): r for r in read_records(run(2).predictions_path)}
    assert in_process.keys() == in_workers.keys() and len(in_process) == 48
    for key, record in in_process.items():
        assert in_workers[key]["label"] == record["label"]
        for label, p in record["probs"].items():
            assert in_workers[key]["probs"][label] == pytest.approx(p, abs=1e-6)
