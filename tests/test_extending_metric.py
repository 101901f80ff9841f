"""docs/extending.md "A metric": the toy metric module, added exactly as the guide says (one
file in vlmface/scoring/metrics/, no list edited), shows up in metrics.json and the tables of a
real baseline run on UTKFace faces with the values a direct count of predictions.jsonl gives."""

from __future__ import annotations

import re
import sys
from collections import Counter

import pandas as pd
import pytest

import vlmface.scoring.metrics as metrics_package
from vlmface.predictions import read_records
from vlmface.run_record import read_metrics
from vlmface.runner import EvalConfig, evaluate
from vlmface.scoring.metrics import REGISTRY, load_families

from conftest import REPO_ROOT

GUIDE = REPO_ROOT / "docs" / "extending.md"
MODULE = "vlmface/scoring/metrics/top_label_share.py"


@pytest.fixture
def toy_metric(tmp_path, monkeypatch):
    """The guide's metric module in a scratch copy of the package folder, found by the scorer's
    own discovery (the package's __path__ extended to it); the registry restored afterwards."""
    blocks = dict(re.findall(r"```\w+ file=(\S+)\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S))
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "top_label_share.py").write_text(blocks[MODULE], encoding="utf-8")
    registered = dict(REGISTRY)
    monkeypatch.setattr(metrics_package, "__path__", [*metrics_package.__path__, str(folder)])
    load_families()
    yield REGISTRY["top_label_share"]
    REGISTRY.clear()
    REGISTRY.update(registered)
    sys.modules.pop("vlmface.scoring.metrics.top_label_share", None)


def _share(labels: list) -> float:
    return max(Counter(labels).values()) / len(labels)


def test_the_guide_s_metric_is_in_metrics_json_and_the_tables(toy_metric, utkface_dir, tmp_path):
    assert list(REGISTRY)[-1] == "top_label_share"  # after the built-in families
    run_dir = evaluate(EvalConfig(task="utkface", model="baseline", data_dir=utkface_dir, limit=40,
                                  out=tmp_path / "out", progress=False)).run_dir
    answered = [r for r in read_records(run_dir / "predictions.jsonl")
                if r["attribute"] == "gender" and r["status"] == "ok"]
    gender = read_metrics(run_dir).attributes["gender"]
    assert "top_label_share" in gender.metric_families
    assert gender.overall["top_label_share"] == pytest.approx(_share([r["label"] for r in answered]), abs=1e-12)
    by_race = gender.by_group["race5"]
    for race in {r["groups"]["race5"] for r in answered}:
        expected = _share([r["label"] for r in answered if r["groups"]["race5"] == race])
        assert by_race[race]["top_label_share"] == pytest.approx(expected, abs=1e-12), race
    assert 0.5 <= gender.overall["top_label_share"] < 1.0  # real answers: neither label takes all
    overall_table = pd.read_csv(run_dir / "tables" / "gender__overall.csv")
    assert overall_table["top_label_share"].iloc[0] == pytest.approx(gender.overall["top_label_share"])
    race_table = pd.read_csv(run_dir / "tables" / "gender__by_race5.csv").set_index("group")
    assert race_table["top_label_share"].to_dict() == pytest.approx(
        {race: row["top_label_share"] for race, row in by_race.items()})


def test_a_run_scored_without_the_module_has_no_such_key(utkface_dir, tmp_path):
    run_dir = evaluate(EvalConfig(task="utkface", model="baseline", data_dir=utkface_dir, limit=12,
                                  out=tmp_path, progress=False)).run_dir
    assert "top_label_share" not in read_metrics(run_dir).attributes["gender"].overall
