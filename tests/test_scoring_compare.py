"""Paired comparison of two runs: difference, paired-bootstrap CI, exact McNemar."""

from __future__ import annotations

import json

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
    counts = "samples: 3 \\(sample, attribute\\) items only in the first, 3 only in the second \\(7 shared\\)"
    with pytest.raises(PredictionsError, match=counts):
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


# ----- mutation-test survivors (docs/mutation-testing.md): exact numbers and exact tables -----

def test_flips_by_group_count_paired_items_only_per_group(tmp_path):
    # race A: s0..s4 paired (s1 flips), race B: s5 paired (no flip); race C only in A's unpaired s6
    races = ["A"] * 5 + ["B", "C"]
    answers_a = ["happy"] * 7
    answers_b = ["happy", "sad", "happy", "happy", "happy", "happy"]
    dirs = []
    for name, answers in (("a", answers_a), ("b", answers_b)):
        records = [record(f"s{i}", "emotion", label, "happy", race=races[i]) for i, label in enumerate(answers)]
        dirs.append(write_run(tmp_path / name, records, run_json(labels=LABELS, group_columns=("race",))))
    r = compare_runs(*dirs, n_boot=50)["attributes"]["emotion"]
    assert (r["n_paired"], r["n_unpaired_a"], r["n_flips"]) == (6, 1, 1)
    assert r["flips_by_group"] == {"race": {"A": {"n": 5, "flip_rate": pytest.approx(0.2)},
                                            "B": {"n": 1, "flip_rate": 0.0}}}


def test_prob_diff_counts_each_item_with_probabilities_in_both_runs_once(tmp_path):
    from vlmface.scoring.compare import compare_many

    r12 = compare_many(_three_runs(tmp_path), n_boot=50)["pairs"][0]["attributes"]["emotion"]
    assert r12["prob_diff"]["n_items"] == 8


def test_an_attribute_only_one_run_scored_is_skipped_not_refused(tmp_path):
    from vlmface.scoring.compare import compare_many

    right = np.ones(6, dtype=bool)
    a = run_with(tmp_path, "a", right)
    b = run_with(tmp_path, "b", right)
    extra = [record(f"s{i}", "age", 30.0 + i, 31.0, race="A", gender="F") for i in range(6)]
    with (b / "predictions.jsonl").open("a") as handle:
        handle.writelines(json.dumps(line) + "\n" for line in extra)
    for runs in ([a, b], [b, a]):
        pair = compare_many(runs, n_boot=50)["pairs"][0]
        assert pair["skipped"] == {"age": "scored in only one of the runs"}
        assert pair["attributes"]["emotion"]["n_paired"] == 6


def test_the_summary_score_counts_a_refusal_as_wrong(tmp_path):
    from vlmface.scoring.compare import compare_many

    rows = compare_many(_three_runs(tmp_path), n_boot=50)["runs"]
    assert [row["score"]["emotion"] for row in rows] == [0.75, 0.5, 0.625]  # R3 refused s0: 5 / 8, not 5 / 7


def test_format_many_tables_cell_by_cell(tmp_path):
    from vlmface.scoring.compare import compare_many
    from vlmface.scoring.compare_tables import format_many

    result = compare_many(_three_runs(tmp_path), n_boot=200)
    lines = format_many(result).splitlines()
    paths = [run["run"] for run in result["runs"]]
    assert lines[2] == ("| run | model | backend | mode | dtype | choice_score | emotion | s/sample | cost USD "
                        "| path |")
    assert lines[4:7] == [f"| R1 | m-r1 | hf | choice | float32 | sum | 0.750 | 0.5000 |  | {paths[0]} |",
                          f"| R2 | m-r2 | vllm | choice | float32 | sum | 0.500 | 0.0100 |  | {paths[1]} |",
                          f"| R3 | m-r3 | vllm | constrained | bfloat16 |  | 0.625 | 0.0200 |  | {paths[2]} |"]
    start = lines.index("## emotion: pairwise")
    assert lines[start + 2] == ("| pair | n | agreement | accuracy A | accuracy B | B - A [CI] | McNemar p "
                                "| max |dp| | mean |dp| |")
    rows = []
    for pair, name in zip(result["pairs"], ("R1 vs R2", "R1 vs R3", "R2 vs R3")):
        r = pair["attributes"]["emotion"]
        lo, hi = r["difference_ci"]
        dp = (f"{r['prob_diff']['max']:.4f} | {r['prob_diff']['mean']:.4f}" if r["prob_diff"] else " | ")
        rows.append(f"| {name} | 8 | {r['agreement']:.3f} | {r['accuracy_a']:.3f} | {r['accuracy_b']:.3f} | "
                    f"{r['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}] | {r['mcnemar_p']:.3g} | {dp} |")
    assert lines[start + 4:start + 7] == rows
    assert rows[0].endswith("| 0.7000 | 0.1812 |") and "|  |  |" in rows[1]
    race = lines.index("### emotion: flip rate by race")
    assert lines[race + 2:race + 7] == ["| pair | A | B |", "|---|---|---|", "| R1 vs R2 | 0.250 (n=4) | 0.250 (n=4) |",
                                        "| R1 vs R3 | 0.250 (n=4) | 0.000 (n=4) |",
                                        "| R2 vs R3 | 0.500 (n=4) | 0.250 (n=4) |"]


