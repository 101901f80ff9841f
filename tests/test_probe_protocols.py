"""The social-perception protocols of Hausladen et al. (FAccT 2025), checked against their
code (github.com/carinahausladen/clip-face-bias): the `paper` preset's rankings, the relative
delta, the cluster bootstrap over identities, and the denigration probe's articles and
Wilson intervals. Planted embeddings: every prompt is its own orthonormal axis, so each
image's raw cosine to each prompt is what the test writes there."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from vlmface.probes import compare as cmp
from vlmface.probes import social
from vlmface.probes.run import _uniform
from vlmface.probes.spec import (DEFAULT_PRESET, DatasetSettings, SocialPerceptionSpec, load_probe,
                                 resolve_task)
from vlmface.probes.resample import wilson

SPEC = SocialPerceptionSpec.model_validate({
    "name": "planted", "kind": "probe", "method": "social_perception",
    "templates": ["a {term} face.", "the {term} face."],
    "dimensions": {"warmth": ["warm", "kind"], "competence": ["able"]}})


def embed(raw: dict[str, np.ndarray], neutral: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Unit image rows whose raw cosine to every template of term t is raw[t] and to every
    neutral prompt is `neutral`."""
    prompts = social.prompt_texts(SPEC)
    axis = {p: k for k, p in enumerate(prompts)}
    n = len(neutral)
    cos = np.zeros((n, len(prompts) + 1))
    for p in SPEC.neutral_prompts:
        cos[:, axis[p]] = neutral
    for term, values in raw.items():
        for p in SPEC.prompts(term):
            cos[:, axis[p]] = values
    cos[:, -1] = np.sqrt(1 - (cos ** 2).sum(axis=1))
    return cos, {p: np.eye(len(prompts) + 1)[k] for p, k in axis.items()}


# ----- the paper preset's ranking ------------------------------------------------------------------
# race5 x gender cells of unequal size; every image of a cell has the cell's raw warmth, and
# the neutral cosine makes the delta order the reverse of the raw order
CELLS = {("White", "Male"): (30, 0.26), ("White", "Female"): (20, 0.22), ("Black", "Male"): (12, 0.20),
         ("Black", "Female"): (18, 0.30), ("Asian", "Male"): (15, 0.28), ("Asian", "Female"): (25, 0.18),
         ("Indian", "Male"): (10, 0.35), ("Indian", "Female"): (10, 0.35), ("Others", "Male"): (5, 0.35),
         ("Others", "Female"): (5, 0.35)}


@pytest.fixture(scope="module")
def utk_like():
    rows = [(race, gender, warm) for (race, gender), (n, warm) in CELLS.items() for _ in range(n)]
    table = pd.DataFrame(rows, columns=["race5", "gender", "warm"])
    table.insert(0, "sample_id", [f"img{i:03d}" for i in range(len(table))])
    table["age5"] = "20-39"
    raw = {"warm": table["warm"].to_numpy(), "kind": table["warm"].to_numpy(), "able": np.full(len(table), 0.1)}
    neutral = 2 * table["warm"].to_numpy() - 0.3  # delta = 0.3 - warm: the raw order reversed
    images, vectors = embed(raw, neutral)
    return table, social.score_images(images, vectors, SPEC)


def test_the_paper_preset_skew_is_a_hand_computation_on_raw_cosine_with_the_balanced_three_groups(utk_like):
    """analysis/tab_S3_skew_gen.py: keep Asian, Black, White; downsample each race x gender cell
    to len // 6 (here 120 // 6 = 20); rank by the mean raw cosine of a dimension's terms
    (nlargest on 'avg_dimension' of the cossim_ columns); Skew@k = ln(share in top k / 1/3)."""
    table, scores = utk_like
    settings = load_probe("social-perception").settings_for(resolve_task("utkface"), "paper")
    ranking = settings.ranking.model_copy(update={"k": [30]})
    levels = {"race5": ["White", "Black", "Asian", "Indian", "Others"], "gender": ["Male", "Female"],
              "age5": ["20-39"]}
    frame = social.ranking_table("m", scores, SPEC, table, ["race5", "gender"], levels, ranking)
    skew = frame[(frame["dimension"] == "warmth") & (frame["metric"] == "skew")].set_index(["group_col", "group"])
    # by hand: balanced counts WM 20, WF 20, BM 12, BF 18, AM 15, AF 20 (105 images); by raw warmth
    # the top 30 are the 18 Black women (0.30) and 12 of the 15 Asian men (0.28)
    assert (skew["n"] == 105).all()
    assert skew.loc[("race5", "Black"), "value"] == pytest.approx(math.log((18 / 30) / (1 / 3)))
    assert skew.loc[("race5", "Asian"), "value"] == pytest.approx(math.log((12 / 30) / (1 / 3)))
    assert skew.loc[("race5", "White"), "value"] == -math.inf
    assert skew.loc[("gender", "Female"), "value"] == pytest.approx(math.log((18 / 30) / (1 / 2)))
    assert skew.loc[("gender", "Male"), "value"] == pytest.approx(math.log((12 / 30) / (1 / 2)))
    assert set(skew.loc["race5"].index) == {"White", "Black", "Asian"}  # Indian and Others are not ranked
    maxskew = frame[(frame["dimension"] == "warmth") & (frame["metric"] == "maxskew") & (frame["group_col"] == "race5")]
    assert maxskew.iloc[0]["group"] == "Black"
    # the toolkit's protocol ranks by delta cosine with the set's own race5 shares: another answer
    toolkit = social.ranking_table("m", scores, SPEC, table, ["race5"], levels,
                                   SPEC.ranking.model_copy(update={"k": [30]}))
    other = toolkit[(toolkit["dimension"] == "warmth") & (toolkit["metric"] == "skew")].set_index("group")
    assert other.loc["Asian", "value"] == pytest.approx(math.log((25 / 30) / (40 / 150)))  # lowest raw = top delta


