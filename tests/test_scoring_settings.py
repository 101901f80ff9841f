"""ScoreSettings: every bound of every knob, on both sides (the edge value accepted, one step
past it refused with a VlmfaceError naming the knob), and what metrics.json records."""

from __future__ import annotations

import pytest

from vlmface.errors import VlmfaceError
from vlmface.scoring.settings import ScoreSettings

# (knob, the extreme values accepted, the nearest values refused)
BOUNDS = [
    ("confidence", (1e-9, 0.5, 1 - 1e-9), (0.0, 1.0, -0.1, 1.5)),
    ("n_boot", (1, 2), (0, -1)),
    ("min_group_n", (0, 1), (-1,)),
    ("min_cell_n", (1, 2), (0, -1)),
    ("intersections", (1, 2, 3), (0, 4)),
    ("max_group_values", (2, 3), (1, 0)),
]


@pytest.mark.parametrize("knob, accepted, refused", BOUNDS, ids=[b[0] for b in BOUNDS])
def test_each_knob_accepts_its_edge_and_refuses_one_step_past_it(knob, accepted, refused):
    for value in accepted:
        assert getattr(ScoreSettings(**{knob: value}), knob) == value
    for value in refused:
        with pytest.raises(VlmfaceError, match=knob):
            ScoreSettings(**{knob: value})


def test_defaults_and_what_metrics_json_records():
    settings = ScoreSettings()
    assert settings.to_json() == {
        "min_group_n": 30, "n_boot": 1000, "seed": 0, "answered_only": False, "confidence": 0.95,
        "min_cell_n": 10, "max_group_values": 1000, "intersections": 2, "reference_group": None,
        "ci_method": "percentile bootstrap, resampled within groups"}
    assert ScoreSettings(reference_group=("race", "White")).to_json()["reference_group"] == ("race", "White")
