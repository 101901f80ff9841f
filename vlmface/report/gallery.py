"""Which plots a report holds: one list of `Plot`s per results folder, drawn lazily.

One section per task x attribute (the runs of every model side by side): per-group scores on
the task's first group column, the gap forest over every single group column, refusal and
invalid rates by group when any run has some, then one confusion heatmap per run (labelled
attributes). One section per probe folder (found through its probe.json): the figures its
method draws (vlmface.report.probe_plots).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterator

import pandas as pd
from matplotlib.figure import Figure

from vlmface.report import plots
from vlmface.report.collect import Collection
from vlmface.report.probes import ProbeFolder, find_probes


@dataclass
class Plot:
    section: str
    stem: str  # file name without extension, unique within a report
    caption: str
    draw: Callable[[], Figure]


def _stem(*parts: str) -> str:
    return "__".join(re.sub(r"[^A-Za-z0-9._-]+", "_", p).strip("_") for p in parts)


plot_stem = _stem  # public: other plot plans (vlmface.report.fairness) name their files the same way


def single_group_columns(collection: Collection, run_ids) -> list[str]:
    """The scorer's group columns of these runs (no intersections), in task order."""
    columns: dict[str, None] = {}
    for run_id in run_ids:
        for col in collection.metrics[run_id].scoring.group_columns:
            columns[col] = None
    return list(columns)


def _group_plots(collection: Collection, task: str, attribute: str, run_ids, where: str) -> Iterator[Plot]:
    columns = single_group_columns(collection, run_ids)
    groups, disparity = collection.groups, collection.disparity
    if not columns or groups.empty:
        return
    primary = groups[(groups["task_label"] == task) & (groups["attribute"] == attribute)
                     & (groups["group_col"] == columns[0])]
    primary = primary[primary["accuracy"].notna() | primary["mae"].notna()]  # all-error groups: nothing to draw
    if not primary.empty:
        metric = "MAE" if primary["kind"].iloc[0] == "numeric" else "accuracy"
        yield Plot(where, _stem("groups", task, attribute, columns[0]),
                   f"{metric} by {columns[0]} with CIs (faded: groups too small to rank)",
                   lambda p=primary: plots.plot_group_scores(p, f"{where} by {columns[0]}"))
    forest = disparity[(disparity["task_label"] == task) & (disparity["attribute"] == attribute)
                       & disparity["group_col"].isin(columns) & disparity["gap"].notna()]
    if not forest.empty:
        yield Plot(where, _stem("gap", task, attribute),
                   "best-worst group gap with its CI, per run and group column",
                   lambda f=forest: plots.plot_gap_forest(f, f"{where}: gap by group column"))
    if not primary.empty and (primary[["refusal_rate", "invalid_rate"]].fillna(0) > 0).any().any():
        yield Plot(where, _stem("refusals", task, attribute, columns[0]),
                   f"refused and invalid answers by {columns[0]}",
                   lambda p=primary: plots.plot_group_rates(p, f"{where}: non-answers by {columns[0]}"))


def _confusions(collection: Collection, rows: pd.DataFrame, where: str) -> Iterator[Plot]:
    for row in rows.itertuples():
        block = collection.metrics[row.run_id].attributes[row.attribute]
        confusion = block.overall.get("confusion")
        if row.kind == "numeric" or not confusion or not any(sum(r.values()) for r in confusion.values()):
            continue
        yield Plot(where, _stem("confusion", row.run_id.replace("/", "__"), row.attribute),
                   f"{row.label}: confusion, share of each true class (rows) per answer (columns)",
                   lambda c=confusion, labels=block.labels, t=f"{where} · {row.label}":
                   plots.plot_confusion(c, labels, t))


def _per_attribute(collection: Collection) -> Iterator[Plot]:
    """Task x attribute sections: group scores, gap forest, refusals, then one confusion per run."""
    if collection.overall.empty:
        return
    for (task, attribute), rows in collection.overall.groupby(["task_label", "attribute"], sort=True):
        where = f"{task} · {attribute}"
        yield from _group_plots(collection, task, attribute, rows["run_id"].unique(), where)
        yield from _confusions(collection, rows, where)


def _probe_figures(probes: list[ProbeFolder]) -> Iterator[Plot]:
    """Each probe folder's figures, as its method draws them (vlmface.report.probe_plots)."""
    for folder in probes:
        for figure in folder.figures():
            yield Plot(folder.section, _stem(figure.stem, folder.name), figure.caption, figure.draw)


def _prompt_sensitivity(collection: Collection) -> Iterator[Plot]:
    from vlmface.prompt_sets.report import sensitivity_plots

    for section, stem, caption, draw in sensitivity_plots(collection.results_dir, collection.exclude):
        yield Plot(section, _stem(stem), caption, draw)


def plan(collection: Collection, probes: list[ProbeFolder] | None = None) -> list[Plot]:
    """Every plot of the report; `probes` default: those found under the results folder."""
    if probes is None:
        probes = find_probes(collection.results_dir, collection.exclude)[0]
    return [*_per_attribute(collection), *_probe_figures(probes), *_prompt_sensitivity(collection)]
