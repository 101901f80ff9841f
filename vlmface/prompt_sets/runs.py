"""Run directories -> prompt sweeps: one default (plain) run and its variant runs, from run.json alone.

A variant run's identity is its plain run's identity plus a `prompt_variant` entry (which names
the plain run's prompts) and its own `prompts`; runs are grouped by their identity without
those two, and the default run is the plain run of that group whose prompts are the ones the
variants name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmface.errors import VlmfaceError
from vlmface.perturb.runs import _run_dirs
from vlmface.run_record import RunRecord, read_run

DEFAULT = "default"


@dataclass
class VariantRun:
    run_dir: Path
    set: str
    name: str
    described: dict[str, Any]


@dataclass
class PromptSweep:
    default: Path
    record: RunRecord  # the default run's run.json
    variants: list[VariantRun] = field(default_factory=list)

    @property
    def set(self) -> str:
        return self.variants[0].set


def _base_key(identity: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in identity.items() if k not in ("prompt_variant", "prompts", "backend")},
                      sort_keys=True, default=str)


def find_prompt_sweeps(paths: list[str | Path]) -> list[PromptSweep]:
    plain: dict[str, list[tuple[Path, RunRecord]]] = {}
    variants: dict[tuple[str, str, str], list[VariantRun]] = {}
    for run_dir in _run_dirs([Path(p) for p in paths]):
        record = read_run(run_dir)
        identity = record.identity if record else None
        if not identity:
            continue
        described = identity.get("prompt_variant")
        if described is None:
            plain.setdefault(_base_key(identity), []).append((run_dir, record))
            continue
        key = (_base_key(identity), described["set"], json.dumps(described.get("plain_prompts"), sort_keys=True))
        variants.setdefault(key, []).append(VariantRun(run_dir, described["set"], described["name"], described))
    if not variants:
        raise VlmfaceError(f"no prompt-variant runs under {', '.join(map(str, paths))}; make them with "
                           "`vlmface eval --prompt-set NAME ...`")
    sweeps = []
    for (key, set_name, prompts), runs in variants.items():
        wanted = json.loads(prompts)
        candidates = [(d, m) for d, m in plain.get(key, []) if m.identity.get("prompts") == wanted]
        if len(candidates) != 1:
            what = "no default run" if not candidates else f"{len(candidates)} default runs"
            raise VlmfaceError(f"{runs[0].run_dir}: {what} of prompt set {set_name!r} (same task, model, "
                               "samples, options and default prompt) among the paths given; pass its "
                               "directory too (`vlmface eval --prompt-set` makes it)")
        names = [r.name for r in runs]
        if len(set(names)) != len(names):
            raise VlmfaceError(f"prompt set {set_name!r}: variant names repeat among {', '.join(str(r.run_dir) for r in runs)}")
        sweeps.append(PromptSweep(candidates[0][0], candidates[0][1], runs))
    return sweeps
