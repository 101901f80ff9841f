"""`vlmface eval --model hf:<dir>` end to end on tiny VLMs, and `vlmface parse`."""

from __future__ import annotations

import json

import pytest

import tiny_vlms
from conftest import assert_interpretation_reproduces, assert_unique_pairs
from vlmface.cli import main
from vlmface.predictions import read_records

BUILDERS = {"paligemma": tiny_vlms.build_paligemma, "llava": tiny_vlms.build_llava,
            "smolvlm": tiny_vlms.build_smolvlm}
LABELS = {"gender": {"Male", "Female"}, "race5": {"White", "Black", "Asian", "Indian", "Others"}}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def vlm_dir(request, tmp_path_factory):
    return BUILDERS[request.param](tmp_path_factory.mktemp(request.param) / "model")


@pytest.mark.parametrize("mode", ["generate", "choice"])
def test_eval_cli_on_a_tiny_vlm(vlm_dir, mode, utkface_dir, tmp_path, capsys):
    code = main(["eval", "--task", "utkface", "--model", f"hf:{vlm_dir}", "--data-dir", str(utkface_dir),
                 "--limit", "6", "--attributes", "gender,race5", "--mode", mode, "--max-new-tokens", "4",
                 "--device", "cpu", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    [run_dir] = [p.parent for p in tmp_path.glob("utkface/*/*/predictions.jsonl")]
    records = read_records(run_dir / "predictions.jsonl")
    assert len(assert_unique_pairs(records)) == 12
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for attribute in ("gender", "race5"):  # the scorer saw every prediction of the run
        overall = metrics["attributes"][attribute]["overall"]
        ours = [r for r in records if r["attribute"] == attribute]
        assert overall["n"] == 6
        assert overall["accuracy"] == pytest.approx(sum(r["label"] == r["truth"] for r in ours) / 6)
    if mode == "choice":  # constrained: never invalid, probabilities over exactly the label set
        assert {r["status"] for r in records} == {"ok"}
        for record in records:
            assert set(record["probs"]) == LABELS[record["attribute"]]
            assert sum(record["probs"].values()) == pytest.approx(1.0, abs=1e-6)
    else:
        assert all(isinstance(r["raw"], str) for r in records)
        assert_interpretation_reproduces(records, "utkface")  # each status is the one its raw text gives


@pytest.mark.parametrize("task, attribute, text, label, status", [
    ("fairface", "race7", "This person appears to be Korean.", "East Asian", "ok"),  # spec synonym
    ("fairface", "race7", "Latinx", "Latino_Hispanic", "ok"),
    ("fairface", "race7", "I'm sorry, I can't determine someone's race from a photo.", None, "refused"),
    ("fairface", "age9", "over 70", "more than 70", "ok"),
    ("utkface", "age5", "about 35", "20-39", "ok"),
    ("fer2013", "emotion", "a purple elephant", None, "invalid"),
])
def test_parse_cli_prints_label_and_status(task, attribute, text, label, status, capsys):
    assert main(["parse", "--task", task, "--attribute", attribute, text]) == 0
    assert json.loads(capsys.readouterr().out) == {"label": label, "status": status}


def test_spec_synonyms_must_name_labels(tmp_path):
    from vlmface.errors import SpecError
    from vlmface.tasks import load_task

    from conftest import REPO_ROOT

    spec = (REPO_ROOT / "tasks" / "fairface.yaml").read_text().replace("East Asian: [Chinese", "Eastern: [Chinese")
    (tmp_path / "ff.yaml").write_text(spec)
    with pytest.raises(SpecError, match=r"attributes\.race7.*'synonyms' names unknown label"):
        load_task(tmp_path / "ff.yaml")
