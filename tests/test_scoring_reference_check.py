"""score_run's check of `--reference-group COLUMN=GROUP` (vlmface/scoring/score.py): a column the
run has is scored against, one it lacks is refused naming the column and the run's columns."""

from __future__ import annotations

import numpy as np
import pytest

from scoring_fixtures import planted_records, record, run_json, write_run
from vlmface.errors import VlmfaceError
from vlmface.scoring import score_run


def test_a_reference_group_of_an_existing_column_is_scored(tmp_path):
    run_dir = write_run(tmp_path / "run", planted_records(np.random.default_rng(9), 20), run_json())
    metrics = score_run(run_dir, n_boot=20, reference_group=("race", "White"))
    reference = metrics["attributes"]["emotion"]["disparity"]["race"]["reference"]
    assert reference["group"] == "White" and set(reference["groups"]) == {"Black", "East Asian", "Indian"}
    assert metrics["scoring"]["reference_group"] == ["race", "White"]


def test_a_reference_column_the_run_lacks_is_refused_naming_both(tmp_path):
    run_dir = write_run(tmp_path / "run", planted_records(np.random.default_rng(9), 20), run_json())
    with pytest.raises(VlmfaceError, match=r"^--reference-group site=North: this run has no group column 'site'; "
                                           r"its group columns are race, gender$"):
        score_run(run_dir, n_boot=20, reference_group=("site", "North"))


def test_a_run_without_group_columns_says_none(tmp_path):
    records = [record(f"s{i}", "emotion", "happy", ("happy", "sad")[i % 2]) for i in range(6)]
    run_dir = write_run(tmp_path / "run", records, run_json(labels=("happy", "sad"), group_columns=()))
    with pytest.raises(VlmfaceError, match=r"no group column 'race'; its group columns are none$"):
        score_run(run_dir, n_boot=20, reference_group=("race", "White"))
