"""Data-source edge cases (issue 13), on real FER2013 faces copied into tmp_path.

Before: a non-UTF-8 file name crashed the fingerprint (UnicodeEncodeError); broken symlinks and
symlink loops vanished without a line in skipped_items; manifest paths like ../../../../etc/passwd
or /etc/hostname were opened; one image under two ids was used twice.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest

from vlmface.data import load_samples
from vlmface.errors import DataError
from vlmface.predictions import read_records
from vlmface.runner import EvalConfig, evaluate
from vlmface.tasks import load_task

MANIFEST_TASK = """name: fer_manifest
sources:
  m:
    kind: manifest
    id_column: id
{extra}attributes:
  emotion:
    labels: [angry, disgust, fear, happy, neutral, sad, surprise]
"""


@pytest.fixture
def folder(tmp_path, fer_dir) -> Path:
    """FER2013 layout: happy/ and sad/ with three real faces each."""
    root = tmp_path / "fer"
    for emotion in ("happy", "sad"):
        (root / emotion).mkdir(parents=True)
        for face in sorted((fer_dir / emotion).glob("*.jpg"))[:3]:
            shutil.copy(face, root / emotion / face.name)
    return root


def test_non_utf8_file_name_is_a_sample_with_an_escaped_id(folder):
    real = next((folder / "sad").iterdir())
    weird = Path(os.fsdecode(os.fsencode(str(folder / "sad")) + b"/caf\xe9.jpg"))
    shutil.copy(real, weird)
    data = load_samples(load_task("fer2013"), "folder", folder)
    ids = [s.id for s in data.samples]
    assert "sad/caf\\xe9.jpg" in ids and len(ids) == 7
    sample = data.samples[ids.index("sad/caf\\xe9.jpg")]
    assert sample.labels == {"emotion": "sad"} and sample.load_image().size == (48, 48)
    assert len(data.fingerprint) == 64
    weird.rename(weird.with_name("cafe.jpg"))  # the fingerprint is over the name's bytes
    assert load_samples(load_task("fer2013"), "folder", folder).fingerprint != data.fingerprint


def test_eval_with_a_non_utf8_name_writes_and_resumes(folder, tmp_path, fake_backend):
    shutil.copy(next((folder / "sad").iterdir()), Path(os.fsdecode(os.fsencode(str(folder / "sad")) + b"/\xff.jpg")))
    config = EvalConfig(task="fer2013", model="fake:none", data_dir=folder, out=tmp_path / "out", progress=False,
                        score=False)
    records = read_records(evaluate(config).run_dir / "predictions.jsonl")
    assert "sad/\\xff.jpg" in {r["sample_id"] for r in records} and len(records) == 7
    again = evaluate(config)
    assert read_records(again.run_dir / "predictions.jsonl") == records  # finished work kept, none redone


def test_broken_links_and_loops_are_listed_in_skipped(folder):
    os.symlink(folder / "nowhere.jpg", folder / "happy" / "broken.jpg")
    os.symlink(folder / "happy" / "b.jpg", folder / "happy" / "a.jpg")
    os.symlink(folder / "happy" / "a.jpg", folder / "happy" / "b.jpg")
    os.symlink(folder, folder / "sad" / "again")  # a folder link back up the tree
    target = sorted((folder / "sad").glob("*.jpg"))[0]
    os.symlink(target, folder / "happy" / "good_link.jpg")
    data = load_samples(load_task("fer2013"), "folder", folder)
    skipped = dict(data.skipped)
    assert skipped["happy/broken.jpg"].startswith("broken symbolic link (to ")
    assert skipped["happy/a.jpg"] == skipped["happy/b.jpg"] == "symbolic link loop; skipped"
    assert skipped["sad/again"] == "symbolic link to a folder that contains it (a loop); not followed"
    # a working link to an image already in the set is the same image under a second id: the
    # first id in sorted order keeps it
    assert skipped[f"sad/{target.name}"].startswith("same image file as sample 'happy/good_link.jpg' (")
    assert len(data.samples) == 6


def _manifest(folder: Path, rows: list[tuple[str, str, str]], extra: str = "") -> tuple:
    with open(folder / "m.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "emotion"])
        writer.writerows(rows)
    spec = folder / "task.yaml"
    spec.write_text(MANIFEST_TASK.format(extra=extra), encoding="utf-8")
    return load_task(spec), folder / "m.csv"


def test_manifest_paths_outside_the_data_dir_are_refused(folder):
    happy = sorted((folder / "happy").glob("*.jpg"))
    rows = [("a", f"happy/{happy[0].name}", "happy"), ("b", "../../../../etc/passwd", "happy"),
            ("c", "/etc/hostname", "sad"), ("d", f"happy/{happy[1].name}", "happy")]
    task, manifest = _manifest(folder, rows)
    data = load_samples(task, None, manifest)
    assert [s.id for s in data.samples] == ["a", "d"]
    skipped = dict(data.skipped)
    assert skipped["b"] == (f"row 1: image path '../../../../etc/passwd' is outside the data folder "
                            f"'{folder}'; refused (set sources.m.allow_outside_data_dir: true in "
                            f"{folder / 'task.yaml'} if intended)")
    assert skipped["c"].startswith("row 2: image path '/etc/hostname' is outside the data folder")


def test_manifest_outside_paths_allowed_when_the_spec_opts_out(folder, fer_dir):
    elsewhere = sorted((fer_dir / "happy").glob("*.jpg"))[5]  # a real face outside the manifest's folder
    task, manifest = _manifest(folder, [("a", str(elsewhere), "happy")], extra="    allow_outside_data_dir: true\n")
    data = load_samples(task, None, manifest)
    assert [s.id for s in data.samples] == ["a"] and data.samples[0].load_image().size == (48, 48)


def test_only_outside_paths_is_a_clear_error(folder):
    task, manifest = _manifest(folder, [("b", "/etc/hostname", "sad")])
    with pytest.raises(DataError, match=r"no usable samples .* 1 item\(s\) skipped.*allow_outside_data_dir"):
        load_samples(task, None, manifest)


def test_same_image_under_two_ids_is_counted_once(folder):
    face = sorted((folder / "happy").glob("*.jpg"))[0].name
    rows = [("b", f"happy/{face}", "happy"), ("a", f"./happy/../happy/{face}", "happy"),
            ("c", f"sad/{sorted((folder / 'sad').glob('*.jpg'))[0].name}", "sad")]
    task, manifest = _manifest(folder, rows)
    data = load_samples(task, None, manifest)
    assert [s.id for s in data.samples] == ["a", "c"]  # manifest order kept; the first id (sorted) wins
    assert dict(data.skipped)["b"].startswith("same image file as sample 'a' (")


def test_one_image_reached_through_a_linked_folder_is_counted_once(folder, tmp_path):
    """The same file by its own path and through a link to its folder (manifest rows): one sample;
    the repeat check resolves folders as os.path.realpath does."""
    happy = sorted((folder / "happy").glob("*.jpg"))
    (folder / "alias").symlink_to(folder / "happy", target_is_directory=True)
    rows = [("a", f"happy/{happy[0].name}", "happy"), ("b", f"alias/{happy[0].name}", "happy"),
            ("c", f"alias/{happy[1].name}", "happy")]
    task, manifest = _manifest(folder, rows)
    data = load_samples(task, None, manifest)
    assert [s.id for s in data.samples] == ["a", "c"]
    assert dict(data.skipped)["b"].startswith("same image file as sample 'a' (")
