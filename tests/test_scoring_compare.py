"""Paired comparison of two runs: difference, paired-bootstrap CI, exact McNemar."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from scoring_fixtures import record, run_json, write_run
from vlmface.errors import PredictionsError
from vlmface.scoring import compare_runs, format_comparison

LABELS = ("happy", "sad")


def run_with(tmp_path, name: str, right: np.ndarray, ids=None, statuses=None):
    ids = ids if ids is not None else [f"s{i}" for i in range(right.size)]
    records = []
    for i, (sample_id, ok) in enumerate(zip(ids, right)):
        status = statuses[i] if statuses is not None else "ok"
        label = None if status != "ok" else ("happy" if ok else "sad")
        records.append(record(sample_id, "emotion", label, "happy", status, race="A", gender="F"))
    return write_run(tmp_path / name, records, run_json(labels=LABELS))


def test_paired_difference_and_exact_mcnemar(tmp_path):
    # 60 both right, 5 only A right, 15 only B right, 20 both wrong
    a = np.array([1] * 60 + [1] * 5 + [0] * 15 + [0] * 20, dtype=bool)
    b = np.array([1] * 60 + [0] * 5 + [1] * 15 + [0] * 20, dtype=bool)
    result = compare_runs(run_with(tmp_path, "a", a), run_with(tmp_path, "b", b), n_boot=2000)
    r = result["attributes"]["emotion"]
    assert (r["n_paired"], r["a_only_correct"], r["b_only_correct"]) == (100, 5, 15)
    assert (r["accuracy_a"], r["accuracy_b"]) == pytest.approx((0.65, 0.75))
    assert r["difference"] == pytest.approx(0.10)
    assert r["mcnemar_p"] == pytest.approx(2 * stats.binom.cdf(5, 20, 0.5))
    lo, hi = r["difference_ci"]
    assert 0.0 < lo < 0.10 < hi < 0.2
    text = format_comparison(result)
    assert "B - A +0.100" in text and "McNemar p=0.0414" in text


def test_unpaired_and_error_items_are_reported_not_scored(tmp_path):
    right = np.ones(10, dtype=bool)
    statuses = ["ok"] * 9 + ["error"]
    a = run_with(tmp_path, "a", right, statuses=statuses)
    b = run_with(tmp_path, "b", right, ids=[f"s{i}" for i in range(3, 13)])
    r = compare_runs(a, b, n_boot=100)["attributes"]["emotion"]
    assert (r["n_paired"], r["n_unpaired_a"], r["n_unpaired_b"], r["n_excluded_error"]) == \
        (6, 3, 3, 1)
    assert r["mcnemar_p"] == 1.0 and r["difference"] == 0.0


def test_refusals_count_as_wrong_in_the_comparison(tmp_path):
    right = np.ones(4, dtype=bool)
    a = run_with(tmp_path, "a", right)
    b = run_with(tmp_path, "b", right, statuses=["ok", "ok", "refused", "invalid"])
    r = compare_runs(a, b, n_boot=100)["attributes"]["emotion"]
    assert (r["accuracy_b"], r["a_only_correct"]) == (0.5, 2)


def test_no_shared_samples_is_an_error(tmp_path):
    right = np.ones(3, dtype=bool)
    a = run_with(tmp_path, "a", right)
    b = run_with(tmp_path, "b", right, ids=["x", "y", "z"])
    with pytest.raises(PredictionsError, match="share no scorable sample"):
        compare_runs(a, b)


def test_different_truths_for_the_same_sample_is_an_error(tmp_path):
    right = np.ones(3, dtype=bool)
    a = run_with(tmp_path, "a", right)
    b = run_with(tmp_path, "b", right)
    text = (b / "predictions.jsonl").read_text().replace('"truth": "happy"}', '"truth": "sad"}', 1)
    (b / "predictions.jsonl").write_text(text)
    with pytest.raises(PredictionsError, match=r"sample 's0'.*disagree on the truth"):
        compare_runs(a, b)
