"""social_perception: delta cosine of faces to trait prompts vs a neutral prompt (Hausladen et
al., FAccT 2025). The measures are in `vlmface.probes.social`; this module wires them in."""

from __future__ import annotations

from typing import Any

import pandas as pd

from vlmface.probes import outputs as io
from vlmface.probes import social
from vlmface.probes.method import Analysed, ProbeData, ProbeFigure, ProbeMethod, register_method
from vlmface.probes.spec import SocialPerceptionSpec


@register_method
class SocialPerception(ProbeMethod):
    name = "social_perception"
    title = "social perception"
    spec_model = SocialPerceptionSpec
    options = frozenset({"convention", "delta"})
    tables = {
        "deltas": "per group: each dimension's mean delta cosine (x100) and each term's, with CIs",
        "markedness": "% of a group's images closer to the neutral prompt than to their own group word",
        "ranking": "Skew@k, MaxSkew@k and NDKL of the images ranked by each dimension",
        "intersections": "dimension means of every intersectional group (deltas format)",
        "extremes": "the highest and lowest intersectional groups of each dimension",
        "factor_pairs": "image pairs differing in one factor only, with their |delta delta cos|",
        "factor_effects": "median |delta delta cos| of those pairs per factor x dimension",
        "factor_tests": "Mann-Whitney U between the factors' pair differences",
        "image_scores": "each image's dimension scores (delta cos x100)",
    }
    shown = ("comparison", "markedness")
    compared = ("deltas", "markedness", "ranking", "intersections", "image_scores")

    def texts(self, spec: SocialPerceptionSpec, task, settings) -> list[str]:
        return social.prompt_texts(spec)

    def analyse(self, data: ProbeData) -> Analysed:
        o, settings = data.options, data.settings
        pairs = social.factor_pairs(data.table, settings, data.spec.pairs.n, o.seed)
        per_model = [social.analyse(m.name, m.images, m.texts, data.spec, settings, data.table, data.levels,
                                    pairs, n_boot=o.n_boot, confidence=o.confidence, seed=o.seed,
                                    convention=o.convention, delta=o.delta) for m in data.models]
        tables = {name: pd.concat([t[name] for t in per_model], ignore_index=True) for name in self.tables}
        extras = {m.name: t["markedness"][["group_col", "group", "markedness"]]
                  for m, t in zip(data.models, per_model)}
        measured = data.table[social.measure_rows(data.table, settings)]
        return Analysed(tables, io.dimension_long(tables["deltas"]), extras, measured)

    def figures(self, tables: dict[str, pd.DataFrame], name: str = "") -> list[ProbeFigure]:
        from vlmface.report.probe_plots import social_figures

        return social_figures(tables, name)

    def side_by_side(self, tables: dict[str, pd.DataFrame]) -> list[pd.DataFrame]:
        parts = []
        if "markedness" in tables and len(tables["markedness"]):
            m = tables["markedness"]
            parts.append(pd.DataFrame({"model": m["model"], "measure": "markedness", "dimension": m["word"],
                                       "group_col": m["group_col"], "group": m["group"], "k": pd.NA, "n": m["n"],
                                       "value": m["markedness"], "ci_lo": m["ci_lo"], "ci_hi": m["ci_hi"]}))
        if "ranking" in tables and len(tables["ranking"]):
            parts.append(tables["ranking"].assign(measure=tables["ranking"]["metric"]))
        return parts

    def fingerprint(self, spec: SocialPerceptionSpec, options) -> dict[str, Any]:
        return {"templates": list(spec.templates), "neutral": spec.neutral_prompts,
                "dimensions": {k: list(v) for k, v in spec.dimensions.items()}, "control": list(spec.control),
                "convention": options.convention or spec.convention, "delta": options.delta or spec.delta}
