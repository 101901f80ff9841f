"""build_report: results folder -> leaderboard.csv/.md, plots/*.png|svg, report.html."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from vlmface.errors import VlmfaceError
from vlmface.prompt_sets.report import sensitivity_html
from vlmface.report.collect import Collection, collect_runs
from vlmface.report.fairness import fairness_html, fairness_plan
from vlmface.report.gallery import plan
from vlmface.report.html import render_html
from vlmface.report.leaderboard import leaderboard, write_leaderboard
from vlmface.report.plots import save_figure
from vlmface.report.probes import ProbeFolder, find_probes, probes_html
from vlmface.report.reference import load_references, write_placements


@dataclass
class ReportResult:
    out_dir: Path
    leaderboard: pd.DataFrame
    csv: Path
    markdown: Path
    html: Path
    plots: list[Path] = field(default_factory=list)  # PNG and SVG files
    collection: Collection | None = None
    references: Path | None = None  # references.csv: every published number x run, placed or not and why

    @property
    def warnings(self) -> list[str]:
        return self.collection.warnings if self.collection else []

    def summary(self) -> str:
        runs = 0 if self.collection is None else len(self.collection.runs)
        lines = [f"{runs} run(s), {len(self.leaderboard)} leaderboard row(s), {len(self.plots) // 2} plot(s)",
                 f"  {self.csv}", f"  {self.markdown}", f"  {self.html}"]
        if self.references is not None:
            lines.append(f"  {self.references}")
        lines += [f"warning: {w}" for w in self.warnings]
        if self.collection:
            lines += [f"skipped {p}: {why}" for p, why in self.collection.skipped]
        return "\n".join(lines)


def _draw_all(collection: Collection, plots_dir: Path, probes: list[ProbeFolder]
              ) -> tuple[list[tuple[str, str, str, bytes]], list[Path]]:
    figures, files = [], []
    for item in [*plan(collection, probes), *fairness_plan(collection)]:
        png, svg, data = save_figure(item.draw(), plots_dir, item.stem)
        figures.append((item.section, item.stem, item.caption, data))
        files += [png, svg]
    return figures, files


def build_report(results_dir: Path, out_dir: Path | None = None, *, group_col: str | None = None,
                 references: Path | None = None, plots: bool = True) -> ReportResult:
    """Leaderboard, plots and one self-contained HTML file over every scored run in `results_dir`.

    out_dir defaults to RESULTS_DIR/report (never read back as a run). `group_col` picks the
    group column of the worst-group and gap columns (default: each task's first group column);
    `references` replaces vlmface/reference_numbers.yaml; `plots=False` skips the figures
    (leaderboard, references and manifests only: seconds instead of a minute on big folders).
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise VlmfaceError(f"results folder {results_dir} does not exist; pass the --out folder of "
                           "`vlmface eval` (default results/)")
    out_dir = Path(out_dir) if out_dir is not None else results_dir / "report"
    collection = collect_runs(results_dir, exclude=out_dir)
    collection.exclude = out_dir
    refs = load_references(references)
    board = leaderboard(collection, refs, group_col=group_col)
    csv_path, md_path = write_leaderboard(board, out_dir)
    references_csv, placed = write_placements(collection.overall, refs, out_dir)
    probes, unread = find_probes(results_dir, out_dir)
    collection.skipped += unread
    figures, files = _draw_all(collection, out_dir / "plots", probes) if plots else ([], [])
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    page = render_html(board=board, refs=refs, runs=collection.runs, figures=figures,
                       title="vlmface report",
                       subtitle=f"{len(collection.runs)} scored run(s) under {results_dir.resolve()}; "
                                f"generated {stamp}",
                       warnings=collection.warnings, skipped=collection.skipped, placements=placed,
                       fairness=fairness_html(collection),
                       sensitivity=sensitivity_html(results_dir, out_dir), probes=probes_html(probes))
    html_path = out_dir / "report.html"
    html_path.write_text(page, encoding="utf-8")
    return ReportResult(out_dir, board, csv_path, md_path, html_path, files, collection, references_csv)
