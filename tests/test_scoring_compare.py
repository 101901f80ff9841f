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


# ----- 2+ runs: compare_many and `vlmface compare RUN...` ------------------------------------

def _three_runs(tmp_path):
    """Same 8 samples (race A/B, gender F/M). R1 and R2 differ on s1 (race A) and s6 (race B);
    R3 refuses s0. R1 and R2 saved probabilities; R3 did not."""
    truth = ["happy"] * 8
    races = ["A", "A", "A", "A", "B", "B", "B", "B"]
    genders = ["F", "M"] * 4
    answers = {"r1": ["happy", "happy", "sad", "happy", "happy", "sad", "happy", "happy"],
               "r2": ["happy", "sad", "sad", "happy", "happy", "sad", "sad", "happy"],
               "r3": [None, "happy", "sad", "happy", "happy", "sad", "happy", "happy"]}
    meta = {"r1": ("hf", "choice", "float32", 0.5), "r2": ("vllm", "choice", "float32", 0.01),
            "r3": ("vllm", "constrained", "bfloat16", 0.02)}
    dirs = []
    for name, labels in answers.items():
        records = []
        for i, label in enumerate(labels):
            rec = record(f"s{i}", "emotion", label, truth[i], "ok" if label else "refused",
                         race=races[i], gender=genders[i])
            if name != "r3":
                p_happy = 0.9 if label == "happy" else 0.2
                rec["probs"] = {"happy": p_happy + (0.05 if name == "r2" and i == 0 else 0.0),
                                "sad": 1 - p_happy - (0.05 if name == "r2" and i == 0 else 0.0)}
            records.append(rec)
        backend, mode, dtype, speed = meta[name]
        run = run_json(labels=LABELS) | {"model": f"m-{name}", "timings": {"seconds_per_sample": speed},
                                         "model_identity": {"backend": backend, "mode": mode, "dtype": dtype,
                                                            "choice_score": "sum" if mode == "choice" else None}}
        dirs.append(write_run(tmp_path / name, records, run))
    return dirs


def test_compare_many_pairs_agreement_flips_by_group_and_prob_diffs(tmp_path):
    from vlmface.scoring.compare import compare_many
    from vlmface.scoring.compare_tables import format_many

    result = compare_many(_three_runs(tmp_path), n_boot=200)
    assert [p["run_a"][-2:] + p["run_b"][-2:] for p in result["pairs"]] == ["r1r2", "r1r3", "r2r3"]
    r12 = result["pairs"][0]["attributes"]["emotion"]
    assert (r12["agreement"], r12["n_flips"]) == (0.75, 2)
    assert r12["flips_by_group"]["race"] == {"A": {"n": 4, "flip_rate": 0.25}, "B": {"n": 4, "flip_rate": 0.25}}
    assert r12["flips_by_group"]["gender"] == {"F": {"n": 4, "flip_rate": 0.25},  # s6
                                               "M": {"n": 4, "flip_rate": 0.25}}  # s1
    # |dp|: s1 and s6 differ by 0.7 on both labels, s0 by 0.05 on both
    assert r12["prob_diff"]["max"] == pytest.approx(0.7)
    assert r12["prob_diff"]["mean"] == pytest.approx((0.7 * 4 + 0.05 * 2) / 16)
    r13 = result["pairs"][1]["attributes"]["emotion"]
    assert r13["flip_rate"] == 0.125 and r13["prob_diff"] is None  # a refusal differs from an answer
    assert (r13["accuracy_a"], r13["accuracy_b"]) == (0.75, 0.625)
    rows = result["runs"]
    assert [(r["backend"], r["mode"], r["dtype"]) for r in rows] == [
        ("hf", "choice", "float32"), ("vllm", "choice", "float32"), ("vllm", "constrained", "bfloat16")]
    assert rows[1]["seconds_per_sample"] == 0.01 and rows[0]["score"]["emotion"] == 0.75
    text = format_many(result)
    assert "| R1 vs R2 | 8 | 0.750 |" in text and "flip rate by race" in text and "| R1 | m-r1 | hf | choice |" in text


def test_compare_many_refuses_runs_on_different_samples_saying_how_many(tmp_path):
    from vlmface.scoring.compare import compare_many

    right = np.ones(10, dtype=bool)
    a = run_with(tmp_path, "a", right)
    b = run_with(tmp_path, "b", right, ids=[f"s{i}" for i in range(3, 13)])
    with pytest.raises(PredictionsError, match="3 .*only in the first, 3 only in the second \\(7 shared\\)"):
        compare_many([a, b])
    assert compare_many([a, b], shared_only=True, n_boot=50)["pairs"][0]["attributes"]["emotion"]["n_paired"] == 7
    with pytest.raises(PredictionsError, match="at least two"):
        compare_many([a])


def test_compare_cli_takes_three_runs(tmp_path, capsys):
    from vlmface.cli import main

    dirs = _three_runs(tmp_path)
    assert main(["compare", *map(str, dirs), "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert out.count(" vs R") == 3 * 3  # 3 pairs in the pairwise and the two flip tables
    assert main(["compare", str(dirs[0]), str(dirs[1]), "--json", "--n-boot", "50"]) == 0
    assert '"agreement": 0.75' in capsys.readouterr().out
