"""Run directories -> sweeps: one clean run and its perturbed runs, found from run.json alone.

A perturbed run's identity is its clean run's identity plus a `perturbation` entry, so
runs are grouped by their identity without it. Each group needs exactly one clean run
(the identity level of every perturbation) and at least one perturbed run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmface.errors import VlmfaceError
from vlmface.run_record import RUN_FILE, RunRecord, read_run


@dataclass
class PerturbedRun:
    run_dir: Path
    name: str
    transform: str
    level: float
    identity_level: float
    params: dict[str, Any]


@dataclass
class Sweep:
    clean: Path
    record: RunRecord  # the clean run's run.json
    perturbed: list[PerturbedRun] = field(default_factory=list)

    def perturbations(self) -> dict[str, list[PerturbedRun]]:
        """name -> its runs sorted by level."""
        found: dict[str, list[PerturbedRun]] = {}
        for run in self.perturbed:
            found.setdefault(run.name, []).append(run)
        return {name: sorted(runs, key=lambda r: r.level) for name, runs in found.items()}


def _run_dirs(paths: list[Path]) -> list[Path]:
    """Each path is a run directory or a folder searched for them (hidden folders skipped)."""
    found: list[Path] = []
    for path in paths:
        if (path / RUN_FILE).exists():
            found.append(path)
        elif path.is_dir():
            found += sorted(p.parent for p in path.rglob(RUN_FILE)
                            if not any(part.startswith(".") for part in p.relative_to(path).parts))
        else:
            raise VlmfaceError(f"{path}: neither a run directory (no {RUN_FILE}) nor a folder of them")
    return list(dict.fromkeys(found))


def _siblings(paths: list[Path]) -> list[Path]:
    """The run directories beside each run directory given: a sweep writes its clean run and its
    perturbed runs side by side, so any one of them finds the others."""
    return [p.parent for path in paths if (path / RUN_FILE).exists()
            for p in sorted(path.parent.glob(f"*/{RUN_FILE}"))]


def _base_key(identity: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in identity.items() if k != "perturbation"}, sort_keys=True, default=str)


def _check_consistent(runs: list[PerturbedRun]) -> None:
    """One name must mean one transform with one set of parameters across its levels."""
    by_name: dict[str, PerturbedRun] = {}
    for run in runs:
        first = by_name.setdefault(run.name, run)
        if (first.transform, first.params) != (run.transform, run.params):
            raise VlmfaceError(f"perturbation {run.name!r} means different transforms in {first.run_dir} and "
                               f"{run.run_dir}; analyse them separately or rename one")


def find_sweeps(paths: list[str | Path]) -> list[Sweep]:
    clean: dict[str, list[tuple[Path, RunRecord]]] = {}
    perturbed: dict[str, list[PerturbedRun]] = {}
    paths = [Path(p) for p in paths]
    requested = _run_dirs(paths)
    for run_dir in dict.fromkeys(requested + _siblings(paths)):
        record = read_run(run_dir)
        identity = record.identity if record else None
        if not identity:
            continue
        key = _base_key(identity)
        described = identity.get("perturbation")
        if described is None:
            clean.setdefault(key, []).append((run_dir, record))
        else:
            perturbed.setdefault(key, []).append(PerturbedRun(
                run_dir, described["name"], described["transform"], float(described["level"]),
                float(described["identity_level"]), described.get("params") or {}))
    if not perturbed:
        raise VlmfaceError(f"no perturbed runs under {', '.join(map(str, paths))}; make them with "
                           "`vlmface eval --perturb SPEC ...`")
    sweeps = []
    for key, runs in perturbed.items():
        candidates = clean.get(key, [])
        if len(candidates) != 1:
            what = "no clean run" if not candidates else f"{len(candidates)} clean runs"
            raise VlmfaceError(f"{runs[0].run_dir}: {what} with the same task, model, prompt, samples and "
                               "options found among the paths given or beside them; pass its clean run directory too "
                               "(`vlmface eval --perturb` makes it)")
        _check_consistent(runs)
        sweep = Sweep(candidates[0][0], candidates[0][1], runs)
        if {sweep.clean, *(r.run_dir for r in runs)} & set(requested):  # not a sibling's sweep
            sweeps.append(sweep)
    return sweeps
