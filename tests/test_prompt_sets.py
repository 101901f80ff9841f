"""Prompt sets (issue 19): variants as data, `vlmface eval --prompt-set` (one resumable run per
variant, the default shared with the plain run) and the prompt-sensitivity analysis, with a planted
effect of the option order on one group recovered within its CIs; option orders rendered through
`vlmface render`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fake_backends import ORDER_PLANTED
from vlmface.backends.base import Answer
from vlmface.cli import main
from vlmface.errors import SpecError, VlmfaceError
from vlmface.interpret import interpret
from vlmface.prompt_sets.analysis import _Attribute, _group_tables, prompt_sensitivity
from vlmface.perturb.paired import pair_attribute
from vlmface.prompt_sets.spec import load_prompt_set, prompt_set, variants_of
from vlmface.runner import EvalConfig, build_questions, evaluate, evaluate_prompt_variants
from vlmface.scoring.attributes import ScoredAttribute
from vlmface.scoring.load import AttributeData
from vlmface.scoring.settings import ScoreSettings
from vlmface.tasks import load_task


def _first_is_yes(task, variant) -> bool:
    from vlmface.render import printed_labels, _stand_in

    [question] = [variant.apply(q) for q in build_questions(task, "question", None, ["answer"])]
    return printed_labels(question, _stand_in())[0] == "yes"


def test_planted_option_order_effect_is_recovered_within_its_cis(order_task, tmp_path):
    spec, manifest = order_task
    task = load_task(spec)
    variants = variants_of(load_prompt_set("orders", task), task)
    assert [v.name for v in variants] == ["default", "upper", "perm1", "perm2", "perm3", "perm4", "perm5"]
    config = EvalConfig(task=spec, model="order:none", data_dir=manifest, out=tmp_path / "out", score=False,
                        progress=False)
    runs = evaluate_prompt_variants(config, variants)
    plain = evaluate(config)  # the default variant IS the plain run: nothing left to ask
    assert plain.run_dir == runs[0].run_dir and plain.counts == {}
    assert runs[2].run_dir.name == "default__ps-orders-perm1"
    manifest_json = json.loads((runs[2].run_dir / "run.json").read_text())
    assert manifest_json["prompt_variant"]["order"] == "all"
    assert len(manifest_json["templates"]["answer"]["text_sha256"]) == 64

    [result] = prompt_sensitivity([tmp_path / "out"], n_boot=500, plots=True)
    table = result.tables["variants"]
    truth = {v.name: _first_is_yes(task, v) for v in variants}
    assert sum(truth.values()) == 3  # default and upper (no reordering), plus one of the 5 other orders
    for row in table[table["group_column"] == "group"].itertuples():
        planted = ORDER_PLANTED[row.group][truth[row.variant]]
        assert row.accuracy == pytest.approx(planted) and row.accuracy_ci_lo <= planted <= row.accuracy_ci_hi
        difference = planted - ORDER_PLANTED[row.group][True]
        assert row.difference == pytest.approx(difference, abs=1e-12)
        assert row.difference_ci_lo - 1e-12 <= difference <= row.difference_ci_hi + 1e-12
        assert row.invalid_rate == 0 and row.refused_rate == 0
    inter = result.tables["interactions"]
    for row in inter.itertuples():  # A minus B: B's loss is A's relative gain
        planted = 0.0 if truth[row.variant] else 0.3
        assert row.interaction == pytest.approx(planted, abs=1e-12)
        assert row.interaction_ci_lo - 1e-12 <= planted <= row.interaction_ci_hi + 1e-12
        assert row.ci_excludes_zero == (planted != 0)
    spread = result.tables["spread"].set_index(["group_column", "group"])
    assert spread.loc[("group", "B"), "accuracy_range"] == pytest.approx(0.3)
    assert spread.loc[("group", "A"), "accuracy_range"] == pytest.approx(0.0)
    assert spread.loc[("group", "B"), "worst_share"] == pytest.approx(4 / 7)  # ties go to A (first)
    gaps = result.tables["gaps"]
    assert set(gaps["variant"]) == set(truth)
    flips = result.tables["flips"]
    assert ((flips["group"] == "A") & (flips["flip_rate"] > 0)).sum() == 0
    out = tmp_path / "out" / "order" / "order_none" / "default" / "prompt_sensitivity"
    for name in ("variants", "spread", "gaps", "interactions", "flips"):
        assert (out / f"{name}.csv").exists() and (out / f"{name}.md").exists()
    assert (out / "plots" / "answer__accuracy.png").exists() and (out / "plots" / "answer__gaps.png").exists()


def test_prompt_sensitivity_command_rebuilds_from_predictions_alone(order_task, tmp_path, capsys, monkeypatch):
    spec, manifest = order_task
    code = main(["eval", "--task", str(spec), "--model", "order:none", "--data-dir", str(manifest),
                 "--out", str(tmp_path / "out"), "--prompt-set", "orders", "--prompt-variants", "perm1,perm2",
                 "--no-progress"])
    assert code == 0
    first = capsys.readouterr().out
    assert "prompt sensitivity of" in first
    default = next((tmp_path / "out").glob("order/*/default"))
    written = (default / "prompt_sensitivity" / "variants.csv").read_text()
    (default / "prompt_sensitivity" / "variants.csv").unlink()
    assert main(["prompt-sensitivity", str(tmp_path / "out"), "--no-plots"]) == 0
    assert (default / "prompt_sensitivity" / "variants.csv").read_text() == written
    with pytest.raises(Exception, match="no default run"):
        prompt_sensitivity([default.parent / "default__ps-orders-perm1"])

    from vlmface.report import build_report

    report = build_report(tmp_path / "out")
    page = report.html.read_text()
    assert "<h2>Prompt sensitivity</h2>" in page and "vs default, pp [CI]" in page
    stems = {p.name for p in report.plots}
    assert any(n.startswith("prompt_sensitivity__") and n.endswith("__answer__accuracy.png") for n in stems)
    assert any(n.endswith("__answer__gaps.png") for n in stems)

    (tmp_path / "sets").mkdir()  # a second set on the same default run: its analysis needs its own --out
    (tmp_path / "sets" / "low.yaml").write_text("variants: {low: {casing: lower}}\n")
    monkeypatch.setenv("VLMFACE_PROMPT_SETS", str(tmp_path / "sets"))
    assert main(["eval", "--task", str(spec), "--model", "order:none", "--data-dir", str(manifest),
                 "--out", str(tmp_path / "out"), "--prompt-set", "low", "--no-progress", "--no-score"]) == 0
    with pytest.raises(VlmfaceError, match="default run of several prompt sets"):
        prompt_sensitivity([tmp_path / "out"])
    assert main(["prompt-sensitivity", str(default), str(default.parent / "default__ps-low-low"),
                 "--out", str(tmp_path / "low"), "--no-plots"]) == 0


def _synthetic(rng, spec, n: int) -> _Attribute:
    """Default and one variant, nested outcomes: group X 0.80 -> 0.75, Y 0.80 -> 0.55."""
    groups = np.repeat(["X", "Y"], n)
    u = rng.random(groups.size)
    ids = np.arange(groups.size).astype(str)
    data = []
    for accuracy in ({"X": 0.80, "Y": 0.80}, {"X": 0.75, "Y": 0.55}):
        right = u < np.array([accuracy[g] for g in groups])
        data.append(AttributeData(spec=spec, labels=("yes", "no"), sample_id=ids, status=np.zeros(groups.size, np.int8),
                                  truth=np.zeros(groups.size, np.int64), pred=np.where(right, 0, 1),
                                  groups={"g": pd.Categorical(groups)}))
    return _Attribute(pair_attribute(data[0], [(1.0, data[1])], 0.0, "s", "prompt"), ["default", "v"], data)


def test_prompt_sensitivity_cis_cover_planted_effects_at_about_the_nominal_rate():
    spec = ScoredAttribute("answer", "categorical", ("yes", "no"))
    rng, settings = np.random.default_rng(3), ScoreSettings(n_boot=300)
    hits = {"difference": 0, "gap": 0, "interaction": 0}
    replications = 120
    for _ in range(replications):
        tables = _group_tables(_synthetic(rng, spec, 150), settings)
        y = next(r for r in tables["variants"] if r["group"] == "Y" and r["variant"] == "v")
        hits["difference"] += y["difference_ci_lo"] <= -0.25 <= y["difference_ci_hi"]
        gap = next(r for r in tables["gaps"] if r["variant"] == "v")
        hits["gap"] += gap["gap_ci_lo"] <= 0.20 <= gap["gap_ci_hi"]
        [pair] = tables["interactions"]
        hits["interaction"] += pair["interaction_ci_lo"] <= 0.20 <= pair["interaction_ci_hi"]
    for key, hit in hits.items():
        assert 0.88 <= hit / replications <= 0.995, (key, hit)


def test_option_orders_render_every_label_once_and_map_back_by_name(capsys):
    assert main(["render", "--task", "utkface", "--prompt-set", "option-order", "--attribute", "race5",
                 "--json"]) == 0
    requests = json.loads(capsys.readouterr().out)
    assert [r["variant"] for r in requests] == ["default", "perm1", "perm2", "perm3"]
    task = load_task("utkface")
    [question] = build_questions(task, "question", None, ["race5"])
    orders = set()
    for request in requests:
        labels = request["labels"]["race5"]
        assert sorted(labels) == sorted(task.attributes["race5"].labels)  # every label exactly once
        printed = [question.display_name(label) for label in labels]
        assert "Choose one of: " + ", ".join(printed) + "." in request["text"]
        for word, label in zip(printed, labels):  # each printed word is read back as its own label
            assert interpret(Answer(label=None, raw=word), question).label == label
        orders.add(tuple(labels))
    assert len(orders) == 4 and requests[0]["labels"]["race5"] == list(task.attributes["race5"].labels)


def test_affectnet_ships_the_papers_emotion_vs_facial_expression_pair(capsys):
    # AlDahoul et al. 2024 (arXiv 2410.24148, sec. 5); exact words as in prompts/aldahoul_emotion*.jinja
    assert main(["render", "--task", "affectnet", "--prompt-set", "emotion-wording", "--json"]) == 0
    texts = {r["variant"]: r["text"] for r in json.loads(capsys.readouterr().out)}
    assert texts["default"].startswith("What is the emotion of the main person in this image? Pick one of")
    assert texts["facial_expression"].startswith("what is the facial expression of main person in this image, "
                                                 "pick one ['neutral', 'happy'")


def test_casing_display_and_per_image_variants(tmp_path):
    task = load_task("utkface")
    spec = prompt_set({"per_image_order": True, "variants": {
        "low": {"casing": "lower"}, "words": {"display": {"gender": {"Male": "man", "Female": "woman"}}}}},
        "mine", "inline")
    variants = {v.name: v for v in variants_of(spec, task)}
    [question] = build_questions(task, "question", None, ["gender"])
    from vlmface.asking import render_prompt
    from vlmface.data import Sample

    def text(name, sample_id="s"):
        return render_prompt(variants[name].apply(question), Sample(id=sample_id, image=None, labels={}, meta={}))

    assert "Choose one of: male, female." in text("low")
    assert "Choose one of: man, woman." in text("words")
    low = variants["low"].apply(question)
    assert interpret(Answer(label=None, raw="woman"), variants["words"].apply(question)).label == "Female"
    assert interpret(Answer(label=None, raw="female"), low).label == "Female"
    per_image = {text("per_image", f"img{i}") for i in range(20)}
    assert per_image == {"What is the gender of the person in this image? Choose one of: male, female. "
                         "Answer with one option only.",
                         "What is the gender of the person in this image? Choose one of: female, male. "
                         "Answer with one option only."}
    with pytest.raises(SpecError, match="display.gender.*'Man'"):
        variants_of(prompt_set({"variants": {"w": {"display": {"gender": {"Man": "x"}}}}}, "bad", "inline"), task)
    with pytest.raises(SpecError, match="(?s)inline: invalid prompt set.*variants.w.casing"):
        prompt_set({"variants": {"w": {"casing": "shout"}}}, "bad", "inline")
    with pytest.raises(SpecError, match="'default'"):
        prompt_set({"variants": {"default": {}}}, "bad", "inline")


def test_validate_reports_a_task_prompt_set_naming_an_unknown_template(tmp_path, capsys):
    from conftest import REPO_ROOT
    from vlmface.validation import _validate_task

    source = (REPO_ROOT / "tasks" / "affectnet.yaml").read_text()
    broken = tmp_path / "affectnet.yaml"
    broken.write_text(source.replace("{template: aldahoul_emotion_facial_expression}", "{template: nope}"))
    [problem] = _validate_task(str(broken))
    assert "prompt_sets.emotion-wording" in problem and "unknown prompt template 'nope'" in problem
    assert main(["list", "prompt-sets"]) == 0
    listed = capsys.readouterr().out
    assert "option-order" in listed and "emotion-wording" in listed


def test_reparse_reads_a_display_variants_words(order_task, tmp_path):
    from vlmface.predictions import read_records
    from vlmface.reparse import _questions
    from vlmface.run_record import read_run

    spec, manifest = order_task
    task = load_task(spec)
    words = prompt_set({"variants": {"words": {"display": {"answer": {"yes": "affirmative"}}}}}, "w", "inline")
    config = EvalConfig(task=spec, model="order:none", data_dir=manifest, out=tmp_path / "out", score=False,
                        progress=False, limit=4)
    runs = evaluate_prompt_variants(config, variants_of(words, task))
    question = _questions(task, read_run(runs[1].run_dir), {"answer"})["answer"]
    assert question.choices[0] == "affirmative"
    assert interpret(Answer(label=None, raw="affirmative"), question).label == "yes"
    assert len(read_records(runs[1].run_dir / "predictions.jsonl")) == 4
