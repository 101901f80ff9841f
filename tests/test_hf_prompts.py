"""The shipped question templates: backend settings in headers, defaults read well."""

from __future__ import annotations

from vlmface.prompts import load_template


def render(name: str, attribute: str, choices: list[str]) -> str:
    return load_template(name).render_question(attribute=attribute, choices=choices, labels=choices,
                                               task="fairface", meta={})


# AlDahoul et al.'s prompts: golden tests from the real task specs in tests/test_aldahoul_prompts.py


def test_headers_carry_backend_settings():
    for name in ("aldahoul_paligemma", "aldahoul_paligemma_emotion", "aldahoul_llava", "aldahoul_llava_emotion",
                 "aldahoul_florence"):
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
