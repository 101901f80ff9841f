"""Reporting over many runs: leaderboard (CSV, Markdown), plots (PNG, SVG), one HTML file.

    build_report(results_dir, out_dir=None) -> ReportResult   # what `vlmface report` runs

The pieces are small pure functions over tidy tables, usable on their own:

    collect_runs(results_dir) -> Collection      every metrics.json -> runs/overall/groups/disparity
    leaderboard(collection, refs) -> DataFrame   one row per run x attribute, `source` = metrics.json
    load_references() / match_references(...)    published numbers beside matching rows
    find_probes(results_dir) (report.probes)     probe folders, through their probe.json `outputs`
    vlmface.report.plots, .social_plots          each plot: tidy rows in, matplotlib Figure out
    vlmface.report.probe_plots                   each probe method's figures of its tables
"""

from typing import Any

from vlmface.report.collect import Collection, collect_runs
from vlmface.report.leaderboard import leaderboard, write_leaderboard
from vlmface.report.reference import load_references, match_references

__all__ = ["Collection", "ReportResult", "build_report", "collect_runs", "leaderboard",
           "load_references", "match_references", "write_leaderboard"]


def __getattr__(name: str) -> Any:
    """The plotting half loads on first use (matplotlib), so the CLI starts fast."""
    if name in ("build_report", "ReportResult"):
        from vlmface.report import build

        return getattr(build, name)
    raise AttributeError(f"module 'vlmface.report' has no attribute {name!r}")
