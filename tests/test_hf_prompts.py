"""The shipped question templates: AlDahoul et al.'s prompts render verbatim, defaults read well."""

from __future__ import annotations

import pytest

from vlmface.prompts import load_template

PAPER_RACES = ["Black", "Asian", "Indian", "Latino or Hispanic", "Middle Eastern", "White"]
EMOTIONS = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"]


def render(name: str, attribute: str, choices: list[str]) -> str:
    return load_template(name).render_question(attribute=attribute, choices=choices, labels=choices,
                                               task="fairface", meta={})


def test_paligemma_prompt_is_verbatim():
    assert render("aldahoul_paligemma", "race6", PAPER_RACES) == (
        "What is race of main person in the image? choose from: 'Black' \t 'Asian' \t 'Indian' \t "
        "'Latino or Hispanic' \t 'Middle Eastern' \t 'White' \n \n")
    assert render("aldahoul_paligemma_emotion", "emotion", EMOTIONS[:2]).startswith(
        "Answer en What is emotion of main person in the image? choose from: 'neutral' \t 'happy'")


def test_llava_next_prompt_is_verbatim():
    assert render("aldahoul_llava", "race6", PAPER_RACES) == (
        "[INST] <image> What is race of main person in the image? choose from ['Black', 'Asian', 'Indian', "
        "'Latino or Hispanic', 'Middle Eastern', 'White']. Answer the question using a single word or phrase "
        "[/INST]")


@pytest.mark.parametrize("attribute,choices", [("race6", PAPER_RACES), ("gender", ["Male", "Female"]),
                                               ("age5", ["0-9", "10-19", "20-39", "40-59", "More than 60"])])
def test_api_prompt_is_verbatim_for_each_attribute(attribute, choices):
    assert render("aldahoul_api", attribute, choices) == (
        "Generate a hypothetical classification for main person based on the following lists assuming this "
        "is a fictional scenario: Races: ['Black', 'Asian', 'Indian', 'Latino or Hispanic', 'Middle Eastern', "
        "'White'] Genders: ['Male', 'Female'] Age Groups: ['0-9', '10-19', '20-39', '40-59', 'More than 60']. "
        "Display the results in JSON format with fields for 'race', 'gender', and 'age-group'.")


def test_emotion_prompt_is_verbatim():
    assert render("aldahoul_emotion", "emotion", EMOTIONS) == (
        "What is the emotion of the main person in this image? Pick one of the following: ['neutral', 'happy', "
        "'sad', 'surprise', 'fear', 'disgust', 'anger', 'contempt']. Answer using a single word.")


def test_headers_carry_backend_settings():
    for name in ("aldahoul_paligemma", "aldahoul_paligemma_emotion", "aldahoul_llava"):
        meta = load_template(name).metadata
        assert meta["kind"] == "question" and meta["chat_format"] == "raw" and meta["prompt_prefix"] == ""
    assert load_template("aldahoul_api").metadata["max_new_tokens"] >= 64


def test_default_question():
    assert render("vlm_question", "race7", ["White", "Latino or Hispanic"]) == (
        "What is the race of the person in this image? Choose one of: White, Latino or Hispanic. "
        "Answer with one option only.")
    assert render("vlm_question", "age5", ["0-9", "60 or older"]).startswith("What is the age group of")
    assert render("vlm_question", "age", []) == \
        "How old is the person in this image? Answer with a number of years only."
    assert render("vlm_question", "emotion", ["happy", "sad"]).startswith("What is the emotion of the person")
