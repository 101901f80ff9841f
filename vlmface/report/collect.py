"""Every scored run under a results folder -> tidy pandas tables (one fact per row).

Tables (each row keeps `run_id` and `source`, the metrics.json path relative to the results
folder, so any number can be traced back to the one file it came from):

    runs       one row per run: model, task, prompt, mode, dataset fingerprint, manifest fields
    overall    run x attribute: n, accuracy/mae with CI, answered accuracy, macro-F1,
               answer-error/invalid/refusal/error rates
    groups     run x attribute x group column x group: n, accuracy/mae with CI, rates, small
    disparity  run x attribute x group column: gap with CI, ratio, worst/best group, EO gap,
               dp/tpr/eodds gaps, the test's p-value with Holm and BH adjustments

Nothing is scored here: a run without metrics.json is listed in `skipped` with the command
that scores it, and a metrics.json older than its predictions.jsonl is flagged as stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vlmface.run_record import (METRICS_FILE, PREDICTIONS_FILE, AttributeMetrics, MetricsRecord, RunRecord,
                                RunRecordError, read_metrics)

RUN_KEYS = ["run_id", "task", "task_label", "data_source", "model", "backend"]


@dataclass
class Collection:
    results_dir: Path
    runs: pd.DataFrame
    overall: pd.DataFrame
    groups: pd.DataFrame
    disparity: pd.DataFrame
    metrics: dict[str, MetricsRecord] = field(default_factory=dict)  # run_id -> its metrics.json
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    warnings: list[str] = field(default_factory=list)
    exclude: Path | None = None  # the report's own folder, never read back


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and folder.resolve() in path.resolve().parents


def _ci(value: Any) -> tuple[Any, Any]:
    return tuple(value) if isinstance(value, (list, tuple)) and len(value) == 2 else (None, None)


def _mode(run: RunRecord) -> str | None:
    """The answer mode, and the perturbation of a perturbed run (e.g. "exposure 0.4")."""
    options = run.answer_options()
    perturbation = run.perturbation
    changed = f"{perturbation['name']} {perturbation['level']:g}" if perturbation else None
    return " · ".join(p for p in (options.get("mode"), changed) if p) or None


def _template(run: RunRecord, attribute: str) -> tuple[str, str | None]:
    template = run.template(attribute)
    if not template:
        return ("none", None) if run.as_json() else ("unknown", None)
    return template.name or "unknown", template.sha256


def _prompt_text_sha256(run: RunRecord, attribute: str) -> str | None:
    """sha256 of the exact text the run's template rendered (runs before it was recorded: None)."""
    template = run.template(attribute)
    return template.text_sha256 if template else None


def answer_mode(run: RunRecord) -> str | None:
    """generate / choice / constrained / zero-shot (class texts); None when the run does not say."""
    options = run.answer_options()
    style = run.prompt_style
    if style == "class_texts":
        return "zero-shot"
    if style == "question":
        return options.get("mode") or "generate"
    return options.get("mode")


def _revision(run: RunRecord) -> str | None:
    identity, entry = run.model_identity or {}, run.model_entry or {}
    return identity.get("revision") or entry.get("revision")


def run_row(run_id: str, source: str, run: RunRecord, stale: bool) -> dict[str, Any]:
    """The manifest facts of one run (run.json as embedded in metrics.json)."""
    identity, entry = run.model_identity or {}, run.model_entry or {}
    parts = run_id.split("/")  # .../<task>[@source]/<model>/<prompt> as the runner lays them out
    folder_task = parts[-3] if len(parts) >= 3 else ""
    task = run.task or folder_task.split("@")[0] or run_id
    return {
        "run_id": run_id, "source": source, "task": task,
        # "fairface@padding125" when the run used a task source other than the default one
        "task_label": folder_task if folder_task.split("@")[0] == task else task,
        "data_source": run.source,
        "model": run.model or (parts[-2] if len(parts) >= 2 else run_id),
        "backend": run.backend, "mode": _mode(run), "perturbed": bool(run.perturbation),
        "weights": identity.get("weights") or entry.get("weights"),
        "revision": _revision(run), "weights_sha256": identity.get("weights_sha256"),
        "seed": run.seed, "limit": run.limit,
        "n_selected": run.n_selected, "n_available": run.n_available,
        "dataset_fingerprint": run.dataset_fingerprint,
        "data_location": run.data_location, "task_spec_sha256": run.task_spec_sha256,
        "templates": run.as_json().get("templates") or {},
        "status": run.status, "stale": stale,
        "started": run.started, "finished": run.finished,
        "versions": run.versions or {},
    }


