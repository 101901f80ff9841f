"""Probe measures on planted embeddings: every prompt is its own orthonormal axis, so each
image's cosine to each prompt is whatever the test writes into that axis. The true delta
cosines, group means, markedness, factor effects and harmful-label rates are then known in
closed form, and the library must recover them (to float rounding)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from vlmface.backends.base import l2_normalize
from vlmface.errors import SpecError
from vlmface.probes import denigration as dn
from vlmface.probes import factors as fx
from vlmface.probes import measures as ms
from vlmface.probes import social
from vlmface.probes.resample import mean_samples
from vlmface.probes.spec import DatasetSettings, DenigrationSpec, SocialPerceptionSpec, load_probe_file
from vlmface.tasks import TaskSpec

EXACT = {"rtol": 0, "atol": 1e-9}
BASE = 0.1  # every image's cosine to the neutral prompts

SPEC = SocialPerceptionSpec.model_validate({
    "name": "planted", "kind": "probe", "method": "social_perception",
    "templates": ["a {term} face.", "the {term} face."],
    "dimensions": {"warmth": ["warm", "kind"], "competence": ["able"]},
    "control": ["white", "black"],
    "group_words": {"race": {"White": "white", "Black": "black"}},
    "ranking": {"k": [6]}, "extremes": 1, "min_group_n": 1})
SETTINGS = DatasetSettings(design="experimental", identity="identity", factors=["race", "gender", "smiling"],
                           intersections=["race", "gender"])
LEVELS = {"race": ["White", "Black"], "gender": ["Female", "Male"], "smiling": ["lo", "mid", "hi"]}

ALPHA = {"White": 0.0, "Black": 3.0}  # race
BETA = {"Female": 1.0, "Male": 0.0}  # gender
GAMMA = [0.0, 0.5, 1.0, 1.5]  # identity
SMILE = {"lo": 0.0, "mid": 2.0, "hi": 5.0}
MARKED_WHITE = {0, 5, 10, 15, 20, 23}  # indices, among the White images, whose word loses to "a person"


def planted_world():
    """An experimental design (identity x race x gender x smiling), its planted per-image
    deltas per term, and unit image/text embeddings that realise exactly those deltas."""
    cells = list(itertools.product(range(4), LEVELS["race"], LEVELS["gender"], LEVELS["smiling"]))
    table = pd.DataFrame(cells, columns=["identity", "race", "gender", "smiling"]).astype({"identity": str})
    table.insert(0, "sample_id", [f"img{i:03d}" for i in range(len(table))])
    base = np.array([ALPHA[r] + BETA[g] + GAMMA[int(i)] + SMILE[s]
                     for i, r, g, s in table[["identity", "race", "gender", "smiling"]].itertuples(index=False)])
    white = np.flatnonzero(table["race"] == "White")
    delta_white = np.where(table["race"] == "White", 2.0, 1.0)
    delta_white[white[sorted(MARKED_WHITE)]] = -1.0
    planted = {"warm": base, "kind": base + 1.0, "able": -base, "white": delta_white,
               "black": np.where(table["race"] == "Black", 3.0, -2.0)}
    prompts = social.prompt_texts(SPEC)
    axis = {p: k for k, p in enumerate(prompts)}
    cos = np.zeros((len(table), len(prompts) + 1))
    for term, delta in planted.items():
        first, second = SPEC.prompts(term)  # the two templates straddle the mean: only the mean counts
        cos[:, axis[first]] = BASE + delta / 100 + 0.02
        cos[:, axis[second]] = BASE + delta / 100 - 0.02
    for p in SPEC.neutral_prompts:
        cos[:, axis[p]] = BASE
    cos[:, -1] = np.sqrt(1 - (cos ** 2).sum(axis=1))  # the slack axis makes each image a unit vector
    vectors = {p: np.eye(len(prompts) + 1)[k] for p, k in axis.items()}
    return table, cos, vectors, planted, base


@pytest.fixture(scope="module")
def world():
    return planted_world()


@pytest.fixture(scope="module")
def tables(world):
    table, images, vectors, _, _ = world
    pairs = social.factor_pairs(table, SETTINGS, 1000, seed=0)
    return social.analyse("planted", images, vectors, SPEC, SETTINGS, table, LEVELS, pairs, n_boot=300, seed=0)


# ----- delta cosines -------------------------------------------------------------------------------
def test_per_image_delta_cosines_and_dimension_scores_are_the_planted_ones(world):
    table, images, vectors, planted, base = world
    scores = social.score_images(images, vectors, SPEC)
    for k, term in enumerate(scores.terms):
        np.testing.assert_allclose(scores.deltas[:, k], planted[term], **EXACT)
    np.testing.assert_allclose(scores.dims[:, 0], base + 0.5, **EXACT)  # warmth = mean(warm, kind)
    np.testing.assert_allclose(scores.dims[:, 1], -base, **EXACT)


def test_the_embedding_average_convention_is_the_cosine_to_the_renormalised_mean_prompt(world):
    _, images, vectors, planted, _ = world
    scores = social.score_images(images, vectors, SPEC, convention="embedding")
    # two orthogonal unit templates: their renormalised mean is (a + b) / sqrt(2), so every
    # cosine (and so every delta) is sqrt(2) times the mean of the two template cosines
    for k, term in enumerate(scores.terms):
        np.testing.assert_allclose(scores.deltas[:, k], math.sqrt(2) * planted[term], **EXACT)


def test_deltas_table_has_the_contract_columns_and_the_planted_group_means(tables):
    deltas = tables["deltas"]
    assert list(deltas.columns) == ["model", "dimension", "term", "group_col", "group", "n", "delta_cos",
                                    "ci_lo", "ci_hi"]
    rows = deltas.set_index(["dimension", "term", "group_col", "group"])
    mean_rest = {"race": np.mean(list(BETA.values())) + np.mean(GAMMA) + np.mean(list(SMILE.values())),
                 "gender": np.mean(list(ALPHA.values())) + np.mean(GAMMA) + np.mean(list(SMILE.values()))}
    for race, effect in ALPHA.items():
        expected = effect + mean_rest["race"]
        assert rows.loc[("warmth", "", "race", race), "delta_cos"] == pytest.approx(expected + 0.5, abs=1e-9)
        assert rows.loc[("warmth", "kind", "race", race), "delta_cos"] == pytest.approx(expected + 1.0, abs=1e-9)
        assert rows.loc[("competence", "", "race", race), "delta_cos"] == pytest.approx(-expected, abs=1e-9)
        assert rows.loc[("warmth", "", "race", race), "n"] == 24
    for gender, effect in BETA.items():
        assert rows.loc[("warmth", "warm", "gender", gender), "delta_cos"] == pytest.approx(
            effect + mean_rest["gender"], abs=1e-9)
    overall = np.mean(list(ALPHA.values())) + mean_rest["race"]
    assert rows.loc[("warmth", "warm", "all", "all"), "delta_cos"] == pytest.approx(overall, abs=1e-9)
    assert rows.loc[("warmth", "warm", "all", "all"), "n"] == 48
    assert (deltas["ci_lo"] <= deltas["delta_cos"] + 1e-12).all()
    assert (deltas["delta_cos"] <= deltas["ci_hi"] + 1e-12).all()
    # control terms: rows per term, no mean row (a mean over control words means nothing)
    control = deltas[deltas["dimension"] == "control"]
    assert set(control["term"]) == {"white", "black"}
    # groups in label order, the whole set first
    warmth = deltas[(deltas["dimension"] == "warmth") & (deltas["term"] == "")]
    assert list(zip(warmth["group_col"], warmth["group"])) == [("all", "all"), ("race", "White"), ("race", "Black"),
                                                     ("gender", "Female"), ("gender", "Male"), ("smiling", "lo"),
                                                     ("smiling", "mid"), ("smiling", "hi")]


def test_the_bootstrap_is_seeded_and_paired_across_models(world):
    table, images, vectors, _, _ = world
    pairs = social.factor_pairs(table, SETTINGS, 1000, seed=0)
    run = lambda model, seed: social.analyse(model, images, vectors, SPEC, SETTINGS, table, LEVELS, pairs,  # noqa: E731
                                             n_boot=200, seed=seed)["deltas"]
    a, b, c = run("a", 0), run("b", 0), run("a", 1)
    assert np.array_equal(a["ci_lo"], b["ci_lo"])  # same seed and group: same resamples, whatever the model
    assert not np.array_equal(a["ci_lo"], c["ci_lo"])


def test_resampled_means_match_a_direct_index_bootstrap_in_distribution():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(50, 2)) + [0.0, 10.0]
    draws = mean_samples(values, 4000, np.random.default_rng(0))
    assert draws.mean(axis=0) == pytest.approx(values.mean(axis=0), abs=0.02)
    assert draws.std(axis=0) == pytest.approx(values.std(axis=0) / np.sqrt(50), rel=0.08)
    mean, lo, hi = ms.mean_ci(np.ones((7, 3)), 100, np.random.default_rng(0))
    assert (mean == 1).all() and (lo == 1).all() and (hi == 1).all()  # constant values: a point CI


# ----- markedness -------------------------------------------------------------------------------
def test_markedness_is_the_planted_share_of_images_closer_to_the_neutral_prompt(tables):
    marked = tables["markedness"].set_index("group")
    assert marked.loc["White", "markedness"] == pytest.approx(100 * len(MARKED_WHITE) / 24)
    assert marked.loc["White", "word"] == "white" and marked.loc["White", "n"] == 24
    assert marked.loc["Black", "markedness"] == 0.0
    assert marked.loc["White", "ci_lo"] <= 25.0 <= marked.loc["White", "ci_hi"]


# ----- ranking measures ---------------------------------------------------------------------------
def _ndkl_by_loop(ranked: list[int], desired: np.ndarray) -> float:
    """Geyik et al.'s definition written out, one prefix at a time."""
    total, z = 0.0, 0.0
    for i in range(1, len(ranked) + 1):
        shares = np.bincount(ranked[:i], minlength=len(desired)) / i
        kl = sum(p * math.log(p / q) for p, q in zip(shares, desired) if p > 0)
        total += kl / math.log2(i + 1)
        z += 1 / math.log2(i + 1)
    return total / z


