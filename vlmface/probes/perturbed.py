"""`vlmface probe --perturb SPEC`: the social-perception probe clean and at every perturbation level.

OUT/ holds the clean probe (the identity level of every perturbation), OUT/perturb-NAME-LEVEL/
each perturbed one, on the same selected images, all through one embedding cache (default
OUT/.cache), so a rerun re-encodes nothing. Then, per perturbation, the shift of each image's
dimension scores (image_scores.csv) vs the clean level, per factor group, with paired bootstrap
CIs (`vlmface.perturb.shift`): OUT/robustness/NAME__shift_levels.csv, NAME__shift_interactions.csv.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from vlmface.errors import VlmfaceError
from vlmface.perturb.apply import Perturbation
from vlmface.perturb.shift import shift_tables
from vlmface.probes import outputs as io
from vlmface.probes.method import method_for
from vlmface.probes.options import ProbeOptions
from vlmface.probes.run import probe as run_probe
from vlmface.probes.spec import load_probe, resolve_task
from vlmface.scoring.settings import ScoreSettings

OUT_DIR = "robustness"
SCORES_TABLE = "image_scores"
SCORES_FILE = f"{SCORES_TABLE}.csv"


def probe_sweep(probe: str | Path, task: str | Path, models: str | list[str], perturbations: list[Perturbation],
                options: ProbeOptions | None = None, **given: Any) -> list[Path]:
    """The clean probe into OUT, each perturbation level into OUT/<suffix>, then the shift tables;
    returns the paths of the tables written. options / given: those of `probe` (out, limit, n_boot, ...)."""
    o = ProbeOptions.of(options, **given)
    spec = load_probe(probe)
    method = method_for(spec.method, spec.module, spec.where)
    if SCORES_TABLE not in method.tables:
        raise VlmfaceError(f"--perturb: probe {spec.name!r} is a {spec.method} probe; shifts are measured on "
                           f"per-image scores ({SCORES_FILE}), which {spec.method} probes do not write")
    perturbed = [p for p in perturbations if p.level != p.spec.identity]  # the identity level is the clean probe
    out = o.out_dir
    if o.cache_dir is None:  # one cache for every level, not one per folder
        o = ProbeOptions.of(o, cache_dir=out / ".cache")
    clean = run_probe(probe, task, models, o)
    print(clean.summary())
    runs: dict[str, list[tuple[float, Path]]] = {}
    identity: dict[str, float] = {}
    for p in perturbed:
        result = run_probe(probe, task, models, o, out=out / p.suffix, perturbation=p)
        print(result.summary())
        runs.setdefault(p.name, []).append((p.level, result.out))
        identity[p.name] = p.spec.identity
    settings = ScoreSettings(n_boot=o.n_boot, seed=o.seed, confidence=o.confidence,
                             **({"min_group_n": spec.min_group_n} if hasattr(spec, "min_group_n") else {}))
    factors = spec.settings_for(resolve_task(task), o.preset).factors
    groups = pd.read_csv(out / "samples.csv", dtype=str, keep_default_na=False)
    group_columns = [c for c in groups.columns if c in factors]
    written = []
    for name, levels in runs.items():
        frame = shift_frame([(identity[name], out), *levels], groups[["sample_id", *group_columns]])
        tables = {"levels": [], "interactions": []}
        for model, part in frame.groupby("model", sort=False):
            for kind, table in shift_tables(part, identity[name], group_columns, settings,
                                            label=f"probe-shift/{name}").items():
                tables[kind].append(table.assign(model=model, perturbation=name))
        for kind, parts in tables.items():
            table = pd.concat(parts, ignore_index=True)
            table = table[["model", "perturbation", *[c for c in table.columns if c not in ("model", "perturbation")]]]
            path = out / OUT_DIR / f"{io.safe_name(name)}__shift_{kind}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            io.write_table(table, path)
            written.append(path)
    return written


def shift_frame(runs: list[tuple[float, Path]], groups: pd.DataFrame) -> pd.DataFrame:
    """The tidy input of `shift_tables`: each run's image_scores.csv at its level, with the groups."""
    parts = []
    for level, folder in runs:
        scores = pd.read_csv(folder / SCORES_FILE, dtype={"sample_id": str})
        parts.append(scores.assign(level=float(level)))
    return pd.concat(parts, ignore_index=True).merge(groups, on="sample_id", how="inner")
