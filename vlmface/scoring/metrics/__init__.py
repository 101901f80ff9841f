"""The metric registry: each family of metrics in its own module, registered by name.

A family declares the attribute kinds it applies to and what it needs ("labels": predicted
and true labels; "probs": a probability per label on every answered line; "numeric":
numeric truths and answers). The scorer asks every applicable family, in registration
order, for its keys of `overall`, of each `by_group` row and of each `disparity` entry,
then lets each family finish the run (e.g. multiple-testing corrections across attributes);
the tables writer and the report ask each family for its tables. Adding a metric is one
module here: every module of this package is imported (the built-in families first, in
their order, then any other module by name), and its `@register` adds it (docs/extending.md).

    @register
    class MyFamily(MetricFamily):
        name = "my_metric"
        kinds = ("categorical", "ordinal")
        needs = frozenset({"labels"})
        def by_group(self, ctx): return {value: {"my_metric": ...} for value in ctx.values}
"""

from __future__ import annotations

import importlib
import pkgutil

from vlmface.scoring.metrics.base import (KINDS_WITH_LABELS, NOT_ENOUGH, REGISTRY, GroupContext, MetricFamily,
                                          cell_note, families_for, group_context, headline_metric,
                                          min_cell_of, register, safe_name)

# the built-in families, in the order their keys appear
BUILT_IN = ("accuracy", "rates", "calibration", "signed_error", "directional", "reference", "shrinkage",
            "significance")


def load_families() -> None:
    """Import (so register) the built-in families, then every other module of this package by
    name. Importing a module twice does nothing, so calling this again only adds new ones."""
    for name in BUILT_IN:
        importlib.import_module(f"{__name__}.{name}")
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.name != "base" and not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


load_families()

__all__ = ["KINDS_WITH_LABELS", "NOT_ENOUGH", "REGISTRY", "GroupContext", "MetricFamily", "cell_note",
           "families_for", "group_context", "headline_metric", "load_families", "min_cell_of", "register",
           "safe_name"]
