"""Calibration by group on a tiny CLIP run over real UTKFace faces: the reliability bins equal
sklearn's calibration_curve (uniform, 10 bins), the ECE is their count-weighted gap and the
Brier score equals sklearn's multiclass brier_score_loss."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from tiny_models import build_tiny_open_clip
from vlmface.predictions import read_records
from vlmface.runner import EvalConfig, evaluate
from vlmface.scoring import score_run


@pytest.fixture(scope="module")
def clip_run(utkface_dir, tmp_path_factory, one_torch_thread):
    model_dir = build_tiny_open_clip(tmp_path_factory.mktemp("open_clip"))
    result = evaluate(EvalConfig(task="utkface", model=f"clip:local-dir:{model_dir}", data_dir=utkface_dir,
                                 limit=60, attributes=["gender", "age5"], out=tmp_path_factory.mktemp("clip"),
                                 score=False, progress=False))
    return result.run_dir


def _expected(records: list[dict], labels: list[str]) -> dict:
    confidence = np.array([r["probs"][r["label"]] for r in records])
    correct = np.array([r["label"] == r["truth"] for r in records], dtype=float)
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=10, strategy="uniform", pos_label=1)
    counts = np.histogram(confidence, bins=np.linspace(0, 1, 11))[0]
    counts = counts[counts > 0]
    order = sorted(labels)  # brier_score_loss reads the columns in sorted label order
    probs = np.array([[r["probs"][label] for label in order] for r in records])
    return {"accuracy": prob_true, "confidence": prob_pred, "count": counts,
            "ece": float(np.sum(counts / len(records) * np.abs(prob_true - prob_pred))),
            "brier": brier_score_loss([r["truth"] for r in records], probs, labels=order, scale_by_half=False)}


@pytest.mark.parametrize("attribute", ["gender", "age5"])
def test_ece_and_brier_by_group_equal_sklearn(clip_run, attribute):
    metrics = score_run(clip_run, n_boot=50, min_cell_n=10)
    attr = metrics["attributes"][attribute]
    assert "calibration" in attr["metric_families"]
    records = [r for r in read_records(clip_run / "predictions.jsonl")
               if r["attribute"] == attribute and r["status"] == "ok"]
    checked = 0
    for scope, rows in [("overall", records)] + [
            (group, [r for r in records if r["groups"]["gender"] == group]) for group in ("Female", "Male")]:
        ours = attr["overall"] if scope == "overall" else attr["by_group"]["gender"][scope]
        if len(rows) < 10:
            assert ours["ece"] is None and ours["brier"] is None
            continue
        expected = _expected(rows, attr["labels"])
        assert ours["n_calibrated"] == len(rows)
        assert ours["reliability"]["accuracy"] == pytest.approx(list(expected["accuracy"]), abs=1e-12)
        assert ours["reliability"]["confidence"] == pytest.approx(list(expected["confidence"]), abs=1e-12)
        assert ours["reliability"]["count"] == list(expected["count"])
        assert ours["ece"] == pytest.approx(expected["ece"], abs=1e-12)
        assert ours["brier"] == pytest.approx(expected["brier"], abs=1e-12)
        checked += 1
    assert checked == 3


def test_a_run_without_probabilities_has_no_calibration_keys(clip_run, tmp_path):
    lines = (clip_run / "predictions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    records[0]["probs"] = None  # one answered line without probabilities: no calibration at all
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "run.json").write_text((clip_run / "run.json").read_text())
    attr = score_run(tmp_path, n_boot=20)["attributes"][records[0]["attribute"]]
    assert "calibration" not in attr["metric_families"] and "ece" not in attr["overall"]
    assert not pd.isna(attr["overall"]["accuracy"])
