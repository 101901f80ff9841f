"""A task spec may declare its own perturbation sets; `--perturb NAME` finds them first."""

from __future__ import annotations

import textwrap

import pytest

from vlmface.errors import SpecError
from vlmface.perturb.command import run_sweep
from vlmface.perturb.spec import task_perturbation_set
from vlmface.predictions import read_records
from vlmface.runner import EvalConfig
from vlmface.tasks import load_task
from vlmface.validation import validate_all

from conftest import REPO_ROOT

SPEC = (REPO_ROOT / "tasks" / "utkface.yaml").read_text()


def _task_with(tmp_path, block: str):
    path = tmp_path / "utk_perturbed.yaml"
    path.write_text(SPEC.replace("name: utkface", "name: utk_perturbed") + textwrap.dedent(block))
    return path


def test_inline_perturbation_set_runs_every_level(tmp_path, utkface_dir, fake_backend):
    path = _task_with(tmp_path, """
        perturbations:
          darker:
            seed: 3
            perturbations:
              exposure: {transform: gamma, levels: [1.0, 2.0]}
    """)
    assert task_perturbation_set(load_task(path), "darker").perturbations["exposure"].perturbed_levels == [2.0]
    config = EvalConfig(task=path, model="fake:none", data_dir=utkface_dir, limit=12, out=tmp_path / "out",
                        attributes=["gender"], score=False, progress=False)
    assert run_sweep(config, "darker") == 0
    runs = sorted(p.name for p in (tmp_path / "out" / "utk_perturbed" / "fake_none").iterdir())
    assert runs == ["default__attrs-gender", "default__attrs-gender__perturb-exposure-2"]
    perturbed = read_records(tmp_path / "out" / "utk_perturbed" / "fake_none" / runs[1] / "predictions.jsonl")
    assert len(perturbed) == 12 and {r["level"] for r in perturbed} == {2.0}


def test_a_bad_inline_set_names_the_task_file_and_field(tmp_path):
    path = _task_with(tmp_path, """
        perturbations:
          darker:
            perturbations:
              exposure: {transform: gama, levels: [1.0, 2.0]}
    """)
    task = load_task(path)  # the task schema does not validate perturbation sets: vlmface.perturb does
    with pytest.raises(SpecError, match=r"utk_perturbed\.yaml: perturbations\.darker"):
        task_perturbation_set(task, "darker")
    assert any("perturbations.darker" in problem for problem in validate_all([str(path)]))
