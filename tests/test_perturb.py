"""Perturbation specs and transforms: validated as data, deterministic, pixel-exact where it matters."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image, ImageOps

from vlmface.data import Sample
from vlmface.data.samples import FileImage
from vlmface.errors import SampleError, SpecError
from vlmface.perturb import (Perturbation, PerturbedSample, load_perturbations, perturbations_of)
from vlmface.perturb.spec import TRANSFORM_NAMES, available_perturbations, perturbation_set
from vlmface.perturb.transforms import TRANSFORMS

from conftest import REPO_ROOT

FACES = ["35_1_0_20170103163357623.jpg.chip.jpg", "26_0_1_20170103180959080.jpg.chip.jpg",
         "4_1_2_20161219140718600.jpg.chip.jpg"]
SHIPPED = ["exposure_blur", "image_quality", "lighting", "occlusion", "geometry"]


def _sha(image: Image.Image) -> str:
    return hashlib.sha256(f"{image.mode}{image.size}".encode() + image.tobytes()).hexdigest()


def _samples(utkface_dir) -> list[Sample]:
    found = [Sample(id=name, image=FileImage(utkface_dir / name), labels={}) for name in FACES]
    assert all((utkface_dir / name).exists() for name in FACES)
    return found


def _hashes(utkface_dir, seed: int = 0) -> dict[str, str]:
    hashes = {}
    for spec_name in SHIPPED:
        spec = load_perturbations(spec_name).model_copy(update={"seed": seed})
        for perturbation in perturbations_of(spec):
            for sample in perturbation.wrap(_samples(utkface_dir)):
                hashes[f"{perturbation.suffix}/{sample.id}"] = _sha(sample.load_image())
    return hashes


def test_every_transform_is_registered_and_shipped_specs_load():
    assert set(TRANSFORMS) == set(TRANSFORM_NAMES)
    assert set(SHIPPED) <= set(available_perturbations())
    used = {p.spec.transform for name in SHIPPED for p in perturbations_of(load_perturbations(name))}
    assert used == set(TRANSFORM_NAMES)


def test_same_seed_same_pixels_across_calls_and_processes(utkface_dir):
    first = _hashes(utkface_dir)
    assert first == _hashes(utkface_dir)
    assert len(set(first.values())) == len(first)  # every level really changes the pixels
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(REPO_ROOT / 'tests')!r})
        from pathlib import Path
        from test_perturb import _hashes
        print(json.dumps(_hashes(Path({str(utkface_dir)!r}))))
    """)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == first


def test_the_seed_moves_only_the_random_transforms(utkface_dir):
    first, other = _hashes(utkface_dir, seed=0), _hashes(utkface_dir, seed=1)
    changed = {key.split("/")[0] for key in first if first[key] != other[key]}
    assert changed == {"perturb-random_patch-0.2", "perturb-random_patch-0.4", "perturb-noise-10",
                       "perturb-noise-25", "perturb-noise-50"}


def test_random_patch_stays_in_place_across_levels(utkface_dir):
    spec = perturbation_set({"perturbations": {"patch": {"transform": "occlude", "region": "random",
                                                         "levels": [0.1, 0.3], "fill": 0}}}, "t", "test")
    image = Image.new("RGB", (100, 100), (200, 200, 200))
    small, large = (np.asarray(p(image, "face-1")) for p in perturbations_of(spec))
    covered_small, covered_large = small[..., 0] == 0, large[..., 0] == 0
    assert covered_small.sum() == 100 and covered_large.sum() == 900
    assert np.all(covered_large[covered_small])  # the small patch lies inside the large one


def _apply(transform: str, level: float, image: Image.Image, **params) -> Image.Image:
    spec = perturbation_set({"perturbations": {"p": {"transform": transform, "levels": [level], **params}}},
                            "t", "test")
    return perturbations_of(spec)[0](image, "x") if perturbations_of(spec) else image