def _n_labels(run: RunRecord, attribute: str, block: AttributeMetrics) -> int | None:
    if block.kind == "numeric":
        return None
    declared = run.declared(attribute)
    labels = (declared.labels if declared else None) or block.labels
    return len(labels) or None


def _scores(stats: dict[str, Any]) -> dict[str, Any]:
    acc_lo, acc_hi = _ci(stats.get("accuracy_ci"))
    mae_lo, mae_hi = _ci(stats.get("mae_ci"))
    return {"n": stats.get("n"), "accuracy": stats.get("accuracy"), "accuracy_lo": acc_lo,
            "accuracy_hi": acc_hi, "mae": stats.get("mae"), "mae_lo": mae_lo, "mae_hi": mae_hi,
            "invalid_rate": stats.get("invalid_rate"), "refusal_rate": stats.get("refusal_rate"),
            "error_rate": stats.get("error_rate"), "answered_accuracy": stats.get("answered_accuracy"),
            "answer_error_rate": stats.get("answer_error_rate")}


def run_label(model: str, prompt: str, mode: str | None) -> str:
    """How plots name a run: model / prompt [/ mode]."""
    return " / ".join(p for p in (model, prompt, mode) if p)


def attribute_rows(meta: dict[str, Any], attribute: str, block: AttributeMetrics, run: RunRecord):
    """(overall row, group rows, disparity rows) of one attribute of one run."""
    overall = block.overall
    prompt, sha = _template(run, attribute)
    base = {**{k: meta[k] for k in RUN_KEYS}, "attribute": attribute, "kind": block.kind,
            "label": run_label(meta["model"], prompt, meta["mode"]), "source": meta["source"]}
    over = {**base, "prompt": prompt, "prompt_sha256": sha, "mode": meta["mode"], "perturbed": meta["perturbed"],
            "n_labels": _n_labels(run, attribute, block), **_scores(overall),
            "n_total": overall.get("n_total"), "balanced_accuracy": overall.get("balanced_accuracy"),
            "macro_f1": overall.get("macro_f1"), "cs5": overall.get("cs5"),
            "limit": meta["limit"], "status": meta["status"], "stale": meta["stale"],
            # the setting a published number is compared with (report/reference.py)
            "prompt_text_sha256": _prompt_text_sha256(run, attribute), "split": run.split,
            "answer_mode": answer_mode(run), "weights": meta["weights"], "revision": meta["revision"],
            "answered_only": meta.get("answered_only")}
    groups = [{**base, "group_col": col, "group": value, **_scores(stats), "small": stats.get("small")}
              for col, values in block.by_group.items() for value, stats in values.items()]
    disparity = []
    for col, d in block.disparity.items():
        lo, hi = _ci(d.get("gap_ci"))
        disparity.append({**base, "group_col": col, "metric": d.get("metric"), "gap": d.get("gap"),
                          "gap_lo": lo, "gap_hi": hi, "ratio": d.get("ratio"),
                          "worst_group": d.get("worst_group"), "best_group": d.get("best_group"),
                          "eo_gap": d.get("eo_gap"), "eo_gap_class": d.get("eo_gap_class"),
                          **{key: d.get(key) for key in ("dp_gap", "tpr_gap", "eodds_gap")},
                          **{key: (d.get("test") or {}).get(key) for key in ("p_value", "p_holm", "p_bh")}})
    return over, groups, disparity


