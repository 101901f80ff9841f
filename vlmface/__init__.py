"""vlmface: how vision-language models read faces, and how that differs between groups.

The public surface is small; everything else is an implementation detail:

    evaluate(task, model, prompt=None, limit=None, **options) -> RunResult
    load_task(name_or_path) -> TaskSpec
    score(run_dir, **options) -> metrics dict
    probe(probe, task, models, **options) -> ProbeResult
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmface.errors import VlmfaceError
from vlmface.runner import EvalConfig, RunResult
from vlmface.tasks import TaskSpec, load_task

__all__ = ["EvalConfig", "RunResult", "TaskSpec", "VlmfaceError", "evaluate", "load_task", "probe", "score"]
__version__ = "0.1.0"


def evaluate(task: str | Path, model: str, prompt: str | None = None, limit: int | None = None,
             **options: Any) -> RunResult:
    """Run `model` on `task` and score it. Keyword options are EvalConfig fields
    (seed, data_dir, source, out, attributes, batch_size, overwrite, ...); any other
    keyword goes to the backend (device, dtype, mode, ...)."""
    from vlmface import runner

    fields = set(EvalConfig.__dataclass_fields__)
    config_kwargs = {k: v for k, v in options.items() if k in fields}
    backend_options = {k: v for k, v in options.items() if k not in fields}
    config = EvalConfig(task=task, model=model, prompt=prompt, limit=limit, **config_kwargs)
    config.options = {**backend_options, **config.options}
    return runner.evaluate(config)


def score(run_dir: str | Path, **options: Any) -> dict[str, Any]:
    """(Re)score a run directory from its predictions.jsonl; see `vlmface score --help`."""
    from vlmface.scoring import score_run

    return score_run(Path(run_dir), **options)


def probe(probe: str | Path, task: str | Path, models: str | list[str], **options: Any):
    """Run a probe spec (tasks/probes/NAME.yaml or a path) on a task with one or more models;
    see `vlmface probe --help`."""
    from vlmface.probes import probe as run_probe

    return run_probe(probe, task, models, **options)
