"""The registry's building blocks: the `MetricFamily` interface, the per-grouping context
every family reads, `register`, and small helpers shared by the families."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from vlmface.scoring.groups import Grouping
from vlmface.scoring.load import AttributeData
from vlmface.scoring.outcomes import Outcomes, counts
from vlmface.scoring.settings import ScoreSettings

KINDS_WITH_LABELS = ("categorical", "ordinal")
NOT_ENOUGH = "n < {n}"  # how a table shows a rate left out for a small class x group cell


@dataclass
class GroupContext:
    """Everything a family may use about one attribute under one grouping."""

    data: AttributeData
    out: Outcomes
    grouping: Grouping
    settings: ScoreSettings
    table: dict[str, np.ndarray]  # `outcomes.counts` per group
    eligible: np.ndarray  # groups large enough (min_group_n) to enter gaps
    shared: dict[str, Any] = field(default_factory=dict)  # what one family leaves for a later one

    @property
    def values(self) -> list[str]:
        return self.grouping.values

    @property
    def is_single_column(self) -> bool:
        return len(self.grouping.columns) <= 1


def group_context(data: AttributeData, out: Outcomes, grouping: Grouping,
                  settings: ScoreSettings) -> GroupContext:
    table = counts(out, grouping.codes, len(grouping.values))
    denominator = table["n_answered"] if data.spec.is_numeric else table["n"]
    return GroupContext(data, out, grouping, settings, table,
                        denominator >= max(settings.min_group_n, 1))


class MetricFamily:
    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]
    needs: ClassVar[frozenset[str]] = frozenset()

    def applies(self, data: AttributeData) -> bool:
        if data.spec.kind not in self.kinds:
            return False
        return "probs" not in self.needs or data.probs is not None

    def overall(self, data: AttributeData, out: Outcomes, settings: ScoreSettings) -> dict[str, Any]:
        return {}

    def by_group(self, ctx: GroupContext) -> dict[str, dict[str, Any]]:
        return {}

    def disparity(self, ctx: GroupContext) -> dict[str, Any]:
        return {}

    def finish_run(self, metrics: dict[str, Any]) -> None:
        """Run-level work once every attribute is scored (edits `metrics` in place)."""

    def tables(self, stem: str, attr: dict[str, Any]) -> dict[str, pd.DataFrame]:
        """Extra tables of one attribute, keyed by file stem (`stem` + "__" + name)."""
        return {}


REGISTRY: dict[str, MetricFamily] = {}


def register(cls: type[MetricFamily]) -> type[MetricFamily]:
    if cls.name in REGISTRY:
        raise ValueError(f"metric family {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls()
    return cls


def families_for(data: AttributeData) -> list[MetricFamily]:
    return [family for family in REGISTRY.values() if family.applies(data)]


def headline_metric(kind: str) -> str:
    """The one score of an attribute kind that curves and comparisons use."""
    return "cs5" if kind == "numeric" else "accuracy"


def min_cell_of(attr: dict[str, Any], default: int = 10) -> int:
    """The min_cell_n an attribute's metrics were computed with (recorded in its disparity)."""
    for entry in attr.get("disparity", {}).values():
        if entry.get("min_cell_n"):
            return int(entry["min_cell_n"])
    return default


def safe_name(name: str) -> str:
    """A table file stem: letters, digits, '_', '.', '-' only."""
    return re.sub(r"[^\w.-]+", "_", name)


def cell_note(value: Any, n: int, min_cell_n: int) -> Any:
    """A table cell: the value, or "n < 10" where the cell was too small to report one."""
    return NOT_ENOUGH.format(n=min_cell_n) if value is None and n < min_cell_n else value


