"""`vlmface list tasks|probes|models|prompts|perturbations`: each entry with where it comes from
(shipped or a user folder), the folders read, and exit 1 when nothing is found."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from vlmface.specfiles import origin


class SpecKind(NamedTuple):
    folder: str                                 # the shipped folder these files live in
    dirs: Callable[[], list[Path]]              # the folders read, user ones first
    available: Callable[[], dict[str, Path]]    # name -> path, user files overriding shipped ones
    describe: Callable[[Path], str]             # one line about a file


def _task_line(path: Path) -> str:
    from vlmface.tasks import load_task_file

    task = load_task_file(path)
    return f"attributes: {', '.join(task.evaluated_attributes)}; sources: {', '.join(task.sources)}"


def _probe_line(path: Path) -> str:
    from vlmface.probes.spec import load_probe_file

    probe = load_probe_file(path)
    return f"method: {probe.method}"


def _perturbation_line(path: Path) -> str:
    from vlmface.perturb.spec import load_perturbations

    spec = load_perturbations(path)
    return "; ".join(f"{key}: {p.transform} [{', '.join(f'{v:g}' for v in p.levels)}]"
                     for key, p in spec.perturbations.items())


def _prompt_line(path: Path) -> str:
    from vlmface.prompts import load_template_file

    template = load_template_file(path)
    summary = " ".join(template.description.split())
    return f"{template.kind:<12} {summary[:80] + ('...' if len(summary) > 80 else '')}"


def spec_kinds() -> dict[str, list[SpecKind]]:
    """what -> the kinds of file it lists (tasks: task specs and the probe-only datasets)."""
    from vlmface.perturb.spec import available_perturbations, perturbation_dirs
    from vlmface.probes.spec import available_probe_datasets, available_probes, probe_dataset_dirs, probe_dirs
    from vlmface.prompts import available_templates, prompt_dirs
    from vlmface.tasks import available_tasks, task_dirs

    datasets = SpecKind("tasks", probe_dataset_dirs, available_probe_datasets, _task_line)
    return {"tasks": [SpecKind("tasks", task_dirs, available_tasks, _task_line), datasets],
            "probes": [SpecKind("tasks", probe_dirs, available_probes, _probe_line)],
            "prompts": [SpecKind("prompts", prompt_dirs, available_templates, _prompt_line)],
            "perturbations": [SpecKind("perturbations", perturbation_dirs, available_perturbations,
                                       _perturbation_line)]}


def folder_lines(what: str, kind: SpecKind) -> list[str]:
    return [f"reading {what} from {d} ({origin(d, kind.folder)})" for d in kind.dirs()]


def _list_models() -> int:
    from vlmface.registry import load_registry

    for name, entry in load_registry().items():
        print(f"{name:<28} {entry.backend:<9} {entry.weights or '(set --base-url / --option model=...)'}")
    return 0


def list_specs(what: str) -> int:
    """Print the folders read (stderr) and one line per file (stdout); 1 when there is none."""
    if what == "models":
        return _list_models()
    kinds = spec_kinds()[what]
    for kind in kinds:
        for line in folder_lines(what, kind):
            print(line, file=sys.stderr)
    main, *others = kinds
    if not main.available():
        print(f"error: no {what} found; pass --{main.folder}-dir DIR or set $VLMFACE_{main.folder.upper()}",
              file=sys.stderr)
        return 1
    for kind in kinds:
        note = "" if kind is main else ", probe-only dataset"
        for name, path in kind.available().items():
            print(f"{name:<28} {kind.describe(path)}  [{origin(path, kind.folder)}{note}]")
    return 0
