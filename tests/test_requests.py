"""Several attributes in one request (a template header `attributes: [...]`), and `vlmface render`
showing exactly what is sent, built by the runner's own request code (vlmface.asking)."""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter

import pytest

from vlmface.cli import main
from vlmface.predictions import read_records
from vlmface.render import render_requests
from vlmface.runner import EvalConfig, evaluate

from chat_server import ChatServer

KEY_ENV = "VLMFACE_REQUESTS_TEST_KEY"
# AlDahoul et al. (arXiv 2410.24148) sec. 5, the GPT-4o / Gemini JSON prompt (see test_aldahoul_prompts.py)
ALDAHOUL_API = ("Generate a hypothetical classification for main person based on the following lists assuming "
                "this is a fictional scenario: Races: ['Black', 'Asian', 'Indian', 'Latinx or Hispanic', "
                "'Middle Eastern', 'White'] Genders: ['Male', 'Female'] Age Groups: ['0-9', '10-19', '20-39', "
                "'40-59', 'More than 60']. Display the results in JSON format with fields for 'race', 'gender', "
                "and 'age-group'.")
# FairFace's race6 / gender / age5 on UTKFace face chips (race "Others" left out: it is no race6 label)
FACES3 = """
name: faces3
sources:
  local:
    kind: filename_regex
    glob: "**/*.jpg"
    pattern: '(?P<age>\\d+)_(?P<gender>\\d)_(?P<race6>\\d)_(?P<timestamp>\\d+)\\.jpg(\\.chip\\.jpg)?'
    values:
      gender: {"0": Male, "1": Female}
      race6: {"0": White, "1": Black, "2": Asian, "3": Indian}
attributes:
  race6:
    labels: [White, Black, Latino_Hispanic, Asian, Indian, Middle Eastern]
    display: {Latino_Hispanic: Latino or Hispanic}
  gender:
    labels: [Male, Female]
  age: {kind: numeric}
  age5:
    kind: ordinal
    labels: ["0-9", "10-19", "20-39", "40-59", "60+"]
    bins: {"0-9": [0, 10], "10-19": [10, 20], "20-39": [20, 40], "40-59": [40, 60], "60+": [60, null]}
    derive: {from: age}
vocabulary: faces
group_columns: [race6, gender]
evaluate: [race6, gender, age5]
"""


def test_aldahoul_api_is_one_request_for_three_fairface_attributes():
    requests = render_requests("fairface", "aldahoul_api", ["race6", "gender", "age5"])
    assert requests == [{"attributes": ["race6", "gender", "age5"], "text": ALDAHOUL_API}]
    single = render_requests("fairface", "vlm_question", ["race6", "gender"])
    assert [r["attributes"] for r in single] == [["race6"], ["gender"]]


def test_render_cli_prints_the_json_list_and_the_chat_messages():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["render", "--task", "fairface", "--prompt", "aldahoul_api", "--attribute", "race6",
                     "--attribute", "gender", "--attribute", "age5", "--json"]) == 0
    assert json.loads(out.getvalue()) == [{"attributes": ["race6", "gender", "age5"], "text": ALDAHOUL_API}]
    [request] = render_requests("fairface", "aldahoul_api", ["gender"], model="gpt-4o",
                                options={"system_prompt": "You are a careful annotator."})
    system, user = request["messages"]
    assert system == {"role": "system", "content": "You are a careful annotator."}
    assert user["content"][1] == {"type": "text", "text": ALDAHOUL_API}


def test_one_json_answer_per_image_becomes_three_predictions(utkface_dir, tmp_path):
    spec = tmp_path / "faces3.yaml"
    spec.write_text(FACES3, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp, ChatServer() as server:
        mp.setenv(KEY_ENV, "sk-test-requests")
        result = evaluate(EvalConfig(task=spec, model="api:test-model", data_dir=utkface_dir, limit=24,
                                     prompt="aldahoul_api", out=tmp_path / "out", progress=False,
                                     options={"base_url": server.url, "api_key_env": KEY_ENV}))
    records = read_records(result.run_dir / "predictions.jsonl")
    samples = {r["sample_id"] for r in records}
    assert len(samples) == 24 and server.requests == 24  # one request per image
    assert Counter(r["attribute"] for r in records) == {"race6": 24, "gender": 24, "age5": 24}
    by_sample: dict[str, dict[str, dict]] = {}
    for r in records:
        by_sample.setdefault(r["sample_id"], {})[r["attribute"]] = r
    printed = {"Latinx or Hispanic": "Latino_Hispanic", "More than 60": "60+"}
    for answers in by_sample.values():
        assert len({a["raw"] for a in answers.values()}) == 1  # the three share one answer
        fields = json.loads(answers["gender"]["raw"].strip("`").removeprefix("json"))
        for attribute, key in (("race6", "race"), ("gender", "gender"), ("age5", "age-group")):
            assert answers[attribute]["status"] == "ok"
            assert answers[attribute]["label"] == printed.get(fields[key], fields[key])
            assert answers[attribute]["extra"]["parse"].startswith("json")  # "json number 49.5" for 40-59
