"""One scoring pass: load a run, score every attribute, write metrics.json and tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmface.scoring.classification import overall_classification
from vlmface.scoring.groups import group_metrics, groupings
from vlmface.scoring.load import AttributeData, load_run
from vlmface.scoring.numeric import overall_numeric
from vlmface.scoring.outcomes import outcomes
from vlmface.scoring.settings import ScoreSettings
from vlmface.scoring.tables import METRICS_FILE, json_ready, write_json, write_tables


def score_attribute(data: AttributeData, settings: ScoreSettings) -> dict[str, Any]:
    out = outcomes(data, settings.answered_only)
    overall_of = overall_numeric if data.spec.is_numeric else overall_classification
    result: dict[str, Any] = {"kind": data.spec.kind, "labels": list(data.labels),
                              "kind_inferred": data.spec.inferred,
                              "overall": overall_of(data, out, settings),
                              "by_group": {}, "disparity": {}}
    for grouping in groupings(data, settings.intersections):
        by_group, disparity = group_metrics(data, out, grouping, settings)
        result["by_group"][grouping.name] = by_group
        result["disparity"][grouping.name] = disparity
    return result


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
    metrics = json_ready({
        "attributes": {name: score_attribute(data, settings)
                       for name, data in run.attributes.items()},
        "run": run.run if run.run is not None else {},
        "scoring": {**settings.to_json(), "run_json_found": run.run is not None,
                    "group_columns": run.group_columns},
    })
    write_json(run_dir / METRICS_FILE, metrics)
    write_tables(run_dir, metrics)
    return metrics