def test_format_many_names_cs5_for_a_numeric_attribute(tmp_path):
    from vlmface.scoring.compare import compare_many
    from vlmface.scoring.compare_tables import format_many

    dirs = []
    for name, shift in (("a", 2.0), ("b", 9.0)):
        records = [record(f"s{i}", "age", 30.0 + i + shift * (i % 2), 30.0 + i, race="A") for i in range(6)]
        dirs.append(write_run(tmp_path / name, records, run_json("age", "numeric", (), ("race",))))
    result = compare_many(dirs, n_boot=50)
    lines = format_many(result).splitlines()
    assert lines[2].startswith("| run | model | backend | mode | dtype | choice_score | age (cs5) | s/sample")
    assert "| R1 | fake |  |  |  |  | 1.000 |  |  |" in lines[4] and "| 0.500 |" in lines[5]
    start = lines.index("## age: pairwise")
    assert lines[start + 2].startswith("| pair | n | agreement | cs5 A | cs5 B | B - A [CI] |")
    assert lines[start + 4].startswith("| R1 vs R2 | 6 | 0.500 | 1.000 | 0.500 | -0.500 [")


def _pair(run_a: str, run_b: str, **attributes) -> dict:
    return {"run_a": run_a, "run_b": run_b, "attributes": attributes, "skipped": {}}


def test_flip_table_keeps_the_pairs_after_one_that_did_not_score_the_attribute():
    """R2 did not score emotion, so the pair R1 vs R2 has no flips; R1 vs R3 and R2 vs R3 still get rows."""
    from vlmface.scoring.compare_tables import flip_table

    flips = {"flips_by_group": {"race": {"A": {"flip_rate": 0.25, "n": 4}, "B": {"flip_rate": 0.5, "n": 2}}}}
    result = {"runs": [{"run": "r1"}, {"run": "r2"}, {"run": "r3"}],
              "pairs": [_pair("r1", "r2"), _pair("r1", "r3", emotion=flips), _pair("r2", "r3", emotion=flips)]}
    assert flip_table(result, "emotion", "race") == ["| pair | A | B |", "|---|---|---|",
                                                     "| R1 vs R3 | 0.250 (n=4) | 0.500 (n=2) |",
                                                     "| R2 vs R3 | 0.250 (n=4) | 0.500 (n=2) |"]


def test_pair_table_leaves_out_a_ci_whose_bounds_are_null():
    """A CI that could not be drawn is [null, null] in the result (as metrics.json writes NaN): the
    difference is shown without brackets."""
    from vlmface.scoring.compare_tables import pair_table

    emotion = {"n_paired": 1, "agreement": 1.0, "accuracy_a": 1.0, "accuracy_b": 1.0, "difference": 0.0,
               "difference_ci": [None, None], "mcnemar_p": 1.0, "prob_diff": None, "metric": "accuracy"}
    result = {"runs": [{"run": "r1"}, {"run": "r2"}], "pairs": [_pair("r1", "r2", emotion=emotion)]}
    assert pair_table(result, "emotion")[2] == "| R1 vs R2 | 1 | 1.000 | 1.000 | 1.000 | +0.000 | 1 |  |  |"