def test_transforms_do_what_they_say():
    gray = Image.new("RGB", (40, 40), (128, 128, 128))
    assert _apply("gamma", 2.0, gray).getpixel((0, 0)) == (64, 64, 64)  # 255 (128/255)^2 = 64.25
    assert _apply("gamma", 0.5, gray).getpixel((0, 0)) == (181, 181, 181)
    linear = ((128 / 255 + 0.055) / 1.055) ** 2.4
    brighter = _apply("exposure", 1.0, gray).getpixel((0, 0))[0] / 255
    assert abs(((brighter + 0.055) / 1.055) ** 2.4 - 2 * linear) < 0.01  # one stop doubles the light
    colour = Image.new("RGB", (40, 40), (200, 40, 90))
    r, g, b = _apply("grayscale", 1.0, colour).getpixel((0, 0))
    assert r == g == b == round(0.299 * 200 + 0.587 * 40 + 0.114 * 90)
    assert _apply("contrast", 0.0, colour).getpixel((5, 5)) == (r, g, b)
    face = Image.effect_noise((64, 48), 40).convert("RGB")
    assert _apply("flip", 1, face).tobytes() == ImageOps.mirror(face).tobytes()
    assert _apply("downscale", 4, face).size == (64, 48)
    assert _apply("downscale", 4, face, restore=False).size == (16, 12)
    band = np.asarray(_apply("occlude", 0.25, Image.new("RGB", (100, 100), "white"), region="eyes", fill=0))
    rows = np.flatnonzero(band[:, 50, 0] == 0)
    assert (rows.min(), rows.max()) == (24, 48)  # centred on 0.37 of the height
    for transform, level in [("gaussian_blur", 2), ("jpeg", 10), ("rotate", 20), ("gaussian_noise", 20)]:
        changed = _apply(transform, level, face)
        assert changed.size == face.size and changed.mode == "RGB" and changed.tobytes() != face.tobytes()


def test_identity_levels_are_the_clean_run():
    spec = perturbation_set({"perturbations": {
        "exposure": {"transform": "gamma", "levels": [0.5, 1.0, 2.0]},
        "quality": {"transform": "jpeg", "levels": [100, 30]},
        "mirror": {"transform": "flip", "levels": [0, 1]}}}, "t", "test")
    assert [p.suffix for p in perturbations_of(spec)] == ["perturb-exposure-0.5", "perturb-exposure-2",
                                                          "perturb-quality-30", "perturb-mirror-1"]
    image = Image.new("RGB", (8, 8), (10, 20, 30))
    identity = Perturbation("exposure", spec.perturbations["exposure"], 1.0)
    assert identity(image, "x") is image


@pytest.mark.parametrize("block, message", [
    ({"blur": {"transform": "gausian_blur", "levels": [1]}}, r"perturbations\.blur.*transforms are gamma"),
    ({"dark": {"transform": "gamma", "levels": [0, 2]}},
     r"perturbations\.dark\.gamma.*levels \[0\.0\] out of range.*> 0"),
    ({"q": {"transform": "jpeg", "levels": [20.5]}}, r"whole numbers"),
    ({"m": {"transform": "flip", "levels": [0.5]}}, r"0 \(clean\) or 1"),
    ({"o": {"transform": "occlude", "levels": [0.2], "region": "nose"}}, r"perturbations\.o\.occlude\.region"),
    ({"b": {"transform": "gaussian_blur", "levels": [1], "sigma": 2}}, r"b\.gaussian_blur\.sigma: unknown field"),
    ({"bad-name": {"transform": "flip", "levels": [1]}}, r"letters, digits and '_'"),
    ({"g": {"transform": "gamma", "levels": []}}, r"perturbations\.g\.gamma\.levels"),
])
def test_spec_errors_name_the_file_and_field(tmp_path, block, message):
    path = tmp_path / "mine.yaml"
    path.write_text(json.dumps({"perturbations": block}))
    with pytest.raises(SpecError, match=f"(?s){path}.*{message}"):
        load_perturbations(path)


def test_unknown_spec_name_lists_the_shipped_ones():
    with pytest.raises(SpecError, match="unknown perturbation spec 'nope'.*exposure_blur"):
        load_perturbations("nope")


def test_perturbed_samples_pickle_and_a_failing_transform_is_a_sample_error(utkface_dir, monkeypatch):
    [perturbation] = perturbations_of(perturbation_set(
        {"perturbations": {"blur": {"transform": "gaussian_blur", "levels": [3]}}}, "t", "test"))
    [sample] = perturbation.wrap(_samples(utkface_dir)[:1])
    assert isinstance(sample, PerturbedSample)
    copy = pickle.loads(pickle.dumps(sample))
    clean = Image.open(utkface_dir / FACES[0]).convert("RGB")
    assert _sha(copy.load_image()) == _sha(sample.load_image()) != _sha(clean)

    def broken(*args):
        raise ValueError("boom")

    monkeypatch.setitem(TRANSFORMS, "gaussian_blur", broken)
    with pytest.raises(SampleError, match=r"perturbation perturb-blur-3 failed \(ValueError: boom\)"):
        sample.load_image()
