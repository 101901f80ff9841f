"""docs/extending.md's examples run as written: a dataset, a prompt, a vocabulary and a backend."""

from __future__ import annotations

import re
import sys

import pytest

from vlmface.predictions import read_records
from vlmface.render import render_requests
from vlmface.runner import EvalConfig, evaluate

from conftest import REPO_ROOT

GUIDE = REPO_ROOT / "docs" / "extending.md"


@pytest.fixture
def examples(tmp_path, monkeypatch):
    """Every `file=PATH` block of the guide written under tmp_path, and found from there."""
    blocks = re.findall(r"```\w+ file=(\S+)\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)
    assert {path for path, _ in blocks} >= {"tasks/utk_gender_age.yaml", "prompts/short_question.jinja",
                                             "vocabularies/faces_plus.yaml", "my_backends.py"}
    for path, text in blocks:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text, encoding="utf-8")
    for env, folder in (("VLMFACE_TASKS", "tasks"), ("VLMFACE_PROMPTS", "prompts"),
                        ("VLMFACE_VOCABULARIES", "vocabularies")):
        monkeypatch.setenv(env, str(tmp_path / folder))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_the_dataset_example_runs_with_the_baseline(examples, utkface_dir):
    result = evaluate(EvalConfig(task="utk_gender_age", model="baseline", data_dir=utkface_dir, limit=12,
                                 out=examples / "out", progress=False))
    records = read_records(result.run_dir / "predictions.jsonl")
    assert {r["attribute"] for r in records} == {"gender", "age", "age3"}
    assert {r["truth"] for r in records if r["attribute"] == "age3"} <= {"child", "adult", "senior"}
    assert result.metrics["attributes"]["gender"]["overall"]["n"] > 0


def test_the_prompt_and_backend_examples_answer_through_the_interpretation_step(examples, utkface_dir,
                                                                               monkeypatch):
    from vlmface import registry

    assert render_requests("utk_gender_age", "short_question", ["gender"]) == \
        [{"attributes": ["gender"], "text": "gender? One of: male, female."}]
    monkeypatch.setitem(registry.BACKEND_FAMILIES, "echo", ("my_backends:EchoBackend", "dev"))
    result = evaluate(EvalConfig(task="utk_gender_age", model="echo:toy", data_dir=utkface_dir, limit=6,
                                 out=examples / "out", progress=False, score=False))
    records = read_records(result.run_dir / "predictions.jsonl")
    by_attribute = {r["attribute"]: r for r in records}
    assert (by_attribute["gender"]["raw"], by_attribute["gender"]["label"]) == ("male", "Male")
    # "about 30" for age; the first printed option for age3
    assert (by_attribute["age"]["label"], by_attribute["age3"]["label"]) == (30.0, "child")
    sys.modules.pop("my_backends", None)


def test_the_vocabulary_example_is_a_vocabulary_a_spec_can_name(examples):
    from vlmface.backends.base import Answer
    from vlmface.interpret import interpret
    from vlmface.runner import build_questions
    from vlmface.tasks import load_task

    spec = (examples / "tasks" / "utk_gender_age.yaml").read_text().replace("vocabulary: faces",
                                                                             "vocabulary: faces_plus")
    (examples / "tasks" / "utk_gender_age.yaml").write_text(spec)
    [gender] = build_questions(load_task("utk_gender_age"), "none", None, ["gender"])
    assert interpret(Answer(label=None, raw="A gent."), gender).label == "Male"