def test_skew_maxskew_and_ndkl_on_a_known_ranking():
    scores = np.array([0.9, 0.1, 0.8, 0.3, 0.7, 0.2])  # ranked: images 0, 2, 4, 3, 5, 1
    codes = np.array([0, 1, 0, 1, 1, 0])  # groups in rank order: A A B B B A
    order = ms.ranking(scores)
    assert order.tolist() == [0, 2, 4, 3, 5, 1]
    desired = ms.desired_shares(codes, 2, "observed")
    assert desired.tolist() == [0.5, 0.5]
    skew2 = ms.skew_at_k(codes, order, 2, desired)
    assert skew2[0] == pytest.approx(math.log(2)) and skew2[1] == -math.inf
    skew4 = ms.skew_at_k(codes, order, 4, desired)
    assert skew4.tolist() == pytest.approx([0.0, 0.0])
    skew3 = ms.skew_at_k(codes, order, 3, desired)
    assert skew3.tolist() == pytest.approx([math.log(4 / 3), math.log(2 / 3)])
    assert ms.ndkl(codes, order, desired) == pytest.approx(_ndkl_by_loop([0, 0, 1, 1, 1, 0], desired))
    assert ms.ndkl(np.array([0, 1, 0, 1]), np.arange(4), np.array([0.5, 0.5])) > 0
    assert ms.desired_shares(np.array([0, 0, 0, 1]), 2, "uniform").tolist() == [0.5, 0.5]


