"""`vlmface validate`: load every task spec, probe spec, prompt template and registry entry, and render
each template once with a stand-in sample, so mistakes surface before any model runs."""

from __future__ import annotations

from collections import defaultdict

from vlmface.errors import VlmfaceError
from vlmface.perturb.spec import available_perturbations, load_perturbations, task_perturbation_set
from vlmface.probes import available_probes, load_probe
from vlmface.probes.spec import available_probe_datasets
from vlmface.prompts import available_templates, load_template, load_template_file
from vlmface.registry import load_registry
from vlmface.tasks import TaskSpec, available_tasks, load_task, load_task_file


def _render_with_stand_in(template, task: TaskSpec | None, attribute: str, labels: list[str]) -> None:
    task_name = task.name if task else "example"
    if template.kind == "question":
        # A stand-in sample whose metadata has every key: the real metadata is checked by eval.
        template.render_question(attribute=attribute, choices=labels, labels=labels, task=task_name,
                                 meta=defaultdict(str))
    else:
        template.render_class_texts(label=labels[0], raw_label=labels[0], attribute=attribute,
                                    task=task_name)


def _validate_task(name: str) -> list[str]:
    problems = []
    task = load_task(name)
    for attribute, spec in task.attributes.items():
        for style in ("question", "class_texts"):
            template_name = task.prompts.for_attribute(style, attribute)
            if template_name is None or (style == "class_texts" and spec.kind == "numeric"):
                continue
            try:
                _render_with_stand_in(load_template(template_name), task, attribute,
                                      spec.labels or ["30"])
            except VlmfaceError as exc:
                problems.append(f"{task.where}: prompts.{style} for {attribute!r}: {exc}")
    for set_name in task.perturbations:
        try:
            task_perturbation_set(task, set_name)
        except VlmfaceError as exc:
            problems.append(str(exc))
    return problems


def folders_read() -> list[str]:
    """One line per folder `validate` reads: user folders first, then the shipped ones."""
    from vlmface.listing import folder_lines, spec_kinds

    return [line for what, kinds in spec_kinds().items() for kind in kinds for line in folder_lines(what, kind)]


def _nothing_found(tasks: list[str] | None) -> list[str]:
    """Validating nothing is a failure, not a pass: say which kind of file is missing."""
    found = {("task specs", "tasks"): tasks or available_tasks(),
             ("prompt templates", "prompts"): available_templates()}
    return [f"no {what} found: pass --{folder}-dir DIR or set $VLMFACE_{folder.upper()}"
            for (what, folder), files in found.items() if not files]


def validate_all(tasks: list[str] | None = None) -> list[str]:
    problems: list[str] = _nothing_found(tasks)
    for name in tasks or list(available_tasks()):
        try:
            problems += _validate_task(name)
        except VlmfaceError as exc:
            problems.append(str(exc))
    for path in ([] if tasks else available_probe_datasets().values()):
        try:
            load_task_file(path)
        except VlmfaceError as exc:
            problems.append(str(exc))
    for path in available_templates().values():
        try:
            _render_with_stand_in(load_template_file(path), None, "gender", ["Male", "Female"])
        except VlmfaceError as exc:
            problems.append(str(exc))
    for path in available_perturbations().values():
        try:
            load_perturbations(str(path))
        except VlmfaceError as exc:
            problems.append(str(exc))
    for path in available_probes().values():
        try:
            load_probe(str(path))
        except VlmfaceError as exc:
            problems.append(str(exc))
    try:
        load_registry()
    except VlmfaceError as exc:
        problems.append(str(exc))
    return problems
