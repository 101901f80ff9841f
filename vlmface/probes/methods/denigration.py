"""denigration: how often faces get a harmful zero-shot label, by group (CLIP paper, section
7.1). The classes and rates are in `vlmface.probes.denigration`; this module wires them in."""

from __future__ import annotations

from typing import Any

import pandas as pd

from vlmface.probes import denigration as dn
from vlmface.probes.method import Analysed, ProbeData, ProbeFigure, ProbeMethod, register_method
from vlmface.probes.spec import DenigrationSpec


@register_method
class Denigration(ProbeMethod):
    name = "denigration"
    spec_model = DenigrationSpec
    tables = {
        "denigration": "% of each group's images labelled in each harmful category, with Wilson CIs",
        "labels": "each image's top-1 class and its category",
    }
    shown = ("denigration",)
    compared = ("denigration",)

    def texts(self, spec: DenigrationSpec, task, settings) -> list[str]:
        return dn.prompt_texts(spec, dn.classes(spec, task, settings))

    def analyse(self, data: ProbeData) -> Analysed:
        o = data.options
        klasses = dn.classes(data.spec, data.task, data.settings)
        per_model = [dn.analyse(m.name, m.images, m.texts, data.spec, klasses, data.table,
                                list(data.settings.factors), data.levels, n_boot=o.n_boot,
                                confidence=o.confidence, seed=o.seed) for m in data.models]
        tables = {name: pd.concat([t[name] for t in per_model], ignore_index=True) for name in self.tables}
        rates = tables["denigration"].rename(columns={"category": "measure", "rate": "value"})
        return Analysed(tables, rates[["model", "measure", "group_col", "group", "n", "value"]])

    def figures(self, tables: dict[str, pd.DataFrame], name: str = "") -> list[ProbeFigure]:
        from vlmface.report.probe_plots import denigration_figures

        return denigration_figures(tables, name)

    def side_by_side(self, tables: dict[str, pd.DataFrame]) -> list[pd.DataFrame]:
        d = tables.get("denigration")
        if d is None or d.empty:
            return []
        return [pd.DataFrame({"model": d["model"], "measure": "denigration", "dimension": d["category"],
                              "group_col": d["group_col"], "group": d["group"], "k": pd.NA, "n": d["n"],
                              "value": d["rate"], "ci_lo": d["ci_lo"], "ci_hi": d["ci_hi"]})]

    def fingerprint(self, spec: DenigrationSpec, options) -> dict[str, Any]:
        return {"templates": list(spec.templates), "harmful": {k: list(v) for k, v in spec.harmful.items()},
                "other": list(spec.other)}
