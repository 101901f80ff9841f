"""Published numbers as data, and the rule that shows one beside a run only for the same setting."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vlmface.errors import SpecError
from vlmface.registry import load_registry
from vlmface.report.reference import REFERENCE_FILE, load_references, match_references
from vlmface.tasks import load_task

PUBLISHED_DOC = Path(__file__).resolve().parents[2] / "shared" / "docs" / "published-numbers.md"


@pytest.fixture(scope="module")
def refs():
    return load_references()


def test_every_number_is_in_the_published_document(refs):
    if not PUBLISHED_DOC.exists():
        pytest.skip(f"{PUBLISHED_DOC} not on this machine")
    text = PUBLISHED_DOC.read_text()
    numbers = {float(x) for x in re.findall(r"\d+\.\d+", text)} | {65.0}  # "human accuracy ~65 %"
    assert {v for v in refs["value"] if v not in numbers} == set()
    assert len(refs) == 62


def test_settings_name_real_tasks_attributes_and_aliases(refs):
    registry = set(load_registry())
    api_aliases = {"gpt-4o", "gpt-4o-mini", "gemini-1.5-flash"}  # API models, registered by their backend
    for ref in refs[refs["match"]].itertuples():
        task = load_task(ref.task)
        assert ref.attribute in task.attributes, (ref.task, ref.attribute)
        spec = task.attributes[ref.attribute]
        if ref.metric == "accuracy" and spec.kind != "numeric" and pd.notna(ref.n_labels):
            if ref.task == "affectnet" and ref.n_labels == 7:
                continue  # published 7-class variant: the task declares 8, so it never matches
            assert len(spec.labels) == ref.n_labels, (ref.task, ref.attribute)
        assert set(ref.aliases) <= registry | api_aliases, ref.aliases


def _row(**overrides):
    row = {"task": "fairface", "attribute": "race6", "kind": "categorical", "model": "gpt-4o",
           "data_source": "padding025", "n_labels": 6, "n": 10954, "limit": None, "prompt": "aldahoul_api",
           "accuracy": 0.75, "accuracy_lo": 0.74, "accuracy_hi": 0.77, "mae": None, "mae_lo": None, "mae_hi": None}
    row.update(overrides)
    return row


def _match(refs, **overrides):
    return match_references(pd.DataFrame([_row(**overrides)]), refs).iloc[0]


def test_match_same_setting(refs):
    hit = _match(refs)
    assert hit["ref_value"] == pytest.approx(0.764) and hit["ref_model"] == "GPT-4o"
    assert bool(hit["ref_in_ci"]) and hit["ref_delta"] == pytest.approx(0.75 - 0.764)
    assert "subsample" not in hit["ref_caveat"] and "n " not in hit["ref_caveat"].split(";")[0]


@pytest.mark.parametrize("overrides", [
    {"n_labels": 7},  # a different label scheme under the same attribute name
    {"attribute": "race5", "n_labels": 5},
    {"task": "utkface"},
    {"model": "gpt-4o-2024-08-06"},  # not a listed alias
    {"kind": "numeric", "mae": 4.0},  # metric differs
])
def test_no_match_when_the_setting_differs(refs, overrides):
    assert pd.isna(_match(refs, **overrides)["ref_value"])


def test_caveats_for_subsample_and_prompt(refs):
    hit = _match(refs, n=300, limit=300, prompt="vlm_question", accuracy=0.5, accuracy_lo=0.45, accuracy_hi=0.55)
    assert hit["ref_in_ci"] is not None and not bool(hit["ref_in_ci"])
    caveat = hit["ref_caveat"]
    assert "subsample (--limit 300)" in caveat and "n 300 vs published 10,954" in caveat
    assert "prompt differs (published: aldahoul_api)" in caveat


def test_assumed_clip_variant_is_said(refs):
    hit = _match(refs, model="clip-vit-b-32", attribute="gender", n_labels=2, prompt="clip_photo")
    assert hit["ref_value"] == pytest.approx(0.94) and "assumption" in hit["ref_caveat"]


def test_never_matched_tables(refs):
    radford = refs[refs["citation"] == "radford2021"]
    assert not radford[radford["attribute"] == "race_binary"]["match"].any()
    assert radford["group"].notna().all()  # per-group numbers never sit beside an overall score


def _write(tmp_path, data) -> Path:
    path = tmp_path / "refs.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _valid():
    return {"citations": {"c": "a paper"}, "tables": [
        {"citation": "c", "setting": {"task": "fairface", "metric": "accuracy", "unit": "percent"},
         "attributes": {"gender": {"n_labels": 2}},
         "models": [{"model": "M", "aliases": ["m"], "values": {"gender": 90.0}}]}]}


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["tables"][0].update(citation="x"), "tables[0].citation"),
    (lambda d: d["tables"][0]["setting"].update(unit="years"), "metric/unit"),
    (lambda d: d["tables"][0]["models"][0]["values"].update(age=3.0), "attribute 'age' is not declared"),
    (lambda d: d["tables"][0]["models"][0]["values"].update(gender="high"), "is not a number"),
    (lambda d: d["tables"][0]["models"].append(d["tables"][0]["models"][0]), "matched by two numbers"),
    (lambda d: d["tables"][0]["models"][0].pop("aliases"), "aliases"),
])
def test_invalid_reference_file_names_file_and_field(tmp_path, mutate, message):
    data = _valid()
    mutate(data)
    with pytest.raises(SpecError, match=re.escape(message)) as err:
        load_references(_write(tmp_path, data))
    assert str(tmp_path / "refs.yaml") in str(err.value)


def test_shipped_file_is_the_default():
    assert REFERENCE_FILE.name == "reference_numbers.yaml" and REFERENCE_FILE.exists()


def test_a_perturbed_run_gets_no_published_number():
    import pandas as pd

    from vlmface.report.reference import load_references, match_references

    row = {"task": "fairface", "attribute": "race6", "kind": "categorical", "model": "gpt-4o", "n_labels": 6,
           "data_source": "padding025", "n": 10954, "limit": None, "prompt": "aldahoul_api",
           "accuracy": 0.76, "accuracy_lo": 0.75, "accuracy_hi": 0.77}
    board = pd.DataFrame([{**row, "perturbed": False}, {**row, "perturbed": True}])
    matched = match_references(board, load_references())
    published = [c for c in matched.columns if c not in board.columns][0]
    assert pd.notna(matched.loc[0, published]) and pd.isna(matched.loc[1, published])
