"""Comparing CLIP models end to end: three tiny random open_clip models probed together on
200 real UTKFace faces, a fourth probed later on its own, then `probe-compare` of the two
folders from their saved per-image scores, without encoding any image again."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tiny_models import build_tiny_open_clip
from vlmface.errors import VlmfaceError
from vlmface.probes import probe
from vlmface.probes.command import add_probe_compare
from vlmface.probes.comparison import probe_compare

N = 200
BOOT = 200
DIFFERENCE_COLUMNS = ["dimension", "group_col", "group", "model_a", "model_b", "n", "diff", "ci_lo", "ci_hi",
                      "p_value", "p_holm"]
GAP_COLUMNS = ["dimension", "group_col", "model_a", "model_b", "gap_a", "gap_b", "diff", "ci_lo", "ci_hi",
               "p_value", "p_holm"]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Tiny models run fastest on one thread (see conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory, utkface_dir):
    root = tmp_path_factory.mktemp("compare")
    models = {name: build_tiny_open_clip(root / "models" / name, seed=seed)
              for name, seed in (("tiny-a", 1), ("tiny-b", 2), ("tiny-c", 3), ("tiny-d", 4))}
    spec = {name: f"clip:local-dir:{path}" for name, path in models.items()}
    common = dict(data_dir=utkface_dir, limit=N, seed=0, n_boot=BOOT, device="cpu", cache_dir=root / "cache")
    three = probe("social-perception", "utkface", [spec["tiny-a"], spec["tiny-b"], spec["tiny-c"]],
                  out=root / "abc", **common)
    fourth = probe("social-perception", "utkface", [spec["tiny-d"]], out=root / "d", **common, plots=False)
    return root, spec, three, fourth, common


@pytest.fixture(scope="module")
def compared(runs):
    root, _, _, _, _ = runs
    from vlmface.probes import embeddings

    real = embeddings.embed
    embeddings.embed = lambda *a, **k: pytest.fail("probe-compare encoded an image")  # nothing may be encoded
    try:
        parser = argparse.ArgumentParser()
        add_probe_compare(parser.add_subparsers())
        args = parser.parse_args(["probe-compare", str(root / "abc"), str(root / "d"), "--out", str(root / "all"),
                                  "--n-boot", str(BOOT)])
        assert args.handler(args) == 0
    finally:
        embeddings.embed = real
    return root / "all"


def test_three_models_probed_together_are_compared_pair_by_pair(runs):
    root, _, three, _, _ = runs
    out = root / "abc"
    manifest = json.loads((out / "probe.json").read_text())
    assert [m["name"] for m in manifest["models"]] == ["tiny-a", "tiny-b", "tiny-c"]
    assert all(m["model"].startswith("clip:local-dir:") and m["identity"] for m in manifest["models"])
    assert manifest["data"]["used"] == N and manifest["preset"] == "toolkit"
    diff = pd.read_csv(out / "model_differences.csv", keep_default_na=False)
    assert list(diff.columns) == DIFFERENCE_COLUMNS
    pairs = set(zip(diff["model_a"], diff["model_b"]))
    assert pairs == {("tiny-a", "tiny-b"), ("tiny-a", "tiny-c"), ("tiny-b", "tiny-c")}
    deltas = pd.read_csv(out / "deltas.csv", keep_default_na=False)
    means = deltas[deltas["term"] == ""].set_index(["model", "dimension", "group_col", "group"])["delta_cos"]
    for row in diff.sample(20, random_state=0).itertuples():
        expected = means[(row.model_b, row.dimension, row.group_col, row.group)] - \
            means[(row.model_a, row.dimension, row.group_col, row.group)]
        assert row.diff == pytest.approx(expected, abs=1e-9) and row.ci_lo <= row.diff <= row.ci_hi
    assert (diff[diff["group_col"] == "all"]["n"] == N).all()
    gaps = pd.read_csv(out / "gap_differences.csv")
    assert list(gaps.columns) == GAP_COLUMNS and set(gaps["group_col"]) == {"race5", "gender", "age5"}
    agreement = pd.read_csv(out / "rank_agreement.csv")
    assert agreement.loc[agreement["group_col"] == "gender", "kendall_tau"].isna().all()  # 2 groups
    assert agreement.loc[agreement["group_col"] == "race5", "kendall_tau"].notna().all()
    side = pd.read_csv(out / "side_by_side.csv", keep_default_na=False)
    assert {"markedness", "skew", "maxskew", "ndkl"} <= set(side["measure"])
    assert set(side["model"]) == {"tiny-a", "tiny-b", "tiny-c"}
    ranked = side[side["measure"] == "ndkl"]  # a divergence: resamples sit above the point, the CI still brackets
    assert (pd.to_numeric(ranked["ci_lo"]) < pd.to_numeric(ranked["ci_hi"])).all()
    assert (pd.to_numeric(ranked["value"]) >= 0).all()
    for plot in ("warmth_competence", "model_differences", "model_heatmap"):
        assert (out / "plots" / f"{plot}.png").is_file(), plot


def test_a_fourth_model_is_added_later_without_re_encoding_the_first_three(runs, compared):
    root, _, three, fourth, _ = runs
    assert fourth.manifest["models"][0]["stats"]["images_encoded"] == N  # only the new model encoded anything
    record = json.loads((compared / "probe-compare.json").read_text())
    assert record["images_encoded"] == 0 and record["names"] == ["tiny-a", "tiny-b", "tiny-c", "tiny-d"]
    diff = pd.read_csv(compared / "model_differences.csv", keep_default_na=False)
    assert len(set(zip(diff["model_a"], diff["model_b"]))) == 6
    assert diff["p_holm"].notna().all()
    # the three models' rows are exactly those of their own probe: same images, same resamples
    before = pd.read_csv(root / "abc" / "model_differences.csv", keep_default_na=False)
    again = diff[diff["model_b"] != "tiny-d"].drop(columns="p_holm").reset_index(drop=True)
    pd.testing.assert_frame_equal(again, before.drop(columns="p_holm"), check_exact=False, rtol=1e-12)
    for plot in ("warmth_competence", "model_differences", "model_heatmap"):
        assert (compared / "plots" / f"{plot}.png").is_file(), plot


def test_probe_compare_refuses_other_images_or_another_probe_spec(runs):
    root, spec, _, _, common = runs
    fewer = probe("social-perception", "utkface", [spec["tiny-d"]], out=root / "d-fewer",
                  **{**common, "limit": N - 10, "n_boot": 20}, plots=False)
    with pytest.raises(VlmfaceError, match="other images"):
        probe_compare([root / "abc", root / "d-fewer"], root / "x1", n_boot=10, plots=False)
    relative = probe("social-perception", "utkface", [spec["tiny-d"]], out=root / "d-relative", delta="relative",
                     **{**common, "n_boot": 20}, plots=False)
    with pytest.raises(VlmfaceError, match=r"different probe specs .*delta"):
        probe_compare([root / "abc", root / "d-relative"], root / "x2", n_boot=10, plots=False)
    with pytest.raises(VlmfaceError, match="used twice"):
        probe_compare([root / "d", root / "d"], root / "x3", n_boot=10, plots=False)


def test_warmth_competence_panels_share_axes_and_labels_do_not_collide(runs):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from vlmface.report.social_plots import plot_warmth_competence, read_deltas

    deltas = read_deltas(runs[0] / "abc" / "deltas.csv")
    fig = plot_warmth_competence(deltas)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 3 * 3  # models x group columns
    assert len({ax.get_xlim() for ax in axes}) == 1 and len({ax.get_ylim() for ax in axes}) == 1
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.canvas.draw()
    for ax in axes:
        boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_gid() == "point-label"]
        assert boxes, ax.get_title()
        overlaps = [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if boxes[i].overlaps(boxes[j])]
        assert not overlaps, (ax.get_title(), overlaps)
    assert not fig.legends and all(ax.get_legend() is None for ax in axes)  # no legend of model paths
    np.testing.assert_array_equal([t.get_text() for t in axes[0].texts if t.get_gid() == "point-label"],
                                  ["White", "Black", "Asian", "Indian", "Others"])
