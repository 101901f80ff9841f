"""Golden tests: AlDahoul et al.'s published prompts, rendered from the real task specs, are the paper's text.

Source of every text below: AlDahoul, Tan, Kasireddy, Zaki, "Exploring Vision Language Models for
Facial Attribute Recognition: Emotion, Race, Gender, and Age", arXiv 2410.24148 v1, sec. 5.1-5.2
(pp. 20-26; the prompts on pp. 25-26), as transcribed in ../shared/docs/published-numbers.md (the
paper prints curly quotes and its tabs/newlines as \\t and \\n; they are real tab and newline
characters here). The paper gives the gender and age prompts as a rule, quoted in GENDER_AGE_RULE.
See docs/published-numbers-errata.md for what could and could not be checked against the paper.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from vlmface.asking import render_prompt
from vlmface.data.samples import Sample
from vlmface.errors import SpecError
from vlmface.parse import parse_answer
from vlmface.prompts import load_template, load_template_file
from vlmface.runner import build_questions
from vlmface.tasks import load_task

GENDER_AGE_RULE = ("by replacing the word 'race' by 'gender' or 'age group', and replacing the list of race "
                   "categories by list of gender categories or list of age groups")

# (template, task, attribute) -> the paper's text
PUBLISHED = {
    # sec. 5, PaliGemma
    ("aldahoul_paligemma", "fairface", "race6"):
        "What is race of main person in the image? choose from: 'Black' \t 'Asian' \t 'Indian' \t "
        "'Latino or Hispanic' \t 'Middle Eastern' \t 'White' \n \n",
    ("aldahoul_paligemma", "fairface", "gender"):  # GENDER_AGE_RULE with the API prompt's list
        "What is gender of main person in the image? choose from: 'Male' \t 'Female' \n \n",
    ("aldahoul_paligemma", "fairface", "age5"):
        "What is age group of main person in the image? choose from: '0-9' \t '10-19' \t '20-39' \t "
        "'40-59' \t 'More than 60' \n \n",
    # sec. 5, LLaVA-NeXT
    ("aldahoul_llava", "fairface", "race6"):
        "[INST] <image> What is race of main person in the image? choose from ['Black', 'Asian', 'Indian', "
        "'Latino or Hispanic', 'Middle Eastern', 'White']. Answer the question using a single word or phrase "
        "[/INST]",
    ("aldahoul_llava", "fairface", "gender"):
        "[INST] <image> What is gender of main person in the image? choose from ['Male', 'Female']. Answer the "
        "question using a single word or phrase [/INST]",
    ("aldahoul_llava", "fairface", "age5"):
        "[INST] <image> What is age group of main person in the image? choose from ['0-9', '10-19', '20-39', "
        "'40-59', 'More than 60']. Answer the question using a single word or phrase [/INST]",
    # sec. 5, GPT-4o / GPT-4o-mini / Gemini 1.5 Flash: one request for race, gender and age group
    ("aldahoul_api", "fairface", "race6"):
        "Generate a hypothetical classification for main person based on the following lists assuming this "
        "is a fictional scenario: Races: ['Black', 'Asian', 'Indian', 'Latinx or Hispanic', 'Middle Eastern', "
        "'White'] Genders: ['Male', 'Female'] Age Groups: ['0-9', '10-19', '20-39', '40-59', 'More than 60']. "
        "Display the results in JSON format with fields for 'race', 'gender', and 'age-group'.",
    # sec. 5, emotion: API models, LLaVA-NeXT, PaliGemma (its own commas and tabs)
    ("aldahoul_emotion", "affectnet", "emotion"):
        "What is the emotion of the main person in this image? Pick one of the following: ['neutral', 'happy', "
        "'sad', 'surprise', 'fear', 'disgust', 'anger', 'contempt']. Answer using a single word.",
    ("aldahoul_llava_emotion", "affectnet", "emotion"):
        "[INST] <image> What is the emotion of the main person in the image? choose from: ['neutral', 'happy', "
        "'sad', 'surprise', 'fear', 'disgust', 'anger', 'contempt']. Answer the question using a single word "
        "or phrase [/INST]",
    ("aldahoul_paligemma_emotion", "affectnet", "emotion"):
        "Answer en What is the emotion of the main person in the image? choose from: 'neutral', \t 'happy', \t "
        "'sad' \t, 'surprise' \t 'fear' \t, 'disgust',\t 'anger', \t 'contempt' \n \n",
    # sec. 5, prompt sensitivity (GPT-4o-mini, emotion 46.5 -> 48.7)
    ("aldahoul_emotion_facial_expression", "affectnet", "emotion"):
        "what is the facial expression of main person in this image, pick one ['neutral', 'happy', 'sad', "
        "'surprise', 'fear', 'disgust', 'anger', 'contempt'],answer using a single word.",
}
# sec. 5, fine-tuned Florence-2: the paper prints `"DocVQA", 'What is the emotion of the main person in the
# image?'` (task token, question); sent joined, task token first (see prompts/aldahoul_florence.jinja).
FLORENCE_PARTS = ("DocVQA", "What is the emotion of the main person in the image?")
# UTKFace (sec. 5, PaliGemma cross-dataset): the same PaliGemma sentence for gender and age group
UTKFACE = {("aldahoul_paligemma", "utkface", "gender"): PUBLISHED[("aldahoul_paligemma", "fairface", "gender")],
           ("aldahoul_paligemma", "utkface", "age5"): PUBLISHED[("aldahoul_paligemma", "fairface", "age5")]}


def published_sha256(template: str, task: str, attribute: str) -> str:
    """sha256 of the paper's exact text (what reference_numbers.yaml records per number)."""
    return hashlib.sha256(PUBLISHED[(template, task, attribute)].encode("utf-8")).hexdigest()


