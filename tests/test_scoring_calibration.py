"""Calibration on planted probabilities (fast; tests/test_calibration.py does it on a tiny CLIP run):
the reliability bins equal sklearn's calibration_curve (uniform, 10 bins) even for confidences on
a bin edge, the ECE is their count-weighted gap, the Brier score equals sklearn's multiclass
brier_score_loss, and non-answers and small groups are left out as documented."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from scoring_fixtures import record, run_json, write_run
from vlmface.scoring import score_run

LABELS = ("happy", "neutral", "sad")
EDGES = (0.4, 0.5, 0.7, 0.9, 1.0)  # confidences exactly on bin edges (and the top one)


def _records() -> list[dict]:
    rng = np.random.default_rng(5)
    records = []
    for group, (n, sharp) in {"P": (150, 4.0), "Q": (150, 0.5), "R": (7, 1.0)}.items():
        for i in range(n):
            truth = LABELS[int(rng.integers(3))]
            logits = rng.normal(size=3) * sharp
            logits[LABELS.index(truth)] += sharp
            probs = np.exp(logits) / np.exp(logits).sum()
            if i < len(EDGES):  # the top label gets exactly an edge value, the rest shares what is left
                top = EDGES[i]
                probs = np.array([top, (1 - top) / 2, (1 - top) / 2])
            label = LABELS[int(np.argmax(probs))]
            if i in (len(EDGES), len(EDGES) + 1):  # answers that are not the most probable label,
                low = 0.15 if i == len(EDGES) else 0.05  # in the two lowest bins
                probs, label = np.array([0.5, 0.5 - low, low]), LABELS[2]
            status = "invalid" if i % 23 == 11 else "ok"
            row = record(f"{group}-{i}", "emotion", label if status == "ok" else None, truth, status,
                         race=group, gender="Female")
            row["probs"] = dict(zip(LABELS, probs.tolist()))
            records.append(row)
    return records


def _expected(rows: list[dict]) -> dict:
    confidence = np.array([r["probs"][r["label"]] for r in rows])
    correct = np.array([r["label"] == r["truth"] for r in rows], dtype=float)
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=10, strategy="uniform", pos_label=1)
    bins = np.searchsorted(np.linspace(0, 1, 11)[1:-1], confidence)  # calibration_curve's own binning
    counts = np.bincount(bins, minlength=10)
    counts = counts[counts > 0]
    probs = np.array([[r["probs"][label] for label in LABELS] for r in rows])
    return {"accuracy": prob_true, "confidence": prob_pred, "count": counts,
            "ece": float(np.sum(counts / len(rows) * np.abs(prob_true - prob_pred))),
            "brier": brier_score_loss([r["truth"] for r in rows], probs, labels=list(LABELS),
                                      scale_by_half=False)}


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    records = _records()
    run_dir = write_run(tmp_path_factory.mktemp("calibration"), records, run_json("emotion", labels=LABELS))
    return records, score_run(run_dir, n_boot=20, min_cell_n=10)["attributes"]["emotion"]


def _check(ours: dict, rows: list[dict]) -> None:
    want = _expected(rows)
    assert ours["n_calibrated"] == len(rows)
    assert ours["reliability"]["count"] == list(want["count"])
    assert ours["reliability"]["accuracy"] == pytest.approx(list(want["accuracy"]), abs=1e-12)
    assert ours["reliability"]["confidence"] == pytest.approx(list(want["confidence"]), abs=1e-12)
    assert ours["ece"] == pytest.approx(want["ece"], abs=1e-12)
    assert ours["brier"] == pytest.approx(want["brier"], abs=1e-12)


def test_overall_and_per_group_calibration_equal_sklearn(scored):
    records, attr = scored
    answered = [r for r in records if r["status"] == "ok"]
    assert "calibration" in attr["metric_families"]
    _check(attr["overall"], answered)
    for group in ("P", "Q"):
        _check(attr["by_group"]["race"][group], [r for r in answered if r["groups"]["race"] == group])
    assert attr["by_group"]["race"]["P"]["ece"] != attr["by_group"]["race"]["Q"]["ece"]


def test_a_group_under_min_cell_n_has_null_calibration(scored):
    records, attr = scored
    tiny = attr["by_group"]["race"]["R"]
    assert tiny["n_calibrated"] == 7
    assert tiny["ece"] is None and tiny["brier"] is None and tiny["reliability"] is None


def test_a_perfect_and_a_worst_case_brier(tmp_path):
    rows = []
    for i in range(12):
        truth = LABELS[i % 3]
        sure = {label: float(label == truth) for label in LABELS}
        wrong = {label: float(label == LABELS[(i + 1) % 3]) for label in LABELS}
        rows.append({**record(f"a{i}", "emotion", truth, truth, race="P", gender="Female"), "probs": sure})
        rows.append({**record(f"b{i}", "emotion", LABELS[(i + 1) % 3], truth, race="Q", gender="Female"),
                     "probs": wrong})
    attr = score_run(write_run(tmp_path, rows, run_json("emotion", labels=LABELS)),
                     n_boot=10, min_cell_n=10)["attributes"]["emotion"]
    perfect, worst = attr["by_group"]["race"]["P"], attr["by_group"]["race"]["Q"]
    assert (perfect["brier"], perfect["ece"]) == (0.0, 0.0)
    assert (worst["brier"], worst["ece"]) == (2.0, 1.0)
    assert perfect["reliability"] == {"confidence": [1.0], "accuracy": [1.0], "count": [12]}


def test_a_group_of_exactly_min_cell_n_gets_its_calibration(tmp_path):
    """min_cell_n is the smallest group that is calibrated: R's 7 answers with min_cell_n=7 get the
    same numbers as sklearn's."""
    records = _records()
    run_dir = write_run(tmp_path / "run", records, run_json("emotion", labels=LABELS))
    tiny = score_run(run_dir, n_boot=20, min_cell_n=7)["attributes"]["emotion"]["by_group"]["race"]["R"]
    _check(tiny, [r for r in records if r["status"] == "ok" and r["groups"]["race"] == "R"])
