"""What the scorer needs to know about each attribute: its kind and its ordered labels.

Read from run.json when it declares the attribute; inferred from the predictions
otherwise (numeric when every truth is a number, else categorical over the sorted
union of truths and predicted labels).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import pandas as pd

from vlmface.errors import PredictionsError
from vlmface.run_record import RUN_FILE, RunRecord

KINDS = ("categorical", "ordinal", "numeric")


@dataclass(frozen=True)
class ScoredAttribute:
    """An attribute as the scorer reads it (not the task spec's `tasks.AttributeSpec`)."""

    name: str
    kind: str
    labels: tuple[str, ...] = ()
    inferred: bool = False

    @property
    def is_numeric(self) -> bool:
        return self.kind == "numeric"


def declared_attribute(name: str, run: RunRecord | None) -> ScoredAttribute | None:
    entry = run.declared(name) if run is not None else None
    if entry is None:
        return None
    where = f"{RUN_FILE}: attributes.{name}"
    if entry.kind not in KINDS:
        raise PredictionsError(f"{where}.kind: unknown kind {entry.kind!r}; expected one of "
                               f"{', '.join(KINDS)}")
    labels = tuple(str(label) for label in entry.labels)
    if entry.kind != "numeric" and len(set(labels)) != len(labels):
        raise PredictionsError(f"{where}.labels: duplicate labels in {list(labels)}")
    return ScoredAttribute(name, entry.kind, labels)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def infer_attribute(name: str, frame: pd.DataFrame) -> ScoredAttribute:
    """Kind and labels from the records alone (run.json missing or silent on `name`)."""
    if all(_is_number(value) for value in frame["truth"]):
        return ScoredAttribute(name, "numeric", inferred=True)
    answered = frame.loc[frame["status"] == "ok", "label"]
    values = pd.concat([frame["truth"], answered]).map(str).unique()
    return ScoredAttribute(name, "categorical", tuple(sorted(values)), inferred=True)


def resolve_attribute(name: str, frame: pd.DataFrame, run: RunRecord | None) -> ScoredAttribute:
    spec = declared_attribute(name, run)
    if spec is None or (spec.kind != "numeric" and not spec.labels):
        inferred = infer_attribute(name, frame)
        if spec is None:
            return inferred
        return ScoredAttribute(name, spec.kind, inferred.labels, inferred=True)
    return spec


def group_columns(run: RunRecord | None, seen: list[str]) -> list[str]:
    """Group columns the records carry: run.json's order first, then any others as seen."""
    declared = [str(col) for col in ((run.group_columns if run else None) or []) if col in seen]
    return declared + [col for col in seen if col not in declared]
