"""Collecting runs and the leaderboard: every number traces to one metrics.json."""

from __future__ import annotations

import json
import math
import os
import shutil

import pandas as pd
import pytest

from test_report_fixtures import build_results, manifest, scored_run, write_references
from vlmface.report import collect_runs, leaderboard, load_references, write_leaderboard
from vlmface.report.display import display_table


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return build_results(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def board(results):
    return leaderboard(collect_runs(results), load_references(write_references(results.parent / "refs.yaml")))


def _expected(metrics: dict, attribute: str, group_col: str | None) -> dict[str, object]:
    """The leaderboard's numeric columns, read straight from metrics.json by hand."""
    block = metrics["attributes"][attribute]
    overall = block["overall"]
    score = "mae" if block["kind"] == "numeric" else "accuracy"
    values = {"n": overall["n"], score: overall[score], f"{score}_lo": overall[f"{score}_ci"][0],
              f"{score}_hi": overall[f"{score}_ci"][1], "invalid_rate": overall["invalid_rate"],
              "refusal_rate": overall["refusal_rate"], "error_rate": overall["error_rate"]}
    if score == "accuracy":
        values.update(macro_f1=overall["macro_f1"], balanced_accuracy=overall["balanced_accuracy"])
    if group_col:
        disparity = block["disparity"][group_col]
        values.update(gap=disparity["gap"], gap_lo=disparity["gap_ci"][0], gap_hi=disparity["gap_ci"][1],
                      worst_group=disparity["worst_group"], best_group=disparity["best_group"])
        worst = block["by_group"][group_col][disparity["worst_group"]]
        values.update({"worst_group_n": worst["n"], f"worst_group_{score}": worst[score]})
    return values


def test_every_number_traces_to_its_metrics_json(board, results):
    assert len(board) == 4  # paligemma-pt gender + age, smolvlm gender, smolvlm emotion
    for _, row in board.iterrows():
        metrics = json.loads((results / row["source"]).read_text())
        assert row["run_id"] == str((results / row["source"]).parent.relative_to(results))
        expected = _expected(metrics, row["attribute"], row["group_col"])
        for column, value in expected.items():
            assert row[column] == value, (row["source"], column)  # copied, never recomputed
        assert row["group_col"] == metrics["scoring"]["group_columns"][0]


def test_rows_carry_the_run_identity(board):
    row = board[(board["model"] == "smolvlm") & (board["attribute"] == "gender")].iloc[0]
    assert (row["task"], row["prompt"], row["mode"], row["backend"]) == ("utkface", "vlm_question", "choice", "hf")
    assert row["prompt_sha256"] == "ab" * 32 and row["status"] == "complete" and not row["stale"]


def test_sorted_best_first_within_task_and_attribute(board):
    gender = board[(board["task"] == "utkface") & (board["attribute"] == "gender")]
    assert list(gender["accuracy"]) == sorted(gender["accuracy"], reverse=True)
    assert list(board["task"]) == sorted(board["task"])


def test_published_number_beside_the_matching_run_only(board):
    row = board[(board["model"] == "paligemma-pt") & (board["attribute"] == "gender")].iloc[0]
    assert row["ref_value"] == pytest.approx(0.964) and row["ref_citation"] == "fixture2025"
    assert row["ref_delta"] == pytest.approx(row["accuracy"] - 0.964)
    assert row["ref_in_ci"] == (row["accuracy_lo"] <= 0.964 <= row["accuracy_hi"])
    assert "the model served today under this name may differ" in row["ref_caveat"]
    others = board[(board["model"] != "paligemma-pt") | (board["attribute"] != "gender")]
    assert others["ref_value"].isna().all()  # smolvlm has no published number; age has none


def test_group_col_can_be_chosen(results):
    board = leaderboard(collect_runs(results), group_col="gender")
    assert set(board["group_col"]) == {"gender"}
    row = board[(board["model"] == "paligemma-pt") & (board["attribute"] == "gender")].iloc[0]
    metrics = json.loads((results / row["source"]).read_text())
    assert row["gap"] == metrics["attributes"]["gender"]["disparity"]["gender"]["gap"]


def test_csv_and_markdown(board, tmp_path):
    csv_path, md_path = write_leaderboard(board, tmp_path)
    back = pd.read_csv(csv_path)
    assert list(back.columns) == list(board.columns)
    assert back["accuracy"].dropna().tolist() == pytest.approx(board["accuracy"].dropna().tolist(), rel=1e-12)
    text = md_path.read_text()
    shown = display_table(board)
    for _, row in shown.iterrows():
        assert f"| {row['accuracy % [CI] / MAE']} " in text and row["source"] in text
    paligemma = shown[shown["model"] == "paligemma-pt"]
    assert paligemma["published"].str.contains("96.4").any()
    age = shown[shown["attribute"] == "age"].iloc[0]
    assert age["accuracy % [CI] / MAE"].startswith("MAE ")


def test_display_formats_percent_and_years(board):
    shown = display_table(board)
    row = board[(board["model"] == "smolvlm") & (board["attribute"] == "gender")].iloc[0]
    cell = shown.loc[row.name, "accuracy % [CI] / MAE"]
    assert cell == (f"{100 * row['accuracy']:.1f} [{100 * row['accuracy_lo']:.1f}, "
                    f"{100 * row['accuracy_hi']:.1f}]")
    assert shown.loc[row.name, "refused %"] == f"{100 * row['refusal_rate']:.1f}"


def test_unscored_stale_broken_and_report_folders(results, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(results, root)
    unscored = root / "utkface" / "other" / "x"
    unscored.mkdir(parents=True)
    shutil.copy(root / "fer2013" / "smolvlm" / "vlm_question" / "predictions.jsonl", unscored)
    broken = root / "fer2013" / "broken" / "x"
    broken.mkdir(parents=True)
    (broken / "metrics.json").write_text("{not json")
    stale = root / "fer2013" / "smolvlm" / "vlm_question"
    later = (stale / "metrics.json").stat().st_mtime + 60
    os.utime(stale / "predictions.jsonl", (later, later))
    shutil.copytree(stale, root / "report" / "copy")  # an output folder is never read as a run
    shutil.copytree(stale, root / ".cache" / "copy")
    collection = collect_runs(root, exclude=root / "report")
    assert len(collection.runs) == 3
    skipped = dict(collection.skipped)
    assert "vlmface score" in skipped["utkface/other/x"]
    assert "unreadable metrics.json" in skipped["fer2013/broken/x/metrics.json"]
    assert any("newer than metrics.json" in w for w in collection.warnings)
    assert collection.runs.set_index("run_id").loc["fer2013/smolvlm/vlm_question", "stale"]


def test_partial_run_is_flagged(tmp_path):
    run = manifest("fer2013", "m", {"emotion": {"kind": "categorical", "labels": ["a", "b"]}})
    run["status"] = "interrupted"
    from scoring_fixtures import record

    scored_run(tmp_path / "fer2013" / "m" / "p", run,
               [record(str(i), "emotion", "a", "ab"[i % 2], race="x", gender="y") for i in range(10)])
    collection = collect_runs(tmp_path)
    assert any("'interrupted'" in w for w in collection.warnings)
    board = leaderboard(collection)
    assert board["status"].tolist() == ["interrupted"]
    assert math.isclose(board["accuracy"].iloc[0], 0.5)


def test_empty_results_folder(tmp_path):
    board = leaderboard(collect_runs(tmp_path), load_references())
    assert board.empty and "source" in board.columns


def test_an_attribute_that_only_errored(tmp_path):
    from scoring_fixtures import record
    from vlmface.report.gallery import plan

    run = manifest("fer2013", "baseline", {"emotion": {"kind": "categorical", "labels": ["happy", "sad"]}})
    records = [record(str(i), "emotion", None, "happy", "error", race="A", gender="F") for i in range(20)]
    scored_run(tmp_path / "fer2013" / "baseline" / "none", run, records)
    collection = collect_runs(tmp_path)
    shown = display_table(leaderboard(collection)).iloc[0]
    assert shown["n"] == "0 of 20" and shown["errors %"] == "100.0"
    assert shown["accuracy % [CI] / MAE"] == "" and shown["worst group"] == ""
    assert plan(collection) == []  # nothing to draw: no empty bars, no all-zero heatmap


def test_task_label_names_a_non_default_source_and_nesting_is_fine(results, tmp_path):
    shutil.copytree(results / "utkface", tmp_path / "sweep" / "utkface@other")
    collection = collect_runs(tmp_path)
    assert set(collection.runs["task_label"]) == {"utkface@other"} and set(collection.runs["task"]) == {"utkface"}
    assert set(collection.runs["run_id"].str.split("/").str[0]) == {"sweep"}
