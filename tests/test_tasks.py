"""Task specs: shipped specs validate; mistakes fail with the file, the field and the fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from vlmface.errors import SpecError
from vlmface.tasks import available_tasks, load_task
from vlmface.validation import validate_all

UTK_LIKE = """
name: mini
sources:
  local:
    kind: filename_regex
    pattern: '(?P<age>\\d+)_(?P<gender>\\d)_(?P<race5>\\d)_(?P<ts>\\d+)\\.jpg\\.chip\\.jpg'
    values:
      gender: {"0": Male, "1": Female}
attributes:
  gender: {labels: [Male, Female]}
  race5: {labels: [White, Black, Asian, Indian, Others]}
  age: {kind: numeric}
  age5:
    kind: ordinal
    labels: ["0-9", "10-19", "20-39", "40-59", "60+"]
    bins: {"0-9": [0, 10], "10-19": [10, 20], "20-39": [20, 40], "40-59": [40, 60], "60+": [60, null]}
    derive: {from: age}
group_columns: [race5]
"""


def write_spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mini.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_specs_templates_and_registry_are_valid():
    assert {"fairface", "utkface", "fer2013", "affectnet"} <= set(available_tasks())
    assert validate_all() == []


def test_fairface_declares_the_published_label_schemes():
    task = load_task("fairface")
    assert task.attributes["race7"].labels == ["White", "Black", "Latino_Hispanic", "East Asian",
                                               "Southeast Asian", "Indian", "Middle Eastern"]
    assert set(task.attributes["race6"].labels) == {"White", "Black", "Latino_Hispanic", "Asian",
                                                    "Indian", "Middle Eastern"}
    assert task.attributes["race6"].derive.merge == {"East Asian": "Asian", "Southeast Asian": "Asian"}
    assert task.attributes["age9"].labels[-1] == "more than 70"
    assert {s.config for s in task.sources.values() if s.kind == "hub"} == {"0.25", "1.25"}
    assert task.sources["csv"].kind == "manifest"  # the authors' label-CSV layout (tests/test_fairface_csv.py)
    assert task.default_source == "padding025"


def test_valid_mini_spec_loads(tmp_path):
    task = load_task(write_spec(tmp_path, UTK_LIKE))
    assert task.source_attributes == ["gender", "race5", "age"]
    assert task.attributes["age5"].bin_table()[-1] == ("60+", 60, float("inf"))


def test_typo_in_a_field_names_file_and_field(tmp_path):
    path = write_spec(tmp_path, UTK_LIKE.replace("gender: {labels: [Male, Female]}",
                                                 "gender: {lables: [Male, Female]}"))
    with pytest.raises(SpecError) as err:
        load_task(path)
    message = str(err.value)
    assert str(path) in message
    assert "attributes.gender.lables" in message and "unknown field" in message


def test_unknown_label_in_a_value_mapping_is_rejected(tmp_path):
    path = write_spec(tmp_path, UTK_LIKE.replace('"1": Female', '"1": Femal'))
    with pytest.raises(SpecError, match=r"sources\.local\.values\.gender: unknown label\(s\) \['Femal'\]"):
        load_task(path)


def test_unknown_group_column_and_bad_merge_are_rejected(tmp_path):
    with pytest.raises(SpecError, match=r"group_columns: unknown attribute\(s\) \['race'\]"):
        load_task(write_spec(tmp_path, UTK_LIKE.replace("group_columns: [race5]", "group_columns: [race]")))
    bad_merge = UTK_LIKE + """
  race3:
    labels: [White, Black, Asian]
    derive: {from: race5, merge: {Indian: Asain}}
"""
    bad_merge = bad_merge.replace("group_columns: [race5]\n", "") + "group_columns: [race5]\n"
    with pytest.raises(SpecError, match=r"attributes\.race3\.derive\.merge"):
        load_task(write_spec(tmp_path, bad_merge))


def test_bins_must_name_labels(tmp_path):
    path = write_spec(tmp_path, UTK_LIKE.replace('"60+": [60, null]}', '"70+": [60, null]}'))
    with pytest.raises(SpecError, match=r"attributes\.age5.*'bins' names unknown label"):
        load_task(path)


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(SpecError, match="unknown task 'fairfase'.*fairface"):
        load_task("fairfase")
