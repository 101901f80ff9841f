"""Published numbers as data, each with its full setting, and the rule that places one beside a run
only when every field of that setting equals the run's (an unknown field: never placed)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from test_aldahoul_prompts import PUBLISHED, published_sha256
from vlmface.data.samples import Sample
from vlmface.errors import SpecError
from vlmface.registry import load_registry
from vlmface.report.reference import (REFERENCE_FILE, UNKNOWN, load_references, match_references,
                                      placement_reasons, placements)
from vlmface.runner import build_questions, prompt_text_sha256
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
    assert len(refs) == 63


def test_settings_name_real_tasks_attributes_sources_and_models(refs):
    registry = load_registry()
    weights = {entry.weights for entry in registry.values()} | {"gpt-4o", "gpt-4o-mini", "gemini-1.5-flash"}
    for ref in refs[refs["match"]].itertuples():
        task = load_task(ref.task)
        assert ref.attribute in task.attributes, (ref.task, ref.attribute)
        if isinstance(ref.sources, tuple):
            assert set(ref.sources) <= set(task.sources), (ref.task, ref.sources)
        if isinstance(ref.weights, tuple):
            assert set(ref.weights) <= weights, ref.weights
        spec = task.attributes[ref.attribute]
        if ref.metric == "accuracy" and spec.kind != "numeric" and pd.notna(ref.n_labels):
            if ref.task == "affectnet" and ref.n_labels == 7:
                continue  # published 7-class variant: the task declares 8, so it never matches
            assert len(spec.labels) == ref.n_labels, (ref.task, ref.attribute)


def test_prompt_hashes_are_the_papers_exact_texts(refs):
    """Each published prompt's sha256 in the YAML is that of the paper's text (test_aldahoul_prompts.py)."""
    known = {published_sha256(*key) for key in PUBLISHED}
    recorded = {sha for sha in refs["prompt_sha256"] if sha != UNKNOWN}
    assert recorded <= known and len(recorded) == 11
    gpt = refs[(refs["model"] == "GPT-4o") & (refs["task"] == "fairface")].set_index("attribute")["prompt_sha256"]
    assert gpt["race6"] == gpt["gender"] == published_sha256("aldahoul_api", "fairface", "race6")
    assert gpt["race7"] == UNKNOWN  # the 7-word list is not published


@pytest.mark.parametrize("template, task, attribute", [("aldahoul_paligemma", "fairface", "age5"),
                                                       ("aldahoul_api", "fairface", "gender"),
                                                       ("aldahoul_paligemma_emotion", "affectnet", "emotion")])
def test_a_run_records_the_sha256_of_the_text_it_sent(template, task, attribute):
    [question] = build_questions(load_task(task), "question", template, [attribute])
    sample = Sample(id="a", image=None, labels={}, meta={"file": "a.jpg"})
    published = published_sha256(template, task, "race6" if template == "aldahoul_api" else attribute)
    assert prompt_text_sha256(question, "question", sample) == published  # the API text: one for all three


def _row_for(ref: pd.Series, **overrides) -> dict:
    """A leaderboard row with exactly the published setting (unknown fields filled in)."""
    sources, weights = ref["sources"], ref["weights"]
    row = {"run_id": "r", "model": "m", "task": ref["task"], "split": ref["split"],
           "data_source": sources[0] if isinstance(sources, tuple) and sources else "padding025",
           "attribute": ref["attribute"], "n_labels": ref["n_labels"] if pd.notna(ref["n_labels"]) else None,
           "kind": "numeric" if ref["metric"] == "mae" else "categorical",
           "n": ref["n"] if pd.notna(ref["n"]) else 100, "n_total": None,
           "prompt_text_sha256": ref["prompt_sha256"], "answer_mode": ref["mode"],
           "weights": weights[0] if isinstance(weights, tuple) and weights else "org/model",
           "revision": "rev", "answered_only": False, "perturbed": False,
           "accuracy": 0.7, "accuracy_lo": 0.6, "accuracy_hi": 0.8, "mae": 4.0, "mae_lo": 3.0, "mae_hi": 5.0}
    row.update(overrides)
    return row


def _filled(ref: pd.Series) -> pd.Series:
    """The published number with every unknown field made known (what the paper would need to state)."""
    filled = ref.to_dict()
    fills = {"split": "validation", "sources": ("padding025",), "mode": "generate", "non_answers": "counted wrong",
             "prompt_sha256": "e" * 64, "weights": ("org/model",), "n": 100}
    for field, value in fills.items():
        current = filled[field]
        if not isinstance(current, (str, tuple)) and pd.isna(current) or current in (UNKNOWN, "none", ()):
            filled[field] = value
    return pd.Series(filled, dtype=object, name=ref.name)


ONE_FIELD = {  # field -> a run that differs from the published setting in that field only
    "model": lambda ref: {"weights": "other/model"},
    "prompt text": lambda ref: {"prompt_text_sha256": hashlib.sha256(b"another prompt").hexdigest()},
    "mode": lambda ref: {"answer_mode": "choice" if ref["mode"] != "choice" else "generate"},
    "images": lambda ref: {"data_source": "padding125" if "padding125" not in ref["sources"] else "padding025"},
    "split": lambda ref: {"split": "train"},
    "label scheme": lambda ref: {"n_labels": (ref["n_labels"] or 1) + 1, "kind": "categorical"},
    "n": lambda ref: {"n": (ref["n"] or 100) - 1},
    "non-answers": lambda ref: {"answered_only": True, "kind": "categorical"},
}


def _placeable(refs: pd.DataFrame) -> list[pd.Series]:
    return [_filled(ref) for _, ref in refs.iterrows() if ref["match"] and not isinstance(ref["group"], str)
            and ref["metric"] == "accuracy" and ref["mode"] not in ("supervised", "human")]


def test_reference_matching_table(refs):
    """Each published number x runs differing in exactly one field: not placed, with that field as the
    reason; the identical setting: placed."""
    table = []
    for ref in _placeable(refs):
        assert placement_reasons(ref, _row_for(ref)) == [], ref["model"]
        for field, change in ONE_FIELD.items():
            reasons = placement_reasons(ref, _row_for(ref, **change(ref)))
            table.append((ref["ref_id"], field, [f for f, _ in reasons]))
    assert len(table) == len(ONE_FIELD) * len(_placeable(refs)) > 8 * 30
    assert [(ref_id, field) for ref_id, field, got in table if got != [field]] == []


def test_shipped_numbers_whose_setting_is_not_fully_stated_are_never_placed(refs):
    """The real entries: an unknown field means never placed, and the reason says which."""
    paligemma = refs[(refs["task"] == "utkface") & (refs["attribute"] == "gender")
                     & (refs["model"].str.startswith("PaliGemma"))].iloc[0]
    assert paligemma["n"] == 24085 and paligemma["sources"] == "none"
    chips = _row_for(paligemma, data_source="local", split=None, n=400, prompt_text_sha256="e" * 64)
    assert "images: no task source holds the published images" in "; ".join(r for _, r in
                                                                             placement_reasons(paligemma, chips))
    clip = refs[refs["model"].str.startswith("CLIP zero-shot")]
    assert len(clip) == 3 and (clip["weights"] == UNKNOWN).all()
    for _, ref in clip.iterrows():
        fields = [f for f, _ in placement_reasons(ref, _row_for(ref, weights="openai/clip-vit-base-patch32"))]
        assert "model" in fields
    gpt = refs[(refs["model"] == "GPT-4o") & (refs["attribute"] == "race6")].iloc[0]
    fields = dict(placement_reasons(gpt, _row_for(gpt, data_source="padding025")))
    assert set(fields) == {"images", "non-answers"} and "not stated by the source" in fields["images"]
    assert "nan" not in " ".join(fields.values())


def test_match_places_the_number_and_says_what_the_reader_should_know(refs):
    ref = _filled(refs[(refs["model"] == "GPT-4o") & (refs["attribute"] == "race6")].iloc[0])
    board = pd.DataFrame([_row_for(ref), _row_for(ref, run_id="s", n=300)])
    matched = match_references(board, pd.DataFrame([ref]))
    assert matched.loc[0, "ref_value"] == pytest.approx(0.764) and matched.loc[0, "ref_model"] == "GPT-4o"
    assert matched.loc[0, "ref_delta"] == pytest.approx(0.7 - 0.764) and bool(matched.loc[0, "ref_in_ci"])
    assert "model served today under this name may differ" in matched.loc[0, "ref_caveat"]
    assert pd.isna(matched.loc[1, "ref_value"])  # a subsample is another setting


def test_a_perturbed_run_gets_no_published_number(refs):
    ref = _filled(refs.iloc[0])
    matched = match_references(pd.DataFrame([_row_for(ref), _row_for(ref, perturbed=True)]), pd.DataFrame([ref]))
    assert pd.notna(matched.loc[0, "ref_value"]) and pd.isna(matched.loc[1, "ref_value"])


def test_placements_list_every_number_for_every_run(refs):
    ref = _filled(refs[(refs["model"] == "GPT-4o") & (refs["attribute"] == "gender")].iloc[0])
    board = pd.DataFrame([_row_for(ref, run_id="a"), _row_for(ref, run_id="b", answer_mode="choice"),
                          _row_for(ref, run_id="b", attribute="race6", n_labels=6)])
    ref["ref_id"] = "filled"
    table = placements(board, pd.concat([refs, pd.DataFrame([ref])], ignore_index=True))
    assert len(table) == (len(refs) + 1) * 2
    mine = table[table["ref_id"] == "filled"].set_index("run_id")
    assert bool(mine.loc["a", "placed"]) and mine.loc["b", "reason_fields"] == "mode"
    assert not table[table["ref_id"] != "filled"]["placed"].any()  # no shipped number is fully stated
    assert table["reasons"][~table["placed"]].str.len().gt(0).all()


def test_never_matched_tables(refs):
    radford = refs[refs["citation"] == "radford2021"]
    assert not radford[radford["attribute"] == "race"]["match"].any()
    assert radford["group"].notna().all()  # per-group numbers never sit beside an overall score
    ref = radford.iloc[0]
    assert "group" in [f for f, _ in placement_reasons(ref, _row_for(_filled(ref)))]


def _write(tmp_path, data) -> Path:
    path = tmp_path / "refs.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _valid():
    return {"citations": {"c": "a paper"}, "tables": [
        {"citation": "c", "setting": {"task": "fairface", "metric": "accuracy", "unit": "percent"},
         "attributes": {"gender": {"n_labels": 2}},
         "models": [{"model": "M", "aliases": ["m"], "weights": ["org/m"], "values": {"gender": 90.0}}]}]}


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["tables"][0].update(citation="x"), "tables[0].citation"),
    (lambda d: d["tables"][0]["setting"].update(unit="years"), "metric/unit"),
    (lambda d: d["tables"][0]["setting"].update(crop="0.25"), "unknown keys ['crop']"),
    (lambda d: d["tables"][0]["models"][0]["values"].update(age=3.0), "attribute 'age' is not declared"),
    (lambda d: d["tables"][0]["models"][0]["values"].update(gender="high"), "is not a number"),
    (lambda d: d["tables"][0]["models"][0].update(prompt_sha256="abc"), "neither 64 hex digits"),
    (lambda d: d["tables"][0]["models"][0].update(snapshop="x"), "unknown keys ['snapshop']"),
    (lambda d: d["tables"][0]["models"].append(d["tables"][0]["models"][0]), "two numbers in the same setting"),
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


def test_a_real_run_records_its_setting_and_references_csv_says_why_not(tmp_path, monkeypatch, fake_backend,
                                                                        utkface_dir):
    """End to end on real faces: the text the backend received is the paper's, run.json records its
    sha256, and the report's references.csv explains why UTKFace's published numbers stay away."""
    import json

    from vlmface.report import build_report
    from vlmface.runner import EvalConfig, evaluate

    (tmp_path / "meta.jinja").write_text("[{{ meta.file }}] {{ attribute }}: {{ choices | join('/') }}")
    monkeypatch.setenv("VLMFACE_PROMPTS", str(tmp_path))
    out = tmp_path / "results"
    result = evaluate(EvalConfig(task="utkface", model="fake:none", prompt="aldahoul_paligemma",
                                 data_dir=utkface_dir, limit=8, out=out, attributes=["gender", "age5"],
                                 progress=False))
    sent = set(fake_backend.instances[0].prompts)
    assert sent == {PUBLISHED[("aldahoul_paligemma", "fairface", a)] for a in ("gender", "age5")}
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["templates"]["gender"]["text_sha256"] == published_sha256("aldahoul_paligemma", "fairface", "gender")
    assert run["prompt_style"] == "question" and run["split"] is None
    meta_run = evaluate(EvalConfig(task="utkface", model="fake:none", prompt="meta", data_dir=utkface_dir,
                                   limit=4, out=out, attributes=["gender"], progress=False))
    assert json.loads((meta_run.run_dir / "run.json").read_text())["templates"]["gender"]["text_sha256"] is None

    report = build_report(out, plots=False)
    table = pd.read_csv(report.references)
    assert len(table) == len(load_references()) * 2 and not table["placed"].any()
    mine = table[(table["task"] == "utkface") & (table["attribute"] == "gender")
                 & table["ref_model"].str.startswith("PaliGemma") & table["run_id"].str.contains("aldahoul")].iloc[0]
    assert mine["reason_fields"] == "split; images; n; model; prompt text; non-answers"
    assert "images: no task source holds the published images (UTKFace in-the-wild" in mine["reasons"]
    assert "model: published google/paligemma-3b-pt-224, run none" in mine["reasons"]  # the fake's weights
