"""The tables of a scored run (vlmface/scoring/tables.py) hold metrics.json's numbers: a CI is two
columns (_lo, _hi), the test's keys are test_* columns, no index column in the CSV or the Markdown,
and the Markdown has the CSV's columns in the CSV's order."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from scoring_fixtures import planted_records, run_json, write_run
from vlmface.scoring import score_run


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    run_dir = write_run(tmp_path_factory.mktemp("run"), planted_records(np.random.default_rng(8), 30), run_json())
    return run_dir / "tables", score_run(run_dir, n_boot=30)["attributes"]["emotion"]


def test_overall_table_splits_each_ci_into_lo_and_hi_columns(scored):
    tables, attr = scored
    frame = pd.read_csv(tables / "emotion__overall.csv")
    overall = attr["overall"]
    assert len(frame) == 1 and "accuracy_ci" not in frame and not any(c.startswith("Unnamed") for c in frame)
    for key in ("accuracy_ci", "answered_accuracy_ci"):
        assert [frame.at[0, f"{key}_lo"], frame.at[0, f"{key}_hi"]] == pytest.approx(overall[key])
    assert frame.at[0, "n"] == overall["n"] and frame.at[0, "accuracy"] == pytest.approx(overall["accuracy"])


def test_disparity_table_carries_the_test_and_the_gap_ci(scored):
    tables, attr = scored
    frame = pd.read_csv(tables / "emotion__disparity.csv").set_index("group_column")
    assert list(frame.index) == list(attr["disparity"])
    for col, d in attr["disparity"].items():
        assert frame.at[col, "test_method"] == d["test"]["method"]
        assert [frame.at[col, "test_p_value"], frame.at[col, "test_p_holm"], frame.at[col, "test_p_bh"]] == \
            pytest.approx([d["test"]["p_value"], d["test"]["p_holm"], d["test"]["p_bh"]])
        expected = [np.nan if bound is None else bound for bound in d["gap_ci"]]  # None: a blank cell
        assert [frame.at[col, "gap_ci_lo"], frame.at[col, "gap_ci_hi"]] == pytest.approx(expected, nan_ok=True)
    assert frame["gap_ci_lo"].notna().any()


def test_markdown_has_the_csv_columns_in_order_and_no_index(scored):
    tables, attr = scored
    csv = pd.read_csv(tables / "emotion__by_race.csv")
    assert list(csv["group"]) == list(attr["by_group"]["race"]) and csv.columns[0] == "group"
    md = (tables / "emotion__by_race.md").read_text().splitlines()
    assert md[0] == "# emotion: by_race" and md[1] == ""
    header = [cell.strip() for cell in md[2].strip("|").split("|")]
    assert header == list(csv.columns)
    rows = [re.split(r"\s*\|\s*", line.strip("| ")) for line in md[4:]]
    assert [row[0] for row in rows] == list(csv["group"])
    assert [int(row[1]) for row in rows] == list(csv["n"])
