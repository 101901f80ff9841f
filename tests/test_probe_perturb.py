"""`vlmface probe --perturb`: a tiny open_clip on real UTKFace faces, clean and darker/brighter;
the shift tables are checked against the runs' own per-image scores, recomputed with pandas."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tiny_models import build_tiny_open_clip
from vlmface.cli import main
from vlmface.perturb import load_perturbations, perturbations_of
from vlmface.probes.perturbed import probe_sweep

SPEC = "perturbations:\n  exposure: {transform: gamma, levels: [0.5, 1.0]}\n"


@pytest.fixture(scope="module")
def sweep(utkface_dir, tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("probe_perturb")
    tiny = build_tiny_open_clip(root / "model")
    spec = root / "exposure.yaml"
    spec.write_text(SPEC)
    out = root / "out"
    model = f"clip:local-dir:{tiny}"
    assert main(["probe", "--probe", "social-perception", "--task", "utkface", "--models", model, "--data-dir",
                 str(utkface_dir), "--limit", "40", "--out", str(out), "--n-boot", "30", "--device", "cpu",
                 "--no-plots", "--perturb", str(spec)]) == 0
    first = {kind: pd.read_csv(out / "robustness" / f"exposure__shift_{kind}.csv")
             for kind in ("levels", "interactions")}
    again = probe_sweep("social-perception", "utkface", model, perturbations_of(load_perturbations(spec)),
                        data_dir=utkface_dir, limit=40, out=out, n_boot=30, device="cpu", plots=False)
    torch.set_num_threads(threads)
    return {"out": out, "first": first, "again": again}


def test_each_level_is_its_own_probe_folder_on_the_same_images(sweep):
    out = sweep["out"]
    assert {p.name for p in out.iterdir() if p.is_dir()} == {".cache", "models", "perturb-exposure-0.5", "robustness"}
    clean_scores = pd.read_csv(out / "image_scores.csv")
    perturbed_scores = pd.read_csv(out / "perturb-exposure-0.5" / "image_scores.csv")
    keys = ["model", "sample_id", "dimension"]
    assert list(perturbed_scores.columns) == list(clean_scores.columns) == [*keys, "value"]
    assert len(perturbed_scores) == len(clean_scores) == 40 * 8 and not perturbed_scores.duplicated(keys).any()
    paired = clean_scores.merge(perturbed_scores, on=keys, suffixes=("_clean", "_perturbed"), validate="1:1")
    assert len(paired) == 40 * 8  # the same images, models and dimensions at both levels
    assert (paired["value_clean"] != paired["value_perturbed"]).mean() > 0.5  # the exposure changed the scores
    clean = json.loads((out / "probe.json").read_text())
    perturbed = json.loads((out / "perturb-exposure-0.5" / "probe.json").read_text())
    assert "perturbation" not in clean
    assert perturbed["perturbation"] == {"name": "exposure", "transform": "gamma", "level": 0.5,
                                         "identity_level": 1.0, "params": {"transform": "gamma"}, "seed": 0,
                                         "version": 1}
    ids = [pd.read_csv(d / "samples.csv", dtype=str)["sample_id"].tolist() for d in (out, out / "perturb-exposure-0.5")]
    assert ids[0] == ids[1] and len(ids[0]) == 40


def test_image_scores_average_to_the_deltas_table(sweep):
    out = sweep["out"]
    scores = pd.read_csv(out / "image_scores.csv")
    assert list(scores.columns) == ["model", "sample_id", "dimension", "value"] and len(scores) == 40 * 8
    deltas = pd.read_csv(out / "deltas.csv", keep_default_na=False)
    overall = deltas[(deltas["term"] == "") & (deltas["group_col"] == "all")].set_index("dimension")["delta_cos"]
    pd.testing.assert_series_equal(scores.groupby("dimension")["value"].mean().sort_index(),
                                   overall.loc[sorted(overall.index)].rename("value"), check_names=False)


def test_shifts_are_zero_at_the_clean_level_and_follow_the_perturbed_scores(sweep):
    out, levels = sweep["out"], sweep["first"]["levels"]
    assert {"model", "perturbation", "dimension", "level", "group_column", "group", "shift"} <= set(levels.columns)
    assert set(levels["group_column"]) == {"all", "race5", "gender", "age5"}
    clean = levels[levels["clean"]]
    assert set(clean["level"]) == {1.0} and (clean[["shift", "shift_ci_lo", "shift_ci_hi"]] == 0).all().all()
    overall = levels[(levels["group"] == "all")].set_index(["dimension", "level"])
    for folder, level in ((out, 1.0), (out / "perturb-exposure-0.5", 0.5)):
        means = pd.read_csv(folder / "image_scores.csv").groupby("dimension")["value"].mean()
        for dimension, mean in means.items():
            assert overall.loc[(dimension, level), "mean"] == pytest.approx(mean, abs=1e-9)
    shift = overall.xs(0.5, level="level")["shift"]
    assert shift.to_dict() == pytest.approx((overall.xs(0.5, level="level")["mean"]
                                             - overall.xs(1.0, level="level")["mean"]).to_dict())
    assert (shift != 0).any()
    interactions = sweep["first"]["interactions"]
    assert set(interactions["level"]) == {0.5} and "model" in interactions


def test_a_second_sweep_reencodes_no_image_and_reproduces_the_tables(sweep):
    out = sweep["out"]
    assert sorted(p.name for p in sweep["again"]) == ["exposure__shift_interactions.csv", "exposure__shift_levels.csv"]
    for folder in (out, out / "perturb-exposure-0.5"):
        for model in json.loads((folder / "probe.json").read_text())["models"]:
            assert model["stats"]["images_encoded"] == 0 and model["stats"]["embedding_cache"]["hits"] == 40
    for kind, frame in sweep["first"].items():
        pd.testing.assert_frame_equal(pd.read_csv(out / "robustness" / f"exposure__shift_{kind}.csv"), frame)
