"""`vlmface reparse`: saved raw answers re-interpreted without asking any model (an API run
through the local OpenAI-compatible test server, tests/chat_server.py)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml

from vlmface.cli import main
from vlmface.predictions import read_records
from vlmface.reparse import PREVIOUS_FILE
from vlmface.runner import EvalConfig, evaluate

from chat_server import ChatServer

REPO = Path(__file__).resolve().parents[1]
KEY_ENV = "VLMFACE_REPARSE_TEST_KEY"
# the server answers one of the listed options: "gent" means Male to a reader, not to the utkface spec
PROMPT = "What is the gender of the person in this image? Choose one of: male, gent. Answer with one option only."


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(argv))
    return code, out.getvalue()


@pytest.fixture(scope="module")
def api_run(utkface_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("reparse")
    template = root / "gent.jinja"
    template.write_text(PROMPT, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp, ChatServer() as server:
        mp.setenv(KEY_ENV, "sk-test-reparse")
        result = evaluate(EvalConfig(task="utkface", model="api:test-model", data_dir=utkface_dir, limit=40,
                                     out=root / "out", attributes=["gender"], prompt=str(template),
                                     progress=False, options={"base_url": server.url, "api_key_env": KEY_ENV}))
        yield result.run_dir, server, root


def test_reparse_sends_nothing_and_keeps_every_label(api_run):
    run_dir, server, _ = api_run
    before = (run_dir / "predictions.jsonl").read_text(encoding="utf-8")
    metrics_before = json.loads((run_dir / "metrics.json").read_text())
    sent = server.requests
    code, printed = _cli("reparse", str(run_dir), "--no-score")
    assert code == 0 and "0 label(s) changed" in printed
    assert server.requests == sent  # nothing was asked again
    assert (run_dir / "predictions.jsonl").read_text(encoding="utf-8") == before
    assert (run_dir / PREVIOUS_FILE).read_text(encoding="utf-8") == before
    assert json.loads((run_dir / "metrics.json").read_text())["attributes"] == metrics_before["attributes"]


def test_a_new_synonym_turns_exactly_its_answers_from_invalid_to_ok(api_run):
    run_dir, server, root = api_run
    records = read_records(run_dir / "predictions.jsonl")
    gent = {r["sample_id"] for r in records if r["raw"] == "gent"}
    assert gent and all(r["status"] == "invalid" for r in records if r["sample_id"] in gent)
    assert len(gent) < len(records)
    old_metrics = json.loads((run_dir / "metrics.json").read_text())["attributes"]["gender"]["overall"]

    spec = yaml.safe_load((REPO / "tasks" / "utkface.yaml").read_text())
    spec["attributes"]["gender"]["synonyms"] = {"Male": ["gent"]}
    changed_spec = root / "utkface_gent.yaml"
    changed_spec.write_text(yaml.safe_dump(spec), encoding="utf-8")
    sent = server.requests
    code, printed = _cli("reparse", str(run_dir), "--task-spec", str(changed_spec))
    assert code == 0 and server.requests == sent
    assert f"{len(gent)} label(s) changed (invalid->ok {len(gent)})" in printed

    after = {r["sample_id"]: r for r in read_records(run_dir / "predictions.jsonl")}
    for record in records:
        new = after[record["sample_id"]]
        if record["sample_id"] in gent:
            assert (new["status"], new["label"], new["extra"]["parse"]) == ("ok", "Male", "text")
        else:
            assert new == record
    metrics = json.loads((run_dir / "metrics.json").read_text())["attributes"]["gender"]["overall"]
    assert old_metrics["n_invalid"] == len(gent) and metrics["n_invalid"] == 0
    males = sum(1 for r in records if r["sample_id"] in gent and r["truth"] == "Male")
    assert metrics["accuracy"] * metrics["n"] == pytest.approx(old_metrics["accuracy"] * old_metrics["n"] + males)
    assert json.loads((run_dir / "run.json").read_text())["reparsed"]["changed"] == len(gent)


def test_reparse_refuses_a_directory_without_a_run(tmp_path):
    code, printed = _cli("reparse", str(tmp_path))
    assert code == 2 and "no run.json" in printed
