"""One error policy everywhere (issue 15): data errors (unreadable image) are left out of every
metric; answer errors (no face found, a backend failure on that sample) count wrong in `accuracy`
and are left out of `answered_accuracy`; the scorer and the robustness analysis agree."""

from __future__ import annotations

import textwrap

import pytest
from PIL import Image

from scoring_fixtures import record, run_json, write_run
from fake_backends import PLANTED_N, sweep_planted
from vlmface.perturb.analysis import format_robustness, robustness
from vlmface.predictions import read_records
from vlmface.runner import EvalConfig, evaluate
from vlmface.scoring import format_summary, score_run

LABELS = ("happy", "sad")


def _policy_records() -> list[dict]:
    """10 items, all truth 'happy': 4 right, 1 wrong, 1 invalid, 1 refused, 2 answer errors,
    1 data error."""
    rows = [("happy", "ok")] * 4 + [("sad", "ok"), (None, "invalid"), (None, "refused"),
                                    (None, "error"), (None, "error"), (None, "error")]
    records = [record(f"s{i}", "emotion", label, "happy", status, race="A" if i < 5 else "B")
               for i, (label, status) in enumerate(rows)]
    records[7]["error_kind"] = records[8]["error_kind"] = "answer"
    records[9]["error_kind"] = "data"
    return records


def test_answer_errors_count_wrong_data_errors_are_left_out(tmp_path):
    metrics = score_run(write_run(tmp_path, _policy_records(), run_json(labels=LABELS, group_columns=("race",))),
                        n_boot=50, min_group_n=1)
    o = metrics["attributes"]["emotion"]["overall"]
    assert (o["n_total"], o["n"], o["n_error"], o["n_answer_error"], o["n_data_error"]) == (10, 9, 3, 2, 1)
    assert o["accuracy"] == pytest.approx(4 / 9)  # answer errors, invalid, refused are wrong
    assert o["answered_accuracy"] == pytest.approx(4 / 5) and o["n_answered"] == 5
    assert o["answer_error_rate"] == pytest.approx(2 / 9) and o["invalid_rate"] == pytest.approx(1 / 9)
    assert o["confusion"]["happy"]["happy"] == 4
    b = metrics["attributes"]["emotion"]["by_group"]["race"]["B"]
    assert (b["n"], b["accuracy"], b["answered_accuracy"], b["answer_error_rate"]) == (4, 0.0, None, 0.5)
    text = format_summary(metrics)
    assert "answer errors 2 (22.2%)" in text and "answered-only 0.800" in text
    assert "1 data error(s) (unreadable image) left out of n" in text


def test_old_error_lines_without_error_kind_are_scored_as_before(tmp_path):
    """A file written before error_kind existed: its "error" lines stay out of n, as they always were."""
    records = _policy_records()
    for r in records:
        r.pop("error_kind", None)
    o = score_run(write_run(tmp_path, records, run_json(labels=LABELS, group_columns=("race",))),
                  n_boot=20)["attributes"]["emotion"]["overall"]
    assert (o["n"], o["n_data_error"], o["n_answer_error"]) == (7, 3, 0)
    assert o["accuracy"] == pytest.approx(4 / 7)


def test_pipeline_marks_unreadable_images_data_and_no_face_answer(tmp_path, utkface_dir):
    images = tmp_path / "images"
    images.mkdir()
    Image.open(utkface_dir / "35_1_0_20170103163357623.jpg.chip.jpg").convert("RGB").save(images / "face.jpg")
    Image.new("RGB", (200, 200), (128, 128, 128)).save(images / "blank.png")  # a readable image, no face
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    rows = "\n".join(f"images/{name},Female" for name in ("face.jpg", "blank.png", "corrupt.jpg"))
    (tmp_path / "manifest.csv").write_text(f"image,gender\n{rows}\n")
    spec = tmp_path / "policy.yaml"
    spec.write_text(textwrap.dedent("""
        name: policy
        sources:
          local: {kind: manifest, image_column: image}
        attributes:
          gender: {labels: [Male, Female]}
        group_columns: [gender]
    """))
    result = evaluate(EvalConfig(task=spec, model="baseline", data_dir=tmp_path / "manifest.csv",
                                 out=tmp_path / "out", score=True, progress=False))
    records = {r["sample_id"]: r for r in read_records(result.predictions_path)}
    assert records["images/corrupt.jpg"]["error_kind"] == "data"
    assert records["images/blank.png"]["status"] == "error"
    assert records["images/blank.png"]["error_kind"] == "answer"
    assert records["images/blank.png"]["raw"] == "no face found by the detector"
    assert "error_kind" not in records["images/face.jpg"]
    o = score_run(result.run_dir, n_boot=20)["attributes"]["gender"]["overall"]
    assert (o["n"], o["n_answer_error"], o["n_data_error"]) == (2, 1, 1)


def test_a_perturbed_runs_own_accuracy_equals_its_robustness_row(planted_task, tmp_path, monkeypatch):
    from vlmface import registry

    monkeypatch.setitem(registry.BACKEND_FAMILIES, "planted", ("fake_backends:FlakyPlantedBackend", "dev"))
    spec, manifest, _ = planted_task
    corrupt = manifest.parent / "img" / "C_000.png"  # unreadable at every level: a data error
    corrupt.unlink()
    corrupt.write_bytes(b"\x89PNG not really")
    runs = sweep_planted(planted_task, tmp_path / "out")
    [result] = robustness([r.run_dir for r in runs], n_boot=200, plots=False)
    levels = result.tables["levels"].set_index(["group_column", "group", "level"])
    by_level = {1.0: runs[0].run_dir, 0.5: runs[1].run_dir, 2.0: runs[2].run_dir}
    answer_errors = 0
    for level, run_dir in by_level.items():
        attr = score_run(run_dir, n_boot=50)["attributes"]["answer"]
        for col, group, own in [("all", "all", attr["overall"])] + [
                ("group", g, row) for g, row in attr["by_group"]["group"].items()]:
            row = levels.loc[(col, group, level)]
            assert row["n"] == own["n"], (level, group)
            assert row["accuracy"] == pytest.approx(own["accuracy"], abs=1e-12), (level, group)
            assert row["answered_accuracy"] == pytest.approx(own["answered_accuracy"], abs=1e-12)
            assert row["answer_error_rate"] == pytest.approx(own["answer_error_rate"], abs=1e-12)
        answer_errors += attr["overall"]["n_answer_error"]
        assert attr["overall"]["n_data_error"] == 1
    assert answer_errors == PLANTED_N // 5  # only at gamma 2, only group B
    b = levels.loc[("group", "B", 2.0)]
    assert b["accuracy"] < b["answered_accuracy"] and b["answer_error_rate"] == pytest.approx(0.2)
    text = format_robustness(result)
    assert "answer errors (counted wrong) %: 0.5: 0.0, 1: 0.0, 2: 6.7" in text
