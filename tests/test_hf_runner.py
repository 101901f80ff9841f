"""End to end: the runner drives the hf backend (a tiny LLaVA on disk) over real UTKFace faces."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

pytest.importorskip("transformers")
from vlmface import runner  # noqa: E402  (our own module: an ImportError must fail, never skip)

import tiny_vlms  # noqa: E402
from conftest import assert_interpretation_reproduces, assert_unique_pairs  # noqa: E402
from vlmface.predictions import read_records  # noqa: E402

UTKFACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface" / "crop_part1"


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory) -> Path:
    assert UTKFACE.is_dir(), f"real faces expected at {UTKFACE} (see ../shared/data/README.md)"
    return tiny_vlms.build_llava(tmp_path_factory.mktemp("runner") / "llava")


@pytest.mark.parametrize("mode", ["generate", "choice"])
def test_eval_utkface_with_a_tiny_llava(mode, llava_dir, tmp_path):
    config = runner.EvalConfig(task="utkface", model=f"hf:{llava_dir}", limit=20, data_dir=UTKFACE,
                               out=tmp_path, batch_size=8, progress=False, score=False,
                               attributes=["gender", "race5", "age", "age5"],
                               options={"device": "cpu", "mode": mode, "max_new_tokens": 4})
    result = runner.evaluate(config)
    records = read_records(result.predictions_path)
    attributes = {"gender", "race5", "age5"} | ({"age"} if mode == "generate" else set())
    assert {r["attribute"] for r in records} == attributes
    assert len(assert_unique_pairs(records)) == 20 * len(attributes)
    truth = {"0": "Male", "1": "Female"}  # UTKFace's file names: age_gender_race_date
    assert all(r["truth"] == truth[r["sample_id"].split("_")[1]] for r in records if r["attribute"] == "gender")
    if mode == "generate":
        assert all(isinstance(r["raw"], str) for r in records)
        assert all(r["extra"]["parse"] for r in records)  # the parser's reason is kept for audit
        assert_interpretation_reproduces(records, "utkface")  # each status is the one its raw text gives
    else:
        assert_interpretation_reproduces(records, "utkface")  # the label is the argmax of the saved scores
        assert "age" in result.unsupported  # numeric: no label set to score
        assert {r["status"] for r in records} == {"ok"}
        assert all(abs(sum(r["probs"].values()) - 1) < 1e-6 and r["label"] in r["probs"] for r in records)
