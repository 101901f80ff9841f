"""The `vlmface score` summary (vlmface/scoring/summary.py), line by line, on a scored run with a
categorical and a numeric attribute: accuracies to 3 digits and MAE to 2, every CI, the test's
p with its Holm p, one line per single group column and only the widest intersection."""

from __future__ import annotations

import numpy as np
import pytest

from scoring_fixtures import planted_records, record, run_json, write_run
from vlmface.scoring import format_summary, score_run


@pytest.fixture(scope="module")
def metrics(tmp_path_factory):
    rng = np.random.default_rng(7)
    records = planted_records(rng, 40)
    records += [record(f"a{i}", "age", float(20 + rng.integers(0, 40)), float(20 + i % 40),
                       race=("Black", "White")[i % 2], gender=("Female", "Male")[i // 2 % 2])
                for i in range(80)]
    run = run_json()
    run["attributes"]["age"] = {"kind": "numeric", "labels": []}
    return score_run(write_run(tmp_path_factory.mktemp("run"), records, run), n_boot=50, min_group_n=10)


def _group_start(col: str, d: dict, digits: int) -> str:
    lo, hi = d["gap_ci"]
    test = d["test"]
    return (f"  {col}: worst {d['worst_group']}, best {d['best_group']}, {d['metric']} gap "
            f"{d['gap']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}], p={test['p_value']:.2g} "
            f"(Holm {test['p_holm']:.2g})")


def test_one_block_per_attribute_single_columns_then_the_widest_intersection(metrics):
    lines = format_summary(metrics).splitlines()
    assert len(lines) == 10
    assert [line.split(":")[0] for line in lines[2:5]] == ["  race", "  gender", "  racexgender"]
    assert [line.endswith("(widest intersection)") for line in lines] == [False] * 4 + [True] + [False] * 4 + [True]


def test_categorical_lines_show_three_digits_cis_and_holm(metrics):
    attr = metrics["attributes"]["emotion"]
    o, lines = attr["overall"], format_summary(metrics).splitlines()
    lo, hi = o["accuracy_ci"]
    assert lines[0] == (f"emotion (categorical): n={o['n']}  accuracy {o['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]  "
                        f"macro-F1 {o['macro_f1']:.3f}")
    for line, col in zip(lines[2:5], ("race", "gender", "racexgender")):
        assert line.startswith(_group_start(col, attr["disparity"][col], 3) + "; DP gap ")


def test_a_null_tpr_gap_still_shows_the_dp_gap(metrics):
    race = metrics["attributes"]["emotion"]["disparity"]["race"]
    assert race["tpr_gap"] is None and race["dp_gap"] is not None  # a class x race cell under min_cell_n
    line = format_summary(metrics).splitlines()[2]
    assert f"; DP gap {race['dp_gap']:.3f} ({race['dp_gap_label']}), EOdds gap" in line
    assert "TPR gap" not in line and "per-class gaps" not in line


def test_numeric_lines_show_mae_to_two_digits(metrics):
    attr = metrics["attributes"]["age"]
    o, lines = attr["overall"], format_summary(metrics).splitlines()
    (mlo, mhi), (clo, chi) = o["mae_ci"], o["cs5_ci"]
    assert lines[5] == (f"age (numeric): n={o['n']}  MAE {o['mae']:.2f} [{mlo:.2f}, {mhi:.2f}]  "
                        f"CS@5 {o['cs5']:.3f} [{clo:.3f}, {chi:.3f}]")
    for line, col in zip(lines[7:10], ("race", "gender", "racexgender")):
        d = attr["disparity"][col]
        assert line.startswith(_group_start(col, d, 2) + f"; aged up most {d['aged_up_most']}, "
                               f"down most {d['aged_down_most']}")


def test_a_metrics_dict_without_its_scoring_block_reads_with_the_scorer_defaults(metrics):
    """No "scoring" block (a hand-made or older metrics dict): non-answers were scored as wrong
    (answered_only's default) and every disparity column is listed."""
    bare = {key: value for key, value in metrics.items() if key != "scoring"}
    lines = format_summary(bare).splitlines()
    assert lines[1].endswith(": scored as wrong; answered-only " +
                             f"{metrics['attributes']['emotion']['overall']['answered_accuracy']:.3f}")
    assert [line.split(":")[0] for line in lines[2:5]] == ["  race", "  gender", "  racexgender"]


def test_the_comparison_text_has_a_line_per_attribute_then_the_skipped_ones():
    from vlmface.scoring import format_comparison

    emotion = {"n_paired": 100, "n_unpaired_a": 3, "n_unpaired_b": 2, "n_excluded_error": 1, "metric": "accuracy",
               "accuracy_a": 0.65, "accuracy_b": 0.75, "difference": 0.1, "difference_ci": [0.02, 0.18],
               "mcnemar_p": 0.0414, "a_only_correct": 5, "b_only_correct": 15}
    text = format_comparison({"run_a": "runs/a", "run_b": "runs/b", "attributes": {"emotion": emotion},
                              "skipped": {"age": "scored by one run only"}})
    assert text.splitlines() == [
        "A: runs/a", "B: runs/b",
        "emotion: 100 paired (3 only in A, 2 only in B, 1 with errors)  accuracy A 0.650, B 0.750, "
        "B - A +0.100 [0.020, 0.180]  McNemar p=0.0414 (A only right 5, B only right 15)",
        "age: skipped (scored by one run only)"]
