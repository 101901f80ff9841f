"""fairface source `csv`: FairFace's own label-CSV layout (real sample of 540 and the official val CSV)."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest

from vlmface.data.sources import load_samples
from vlmface.errors import DataError, SampleError
from vlmface.runner import EvalConfig, evaluate
from vlmface.tasks import load_task

from conftest import SHARED_DATA

FAIRFACE = SHARED_DATA / "fairface"


def test_sample_without_race_loads_with_race_unavailable():
    data = load_samples(load_task("fairface"), "csv", FAIRFACE / "sample540")
    assert len(data.samples) == 540 and not data.skipped
    assert set(data.unavailable) == {"race7", "race6"} and "no column 'race'" in data.unavailable["race7"]
    age9 = Counter(s.labels["age9"] for s in data.samples)
    assert age9["more than 70"] == 60 and "70+" not in age9 and set(age9.values()) == {60}  # by name
    assert Counter(s.labels["gender"] for s in data.samples) == {"Male": 270, "Female": 270}
    assert Counter(s.labels["age5"] for s in data.samples)["60+"] == 120  # derived: 60-69 + more than 70
    assert data.group_columns == []  # no service_test column in the sample


def test_official_val_csv_loads_with_its_real_counts(tmp_path):
    shutil.copy(FAIRFACE / "fairface_label_val.csv", tmp_path)  # the CSV alone: images absent
    data = load_samples(load_task("fairface"), "csv", tmp_path)
    assert len(data.samples) == 10954 and not data.unavailable
    # counts from ../shared/data/README.md (FairFace's own file, row for row)
    assert Counter(s.labels["race7"] for s in data.samples) == {
        "White": 2085, "Latino_Hispanic": 1623, "Black": 1556, "East Asian": 1550, "Indian": 1516,
        "Southeast Asian": 1415, "Middle Eastern": 1209}
    assert Counter(s.labels["gender"] for s in data.samples) == {"Male": 5792, "Female": 5162}
    assert Counter(s.labels["age9"] for s in data.samples)["more than 70"] == 118
    assert Counter(s.labels["race6"] for s in data.samples)["Asian"] == 1550 + 1415
    assert data.group_columns == ["service_test"]
    assert data.samples[0].id == "val/1.jpg" and data.samples[0].meta["service_test"] in (True, False)
    with pytest.raises(SampleError, match="image file is missing"):
        data.samples[0].image.read_bytes()  # absent images: a clear per-sample error when a run reads them


def test_two_label_files_are_refused_by_name(tmp_path):
    (tmp_path / "a.csv").write_text("file,age,gender\n")
    (tmp_path / "b.csv").write_text("file,age,gender\n")
    with pytest.raises(DataError, match="2 files match"):
        load_samples(load_task("fairface"), "csv", tmp_path)


def test_val_csv_wins_beside_train_csv(tmp_path):
    shutil.copy(FAIRFACE / "fairface_label_val.csv", tmp_path)
    (tmp_path / "fairface_label_train.csv").write_text("file,age,gender,race,service_test\n")
    assert len(load_samples(load_task("fairface"), "csv", tmp_path).samples) == 10954


def test_eval_on_the_real_sample(tmp_path):
    result = evaluate(EvalConfig(task="fairface", source="csv", model="baseline", limit=18,
                                 data_dir=FAIRFACE / "sample540", out=tmp_path, progress=False))
    run = json.loads((result.run_dir / "run.json").read_text())
    assert set(run["unavailable_attributes"]) == {"race7", "race6"}
    assert set(run["attributes"]) == {"gender", "age9", "age5"}
    records = [json.loads(line) for line in result.predictions_path.read_text().splitlines()]
    assert Counter(r["attribute"] for r in records) == {"gender": 18, "age9": 18, "age5": 18}
    assert {r["truth"] for r in records if r["attribute"] == "age9"} <= set(load_task("fairface").attributes["age9"].labels)


def test_service_test_kept_as_group_column(tmp_path, fake_backend):
    face = sorted((FAIRFACE / "sample540").glob("*.jpg"))[0]
    (tmp_path / "val").mkdir()
    rows = ["file,age,gender,race,service_test"]
    for i in range(4):
        shutil.copy(face, tmp_path / "val" / f"{i}.jpg")
        rows.append(f"val/{i}.jpg,20-29,{'Male' if i % 2 else 'Female'},White,{i < 2}")
    (tmp_path / "fairface_label_val.csv").write_text("\n".join(rows) + "\n")
    result = evaluate(EvalConfig(task="fairface", source="csv", model="fake:x", attributes=["gender"],
                                 data_dir=tmp_path, out=tmp_path / "out", progress=False, score=False))
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["group_columns"] == ["race7", "gender", "age5", "service_test"]
    records = [json.loads(line) for line in result.predictions_path.read_text().splitlines()]
    assert sorted(r["groups"]["service_test"] for r in records) == [False, False, True, True]
