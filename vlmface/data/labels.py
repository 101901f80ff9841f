"""Raw dataset values -> canonical labels, by name, and derived attributes.

Integer codes are only accepted through an explicit per-source `values` mapping: mirrors
of one dataset order their classes differently, so an index means nothing on its own.
"""

from __future__ import annotations

import math
from typing import Any

from vlmface.errors import SampleError, SpecError
from vlmface.tasks import SourceSpec, TaskSpec, normalise_label as _normalise


class LabelMapper:
    def __init__(self, task: TaskSpec, source_name: str, source: SourceSpec):
        self.task = task
        self.where = f"{task.where}: sources.{source_name}"
        self.source = source
        self._lookup: dict[str, dict[str, str]] = {}
        for name, attr in task.attributes.items():
            table = {_normalise(label): label for label in attr.labels}
            for raw, label in source.values.get(name, {}).items():
                table[_normalise(str(raw))] = label
            self._lookup[name] = table
        self._seen: dict[tuple, dict[str, str | float]] = {}  # labels_for's results by raw values

    def canonical(self, attribute: str, raw: Any) -> str | float:
        """One raw value -> the canonical label (or a number for numeric attributes)."""
        spec = self.task.attributes[attribute]
        if raw is None or (isinstance(raw, float) and math.isnan(raw)):
            raise SampleError(f"{attribute}: value is missing")
        if spec.kind == "numeric":
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise SampleError(f"{attribute}: {raw!r} is not a number") from None
            return int(value) if value.is_integer() else value
        label = self._lookup[attribute].get(_normalise(str(raw)))
        if label is None:
            raise SampleError(f"{attribute}: value {raw!r} is none of the labels {spec.labels}; "
                              f"map it in {self.where}.values.{attribute}")
        return label

    def check_raw_names(self, attribute: str, names: list[str]) -> None:
        """Fail early when a dataset's declared class names cannot all be mapped."""
        unmapped = [n for n in names if _normalise(str(n)) not in self._lookup[attribute]]
        if unmapped:
            raise SpecError(f"{self.where}: the dataset's {attribute!r} classes {unmapped} match no label of "
                            f"{self.task.attributes[attribute].labels}; add them to "
                            f"sources.<name>.values.{attribute} (raw name -> label)")

    def labels_for(self, raw_values: dict[str, Any]) -> dict[str, str | float]:
        """Canonical values for every source attribute present, plus every derived one. A dataset
        repeats few raw combinations (UTKFace: about a thousand over 9,780 faces), so each is
        mapped once; the key holds each value's type (1, 1.0 and "1" map differently)."""
        key = tuple((name, type(raw), raw) for name, raw in raw_values.items())
        try:
            return dict(self._seen[key])
        except KeyError:
            pass
        except TypeError:  # an unhashable raw value: mapped every time
            return self._labels_for(raw_values)
        labels = self._labels_for(raw_values)
        self._seen[key] = dict(labels)
        return labels

    def _labels_for(self, raw_values: dict[str, Any]) -> dict[str, str | float]:
        labels = {name: self.canonical(name, raw) for name, raw in raw_values.items()}
        for name, attr in self.task.attributes.items():
            if attr.derive is None or attr.derive.from_ not in labels:
                continue
            parent_value = labels[attr.derive.from_]
            if attr.derive.merge or self.task.attributes[attr.derive.from_].kind != "numeric":
                labels[name] = attr.derive.merge.get(parent_value, parent_value)
            else:
                labels[name] = bin_value(attr.bin_table(), parent_value, name)
        return labels


def bin_value(bins: tuple[tuple[str, float, float], ...], value: float, attribute: str) -> str:
    for label, lo, hi in bins:
        if lo <= value < hi:
            return label
    raise SampleError(f"{attribute}: {value} falls in none of the declared bins")
