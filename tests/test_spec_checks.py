"""Spec content checks (issue 13): each bad spec is a SpecError naming the file and the field.

Before: duplicate YAML keys (the last won), overlapping or gapped age bins, near-duplicate labels
(`Male`, `male `) and a regex without a group for a declared attribute all loaded silently; an
invalid regex passed validate and crashed eval; a non-UTF-8 YAML gave a UnicodeDecodeError.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vlmface.data import load_samples
from vlmface.errors import SpecError
from vlmface.tasks import load_task
from vlmface.validation import validate_all

REPO_ROOT = Path(__file__).resolve().parents[1]
UTKFACE_SPEC = (REPO_ROOT / "tasks" / "utkface.yaml").read_text(encoding="utf-8")
PATTERN = r"'(?P<age>\d+)_(?P<gender>\d)_(?P<race5>\d)_(?P<timestamp>\d+)\.jpg(\.chip\.jpg)?'"
AGE5_BINS = '{"0-9": [0, 10], "10-19": [10, 20], "20-39": [20, 40], "40-59": [40, 60], "60+": [60, null]}'


def _spec(tmp_path: Path, old: str, new: str, name: str = "task.yaml") -> Path:
    assert old in UTKFACE_SPEC, old
    path = tmp_path / name
    path.write_text(UTKFACE_SPEC.replace(old, new, 1), encoding="utf-8")
    return path


def _error(path: Path) -> str:
    with pytest.raises(SpecError) as caught:
        load_task(path)
    message = str(caught.value)
    assert str(path) in message
    assert message in "\n".join(validate_all([str(path)]))  # `vlmface validate` reports the same
    return message


def test_shipped_specs_pass_the_checks():
    for spec in ["affectnet", "fairface", "fer2013", "utkface", REPO_ROOT / "tasks/probes/datasets/causalface.yaml"]:
        assert load_task(spec).attributes


def test_duplicate_yaml_key_names_the_line(tmp_path):
    path = _spec(tmp_path, "  race5:\n    labels:", "  gender:\n    labels: [M, F]\n  race5:\n    labels:")
    line = 1 + path.read_text(encoding="utf-8").splitlines().index("  gender:", 20)
    first = 1 + path.read_text(encoding="utf-8").splitlines().index("  gender:")
    assert _error(path) == (f"{path}:{line}: duplicate key 'gender' (first on line {first}); YAML would "
                            "silently keep the last value: keep one")


def test_non_utf8_yaml_is_a_clear_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(UTKFACE_SPEC.replace("UTKFace in-the-wild", "UTKFace caf\u00e9").encode("latin-1"))
    assert _error(path).startswith(f"{path}: not UTF-8 text (byte 0xe9 at offset ")


def test_overlapping_bins(tmp_path):
    path = _spec(tmp_path, AGE5_BINS, AGE5_BINS.replace('"20-39": [20, 40]', '"20-39": [18, 40]'))
    message = _error(path)
    assert "attributes.age5" in message
    assert "bins '10-19' [10, 20) and '20-39' [18, 40) overlap" in message


def test_gapped_bins_refused_unless_declared(tmp_path, utkface_dir):
    gapped = AGE5_BINS.replace('"20-39": [20, 40]', '"20-39": [25, 40]')
    message = _error(_spec(tmp_path, AGE5_BINS, gapped))
    assert "attributes.age5" in message and "bins leave a gap [20, 25) between '10-19' and '20-39'" in message
    assert "bin_gaps: [[20, 25]]" in message
    declared = _spec(tmp_path, AGE5_BINS, gapped + "\n    bin_gaps: [[20, 25]]", "declared.yaml")
    task = load_task(declared)
    assert task.attributes["age5"].bin_gaps == [(20, 25)]
    data_dir = tmp_path / "faces"
    data_dir.mkdir()
    for face in sorted(utkface_dir.glob("2[0-4]_*.jpg"))[:2] + sorted(utkface_dir.glob("3[0-4]_*.jpg"))[:2]:
        shutil.copy(face, data_dir / face.name)
    data = load_samples(task, data_dir=data_dir)
    assert len(data.samples) == 2 and all(s.labels["age5"] == "20-39" for s in data.samples)
    assert all("falls in none of the declared bins" in reason for _, reason in data.skipped)
    wrong = _spec(tmp_path, AGE5_BINS, AGE5_BINS + "\n    bin_gaps: [[1, 2]]", "wrong.yaml")
    assert "bin_gaps [[1.0, 2.0]] is not a gap between two bins" in _error(wrong)


def test_labels_equal_up_to_case_and_spaces(tmp_path):
    path = _spec(tmp_path, "labels: [Male, Female]", 'labels: [Male, Female, "male "]')
    message = _error(path)
    assert "attributes.gender" in message
    assert "labels 'Male' and 'male ' differ only in case, spaces" in message


def test_invalid_regex_names_file_and_field(tmp_path):
    path = _spec(tmp_path, PATTERN, PATTERN.replace(r"(?P<age>\d+)", r"(?P<age>\d+"))
    message = _error(path)
    assert "sources.local" in message and "is not a valid regex: missing )" in message


def test_regex_lacking_a_declared_group_column(tmp_path):
    path = _spec(tmp_path, PATTERN, PATTERN.replace(r"(?P<race5>\d)", r"\d"))
    message = _error(path)
    assert "sources.local.pattern has no named group for attribute(s) 'race5' (group 'race5')" in message
    renamed = _spec(tmp_path, PATTERN, PATTERN.replace("race5>", "race>"), "renamed.yaml")
    assert "(group 'race5')" in _error(renamed)
    mapped = _spec(tmp_path, PATTERN, PATTERN.replace("race5>", "race>") + "\n    columns: {race5: race}",
                   "mapped.yaml")
    assert load_task(mapped).sources["local"].column_for("race5") == "race"

