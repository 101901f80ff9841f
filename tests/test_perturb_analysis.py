"""Planted effects: a synthetic backend loses accuracy with the exposure level by a known amount
per group; the sweep and the analysis recover every drop, flip rate and interaction within its
CI. Plus the paired bootstrap's coverage and the probe-style shift analysis."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from conftest import assert_png_plot
from fake_backends import PLANTED, PLANTED_N, sweep_planted
from vlmface.cli import main
from vlmface.perturb.stats import analyze_paired
from vlmface.perturb.paired import Paired
from vlmface.perturb.analysis import robustness
from vlmface.perturb.shift import shift_tables
from vlmface.predictions import read_records
from vlmface.scoring.settings import ScoreSettings


def test_planted_drops_and_interactions_are_recovered_within_their_cis(planted_task, tmp_path):
    runs = sweep_planted(planted_task, tmp_path / "out")
    assert [r.run_dir.name for r in runs] == ["none", "none__perturb-exposure-0.5", "none__perturb-exposure-2"]
    records = read_records(runs[2].run_dir / "predictions.jsonl")
    assert {(r["perturbation"], r["level"]) for r in records} == {("exposure", 2.0)}
    assert all("perturbation" not in r for r in read_records(runs[0].run_dir / "predictions.jsonl"))
    [result] = robustness([r.run_dir for r in runs], n_boot=1000)
    levels = result.tables["levels"].set_index(["group_column", "group", "level"])
    for level, planted in PLANTED.items():
        for group, accuracy in planted.items():
            row = levels.loc[("group", group, level)]
            drop = PLANTED[1.0][group] - accuracy
            assert row["n"] == PLANTED_N and row["accuracy"] == pytest.approx(accuracy, abs=1e-12)
            assert row["drop"] == pytest.approx(drop, abs=1e-12)
            assert row["drop_ci_lo"] <= drop <= row["drop_ci_hi"]
            # a binary answer whose outcomes are nested flips exactly when it turns wrong
            assert row["flip_rate"] == pytest.approx(drop, abs=1e-12)
    interactions = result.tables["interactions"].set_index(["group_a", "group_b", "level"])
    assert len(interactions) == 3 * 2  # 3 pairs x 2 perturbed levels
    for level in (0.5, 2.0):
        for a, b in combinations("ABC", 2):
            row = interactions.loc[(a, b, level)]
            planted = (PLANTED[1.0][a] - PLANTED[level][a]) - (PLANTED[1.0][b] - PLANTED[level][b])
            assert row["interaction"] == pytest.approx(planted, abs=1e-12)
            assert row["interaction_ci_lo"] <= planted <= row["interaction_ci_hi"]
            if planted == 0 or abs(planted) >= 0.2:  # no effect, or one far larger than the noise
                assert row["ci_excludes_zero"] == (planted != 0), (a, b, level)
    assert_png_plot(result.out / "plots" / "answer__exposure__curves.png")
    assert_png_plot(result.out / "plots" / "answer__exposure__interaction.png")


def test_pairing_narrows_the_drop_ci(planted_task, tmp_path):
    """A's drop at gamma 2 is 0.10 on the same images: the paired CI reflects only the images
    that turned wrong (SE sqrt(.1 x .9 / n)); one from two independent accuracies would be 1.7x wider."""
    runs = sweep_planted(planted_task, tmp_path / "out")
    [result] = robustness([r.run_dir for r in runs], n_boot=2000, plots=False)
    row = result.tables["levels"].set_index(["group_column", "group", "level"]).loc[("group", "A", 2.0)]
    paired_width = row["drop_ci_hi"] - row["drop_ci_lo"]
    unpaired_width = 2 * 1.96 * np.sqrt(0.9 * 0.1 / PLANTED_N + 0.8 * 0.2 / PLANTED_N)
    assert paired_width < 0.7 * unpaired_width
    assert paired_width == pytest.approx(2 * 1.96 * np.sqrt(0.1 * 0.9 / PLANTED_N), rel=0.15)


def test_robustness_command_recreates_the_tables_from_predictions_alone(planted_task, tmp_path, capsys):
    runs = sweep_planted(planted_task, tmp_path / "out")
    [first] = robustness([tmp_path / "out"], n_boot=300, plots=False)
    assert main(["robustness", str(tmp_path / "out"), "--out", str(tmp_path / "again"), "--n-boot", "300",
                 "--no-plots"]) == 0
    again = pd.read_csv(tmp_path / "again" / "levels.csv")
    pd.testing.assert_frame_equal(again, pd.read_csv(first.out / "levels.csv"))
    assert first.out == runs[0].run_dir / "robustness"
    output = capsys.readouterr().out
    assert "answer / exposure (accuracy %, * = clean, n=600): 0.5: 85.0" in output
    assert "group @ 2: A drops 10.0 pp, B 30.0 pp; difference -20.0" in output


def test_a_perturbed_run_without_its_clean_run_is_refused(planted_task, tmp_path):
    runs = sweep_planted(planted_task, tmp_path / "out")
    runs[0].run_dir.rename(tmp_path / "clean_moved_away")  # beside them, it would be found
    with pytest.raises(Exception, match="no clean run.*pass its clean run directory too"):
        robustness([runs[1].run_dir, runs[2].run_dir])


def _synthetic_paired(rng, planted: dict[str, tuple[float, float]], n: int) -> Paired:
    """Random nested outcomes: clean and perturbed accuracy per group, one latent u per image."""
    groups = np.repeat(list(planted), n)
    u = rng.random(groups.size)
    clean = np.repeat([p[0] for p in planted.values()], n)
    perturbed = np.repeat([p[1] for p in planted.values()], n)
    correct = np.column_stack([u < clean, u < perturbed])
    return Paired(attribute="a", kind="categorical", metric="accuracy", perturbation="p", transform="gamma",
                  levels=np.array([1.0, 2.0]), clean=0, sample_id=np.arange(groups.size).astype(str),
                  correct=correct, flipped=correct[:, [0]] != correct, error=np.zeros_like(correct),
                  status=np.zeros(correct.shape, dtype=np.int8), abs_error=None, groups={"g": pd.Categorical(groups)}, counts={})


def test_paired_bootstrap_cis_cover_planted_drops_at_about_the_nominal_rate():
    planted = {"X": (0.85, 0.75), "Y": (0.80, 0.50)}
    rng = np.random.default_rng(7)
    settings = ScoreSettings(n_boot=400)
    hits = {"drop": 0, "interaction": 0}
    replications = 150
    for _ in range(replications):
        rows, pairs = analyze_paired(_synthetic_paired(rng, planted, 150), settings)
        y = next(r for r in rows if r["group"] == "Y" and not r["clean"])
        hits["drop"] += y["drop_ci_lo"] <= 0.30 <= y["drop_ci_hi"]
        [pair] = pairs
        hits["interaction"] += pair["interaction_ci_lo"] <= -0.20 <= pair["interaction_ci_hi"]
    for key, hit in hits.items():
        assert 0.88 <= hit / replications <= 0.995, (key, hit)


def test_shift_analysis_recovers_planted_shifts_per_dimension_and_group():
    rng = np.random.default_rng(3)
    planted = {("warm", "A"): 0.02, ("warm", "B"): 0.06, ("competent", "A"): -0.01, ("competent", "B"): -0.01}
    rows = []
    for i in range(300):
        group = "AB"[i % 2]
        for dimension in ("warm", "competent"):
            base = rng.normal(0.0, 0.03)  # the image's own value, shared by its levels
            for level in (1.0, 0.5):
                shift = planted[(dimension, group)] if level == 0.5 else 0.0
                rows.append({"sample_id": f"s{i}", "group": group, "dimension": dimension, "level": level,
                             "value": base + shift + rng.normal(0, 0.005)})
    tables = shift_tables(pd.DataFrame(rows), clean_level=1.0, group_columns=["group"],
                          settings=ScoreSettings(n_boot=1000), label="test")
    levels = tables["levels"].set_index(["dimension", "group_column", "group", "level"])
    for (dimension, group), shift in planted.items():
        row = levels.loc[(dimension, "group", group, 0.5)]
        assert row["shift_ci_lo"] <= shift <= row["shift_ci_hi"]
        assert row["shift_ci_hi"] - row["shift_ci_lo"] < 0.005  # paired: the image's own value cancels
    pairs = tables["interactions"].set_index(["dimension", "group_a", "group_b"])
    warm = pairs.loc[("warm", "A", "B")]
    assert warm["interaction_ci_lo"] <= -0.04 <= warm["interaction_ci_hi"] < 0
    competent = pairs.loc[("competent", "A", "B")]
    assert competent["interaction_ci_lo"] <= 0 <= competent["interaction_ci_hi"]


def _flips_differ_from_drops() -> Paired:
    """200 images: 120 right when clean; at level 2, 30 right -> wrong, 20 wrong -> right and 40
    wrong -> another wrong answer. Drop (30 - 20) / 200 = 0.05, flip rate (30 + 20 + 40) / 200 = 0.45."""
    n = 200
    clean = np.zeros(n, dtype=bool)
    clean[:120] = True
    perturbed = clean.copy()
    perturbed[:30] = False  # right -> wrong
    perturbed[120:140] = True  # wrong -> right
    flipped = clean != perturbed
    flipped[140:180] = True  # wrong -> a different wrong label
    correct = np.column_stack([clean, perturbed])
    return Paired(attribute="a", kind="categorical", metric="accuracy", perturbation="p", transform="gamma",
                  levels=np.array([1.0, 2.0]), clean=0, sample_id=np.arange(n).astype(str), correct=correct,
                  flipped=np.column_stack([np.zeros(n, dtype=bool), flipped]), error=np.zeros_like(correct),
                  status=np.zeros(correct.shape, dtype=np.int8), abs_error=None,
                  groups={"g": pd.Categorical(np.repeat(["X", "Y"], n // 2))}, counts={})


def test_flip_rate_ci_comes_from_the_flip_draws_not_the_drop_draws():
    rows, _ = analyze_paired(_flips_differ_from_drops(), ScoreSettings(n_boot=4000, seed=3))  # _: interactions
    row = next(r for r in rows if r["group_column"] == "all" and not r["clean"])
    assert row["drop"] == pytest.approx(0.05) and row["flip_rate"] == pytest.approx(0.45)
    assert row["accuracy"] == pytest.approx(0.55)
    half = 1.96 * np.sqrt(0.45 * 0.55 / 200)  # normal approximation of a share's 95% interval
    assert row["flip_rate_ci_lo"] == pytest.approx(0.45 - half, abs=0.015)
    assert row["flip_rate_ci_hi"] == pytest.approx(0.45 + half, abs=0.015)
    assert row["accuracy_ci_lo"] == pytest.approx(0.55 - half, abs=0.015)  # 0.55 x 0.45: the same half-width
    assert row["accuracy_ci_hi"] == pytest.approx(0.55 + half, abs=0.015)
    assert row["drop_ci_hi"] < row["flip_rate_ci_lo"]  # the two intervals are far apart here
    clean = next(r for r in rows if r["group_column"] == "all" and r["clean"])
    assert clean["flip_rate"] == 0 and clean["flip_rate_ci_lo"] == clean["flip_rate_ci_hi"] == 0
    assert clean["drop"] == 0 and clean["accuracy"] == pytest.approx(0.6)
    by_group = {r["group"]: r for r in rows if r["group_column"] == "g" and not r["clean"]}
    # X holds images 0-99 (30 right -> wrong): drop 0.30, flip 0.30; Y holds 100-199: drop -0.20, flip 0.60
    assert by_group["X"]["drop"] == pytest.approx(0.30) and by_group["X"]["flip_rate"] == pytest.approx(0.30)
    assert by_group["Y"]["drop"] == pytest.approx(-0.20) and by_group["Y"]["flip_rate"] == pytest.approx(0.60)
    assert by_group["Y"]["flip_rate_ci_lo"] < 0.60 < by_group["Y"]["flip_rate_ci_hi"]
    [pair] = [r for r in _ if r["group_column"] == "g"]
    assert (pair["group_a"], pair["group_b"]) == ("X", "Y") and pair["interaction"] == pytest.approx(0.5)
    assert pair["interaction_ci_lo"] > 0 and pair["ci_excludes_zero"] is True


def test_an_interaction_whose_ci_spans_zero_is_not_flagged():
    paired = _flips_differ_from_drops()
    paired.groups = {"g": pd.Categorical(np.tile(["X", "Y"], 100))}  # both groups alike: no interaction
    _, pairs = analyze_paired(paired, ScoreSettings(n_boot=2000, seed=4))
    [pair] = pairs
    assert pair["interaction_ci_lo"] < pair["interaction"] < pair["interaction_ci_hi"]
    assert pair["ci_excludes_zero"] == bool(pair["interaction_ci_lo"] > 0 or pair["interaction_ci_hi"] < 0)
    assert pair["interaction_ci_lo"] < 0 < pair["interaction_ci_hi"] and pair["ci_excludes_zero"] is False


def test_mae_per_level_is_the_mean_absolute_error_of_the_answered_images():
    paired = _flips_differ_from_drops()
    errors = np.column_stack([np.arange(200) % 7, np.arange(200) % 5]).astype(float)
    errors[:10, 1] = np.nan  # not answered at level 2
    paired.abs_error = errors
    rows, _ = analyze_paired(paired, ScoreSettings(n_boot=50, seed=5))
    overall = {r["level"]: r["mae"] for r in rows if r["group_column"] == "all"}
    assert overall[1.0] == pytest.approx(np.mean(errors[:, 0])) and overall[2.0] == pytest.approx(np.nanmean(errors[:, 1]))
    x = next(r for r in rows if r["group"] == "X" and r["level"] == 2.0)
    assert x["mae"] == pytest.approx(np.nanmean(errors[:100, 1]))


def test_answered_accuracy_and_non_answer_rates_per_level_and_group():
    """stats.py per level: answered accuracy over the answered images only (a group with one answered
    image has 0 or 1, never a half), invalid and refusal rates over every image."""
    from vlmface.scoring.load import INVALID, REFUSED

    paired = _flips_differ_from_drops()
    paired.groups = {"g": pd.Categorical(["X"] * 100 + ["Y"] * 98 + ["Z"] * 2)}
    paired.status[:10, 1] = INVALID  # at level 2: 10 invalid and 5 refused answers in X, one invalid in Z
    paired.status[10:15, 1] = REFUSED
    paired.status[198, 1] = INVALID
    paired.correct[199, 1] = True  # Z's one answered image is right
    rows, _ = analyze_paired(paired, ScoreSettings(n_boot=50, seed=5))
    at = {(r["group"], r["level"]): r for r in rows}
    answered = paired.status[:, 1] == 0
    assert at[("all", 2.0)]["answered_accuracy"] == pytest.approx(paired.correct[answered, 1].mean())
    assert at[("all", 2.0)]["invalid_rate"] == pytest.approx(11 / 200)
    assert at[("all", 2.0)]["refusal_rate"] == pytest.approx(5 / 200)
    assert at[("X", 2.0)]["invalid_rate"] == pytest.approx(0.10) and at[("X", 2.0)]["refusal_rate"] == pytest.approx(0.05)
    assert at[("Y", 2.0)]["invalid_rate"] == 0 and at[("X", 1.0)]["invalid_rate"] == 0
    assert at[("Z", 2.0)]["answered_accuracy"] == 1.0 and at[("Z", 2.0)]["invalid_rate"] == 0.5


@pytest.mark.parametrize("drops_in", ["X", "Y"])
def test_an_interaction_ci_that_touches_zero_does_not_exclude_it(drops_in):
    """One image of 100 goes right -> wrong in one group, none in the other: about a third of the
    resamples leave that image out, so one end of the interaction's CI is exactly 0.0. An interval
    that reaches 0 does not exclude it (kills `>` -> `>=` and `<` -> `<=` in _interaction_rows)."""
    n = 200
    clean = np.ones(n, dtype=bool)
    perturbed = clean.copy()
    perturbed[0 if drops_in == "X" else 100] = False
    correct = np.column_stack([clean, perturbed])
    paired = Paired(attribute="a", kind="categorical", metric="accuracy", perturbation="p", transform="gamma",
                    levels=np.array([1.0, 2.0]), clean=0, sample_id=np.arange(n).astype(str), correct=correct,
                    flipped=correct[:, [0]] != correct, error=np.zeros_like(correct),
                    status=np.zeros(correct.shape, dtype=np.int8), abs_error=None,
                    groups={"g": pd.Categorical(np.repeat(["X", "Y"], n // 2))}, counts={})
    _, pairs = analyze_paired(paired, ScoreSettings(n_boot=2000, seed=5))
    [pair] = pairs
    assert pair["interaction"] == pytest.approx(0.01 if drops_in == "X" else -0.01)
    touching = pair["interaction_ci_lo"] if drops_in == "X" else pair["interaction_ci_hi"]
    assert touching == 0.0 and pair["interaction_ci_hi"] > pair["interaction_ci_lo"]
    assert pair["ci_excludes_zero"] is False


def test_a_group_without_images_is_small_and_in_no_interaction():
    """A group column's value whose images all fell out of the pairing (W) has n = 0: it is small
    and in no interaction even with min_group_n 0; with min_group_n 3 the 2-image Z is small too."""
    paired = _flips_differ_from_drops()
    paired.groups = {"g": pd.Categorical(["X"] * 100 + ["Y"] * 98 + ["Z"] * 2, categories=["W", "X", "Y", "Z"])}
    cases = ((0, {"W"}, {("X", "Y"), ("X", "Z"), ("Y", "Z")}), (3, {"W", "Z"}, {("X", "Y")}))
    for min_group_n, small, compared in cases:
        rows, pairs = analyze_paired(paired, ScoreSettings(n_boot=50, seed=5, min_group_n=min_group_n))
        assert {r["group"] for r in rows if r["group_column"] == "g" and r["small"]} == small
        assert {r["group"] for r in rows if r["group_column"] == "g"} == {"W", "X", "Y", "Z"}
        assert {(p["group_a"], p["group_b"]) for p in pairs} == compared
