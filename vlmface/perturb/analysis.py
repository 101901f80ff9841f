"""`vlmface robustness`: persisted predictions of a sweep -> robustness/ tables and plots.

Never runs a model. Output folder (default: CLEAN_RUN/robustness/):

    robustness.json          settings, the runs used, pairing counts, notes, every row below
    levels.csv|md            attribute x perturbation x level x group column x group:
                             n, accuracy [CI], drop from clean [CI], flip rate [CI], answered
                             accuracy, answer-error / invalid / refusal rates, MAE
                             (the scorer's error policy: a perturbed run's own `vlmface score`
                             accuracy equals its row here on a complete sweep)
    interactions.csv|md      attribute x perturbation x level x group pair: drops, interaction [CI]
    plots/<attr>__<perturbation>__curves.png, __interaction.png

Definitions: `vlmface.perturb.paired` (which images, what counts as wrong, flips) and
`vlmface.perturb.stats` (drops, interactions, paired bootstrap).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vlmface.errors import VlmfaceError
from vlmface.perturb.stats import ALL, robustness_tables
from vlmface.perturb.paired import pair_sweep
from vlmface.perturb.runs import Sweep, find_sweeps
from vlmface.scoring.metrics import safe_name
from vlmface.scoring.settings import ScoreSettings
from vlmface.scoring.tables import write_json, write_table_files

OUT_DIR = "robustness"


@dataclass
class Robustness:
    sweep: Sweep
    out: Path
    tables: dict[str, pd.DataFrame]
    notes: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


def _write_plots(out: Path, tables: dict[str, pd.DataFrame]) -> list[Path]:
    from vlmface.perturb.plots import plot_curves, plot_interactions, save_figure

    written = []
    levels, interactions = tables["levels"], tables["interactions"]
    for (attribute, perturbation), rows in levels.groupby(["attribute", "perturbation"], sort=False):
        stem = f"{safe_name(attribute)}__{safe_name(perturbation)}"
        written.append(save_figure(plot_curves(rows), out / "plots" / f"{stem}__curves.png"))
        if len(interactions):
            pairs = interactions[(interactions["attribute"] == attribute)
                                 & (interactions["perturbation"] == perturbation)]
            if len(pairs):
                written.append(save_figure(plot_interactions(pairs), out / "plots" / f"{stem}__interaction.png"))
    return written


def _sweep_facts(sweep: Sweep, paired_counts: dict[str, Any]) -> dict[str, Any]:
    return {"clean_run": str(sweep.clean),
            "task": sweep.record.task, "model": sweep.record.model,
            "runs": [{"perturbation": r.name, "transform": r.transform, "level": r.level,
                      "params": r.params, "run_dir": str(r.run_dir)} for r in sweep.perturbed],
            "paired": paired_counts}


def analyze_sweep(sweep: Sweep, out: Path | None, settings: ScoreSettings, plots: bool = True) -> Robustness:
    paired, notes = pair_sweep(sweep)
    if not paired:
        raise VlmfaceError(f"{sweep.clean}: no attribute is shared by the clean and the perturbed runs")
    tables = robustness_tables(paired, settings)
    out = Path(out) if out else sweep.clean / OUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    counts = {f"{p.attribute}|{p.perturbation}": p.counts for p in paired}
    write_json(out / "robustness.json", {
        "sweep": _sweep_facts(sweep, counts), "notes": notes,
        "scoring": {**settings.to_json(), "ci_method": "percentile bootstrap over images, within groups, "
                    "jointly across levels (paired)"},
        "levels": tables["levels"].to_dict(orient="records"),
        "interactions": tables["interactions"].to_dict(orient="records")})
    written = [out / "robustness.json", *write_table_files(out, tables)]
    if plots:
        written += _write_plots(out, tables)
    return Robustness(sweep, out, tables, notes, written)


def robustness(paths: list[str | Path], out: str | Path | None = None, *, n_boot: int = 1000, seed: int = 0,
               confidence: float = 0.95, min_group_n: int = 30, plots: bool = True) -> list[Robustness]:
    """Analyse every sweep found under `paths` (run directories or folders of them)."""
    settings = ScoreSettings(min_group_n=min_group_n, n_boot=n_boot, seed=seed, confidence=confidence)
    sweeps = find_sweeps(paths)
    if out is not None and len(sweeps) > 1:
        raise VlmfaceError(f"{len(sweeps)} sweeps found (clean runs {', '.join(str(s.clean) for s in sweeps)}); "
                           "with --out pass the runs of one sweep, or drop --out to write each into "
                           f"CLEAN_RUN/{OUT_DIR}/")
    return [analyze_sweep(sweep, Path(out) if out else None, settings, plots) for sweep in sweeps]


def _pct(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{100 * value:.1f}"


def format_robustness(result: Robustness, max_pairs: int = 5) -> str:
    """Per attribute and perturbation: overall accuracy by level, then the interactions whose
    CI excludes zero (largest first)."""
    levels, interactions = result.tables["levels"], result.tables["interactions"]
    lines = [f"robustness of {result.sweep.clean} -> {result.out}"]
    overall = levels[levels["group_column"] == ALL]
    for (attribute, perturbation), rows in overall.groupby(["attribute", "perturbation"], sort=False):
        metric = rows["metric"].iloc[0]
        curve = ", ".join(f"{r.level:g}{'*' if r.clean else ''}: {_pct(r.accuracy)} "
                          f"[{_pct(r.accuracy_ci_lo)}, {_pct(r.accuracy_ci_hi)}]" for r in rows.itertuples())
        lines.append(f"{attribute} / {perturbation} ({metric} %, * = clean, n={rows['n'].iloc[0]}): {curve}")
        if (rows["answer_error_rate"].fillna(0) > 0).any():
            lines.append("  answer errors (counted wrong) %: " + ", ".join(
                f"{r.level:g}: {_pct(r.answer_error_rate)}" for r in rows.itertuples())
                + "; answered-only accuracy %: " + ", ".join(
                f"{r.level:g}: {_pct(r.answered_accuracy)}" for r in rows.itertuples()))
        if len(interactions):
            pairs = interactions[(interactions["attribute"] == attribute)
                                 & (interactions["perturbation"] == perturbation) & interactions["ci_excludes_zero"]]
            pairs = pairs.reindex(pairs["interaction"].abs().sort_values(ascending=False).index)
            for r in pairs.head(max_pairs).itertuples():
                lines.append(f"  {r.group_column} @ {r.level:g}: {r.group_a} drops {_pct(r.drop_a)} pp, "
                             f"{r.group_b} {_pct(r.drop_b)} pp; difference {_pct(r.interaction)} "
                             f"[{_pct(r.interaction_ci_lo)}, {_pct(r.interaction_ci_hi)}]")
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)
