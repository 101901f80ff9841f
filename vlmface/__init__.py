"""vlmface: how vision-language models read faces, and how that differs between groups.

The public surface is small; everything else is an implementation detail:

    evaluate(task, model, prompt=None, limit=None, *, data_dir=..., backend_options={...}, ...) -> RunResult
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


def evaluate(task: str | Path, model: str, prompt: str | None = None, limit: int | None = None, *,
             seed: int = 0, data_dir: str | Path | None = None, source: str | None = None,
             out: str | Path = "results", attributes: list[str] | None = None, batch_size: int | None = None,
             workers: int | None = None, shard: tuple[int, int] | None = None,
             cache_dir: str | Path | None | bool = None, engine: str = "local", ray_address: str | None = None,
             backend_options: dict[str, Any] | None = None, overwrite: bool = False, retry_errors: bool = False,
             score: bool = True, progress: bool = True) -> RunResult:
    """Run `model` on `task` and score it; the parameters are `vlmface eval`'s flags (see its --help).
    Backend options (device, dtype, mode, max_new_tokens, base_url, ...) go in `backend_options`,
    checked against the backend's declared options: a mistyped name is an error, never ignored."""
    from vlmface import runner

    config = EvalConfig(task=task, model=model, prompt=prompt, limit=limit, seed=seed, data_dir=data_dir,
                        source=source, out=out, attributes=attributes, batch_size=batch_size, workers=workers,
                        shard=shard, cache_dir=cache_dir, engine=engine, ray_address=ray_address,
                        options=dict(backend_options or {}), overwrite=overwrite, retry_errors=retry_errors,
                        score=score, progress=progress)
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
