"""What the scorer needs to know about each attribute: its kind and its ordered labels.

Read from run.json when it declares the attribute; inferred from the predictions
otherwise (numeric when every truth is a number, else categorical over the sorted
union of truths and predicted labels).
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vlmface.errors import PredictionsError
from vlmface.run_record import RUN_FILE

KINDS = ("categorical", "ordinal", "numeric")


@dataclass(frozen=True)
class AttributeSpec:
    name: str
    kind: str
    labels: tuple[str, ...] = ()
    inferred: bool = False

    @property
    def is_numeric(self) -> bool:
        return self.kind == "numeric"


def read_run_json(run_dir: Path) -> dict[str, Any] | None:
    """run.json's content, or None when the run has none (the scorer then infers)."""
    path = run_dir / RUN_FILE
    if not path.exists():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PredictionsError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); fix it or "
                               "delete run.json to let the scorer infer attribute kinds") from None
    if not isinstance(content, dict):
        raise PredictionsError(f"{path}: expected a JSON object, got {type(content).__name__}")
    return content


def declared_spec(name: str, run: dict[str, Any] | None) -> AttributeSpec | None:
    entry = ((run or {}).get("attributes") or {}).get(name)
    if entry is None:
        return None
    where = f"{RUN_FILE}: attributes.{name}"
    if not isinstance(entry, dict):
        raise PredictionsError(f"{where}: expected an object with 'kind' and 'labels'")
    kind = entry.get("kind", "categorical")
    if kind not in KINDS:
        raise PredictionsError(f"{where}.kind: unknown kind {kind!r}; expected one of "
                               f"{', '.join(KINDS)}")
    labels = tuple(str(label) for label in entry.get("labels") or ())
    if kind != "numeric" and len(set(labels)) != len(labels):
        raise PredictionsError(f"{where}.labels: duplicate labels in {list(labels)}")
    return AttributeSpec(name, kind, labels)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def infer_spec(name: str, frame: pd.DataFrame) -> AttributeSpec:
    """Kind and labels from the records alone (run.json missing or silent on `name`)."""
    if all(_is_number(value) for value in frame["truth"]):
        return AttributeSpec(name, "numeric", inferred=True)
    answered = frame.loc[frame["status"] == "ok", "label"]
    values = pd.concat([frame["truth"], answered]).map(str).unique()
    return AttributeSpec(name, "categorical", tuple(sorted(values)), inferred=True)


def resolve_spec(name: str, frame: pd.DataFrame, run: dict[str, Any] | None) -> AttributeSpec:
    spec = declared_spec(name, run)
    if spec is None or (spec.kind != "numeric" and not spec.labels):
        inferred = infer_spec(name, frame)
        if spec is None:
            return inferred
        return AttributeSpec(name, spec.kind, inferred.labels, inferred=True)
    return spec


def group_columns(run: dict[str, Any] | None, seen: list[str]) -> list[str]:
    """Group columns the records carry: run.json's order first, then any others as seen."""
    declared = [str(col) for col in ((run or {}).get("group_columns") or []) if col in seen]
    return declared + [col for col in seen if col not in declared]
