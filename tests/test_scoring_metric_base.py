"""The metric families' shared helpers (vlmface/scoring/metrics/base.py): which groups are large
enough to enter gaps (min_group_n, at least 1; answered items for a numeric attribute), the
headline metric per kind and the "n < 10" note of a table cell."""

from __future__ import annotations

from scoring_fixtures import record, run_json, write_run
from vlmface.scoring import score_run
from vlmface.scoring.metrics.base import cell_note, headline_metric, min_cell_of

LABELS = ("happy", "sad")


def _small_flags(tmp_path, records, run, **settings):
    metrics = score_run(write_run(tmp_path / "run", records, run), n_boot=20, **settings)
    attr = next(iter(metrics["attributes"].values()))
    return {group: row["small"] for group, row in attr["by_group"]["race"].items()}


def _categorical(sizes: dict[str, int], errors: dict[str, int] | None = None) -> list[dict]:
    records = [record(f"{race}{i}", "emotion", LABELS[i % 2], "happy", race=race)
               for race, n in sizes.items() for i in range(n)]
    return records + [record(f"{race}-e{i}", "emotion", None, "happy", "error", race=race)
                      for race, n in (errors or {}).items() for i in range(n)]


def test_a_group_of_exactly_min_group_n_enters_the_gaps(tmp_path):
    run = run_json(labels=LABELS, group_columns=("race",))
    flags = _small_flags(tmp_path, _categorical({"A": 3, "B": 2, "C": 4}), run, min_group_n=3)
    assert flags == {"A": False, "B": True, "C": False}


def test_min_group_n_0_still_needs_one_scored_item(tmp_path):
    run = run_json(labels=LABELS, group_columns=("race",))
    flags = _small_flags(tmp_path, _categorical({"A": 1, "B": 2}, errors={"Z": 2}), run, min_group_n=0)
    assert flags == {"A": False, "B": False, "Z": True}  # Z: data errors only, n = 0


def test_a_numeric_group_counts_answered_items_a_categorical_one_scored_items(tmp_path):
    ages = [record(f"{race}{i}", "age", 30.0 if i else None, 31.0, "ok" if i else "invalid", race=race)
            for race, n in (("A", 3), ("B", 4)) for i in range(n)]
    assert _small_flags(tmp_path, ages, run_json("age", "numeric", (), ("race",)), min_group_n=3) == \
        {"A": True, "B": False}  # A: 2 answered of 3
    invalid = [dict(r, attribute="emotion", label="happy" if r["label"] else None, truth="happy") for r in ages]
    assert _small_flags(tmp_path / "c", invalid, run_json(labels=LABELS, group_columns=("race",)),
                        min_group_n=3) == {"A": False, "B": False}  # an invalid answer is scored (wrong)


def test_the_headline_metric_is_cs5_for_numeric_attributes_only():
    assert [headline_metric(kind) for kind in ("numeric", "categorical", "ordinal")] == \
        ["cs5", "accuracy", "accuracy"]


def test_a_cell_note_replaces_only_a_missing_value_of_a_small_cell():
    assert cell_note(None, 9, 10) == "n < 10"
    assert cell_note(None, 10, 10) is None  # large enough, but no value (e.g. no truth of that class)
    assert cell_note(0.25, 3, 10) == 0.25 and cell_note(0.0, 12, 10) == 0.0


def test_min_cell_of_reads_the_min_cell_n_the_attribute_was_scored_with(tmp_path):
    """The tables' "n < N" notes use the min_cell_n recorded in the disparity entries; an attribute
    without any (no group column) falls back to the scorer's default, 10."""
    records = _categorical({"A": 6, "B": 5})
    metrics = score_run(write_run(tmp_path / "run", records, run_json(labels=LABELS, group_columns=("race",))),
                        n_boot=20, min_cell_n=4)
    assert min_cell_of(metrics["attributes"]["emotion"]) == 4
    assert min_cell_of({"disparity": {}}) == 10 == min_cell_of({})
