"""Comparing models on the same images: planted embeddings of two (or three) synthetic models
whose scores differ by a known amount for one group only. The paired differences, gap
differences and rank agreement must recover what was planted, with honest CIs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from vlmface.errors import VlmfaceError
from vlmface.probes import compare as cmp
from vlmface.probes import social
from vlmface.probes.spec import SocialPerceptionSpec

SPEC = SocialPerceptionSpec.model_validate({
    "name": "planted", "kind": "probe", "method": "social_perception",
    "templates": ["a {term} face.", "the {term} face."],
    "dimensions": {"warmth": ["warm", "kind"], "competence": ["able"]}})
LEVELS = {"race": ["Asian", "Black", "White"], "gender": ["Female", "Male"]}
SHIFT = 1.5  # delta cosine x100 added to model B's warmth of Black faces only
DIFFERENCE_COLUMNS = ["dimension", "group_col", "group", "model_a", "model_b", "n", "diff", "ci_lo", "ci_hi",
                      "p_value", "p_holm"]
GAP_COLUMNS = ["dimension", "group_col", "model_a", "model_b", "gap_a", "gap_b", "diff", "ci_lo", "ci_hi",
               "p_value", "p_holm"]


def factor_table(n_per_cell: int) -> pd.DataFrame:
    cells = [(r, g) for r in LEVELS["race"] for g in LEVELS["gender"] for _ in range(n_per_cell)]
    table = pd.DataFrame(cells, columns=["race", "gender"])
    table.insert(0, "sample_id", [f"img{i:04d}" for i in range(len(table))])
    return table


def embeddings(deltas: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Unit image rows and text vectors (one orthonormal axis per prompt) realising the
    planted per-image deltas (x100) of each term, the neutral prompts at cosine 0.1."""
    prompts = social.prompt_texts(SPEC)
    axis = {p: k for k, p in enumerate(prompts)}
    n = len(next(iter(deltas.values())))
    cos = np.zeros((n, len(prompts) + 1))
    for p in SPEC.neutral_prompts:
        cos[:, axis[p]] = 0.1
    for term, delta in deltas.items():
        for p in SPEC.prompts(term):
            cos[:, axis[p]] = 0.1 + delta / 100
    cos[:, -1] = np.sqrt(1 - (cos ** 2).sum(axis=1))
    return cos, {p: np.eye(len(prompts) + 1)[k] for p, k in axis.items()}