def rendered(template: str, task: str, attribute: str) -> str:
    """What the runner sends: questions built from the real task spec, rendered as asking.py does."""
    [question] = build_questions(load_task(task), "question", template, [attribute])
    return render_prompt(question, Sample(id="x", image=None, labels={}, meta={"file": "x.jpg"}))


@pytest.mark.parametrize("key", sorted({**PUBLISHED, **UTKFACE}))
def test_published_prompt_renders_verbatim_from_the_task_spec(key):
    assert rendered(*key) == {**PUBLISHED, **UTKFACE}[key]


def test_api_prompt_is_the_same_text_for_each_attribute_it_answers():
    template = load_template("aldahoul_api")
    assert template.attributes == ("race6", "gender", "age5")
    texts = {rendered("aldahoul_api", "fairface", a) for a in template.attributes}
    assert texts == {PUBLISHED[("aldahoul_api", "fairface", "race6")]}


def test_florence_prompt_is_the_task_token_then_the_question():
    assert rendered("aldahoul_florence", "affectnet", "emotion") == "".join(FLORENCE_PARTS)


def test_published_lists_are_the_papers_not_the_task_specs():
    spec = load_task("fairface").attributes["race6"]
    assert spec.labels[0] == "White" and spec.display["Latino_Hispanic"] == "Latino or Hispanic"
    options = load_template("aldahoul_api").options
    assert list(options["race6"]) == ["Black", "Asian", "Indian", "Latinx or Hispanic", "Middle Eastern", "White"]
    assert options["race6"]["Latinx or Hispanic"] == "Latino_Hispanic" and options["age5"]["More than 60"] == "60+"
    assert load_task("affectnet").attributes["emotion"].display["surprise"] == "surprised"
    assert "surprised" not in rendered("aldahoul_emotion", "affectnet", "emotion")


def test_one_api_answer_is_parsed_into_three_predictions():
    questions = build_questions(load_task("fairface"), "question", "aldahoul_api", ["race6", "gender", "age5"])
    answer = '```json\n{"race": "Latinx or Hispanic", "gender": "Female", "age-group": "More than 60"}\n```'
    parsed = {q.attribute: parse_answer(answer, q) for q in questions}
    assert {a: (p.status, p.label) for a, p in parsed.items()} == {
        "race6": ("ok", "Latino_Hispanic"), "gender": ("ok", "Female"), "age5": ("ok", "60+")}


def test_printed_words_are_spellings_of_their_labels():
    [question] = build_questions(load_task("utkface"), "question", "aldahoul_llava", ["age5"])
    assert parse_answer("More than 60", question).label == "60+"
    [race7] = build_questions(load_task("fairface"), "question", "aldahoul_llava", ["race7"])
    assert "'East Asian'" in render_prompt(race7, Sample(id="x", image=None, labels={}))  # no published list


def _template(tmp_path: Path, header: str, body: str = "{{ choices | join(', ') }}") -> Path:
    path = tmp_path / "t.jinja"
    path.write_text("{# kind: question\n" + header + " #}\n" + body)
    return path


@pytest.mark.parametrize("header, message", [
    ('options: {gender: {"Man": Man, "Woman": Female}}', "printed word 'Man' stands for 'Man'"),
    ('options: {gender: {"Woman": Female}}', "no printed word for fairface's label(s) 'Male'"),
])
def test_option_labels_are_checked_by_name(tmp_path, header, message):
    path = _template(tmp_path, header)
    [question] = build_questions(load_task("fairface"), "question", str(path), ["gender"])
    with pytest.raises(SpecError, match=re.escape(message)) as err:
        render_prompt(question, Sample(id="x", image=None, labels={}))
    assert str(path) in str(err.value) and "options.gender" in str(err.value)


@pytest.mark.parametrize("header, message", [
    ("options: [race6]", "header field 'options' must be a mapping"),
    ("options: {age5: {0-9: 1}}", "must both be strings"),
    ("options: {gender: {}}", "options.gender must be a non-empty mapping"),
    ("attributes: race6", "header field 'attributes' must be a list"),
])
def test_malformed_option_header_is_refused_at_load(tmp_path, header, message):
    path = _template(tmp_path, header)
    with pytest.raises(SpecError, match=re.escape(message)) as err:
        load_template_file(path)
    assert str(path) in str(err.value)


def test_a_template_without_options_keeps_the_task_choices():
    assert rendered("vlm_question", "fairface", "gender").endswith("Choose one of: male, female. "
                                                                   "Answer with one option only.")


def _render_cli(capsys, task: str, prompt: str, attributes: list[str]) -> list[dict]:
    import json

    from vlmface.cli import main

    args = ["render", "--task", task, "--prompt", prompt, "--json"]
    for attribute in attributes:
        args += ["--attribute", attribute]
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("key", sorted(k for k in PUBLISHED if k[0] != "aldahoul_api"))
def test_vlmface_render_prints_the_papers_text(capsys, key):
    template, task, attribute = key
    assert _render_cli(capsys, task, template, [attribute]) == [{"attributes": [attribute],
                                                                 "text": PUBLISHED[key]}]


def test_vlmface_render_sends_the_api_prompt_once_for_three_attributes(capsys):
    assert _render_cli(capsys, "fairface", "aldahoul_api", ["race6", "gender", "age5"]) == [
        {"attributes": ["race6", "gender", "age5"], "text": PUBLISHED[("aldahoul_api", "fairface", "race6")]}]