def test_the_balanced_cells_are_the_authors_len_over_cells_each(utk_like):
    table, _ = utk_like
    settings = load_probe("social-perception").settings_for(resolve_task("utkface"), "paper")
    rows, labels = social.ranked_images(table, settings.ranking)
    counts = labels.groupby(["race5", "gender"]).size().to_dict()
    assert counts == {("Asian", "Female"): 20, ("Asian", "Male"): 15, ("Black", "Female"): 18,
                      ("Black", "Male"): 12, ("White", "Female"): 20, ("White", "Male"): 20}
    again, _ = social.ranked_images(table, settings.ranking)
    np.testing.assert_array_equal(rows, again)  # seeded (balance_seed 42, as random_state=42 there)


def test_fairface_merges_east_and_southeast_asian_into_one_ranked_group():
    settings = load_probe("social-perception").settings_for(resolve_task("fairface"), "paper")
    table = pd.DataFrame({"race7": ["East Asian", "Southeast Asian", "Black", "White", "Indian", "Latino_Hispanic"],
                          "gender": ["Male", "Female", "Male", "Female", "Male", "Female"]})
    rows, labels = social.ranked_images(table, settings.ranking.model_copy(update={"balance": []}))
    assert rows.tolist() == [0, 1, 2, 3] and labels["race7"].tolist() == ["Asian", "Asian", "Black", "White"]


def test_shipped_presets_state_the_authors_protocol_and_keep_the_toolkits():
    spec = load_probe("social-perception")
    assert spec.preset_names == [DEFAULT_PRESET, "paper", "paper-age"]
    toolkit = spec.settings_for(resolve_task("utkface"))
    assert toolkit.ranking is None and spec.ranking.score == "delta" and spec.ranking.target == "observed"
    paper = {t: spec.settings_for(resolve_task(t), "paper") for t in ("utkface", "fairface", "causalface")}
    for settings in paper.values():
        assert (settings.ranking.score, settings.ranking.target) == ("raw", "uniform")
    assert paper["fairface"].source == "train025"
    assert resolve_task("fairface").sources["train025"].split == "train"  # datasets/fairface.py: label_train.csv
    assert paper["causalface"].measures_exclude == {"age": ["default"]}  # causalface_age_* files
    assert paper["causalface"].identity == "identity"
    assert spec.settings_for(resolve_task("utkface"), "paper-age").uniform == {"age": 100}  # fig_5.py
    with pytest.raises(Exception, match="no preset 'papr'"):
        spec.settings_for(resolve_task("utkface"), "papr")
    with pytest.raises(Exception, match="has no settings for task 'fer2013'"):
        spec.settings_for(resolve_task("fer2013"), "paper")


def test_uniform_ages_keep_values_with_enough_images_each_sampled_to_the_rarest():
    """analysis/fig_5.py utkface_prep: age_counts >= 100 kept, each age sampled to the minimum."""
    ages = [20] * 150 + [21] * 120 + [22] * 99 + [23] * 300
    samples = [SimpleNamespace(id=f"s{i}", labels={"age": a}) for i, a in enumerate(ages)]
    kept = _uniform(samples, "age", 100, seed=0)
    counts = pd.Series([s.labels["age"] for s in kept]).value_counts().to_dict()
    assert counts == {20: 120, 21: 120, 23: 120}


# ----- relative delta ------------------------------------------------------------------------------
def test_relative_delta_is_the_change_over_the_blank_prompt(utk_like):
    """analysis/fig_4+s2.py, DELTA = "relative": (cossim - blank) / blank."""
    table, _ = utk_like
    raw = {"warm": np.full(len(table), 0.3), "kind": np.full(len(table), 0.25), "able": np.full(len(table), 0.2)}
    neutral = np.linspace(0.1, 0.2, len(table))
    images, vectors = embed(raw, neutral)
    relative = social.score_images(images, vectors, SPEC, delta="relative")
    absolute = social.score_images(images, vectors, SPEC)
    np.testing.assert_allclose(relative.deltas[:, 0], 100 * (0.3 - neutral) / neutral, rtol=1e-9)
    np.testing.assert_allclose(absolute.deltas[:, 0], 100 * (0.3 - neutral), rtol=1e-9)
    np.testing.assert_allclose(relative.dims[:, 0], 100 * (0.275 - neutral) / neutral, rtol=1e-9)


