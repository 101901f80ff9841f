"""`vlmface prompt-sensitivity`: the predictions of a prompt sweep -> DEFAULT_RUN/prompt_sensitivity/.

Never runs a model. The images are those the default run could answer (status not "error")
and every variant holds; the pairing, what counts as correct (CS@5 for numeric attributes),
flips and the paired bootstrap (images resampled within groups, jointly across variants) are
the perturbation analysis's (vlmface.perturb.paired, vlmface.perturb.stats): a variant is a
"level" whose identity is the default. Output:

    prompt_sensitivity.json  settings, runs, pairing counts, notes, every table
    variants.csv|md      attribute x variant x group column x group: n, accuracy [CI],
                         difference from default [CI], flip rate vs default [CI],
                         invalid / refused / error rate
    spread.csv|md        per group: min, max, range and SD of accuracy across variants, share of
                         variants under which the group is the worst of its column, mean flip rate
                         over all pairs of variants
    gaps.csv|md          per variant and group pair: accuracy gap a - b [CI]
    interactions.csv|md  per variant (not default) and group pair: difference from default of a
                         and of b, interaction = their difference [CI] (difference of differences)
    flips.csv|md         per group and pair of variants: share of images answered differently
    plots/<attr>__accuracy.png, <attr>__gaps.png
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from vlmface.errors import VlmfaceError
from vlmface.perturb.paired import Paired, answers, flips, pair_attribute
from vlmface.perturb.stats import ALL, GroupDraws, _groupings
from vlmface.prompt_sets.runs import DEFAULT, PromptSweep, find_prompt_sweeps
from vlmface.scoring.bootstrap import percentile_ci, rng_for
from vlmface.scoring.tables import write_table_files
from vlmface.scoring.load import INVALID, REFUSED, AttributeData, load_run
from vlmface.scoring.metrics import safe_name
from vlmface.scoring.settings import ScoreSettings
from vlmface.scoring.tables import write_json

OUT_DIR = "prompt_sensitivity"
TABLES = ("variants", "spread", "gaps", "interactions", "flips")


@dataclass
class Sensitivity:
    sweep: PromptSweep
    out: Path
    tables: dict[str, pd.DataFrame]
    notes: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


@dataclass
class _Attribute:
    paired: Paired
    names: list[str]  # variant name per column (column 0: default)
    data: list[AttributeData]


def _pair(sweep: PromptSweep) -> tuple[list[_Attribute], list[str]]:
    default = load_run(sweep.default)
    loaded = {run.name: load_run(run.run_dir) for run in sweep.variants}
    found, notes = [], []
    for attribute, base in default.attributes.items():
        names, data = [DEFAULT], [base]
        for name, run in loaded.items():
            if attribute in run.attributes:
                names.append(name)
                data.append(run.attributes[attribute])
            else:
                notes.append(f"{name}: no predictions for {attribute!r}; left out")
        if len(names) < 2:
            continue
        paired = pair_attribute(base, [(float(i), d) for i, d in enumerate(data[1:], 1)], 0.0, sweep.set, "prompt")
        if paired.counts["n_missing"]:
            notes.append(f"{attribute}: {paired.counts['n_missing']} image(s) missing in some variant "
                         "(an unfinished run?) left out of every variant")
        found.append(_Attribute(paired, names, data))
    return found, notes


def _status_rates(item: _Attribute, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(invalid rate, refused rate) per variant over the paired images in `rows`."""
    invalid, refused = [], []
    for data in item.data:
        status = data.status[pd.Index(data.sample_id).get_indexer(item.paired.sample_id[rows])]
        invalid.append((status == INVALID).mean() if status.size else np.nan)
        refused.append((status == REFUSED).mean() if status.size else np.nan)
    return np.array(invalid), np.array(refused)


def _pairwise_flips(item: _Attribute, rows: np.ndarray) -> dict[tuple[str, str], float]:
    ids = item.paired.sample_id[rows]
    given = [answers(d, pd.Index(d.sample_id).get_indexer(ids)) for d in item.data]
    numeric = item.data[0].spec.is_numeric
    return {(item.names[i], item.names[j]): float(flips(given[i], given[j], numeric).mean()) if ids.size else np.nan
            for i, j in combinations(range(len(given)), 2)}