def two_models(table: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """image_scores of model A and model B (B = A + SHIFT on Black faces' warmth + its own noise)."""
    n = len(table)
    race_effect = table["race"].map({"Asian": 0.0, "Black": -1.0, "White": 1.0}).to_numpy()
    base = {"warm": race_effect + rng.normal(0, 1, n), "kind": race_effect + rng.normal(0, 1, n),
            "able": rng.normal(0, 1, n)}
    black = (table["race"] == "Black").to_numpy()
    other = {term: v + rng.normal(0, 0.5, n) for term, v in base.items()}
    other["warm"] = other["warm"] + SHIFT * black
    other["kind"] = other["kind"] + SHIFT * black
    frames = []
    for name, deltas in (("A", base), ("B", other)):
        images, vectors = embeddings(deltas)
        scores = social.score_images(images, vectors, SPEC)
        frames.append(social.image_scores_table(name, scores, table["sample_id"].to_numpy()))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def planted():
    table = factor_table(40)
    scores = two_models(table, np.random.default_rng(0))
    result = cmp.compare_models(scores, table, ["race", "gender"], LEVELS, ["A", "B"], n_boot=1000,
                                confidence=0.95, seed=0)
    return table, scores, result


def test_model_differences_recover_the_planted_shift_for_one_group_only(planted):
    _, _, result = planted
    diff = result.differences
    assert list(diff.columns) == DIFFERENCE_COLUMNS
    warmth = diff[diff["dimension"] == "warmth"].set_index(["group_col", "group"])
    black = warmth.loc[("race", "Black")]
    assert black["ci_lo"] <= SHIFT <= black["ci_hi"] and black["ci_lo"] > 0.5  # recovered, and clearly non-zero
    assert black["p_holm"] < 0.05
    for key in [("race", "Asian"), ("race", "White")]:
        row = warmth.loc[key]
        assert row["ci_lo"] <= 0 <= row["ci_hi"] and abs(row["diff"]) < 0.3
    competence = diff[diff["dimension"] == "competence"]
    assert competence["diff"].abs().max() < 0.3 and (competence["p_holm"] > 0.05).all()
    whole = warmth.loc[("all", "all")]  # whole-set row: a third of the faces shifted
    assert whole["n"] == 240 and whole["ci_lo"] <= SHIFT / 3 <= whole["ci_hi"]
    assert (diff["model_a"] == "A").all() and (diff["model_b"] == "B").all()
    assert (diff["p_holm"] >= diff["p_value"]).all()  # Holm over the whole file


def test_paired_differences_equal_a_direct_index_bootstrap_in_spread(planted):
    table, scores, result = planted
    wide = scores[scores["dimension"] == "warmth"].pivot(index="sample_id", columns="model", values="value")
    black = wide.loc[table.loc[table["race"] == "Black", "sample_id"]]
    paired = (black["B"] - black["A"]).to_numpy()
    rng = np.random.default_rng(1)
    direct = np.array([paired[rng.integers(0, len(paired), len(paired))].mean() for _ in range(2000)])
    row = result.differences.set_index(["dimension", "group_col", "group"]).loc[("warmth", "race", "Black")]
    assert row["diff"] == pytest.approx(paired.mean(), abs=1e-9)
    np.testing.assert_allclose([row["ci_lo"], row["ci_hi"]], np.quantile(direct, [0.025, 0.975]), atol=0.06)


def test_gap_differences_fix_the_groups_from_model_a(planted):
    _, _, result = planted
    gaps = result.gaps
    assert list(gaps.columns) == GAP_COLUMNS
    race = gaps[(gaps["dimension"] == "warmth") & (gaps["group_col"] == "race")].iloc[0]
    chosen = result.gap_groups.set_index(["dimension", "group_col"]).loc[("warmth", "race")]
    assert (chosen["high_group"], chosen["low_group"]) == ("White", "Black")  # A: White +1, Black -1
    assert race["gap_a"] == pytest.approx(2.0, abs=0.4)
    assert race["diff"] == pytest.approx(race["gap_b"] - race["gap_a"])
    assert race["ci_lo"] <= -SHIFT <= race["ci_hi"] and race["ci_hi"] < 0  # B narrows the gap by the shift
    contrast = cmp.compare_models(planted[1], planted[0], ["race", "gender"], LEVELS, ["A", "B"], n_boot=200,
                                  confidence=0.95, seed=0, contrasts={"race": ("Asian", "White")})
    row = contrast.gaps[(contrast.gaps["dimension"] == "warmth") & (contrast.gaps["group_col"] == "race")].iloc[0]
    assert row["ci_lo"] <= 0 <= row["ci_hi"]  # neither Asian nor White faces were shifted
    with pytest.raises(VlmfaceError, match="no group"):
        cmp.compare_models(planted[1], planted[0], ["race"], LEVELS, ["A", "B"], n_boot=10, confidence=0.95,
                           seed=0, contrasts={"race": ("Asian", "Martian")})
    with pytest.raises(VlmfaceError, match="COLUMN=GROUP1,GROUP2"):
        cmp.parse_contrasts(["race=Black"])


def test_two_groups_never_get_a_rank_correlation(planted):
    _, _, result = planted
    agreement = result.agreement
    two = agreement[agreement["n_groups"] == 2]
    three = agreement[agreement["n_groups"] == 3]
    assert set(two["group_col"]) == {"gender"} and set(three["group_col"]) == {"race"}
    assert two["kendall_tau"].isna().all() and two["tau_ci_lo"].isna().all()
    assert two["same_order"].notna().all() and two["p_same_order"].between(0, 1).all()
    assert three["same_order"].isna().all() and three["kendall_tau"].notna().all()
    means = planted[1].merge(planted[0], on="sample_id").groupby(["model", "dimension", "race"])["value"].mean()
    for row in three.itertuples():
        a, b = means.loc[("A", row.dimension)], means.loc[("B", row.dimension)]
        assert row.kendall_tau == pytest.approx(kendalltau(a.to_numpy(), b.to_numpy()).statistic)
        assert row.tau_ci_lo <= row.kendall_tau <= row.tau_ci_hi


def test_ci_coverage_over_repeats_is_near_nominal():
    """150 fresh data sets drawn like `two_models` (scores made directly, without embeddings,
    for speed): the 95% CI of every group's paired difference covers its true value (SHIFT for
    Black warmth, 0 elsewhere) about 95% of the time."""
    table = factor_table(30)
    black = (table["race"] == "Black").to_numpy()
    race_effect = table["race"].map({"Asian": 0.0, "Black": -1.0, "White": 1.0}).to_numpy()
    covered, total = 0, 0
    for r in range(150):
        rng = np.random.default_rng(100 + r)
        a = race_effect[:, None] + rng.normal(0, 1, (len(table), 2))
        b = a + rng.normal(0, 0.5, a.shape)
        b[:, 0] += SHIFT * black
        cube = cmp.Cube(["A", "B"], ["warmth", "competence"], np.stack([a, b], axis=1))
        groups = cmp.group_draws(cube, table, ["race"], LEVELS, 300, seed=r)
        for g in groups[1:]:
            draws = g.draws[:, 1] - g.draws[:, 0]  # (n_boot, dims)
            lo, hi = np.quantile(draws, [0.025, 0.975], axis=0)
            truth = np.array([SHIFT if g.group == "Black" else 0.0, 0.0])
            covered += int(((lo <= truth) & (truth <= hi)).sum())
            total += 2
        if r == 0:  # the table the coverage is about is made from these same draws
            diff = cmp.model_differences(cube, groups, 0.95)
            row = diff[(diff["group"] == "Black") & (diff["dimension"] == "warmth")].iloc[0]
            g = groups[2]
            assert g.group == "Black"
            np.testing.assert_allclose([row.ci_lo, row.ci_hi],
                                       np.quantile(g.draws[:, 1, 0] - g.draws[:, 0, 0], [0.025, 0.975]))
    assert 0.90 <= covered / total <= 0.985, covered / total


def test_display_names_default_to_the_alias_or_the_last_path_component():
    from vlmface.probes.comparison import display_names

    assert display_names(["clip-vit-b-32", "clip:local-dir:/m/tiny-a/", "clip:hf:/w/siglip"]) == \
        ["clip-vit-b-32", "tiny-a", "siglip"]
    assert display_names(["clip:hf:/a/m", "clip:hf:/b/m"], "first,second") == ["first", "second"]
    with pytest.raises(VlmfaceError, match="used twice"):
        display_names(["clip:hf:/a/m", "clip:hf:/b/m"])
    with pytest.raises(VlmfaceError, match="1 name"):
        display_names(["clip:hf:/a/m", "clip:hf:/b/m"], "one")