# ----- cluster bootstrap -----------------------------------------------------------------------------
def test_repeated_identities_get_wider_cis_under_the_cluster_bootstrap():
    """CausalFace-shaped: 20 identities, each rendered as 2 races x 2 genders x 5 smiling levels;
    a strong per-identity effect makes renders of one identity alike, so resampling renders
    (images) understates the uncertainty that resampling identities shows."""
    rng = np.random.default_rng(0)
    cells = list(itertools.product(range(20), ["Black", "White"], ["Female", "Male"], ["0", "1", "2", "3", "4"]))
    table = pd.DataFrame(cells, columns=["identity", "race", "gender", "smiling"]).astype({"identity": str})
    table.insert(0, "sample_id", [f"r{i:04d}" for i in range(len(table))])
    person = rng.normal(0, 2.0, 20)[table["identity"].astype(int)]
    warm = 0.2 + (person + rng.normal(0, 0.3, len(table))) / 100
    raw = {"warm": warm, "kind": warm, "able": np.full(len(table), 0.2)}
    images, vectors = embed(raw, np.full(len(table), 0.15))
    levels = {"race": ["Black", "White"], "gender": ["Female", "Male"], "smiling": ["0", "1", "2", "3", "4"]}
    experimental = DatasetSettings(design="experimental", identity="identity", factors=["race", "gender", "smiling"])
    observational = DatasetSettings(factors=["race", "gender", "smiling"])
    widths = {}
    for name, settings in (("cluster", experimental), ("image", observational)):
        pairs = social.factor_pairs(table, settings, 100, seed=0)
        deltas = social.analyse("m", images, vectors, SPEC, settings, table, levels, pairs, n_boot=400,
                                seed=0)["deltas"]
        means = deltas[(deltas["term"] == "") & (deltas["dimension"] == "warmth")].set_index(["group_col", "group"])
        widths[name] = means["ci_hi"] - means["ci_lo"]
        assert means.loc[("all", "all"), "ci_lo"] < means.loc[("all", "all"), "delta_cos"] < means.loc[("all", "all"), "ci_hi"]
    assert (widths["cluster"] > 1.5 * widths["image"]).all(), (widths["cluster"] / widths["image"]).round(1).tolist()
    # with 20 identities of sd 2, the CI of a mean is about +-1.96 * 2 / sqrt(20) = +-0.88 wide
    assert widths["cluster"][("all", "all")] == pytest.approx(2 * 1.96 * 2.0 / math.sqrt(20), rel=0.35)
    # the paired model comparison resamples identities too
    scores = social.image_scores_table("A", social.score_images(images, vectors, SPEC), table["sample_id"].to_numpy())
    other = scores.assign(model="B", value=scores["value"] + rng.normal(0, 1.0, len(scores)))
    both = pd.concat([scores, other], ignore_index=True)
    by_identity = cmp.compare_models(both, table, ["race"], levels, ["A", "B"], n_boot=300, confidence=0.95,
                                     seed=0, cluster="identity").differences
    by_image = cmp.compare_models(both, table, ["race"], levels, ["A", "B"], n_boot=300, confidence=0.95,
                                  seed=0).differences
    assert np.allclose(by_identity["diff"], by_image["diff"])


# ----- denigration ----------------------------------------------------------------------------------
def test_denigration_prompts_take_the_right_article():
    spec = load_probe("denigration")
    assert spec.prompts("animal") == ["a photo of an animal."]
    assert spec.prompts("orangutan") == ["a photo of an orangutan."]
    assert spec.prompts("gorilla") == ["a photo of a gorilla."]
    assert spec.prompts("East Asian female") == ["a photo of an East Asian female."]
    assert spec.prompts("White male") == ["a photo of a White male."]


def test_a_zero_count_rate_gets_a_real_wilson_upper_bound():
    z = 1.959963984540054
    n = 50
    lo, hi = wilson(0, n, 0.95)
    assert lo == 0.0 and hi == pytest.approx(z ** 2 / (n + z ** 2))  # Wilson at k = 0, by hand
    lo, hi = wilson(7, 40, 0.95)
    p = 7 / 40
    centre = (p + z ** 2 / 80) / (1 + z ** 2 / 40)
    half = z / (1 + z ** 2 / 40) * math.sqrt(p * (1 - p) / 40 + z ** 2 / (4 * 40 ** 2))
    assert (lo, hi) == (pytest.approx(centre - half), pytest.approx(centre + half))
    assert np.isnan(wilson(0, 0, 0.95)[0])