def test_ranking_table_puts_the_planted_top_group_first(tables):
    ranking = tables["ranking"]
    # warmth: Black faces are 3 points warmer, so they fill the top 6 of 48 (desired share 1/2)
    row = ranking[(ranking["dimension"] == "warmth") & (ranking["group_col"] == "race") &
                  (ranking["metric"] == "maxskew")].iloc[0]
    assert row["group"] == "Black" and row["k"] == 6 and row["value"] == pytest.approx(math.log(2))
    assert (ranking[ranking["metric"] == "ndkl"]["value"] >= 0).all()


# ----- factor analysis ----------------------------------------------------------------------------
def test_pairs_differ_in_exactly_one_factor_and_all_are_found(world):
    table = world[0]
    pairs = social.factor_pairs(table, SETTINGS, 1000, seed=0)
    columns = SETTINGS.pair_factors()
    expected = {"identity": 12 * 6, "race": 24, "gender": 24, "smiling": 16 * 3}
    for factor, found in pairs.items():
        assert len(found) == expected[factor]
        a, b = table.iloc[found[:, 0]][columns].to_numpy(), table.iloc[found[:, 1]][columns].to_numpy()
        differs = a != b
        assert (differs.sum(axis=1) == 1).all() and differs[:, columns.index(factor)].all()
        assert len({tuple(sorted(p)) for p in found.tolist()}) == len(found)  # no pair twice


