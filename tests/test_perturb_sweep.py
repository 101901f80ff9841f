"""`vlmface eval --perturb` end to end on real UTKFace faces with the real baseline model:
one resumable run per level, the clean run shared, robustness tables and plots, and no
perturbed pixels on disk unless asked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import assert_png_plot
from vlmface.backends.base import Answer, Backend
from vlmface.cli import main
from vlmface.errors import VlmfaceError
from vlmface.perturb import load_perturbations, perturbations_of
from vlmface.perturb.analysis import robustness
from vlmface.predictions import read_records
from vlmface.runner import EvalConfig, evaluate, evaluate_perturbed

LIMIT = 70
SPEC = """perturbations:
  exposure: {transform: gamma, levels: [0.5, 1.0, 2.0]}
  blur: {transform: gaussian_blur, levels: [3]}
"""
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


def _command(utkface_dir: Path, out: Path, spec: Path, *extra: str) -> list[str]:
    return ["eval", "--task", "utkface", "--model", "baseline", "--data-dir", str(utkface_dir), "--limit",
            str(LIMIT), "--out", str(out), "--no-progress", "--perturb", str(spec), *extra]


@pytest.fixture(scope="module")
def sweep(utkface_dir, tmp_path_factory):
    """A plain clean run first, then the sweep that must reuse it; then the same sweep again."""
    root = tmp_path_factory.mktemp("sweep")
    spec = root / "exposure_blur.yaml"
    spec.write_text(SPEC)
    out = root / "out"
    clean = evaluate(EvalConfig(task="utkface", model="baseline", data_dir=utkface_dir, limit=LIMIT, out=out,
                                score=False, progress=False)).run_dir
    clean_bytes = (clean / "predictions.jsonl").read_bytes()
    assert main(_command(utkface_dir, out, spec)) == 0
    first_levels = pd.read_csv(clean / "robustness" / "levels.csv")
    files_after_first = sorted(p for p in out.rglob("*") if p.is_file())
    assert main(_command(utkface_dir, out, spec, "--perturb-examples", "2")) == 0
    return {"out": out, "clean": clean, "clean_bytes": clean_bytes, "spec": spec, "first_levels": first_levels,
            "files_after_first": files_after_first}


def test_each_level_is_its_own_run_and_the_clean_run_is_shared(sweep):
    base = sweep["clean"].parent
    assert sorted(p.name for p in base.iterdir()) == ["none", "none__perturb-blur-3", "none__perturb-exposure-0.5",
                                                      "none__perturb-exposure-2"]
    assert (sweep["clean"] / "predictions.jsonl").read_bytes() == sweep["clean_bytes"]
    clean_manifest = json.loads((sweep["clean"] / "run.json").read_text())
    assert clean_manifest["identity"]["perturbation"] is None and "perturbation" not in clean_manifest
    manifest = json.loads((base / "none__perturb-exposure-0.5" / "run.json").read_text())
    assert manifest["perturbation"] == manifest["identity"]["perturbation"] == {
        "name": "exposure", "transform": "gamma", "level": 0.5, "identity_level": 1.0,
        "params": {"transform": "gamma"}, "seed": 0, "version": 1}
    assert {k: v for k, v in manifest["identity"].items() if k != "perturbation"} == \
        {k: v for k, v in clean_manifest["identity"].items() if k != "perturbation"}
    records = read_records(base / "none__perturb-exposure-0.5" / "predictions.jsonl")
    assert len(records) == LIMIT * 4
    assert {(r["perturbation"], r["level"]) for r in records} == {("exposure", 0.5)}
    clean_ids = {r["sample_id"] for r in read_records(sweep["clean"] / "predictions.jsonl")}
    assert {r["sample_id"] for r in records} == clean_ids


def test_the_rerun_resumes_everything_and_reproduces_the_analysis(sweep):
    for run_dir in sweep["clean"].parent.iterdir():
        manifest = json.loads((run_dir / "run.json").read_text())
        assert manifest["status"] == "complete" and manifest["counts"]["new_predictions"] == 0, run_dir
    pd.testing.assert_frame_equal(pd.read_csv(sweep["clean"] / "robustness" / "levels.csv"), sweep["first_levels"])


def test_robustness_outputs_cover_levels_groups_and_plots(sweep):
    levels = sweep["first_levels"]
    assert set(levels["attribute"]) == {"gender", "age", "age5", "age9"}
    assert set(levels["group_column"]) == {"all", "race5", "gender", "age5"}
    assert set(zip(levels["perturbation"], levels["level"])) == {("exposure", 0.5), ("exposure", 1.0),
                                                                 ("exposure", 2.0), ("blur", 0.0), ("blur", 3.0)}
    overall = levels[(levels["group_column"] == "all") & (levels["attribute"] == "gender")].set_index(
        ["perturbation", "level"])
    assert overall.loc[("blur", 0.0), "drop"] == 0 and overall.loc[("blur", 0.0), "flip_rate"] == 0
    assert overall.loc[("exposure", 1.0), "accuracy"] == overall.loc[("blur", 0.0), "accuracy"] > 0.7
    assert (overall["accuracy_ci_lo"] <= overall["accuracy"]).all()
    assert (overall["accuracy"] <= overall["accuracy_ci_hi"]).all()
    folder = sweep["clean"] / "robustness"
    interactions = pd.read_csv(folder / "interactions.csv")
    assert set(interactions["perturbation"]) == {"exposure", "blur"}
    assert "gender" in set(interactions["group_column"]) <= {"race5", "gender", "age5"}
    assert np.allclose(interactions["interaction"], interactions["drop_a"] - interactions["drop_b"])
    assert not interactions["level"].isin([1.0, 0.0]).any()  # clean levels have no interaction
    summary = json.loads((folder / "robustness.json").read_text())
    assert len(summary["interactions"]) == len(interactions) and len(summary["levels"]) == len(levels)
    assert summary["scoring"]["ci_method"].startswith("percentile bootstrap over images")
    assert_png_plot(folder / "plots" / "gender__exposure__curves.png")
    assert_png_plot(folder / "plots" / "gender__blur__interaction.png")


def test_no_perturbed_image_reaches_the_disk_unless_asked(sweep):
    images = [p for p in sweep["files_after_first"] if p.suffix.lower() in IMAGE_SUFFIXES]
    assert images and all(p.parent.name == "plots" and p.name.endswith(("__curves.png", "__interaction.png"))
                          for p in images)
    examples = sweep["clean"] / "robustness" / "examples"
    assert sorted(p.name for p in examples.iterdir()) == ["blur.png", "exposure.png"]


def test_a_changed_transform_under_the_same_name_is_refused_before_loading(sweep, utkface_dir, tmp_path, capsys):
    spec = tmp_path / "changed.yaml"
    spec.write_text("perturbations:\n  blur: {transform: gaussian_blur, units: fraction, levels: [3]}\n")
    assert main(_command(utkface_dir, sweep["out"], spec)) == 2
    error = capsys.readouterr().err
    assert "none__perturb-blur-3 holds a different run (differs in: perturbation.params" in error and "--overwrite" in error


def test_loader_workers_see_the_same_perturbed_pixels(utkface_dir, tmp_path, fake_backend):
    """The fake backend answers from a hash of the pixels: equal answers mean equal pixels."""
    spec = tmp_path / "noise.yaml"
    spec.write_text("perturbations:\n  patch: {transform: occlude, region: random, levels: [0.3]}\n"
                    "  noise: {transform: gaussian_noise, levels: [20]}\n")
    perturbations = perturbations_of(load_perturbations(spec))

    def answers(workers: int) -> list[dict]:
        config = EvalConfig(task="utkface", model="fake:none", data_dir=utkface_dir, limit=24, workers=workers,
                            out=tmp_path / f"w{workers}", attributes=["gender", "race5"], score=False,
                            progress=False)
        runs = evaluate_perturbed(config, [None, *perturbations])
        return [sorted(read_records(r.predictions_path), key=lambda r: (r["sample_id"], r["attribute"]))
                for r in runs]

    in_process, in_workers = answers(0), answers(2)
    assert in_process == in_workers
    assert in_process[1] != in_process[0] != in_process[2]
    assert len(fake_backend.instances) == 2  # one model per sweep, not one per level


def test_the_python_api_runs_one_level(utkface_dir, tmp_path, fake_backend):
    mirror = perturbations_of(load_perturbations("geometry"), ["mirror"])
    result = evaluate(EvalConfig(task="utkface", model="fake:none", data_dir=utkface_dir, limit=5, out=tmp_path,
                                 perturbation=mirror[0], attributes=["gender"], score=False, progress=False))
    assert result.run_dir.name == "default__attrs-gender__perturb-mirror-1"
    assert {(r["perturbation"], r["level"]) for r in read_records(result.predictions_path)} == {("mirror", 1.0)}
    with pytest.raises(VlmfaceError, match="no clean run"):
        robustness([tmp_path])


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # under make test: on the Ray tests' worker, sharing its local Ray
def test_a_ray_sweep_equals_a_local_one(utkface_dir, tmp_path):
    pytest.importorskip("ray")
    perturbations = perturbations_of(load_perturbations("exposure_blur"), ["blur"])[-1:]

    def run(engine: str) -> list:
        config = EvalConfig(task="utkface", model="baseline", data_dir=utkface_dir, limit=40, engine=engine,
                            workers=1 if engine == "ray" else None, out=tmp_path / engine, score=False,
                            progress=False)
        return [sorted(read_records(r.predictions_path), key=lambda r: (r["sample_id"], r["attribute"]))
                for r in evaluate_perturbed(config, [None, *perturbations])]

    local, ray = run("local"), run("ray")
    assert ray == local and local[0] != local[1]


class CountingBackend(Backend):
    """Counts the images it answered, as API backends count tokens and cost."""

    prompt_style = "none"

    def __init__(self, entry, options=None):
        super().__init__(entry, options)
        self.images = 0

    def answer(self, queries):
        self.images += len({q.sample_id for q in queries})
        return [Answer(label=q.question.labels[0]) for q in queries]

    def run_summary(self):
        return {"images": self.images, "engine_note": "counting"}


def test_one_model_for_the_sweep_but_counters_are_split_per_run(utkface_dir, tmp_path, monkeypatch):
    from vlmface import registry

    monkeypatch.setitem(registry.BACKEND_FAMILIES, "counting", ("test_perturb_sweep:CountingBackend", "dev"))
    config = EvalConfig(task="utkface", model="counting:none", data_dir=utkface_dir, limit=12, out=tmp_path,
                        attributes=["gender"], score=False, progress=False)
    runs = evaluate_perturbed(config, [None, *perturbations_of(load_perturbations("geometry"), ["rotation"])])
    summaries = [json.loads((r.run_dir / "run.json").read_text())["backend_summary"] for r in runs]
    assert summaries == [{"images": 12, "engine_note": "counting"}] * 5


def test_robustness_accepts_the_clean_run_a_perturbed_run_or_their_parent(sweep, tmp_path):
    from vlmface.perturb.analysis import robustness

    clean = sweep["clean"]
    tables = []
    for i, path in enumerate([clean, clean.parent / "none__perturb-blur-3", clean.parent]):
        [result] = robustness([path], tmp_path / str(i), n_boot=50, plots=False)
        assert result.sweep.clean == clean and len(result.sweep.perturbed) == 3
        tables.append(pd.read_csv(tmp_path / str(i) / "levels.csv"))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    pd.testing.assert_frame_equal(tables[0], tables[2])
