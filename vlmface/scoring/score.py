"""One scoring pass: load a run, score every attribute, write metrics.json and tables.

Every number comes from a metric family of `vlmface.scoring.metrics` (the registry): each
applicable family adds its keys to `overall`, to every `by_group` row and to every
`disparity` entry, and may finish the run (multiple-testing corrections across attributes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmface.errors import VlmfaceError
from vlmface.run_record import MetricsRecord, write_metrics
from vlmface.scoring.groups import groupings
from vlmface.scoring.index import write_index
from vlmface.scoring.load import AttributeData, RunData, load_run
from vlmface.scoring.metrics import REGISTRY, families_for, group_context
from vlmface.scoring.outcomes import outcomes
from vlmface.scoring.settings import ScoreSettings
from vlmface.scoring.tables import json_ready, write_tables


def score_attribute(data: AttributeData, settings: ScoreSettings) -> dict[str, Any]:
    out = outcomes(data, settings.answered_only)
    families = families_for(data)
    overall: dict[str, Any] = {}
    for family in families:
        overall.update(family.overall(data, out, settings))
    result: dict[str, Any] = {"kind": data.spec.kind, "labels": list(data.labels),
                              "kind_inferred": data.spec.inferred, "overall": overall,
                              "by_group": {}, "disparity": {},
                              "metric_families": [family.name for family in families]}
    for grouping in groupings(data, settings.intersections):
        ctx = group_context(data, out, grouping, settings)
        rows: dict[str, dict[str, Any]] = {value: {} for value in grouping.values}
        disparity: dict[str, Any] = {}
        for family in families:
            for value, keys in family.by_group(ctx).items():
                rows[value].update(keys)
            disparity.update(family.disparity(ctx))
        result["by_group"][grouping.name] = rows
        result["disparity"][grouping.name] = disparity
    return result


def _check_reference(settings: ScoreSettings, run: RunData) -> None:
    if settings.reference_group and settings.reference_group[0] not in run.group_columns:
        column = settings.reference_group[0]
        raise VlmfaceError(f"--reference-group {column}={settings.reference_group[1]}: this run has no group "
                           f"column {column!r}; its group columns are {', '.join(run.group_columns) or 'none'}")


def score_run(run_dir: str | Path, *, min_group_n: int = 30, n_boot: int = 1000, seed: int = 0,
              answered_only: bool = False, confidence: float = 0.95, min_cell_n: int = 10,
              max_group_values: int = 1000, intersections: int = 2,
              reference_group: tuple[str, str] | None = None) -> dict[str, Any]:
    """Score RUN_DIR/predictions.jsonl; write metrics.json and tables/; return the metrics."""
    settings = ScoreSettings(min_group_n, n_boot, seed, answered_only, confidence, min_cell_n,
                             max_group_values, intersections,
                             tuple(reference_group) if reference_group else None)
    run_dir = Path(run_dir)
    run = load_run(run_dir, settings.max_group_values)
    _check_reference(settings, run)
    metrics = {
        "attributes": {name: score_attribute(data, settings)
                       for name, data in run.attributes.items()},
        "run": run.run.as_json() if run.run is not None else {},
        "scoring": {**settings.to_json(), "run_json_found": run.run is not None,
                    "group_columns": run.group_columns},
    }
    for family in REGISTRY.values():
        family.finish_run(metrics)
    metrics = json_ready(metrics)
    write_metrics(run_dir, MetricsRecord.model_validate(metrics))
    write_index(run_dir, metrics, write_tables(run_dir, metrics))
    return metrics