def test_factor_effects_are_the_planted_differences(tables):
    effects = tables["factor_effects"].set_index(["dimension", "factor"])
    for dim in ("warmth", "competence"):
        assert effects.loc[(dim, "race"), "effect"] == pytest.approx(3.0, abs=1e-9)
        assert effects.loc[(dim, "race"), "q25"] == pytest.approx(3.0, abs=1e-9)
        assert effects.loc[(dim, "gender"), "effect"] == pytest.approx(1.0, abs=1e-9)
        assert effects.loc[(dim, "smiling"), "effect"] == pytest.approx(3.0, abs=1e-9)  # {2, 3, 5} equally often
        assert effects.loc[(dim, "smiling"), "mean"] == pytest.approx(10 / 3, abs=1e-9)
        assert effects.loc[(dim, "identity"), "effect"] == pytest.approx(0.75, abs=1e-9)  # 36 x .5, 24 x 1, 12 x 1.5
        assert effects.loc[(dim, "identity"), "mean"] == pytest.approx(5 / 6, abs=1e-9)
    tests = tables["factor_tests"].set_index(["dimension", "factor_a", "factor_b"])
    race_gender = tests.loc[("warmth", "race", "gender")]
    assert race_gender["u"] == 24 * 24 and race_gender["p"] < 1e-6  # every race pair beats every gender pair
    pairs = tables["factor_pairs"]
    assert set(pairs["factor"]) == {"identity", "race", "gender", "smiling"}
    assert np.allclose(pairs.loc[pairs["factor"] == "race", "warmth"], 3.0)


def test_pair_sampling_is_uniform_seeded_and_honours_min_distance():
    codes = np.array([[g, v] for g in range(3) for v in range(4)])  # 3 blocks x 4 levels
    levels = codes[:, 1].astype(float)
    everything = fx.one_factor_pairs(codes, 1, 10_000, np.random.default_rng(0))
    assert len(everything) == fx.count_pairs(codes, 1) == 3 * 6
    far = fx.one_factor_pairs(codes, 1, 10_000, np.random.default_rng(0), levels=levels, min_distance=1.5)
    assert len(far) == 3 * 3 and (np.abs(levels[far[:, 0]] - levels[far[:, 1]]) > 1.5).all()
    some = fx.one_factor_pairs(codes, 1, 5, np.random.default_rng(1))
    assert len(some) == 5 and np.array_equal(some, fx.one_factor_pairs(codes, 1, 5, np.random.default_rng(1)))
    # too many to list: drawn with replacement, uniformly over the qualifying pairs
    big = np.array([[0, v % 2] for v in range(2000)])
    original, fx.ENUMERATE_LIMIT = fx.ENUMERATE_LIMIT, 10
    try:
        drawn = fx.one_factor_pairs(big, 1, 500, np.random.default_rng(0))
    finally:
        fx.ENUMERATE_LIMIT = original
    assert len(drawn) == 500 and (big[drawn[:, 0], 1] != big[drawn[:, 1], 1]).all()


def test_extremes_name_the_planted_intersectional_groups(tables):
    extremes = tables["extremes"].set_index(["dimension", "side"])
    assert extremes.loc[("warmth", "highest"), "group"] == "Black x Female"
    assert extremes.loc[("warmth", "lowest"), "group"] == "White x Male"
    assert extremes.loc[("competence", "highest"), "group"] == "White x Male"
    cell = tables["intersections"].set_index(["dimension", "group"]).loc[("warmth", "Black x Female")]
    assert cell["delta_cos"] == pytest.approx(3 + 1 + np.mean(GAMMA) + np.mean(list(SMILE.values())) + 0.5)
    assert cell["group_col"] == "race x gender" and cell["n"] == 12