def _distinct_suffixes(run_ids: list[str]) -> dict[str, str]:
    """The fewest trailing folder names that tell these run directories apart."""
    parts = {run_id: run_id.split("/") for run_id in run_ids}
    for depth in range(1, max(len(p) for p in parts.values()) + 1):
        suffixes = {run_id: "/".join(p[-depth:]) for run_id, p in parts.items()}
        if len(set(suffixes.values())) == len(suffixes):
            return suffixes
    return {run_id: run_id for run_id in run_ids}


def disambiguate_labels(*tables: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], ...]:
    """Runs are keyed by their directory (`run_id`); a label two runs of one task share (a copied
    run, a shard-merged run beside the full one, an --attributes subset) gets the run folder
    as a suffix, e.g. "baseline / none [merged]", so plots and tables tell them apart."""
    runs_by_label: dict[tuple[str, str], set[str]] = {}
    for row in tables[0]:
        runs_by_label.setdefault((row["task_label"], row["label"]), set()).add(row["run_id"])
    renamed: dict[str, str] = {}
    for (_, label), run_ids in runs_by_label.items():
        if len(run_ids) > 1:
            renamed |= {run_id: f"{label} [{suffix}]"
                        for run_id, suffix in _distinct_suffixes(sorted(run_ids)).items()}
    return tuple([{**row, "label": renamed.get(row["run_id"], row["label"])} for row in table]
                 for table in tables)


def _read_metrics(path: Path) -> tuple[MetricsRecord | None, str | None]:
    try:
        return read_metrics(path.parent), None
    except RunRecordError as exc:
        return None, f"unreadable metrics.json ({exc})"


def _is_stale(run_dir: Path, metrics_path: Path) -> bool:
    predictions = run_dir / PREDICTIONS_FILE
    return predictions.exists() and predictions.stat().st_mtime > metrics_path.stat().st_mtime + 1


def _frame(rows: list[dict[str, Any]], columns: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns) if rows or columns else pd.DataFrame()


def collect_runs(results_dir: Path, exclude: Path | None = None) -> Collection:
    """Read every metrics.json under `results_dir` (skipping hidden folders and `exclude`)."""
    results_dir = Path(results_dir)
    runs, overall, groups, disparity, metrics_by_run = [], [], [], [], {}
    skipped, warnings = [], []
    for path in sorted(results_dir.rglob(METRICS_FILE)):
        if _hidden(path, results_dir) or _inside(path, exclude):
            continue
        run_id = path.parent.relative_to(results_dir).as_posix() or "."
        metrics, why = _read_metrics(path)
        if metrics is None:
            skipped.append((path.relative_to(results_dir).as_posix(), why))
            continue
        run = metrics.run
        meta = run_row(run_id, path.relative_to(results_dir).as_posix(), run, _is_stale(path.parent, path))
        meta["answered_only"] = metrics.scoring.answered_only
        if meta["stale"]:
            warnings.append(f"{run_id}: predictions.jsonl is newer than metrics.json; "
                            f"rescore with `vlmface score {path.parent}`")
        if run.status not in (None, "complete"):
            warnings.append(f"{run_id}: run status is {run.status!r}; numbers cover a partial run")
        runs.append(meta)
        metrics_by_run[run_id] = metrics
        for attribute, block in metrics.attributes.items():
            over, grp, disp = attribute_rows(meta, attribute, block, run)
            overall.append(over)
            groups += grp
            disparity += disp
    skipped += _unscored(results_dir, exclude)
    overall, groups, disparity = disambiguate_labels(overall, groups, disparity)
    return Collection(results_dir, _frame(runs), _frame(overall), _frame(groups), _frame(disparity),
                      metrics_by_run, skipped, warnings)


def _unscored(results_dir: Path, exclude: Path | None) -> list[tuple[str, str]]:
    return [(p.parent.relative_to(results_dir).as_posix(),
             f"predictions without metrics.json: score it with `vlmface score {p.parent}`")
            for p in sorted(results_dir.rglob(PREDICTIONS_FILE))
            if not _hidden(p, results_dir) and not _inside(p, exclude)
            and not (p.parent / METRICS_FILE).exists()]