def _group_tables(item: _Attribute, settings: ScoreSettings) -> dict[str, list[dict]]:
    p, out = item.paired, {name: [] for name in TABLES}
    names = [item.names[int(level)] for level in p.levels]  # columns sorted by level = variant index
    key = {"attribute": p.attribute, "metric": p.metric}
    for col, codes, values in _groupings(p):
        groups: dict[str, GroupDraws] = {}
        for g, value in enumerate(values):
            rows = codes == g
            group = groups[value] = GroupDraws(p, rows, settings, rng_for(settings.seed, p.attribute, "prompt", col, value))
            acc_ci, diff_ci = percentile_ci(group.accuracy_draws, settings.confidence), percentile_ci(0.0 - group.drop_draws, settings.confidence) + 0.0
            flip_ci = percentile_ci(group.flip_draws, settings.confidence)
            invalid, refused = _status_rates(item, rows)
            small = group.n < max(settings.min_group_n, 1)
            for j in range(len(names)):
                out["variants"].append({**key, "variant": names[j], "default": j == p.clean, "group_column": col,
                    "group": value, "n": group.n, "accuracy": group.accuracy[j], "accuracy_ci_lo": acc_ci[0, j],
                    "accuracy_ci_hi": acc_ci[1, j], "difference": group.accuracy[j] - group.accuracy[p.clean], "difference_ci_lo": diff_ci[0, j],
                    "difference_ci_hi": diff_ci[1, j], "flip_rate": group.flip[j], "flip_rate_ci_lo": flip_ci[0, j],
                    "flip_rate_ci_hi": flip_ci[1, j], "invalid_rate": invalid[j], "refused_rate": refused[j],
                    "error_rate": group.error_rate[j], "small": small})
            pairwise = _pairwise_flips(item, rows)
            out["flips"] += [{**key, "group_column": col, "group": value, "n": group.n, "variant_a": a,
                              "variant_b": b, "flip_rate": rate} for (a, b), rate in pairwise.items()]
            out["spread"].append({**key, "group_column": col, "group": value, "n": group.n, "n_variants": len(names),
                "accuracy_default": group.accuracy[p.clean], "accuracy_min": np.nanmin(group.accuracy) if group.n else np.nan,
                "accuracy_max": np.nanmax(group.accuracy) if group.n else np.nan,
                "accuracy_range": np.ptp(group.accuracy) if group.n else np.nan,
                "accuracy_sd": float(np.std(group.accuracy, ddof=1)) if group.n and len(names) > 1 else np.nan,
                "worst_share": np.nan, "mean_pairwise_flip_rate": float(np.nanmean(list(pairwise.values()))),
                "small": small})
        if col != ALL:
            _between_groups(out, key, col, groups, names, p.clean, settings)
    return out


def _between_groups(out: dict[str, list[dict]], key: dict, col: str, groups: dict[str, GroupDraws],
                    names: list[str], clean: int, settings: ScoreSettings) -> None:
    eligible = [v for v, g in groups.items() if g.n >= max(settings.min_group_n, 1)]
    if eligible:
        worst = np.array([min(eligible, key=lambda v: groups[v].accuracy[j]) for j in range(len(names))])
        for row in out["spread"]:
            if row["group_column"] == col and row["group"] in eligible:
                row["worst_share"] = float((worst == row["group"]).mean())
    for a, b in combinations(eligible, 2):
        ga, gb = groups[a], groups[b]
        gap_ci = percentile_ci(ga.accuracy_draws - gb.accuracy_draws, settings.confidence)
        inter_ci = percentile_ci(gb.drop_draws - ga.drop_draws, settings.confidence)
        for j, name in enumerate(names):
            both = {**key, "variant": name, "group_column": col, "group_a": a, "group_b": b, "n_a": ga.n, "n_b": gb.n}
            out["gaps"].append({**both, "default": j == clean, "gap": ga.accuracy[j] - gb.accuracy[j],
                                "gap_ci_lo": gap_ci[0, j], "gap_ci_hi": gap_ci[1, j]})
            if j == clean:
                continue
            interaction = gb.drop[j] - ga.drop[j]
            out["interactions"].append({**both, "difference_a": 0.0 - ga.drop[j] + 0.0, "difference_b": 0.0 - gb.drop[j] + 0.0,
                "interaction": interaction, "interaction_ci_lo": inter_ci[0, j], "interaction_ci_hi": inter_ci[1, j],
                "ci_excludes_zero": bool(inter_ci[0, j] > 0 or inter_ci[1, j] < 0)})


def sensitivity_tables(items: list[_Attribute], settings: ScoreSettings) -> dict[str, pd.DataFrame]:
    rows: dict[str, list[dict]] = {name: [] for name in TABLES}
    for item in items:
        for name, found in _group_tables(item, settings).items():
            rows[name] += found
    return {name: pd.DataFrame(found) for name, found in rows.items()}