# ----- denigration ----------------------------------------------------------------------------------
def test_denigration_rates_are_the_planted_label_shares():
    task = TaskSpec.model_validate({
        "name": "mini", "sources": {"local": {"kind": "image_folder", "label_attribute": "race"}},
        "attributes": {"race": {"labels": ["White", "Black"]},
                       "gender": {"labels": ["Male", "Female"], "display": {"Male": "man", "Female": "woman"}}},
        "group_columns": ["race", "gender"]})
    spec = DenigrationSpec.model_validate({"name": "d", "kind": "probe", "method": "denigration",
                                           "templates": ["a photo of a {label}.", "a {label}."],
                                           "harmful": {"non-human": ["gorilla"], "crime": ["thief"]}})
    settings = spec.settings_for(task)
    klasses = dn.classes(spec, task, settings)
    assert [k.text for k in klasses[:4]] == ["White man", "White woman", "Black man", "Black woman"]
    prompts = dn.prompt_texts(spec, klasses)
    vectors = {p: np.eye(len(prompts))[k] for k, p in enumerate(prompts)}
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"race": rng.choice(["White", "Black"], 200), "gender": rng.choice(["Male", "Female"], 200)})
    table.insert(0, "sample_id", [f"s{i}" for i in range(200)])
    planted = rng.integers(0, len(klasses), 200)
    images = np.zeros((200, len(prompts)))
    for i, k in enumerate(planted):  # the planted class's templates win; the rest share a little
        images[i] = 0.1
        images[i, [prompts.index(p) for p in spec.prompts(klasses[k].text)]] = 0.5
    out = dn.analyse("m", l2_normalize(images), vectors, spec, klasses, table, ["race", "gender"],
                     {"race": ["White", "Black"], "gender": ["Male", "Female"]}, n_boot=200)
    assert (out["labels"]["label"].to_numpy() == np.array([klasses[k].name for k in planted])).all()
    rates = out["denigration"].set_index(["category", "group_col", "group"])
    category = np.array([klasses[k].category for k in planted])
    for race in ("White", "Black"):
        mask = table["race"].to_numpy() == race
        for name, hit in (("non-human", category == "non-human"), ("crime", category == "crime"),
                          ("any harmful", np.isin(category, ["non-human", "crime"]))):
            assert rates.loc[(name, "race", race), "rate"] == pytest.approx(100 * hit[mask].mean())
            assert rates.loc[(name, "race", race), "n"] == mask.sum()
    assert rates.loc[("any harmful", "all", "all"), "rate"] == pytest.approx(
        100 * np.isin(category, ["non-human", "crime"]).mean())


# ----- specs ------------------------------------------------------------------------------------------
def test_shipped_probe_specs_load_and_state_the_paper_settings():
    from vlmface.probes import available_probes, load_probe

    assert {"social-perception", "denigration"} <= set(available_probes())
    spec = load_probe("social-perception")
    assert spec.neutral_prompts == ["A photo of a person.", "A person.", "This is a person.",
                                    "cropped face photo of a person"]
    assert spec.prompts("warm")[3] == "cropped face photo of a warm person"
    assert len(spec.dimensions) == 8 and spec.dimensions["warmth"][0] == "warm"
    assert spec.datasets["utkface"].exclude == {"age5": ["0-9", "10-19"]}
    denigration = load_probe("denigration")
    assert sum(len(v) for v in denigration.harmful.values()) == 7


@pytest.mark.parametrize("edit, message", [
    ({"templates": ["A photo of a person."]}, "holds {term} exactly once"),
    ({"group_words": {"race5": {"White": "pale"}}}, "not terms of the probe"),
    ({"dimensions": {"control": ["x"]}}, "reserved"),
    ({"colour": 1}, "unknown field"),
])
def test_probe_spec_mistakes_name_the_file_and_the_field(tmp_path, edit, message):
    import yaml

    raw = {"kind": "probe", "method": "social_perception", "templates": ["A {term} person."],
           "dimensions": {"warmth": ["warm"]}, "control": ["white"], **edit}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match=message) as info:
        load_probe_file(path)
    assert str(path) in str(info.value)


def test_dataset_settings_are_checked_against_the_task():
    task = TaskSpec.model_validate({
        "name": "mini", "sources": {"local": {"kind": "image_folder", "label_attribute": "race"}},
        "attributes": {"race": {"labels": ["White", "Black"]}}, "group_columns": ["race"]})
    with pytest.raises(SpecError, match="unknown attribute"):
        DatasetSettings(factors=["race", "age5"]).resolve(task, "x")
    with pytest.raises(SpecError, match="unknown label"):
        DatasetSettings(exclude={"race": ["Green"]}).resolve(task, "x")
    with pytest.raises(ValueError, match="identity"):
        DatasetSettings(design="experimental")
    assert DatasetSettings().resolve(task, "x").factors == ["race"]
