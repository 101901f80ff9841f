"""The metric registry: each family of metrics in its own module, registered by name.

A family declares the attribute kinds it applies to and what it needs ("labels": predicted
and true labels; "probs": a probability per label on every answered line; "numeric":
numeric truths and answers). The scorer asks every applicable family, in registration
order, for its keys of `overall`, of each `by_group` row and of each `disparity` entry,
then lets each family finish the run (e.g. multiple-testing corrections across attributes);
the tables writer and the report ask each family for its tables. Adding a metric touches
one module here (and its test).

    @register
    class MyFamily(MetricFamily):
        name = "my_metric"
        kinds = ("categorical", "ordinal")
        needs = frozenset({"labels"})
        def by_group(self, ctx): return {value: {"my_metric": ...} for value in ctx.values}
"""

from __future__ import annotations

from vlmface.scoring.metrics.base import (KINDS_WITH_LABELS, NOT_ENOUGH, REGISTRY, GroupContext, MetricFamily,
                                          cell_note, families_for, group_context, headline_metric,
                                          min_cell_of, register, safe_name)

# the families, in the order their keys appear (importing a module registers its family)
from vlmface.scoring.metrics import (accuracy, rates, calibration, signed_error, directional,  # noqa: E402,F401
                                     reference, shrinkage, significance)

__all__ = ["KINDS_WITH_LABELS", "NOT_ENOUGH", "REGISTRY", "GroupContext", "MetricFamily", "cell_note",
           "families_for", "group_context", "headline_metric", "min_cell_of", "register", "safe_name"]