def _write_plots(out: Path, tables: dict[str, pd.DataFrame]) -> list[Path]:
    from vlmface.perturb.plots import save_figure
    from vlmface.prompt_sets.plots import plot_accuracy, plot_gaps

    written = []
    for attribute, rows in tables["variants"].groupby("attribute", sort=False):
        written.append(save_figure(plot_accuracy(rows), out / "plots" / f"{safe_name(attribute)}__accuracy.png"))
        gaps = tables["gaps"]
        if len(gaps) and len(gaps[gaps["attribute"] == attribute]):
            written.append(save_figure(plot_gaps(gaps[gaps["attribute"] == attribute]),
                                       out / "plots" / f"{safe_name(attribute)}__gaps.png"))
    return written


def analyze_prompt_sweep(sweep: PromptSweep, out: Path | None, settings: ScoreSettings,
                         plots: bool = True) -> Sensitivity:
    items, notes = _pair(sweep)
    if not items:
        raise VlmfaceError(f"{sweep.default}: no attribute is shared by the default and the variant runs")
    tables = sensitivity_tables(items, settings)
    out = Path(out) if out else sweep.default / OUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "prompt_sensitivity.json", {
        "sweep": {"default_run": str(sweep.default), "set": sweep.set, "task": sweep.record.task,
                  "model": sweep.record.model,
                  "runs": [{"variant": r.name, "run_dir": str(r.run_dir), **r.described} for r in sweep.variants],
                  "paired": {i.paired.attribute: i.paired.counts for i in items}},
        "notes": notes,
        "scoring": {**settings.to_json(), "ci_method": "percentile bootstrap over images, within groups, "
                    "jointly across variants (paired)"},
        **{name: frame.to_dict(orient="records") for name, frame in tables.items()}})
    written = [out / "prompt_sensitivity.json", *write_table_files(out, tables)]
    if plots:
        written += _write_plots(out, tables)
    return Sensitivity(sweep, out, tables, notes, written)


def prompt_sensitivity(paths: list[str | Path], out: str | Path | None = None, *, n_boot: int = 1000,
                       seed: int = 0, confidence: float = 0.95, min_group_n: int = 30,
                       plots: bool = True) -> list[Sensitivity]:
    """Analyse every prompt sweep found under `paths` (run directories or folders of them)."""
    settings = ScoreSettings(min_group_n=min_group_n, n_boot=n_boot, seed=seed, confidence=confidence)
    sweeps = find_prompt_sweeps(paths)
    defaults = [s.default for s in sweeps]
    shared = sorted({str(d) for d in defaults if defaults.count(d) > 1})
    if out is None and shared:
        raise VlmfaceError(f"{shared[0]} is the default run of several prompt sets "
                           f"({', '.join(s.set for s in sweeps if str(s.default) == shared[0])}); they would write "
                           f"the same {OUT_DIR}/: pass the runs of one set with --out FOLDER")
    if out is not None and len(sweeps) > 1:
        raise VlmfaceError(f"{len(sweeps)} prompt sweeps found; with --out pass the runs of one, or drop "
                           f"--out to write each into DEFAULT_RUN/{OUT_DIR}/")
    return [analyze_prompt_sweep(s, Path(out) if out else None, settings, plots) for s in sweeps]


def _pct(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{100 * value:.1f}"


def format_sensitivity(result: Sensitivity, max_pairs: int = 5) -> str:
    variants, inter = result.tables["variants"], result.tables["interactions"]
    lines = [f"prompt sensitivity of {result.sweep.default} ({result.sweep.set}) -> {result.out}"]
    for attribute, rows in variants[variants["group_column"] == ALL].groupby("attribute", sort=False):
        shown = ", ".join(f"{r.variant}: {_pct(r.accuracy)} [{_pct(r.accuracy_ci_lo)}, {_pct(r.accuracy_ci_hi)}]"
                          for r in rows.itertuples())
        lines.append(f"{attribute} ({rows['metric'].iloc[0]} %, n={rows['n'].iloc[0]}): {shown}")
        if len(inter):
            hits = inter[(inter["attribute"] == attribute) & inter["ci_excludes_zero"]]
            hits = hits.reindex(hits["interaction"].abs().sort_values(ascending=False).index)
            for r in hits.head(max_pairs).itertuples():
                lines.append(f"  {r.group_column} @ {r.variant}: {r.group_a} {_pct(r.difference_a)} pp, {r.group_b} "
                             f"{_pct(r.difference_b)} pp vs default; interaction {_pct(r.interaction)} "
                             f"[{_pct(r.interaction_ci_lo)}, {_pct(r.interaction_ci_hi)}]")
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)
