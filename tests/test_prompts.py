"""Prompt templates: sandboxed, strict, found by name, one file = one new prompt."""

from __future__ import annotations

import pytest

from vlmface.errors import SpecError
from vlmface.prompts import available_templates, load_template


def test_new_template_file_is_usable_by_name(tmp_path, monkeypatch):
    (tmp_path / "my_probe.jinja").write_text("Is this person {{ choices | join(' or ') }}?")
    monkeypatch.setenv("VLMFACE_PROMPTS", str(tmp_path))
    assert "my_probe" in available_templates()
    text = load_template("my_probe").render_question(
        attribute="gender", choices=["male", "female"], labels=["Male", "Female"], task="t", meta={})
    assert text == "Is this person male or female?"


def test_undefined_variable_names_the_file(tmp_path):
    path = tmp_path / "bad.jinja"
    path.write_text("What is the {{ atribute }}?")
    with pytest.raises(SpecError) as err:
        load_template(str(path)).render_question(attribute="gender", choices=[], labels=[], task="t", meta={})
    assert str(path) in str(err.value) and "atribute" in str(err.value)


def test_sandbox_blocks_attribute_escapes(tmp_path):
    path = tmp_path / "evil.jinja"
    path.write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(SpecError, match="sandbox|undefined"):
        load_template(str(path)).render_question(attribute="a", choices=[], labels=[], task="t", meta={})


def test_class_texts_header_gives_one_template_per_line(tmp_path):
    path = tmp_path / "cls.jinja"
    path.write_text("{# kind: class_texts\ndescription: two templates #}\n"
                    "a photo of a {{ label }} person.\n\n  a {{ label }} face.\n")
    template = load_template(str(path))
    assert template.kind == "class_texts" and template.description == "two templates"
    assert template.render_class_texts(label="Latino or Hispanic", raw_label="Latino_Hispanic",
                                       attribute="race7", task="fairface") == [
        "a photo of a Latino or Hispanic person.", "a Latino or Hispanic face."]
    with pytest.raises(SpecError, match="cannot be used as a question"):
        template.render_question(attribute="a", choices=[], labels=[], task="t", meta={})


def test_syntax_error_and_unknown_kind_are_reported(tmp_path):
    (tmp_path / "broken.jinja").write_text("{% if %}")
    with pytest.raises(SpecError, match="broken.jinja:1: template syntax error"):
        load_template(str(tmp_path / "broken.jinja"))
    (tmp_path / "kind.jinja").write_text("{# kind: poem #}\nhello")
    with pytest.raises(SpecError, match="'kind' is 'poem'"):
        load_template(str(tmp_path / "kind.jinja"))


def test_template_hash_changes_with_content(tmp_path):
    path = tmp_path / "p.jinja"
    path.write_text("A")
    first = load_template(str(path)).sha256
    path.write_text("B")
    assert load_template(str(path)).sha256 != first
