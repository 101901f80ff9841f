"""predictions.jsonl (+ run.json) -> one encoded `AttributeData` per attribute.

Lines are read and validated by `vlmface.predictions.iter_records` (line-numbered
errors, truncated last line tolerated). Here the records become columns: status codes,
integer label codes (categorical/ordinal) or floats (numeric), and one pandas
Categorical per group column, so every metric downstream is a numpy bincount.
"""

from __future__ import annotations

import json
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vlmface.errors import PredictionsError
from vlmface.predictions import LEGACY_ERROR_KIND, STATUSES, iter_records
from vlmface.run_record import PREDICTIONS_FILE, RunRecord, read_run
from vlmface.scoring.attributes import ScoredAttribute, group_columns, resolve_attribute

OK, INVALID, REFUSED, ERROR = (STATUSES.index(s) for s in ("ok", "invalid", "refused", "error"))
BASE_COLUMNS = ("sample_id", "attribute", "label", "status", "truth")
OPTIONAL_COLUMNS = ("error_kind", "probs")  # None where a line does not carry them


@dataclass
class AttributeData:
    """The records of one attribute, encoded. `pred` is -1 / NaN where status is not ok."""

    spec: ScoredAttribute
    labels: tuple[str, ...]  # spec labels, then any undeclared label found in the data
    sample_id: np.ndarray
    status: np.ndarray  # int8 index into STATUSES
    truth: np.ndarray  # int label codes, or floats for numeric attributes
    pred: np.ndarray
    groups: dict[str, pd.Categorical]
    answer_error: np.ndarray | None = None  # bool: status "error" of kind "answer"
    probs: np.ndarray | None = None  # (n, labels) float where every ok line has probs, else None
    cache: dict[str, Any] = field(default_factory=dict)  # per-item values metric families reuse

    def __post_init__(self) -> None:
        if self.answer_error is None:
            self.answer_error = np.zeros(self.status.size, dtype=bool)

    @property
    def data_error(self) -> np.ndarray:
        """Left out of every metric: the image could not be read (or legacy "error" lines)."""
        return (self.status == ERROR) & ~self.answer_error

    @property
    def undeclared_labels(self) -> tuple[str, ...]:
        return self.labels[len(self.spec.labels):]


@dataclass
class RunData:
    path: Path
    run: RunRecord | None  # run.json; None when the run has none
    attributes: dict[str, AttributeData]
    group_columns: list[str]


class _Probs:
    """Every line's probabilities in one flat float array: a line keeps (label order, offset),
    the order tuple shared between lines (a dict per line would double the scorer's memory)."""

    def __init__(self) -> None:
        self.flat = array("d")
        self.orders: dict[tuple, tuple] = {}

    def add(self, probs: Any, path: Path, record: dict[str, Any]) -> tuple[tuple, int] | None:
        if not isinstance(probs, dict):
            return None
        order = tuple(probs)
        order = self.orders.setdefault(order, order)
        offset = len(self.flat)
        try:
            self.flat.extend(probs.values())
        except TypeError:
            line = _line_numbers(path, str(record["sample_id"]), record["attribute"])[0]
            raise PredictionsError(f"{path}:{line}: probs must map labels to numbers (got "
                                   f"{probs!r}); fix the line or set probs to null and re-score") from None
        return order, offset

    def table(self, refs: np.ndarray, labels: list[str]) -> np.ndarray | None:
        """(len(refs), labels) probabilities; None if a ref is missing (an answered line without probs)."""
        if any(ref is None for ref in refs):
            return None
        values = np.frombuffer(self.flat, dtype=float) if len(self.flat) else np.zeros(0)
        out = np.zeros((len(refs), len(labels)))
        orders = np.array([id(ref[0]) for ref in refs])
        offsets = np.array([ref[1] for ref in refs], dtype=np.int64)
        for order in {id(ref[0]): ref[0] for ref in refs}.values():
            rows = orders == id(order)
            for j, label in enumerate(labels):
                if label in order:
                    out[rows, j] = values[offsets[rows] + order.index(label)]
        return out


def _collect_columns(path: Path) -> tuple[dict[str, list], dict[str, list], _Probs]:
    base: dict[str, list] = {key: [] for key in BASE_COLUMNS + OPTIONAL_COLUMNS}
    groups: dict[str, list] = {}
    probs = _Probs()
    appends = [(base[key].append, key) for key in BASE_COLUMNS]
    error_kinds, refs = base["error_kind"].append, base["probs"].append
    for n, record in enumerate(iter_records(path)):
        for append, key in appends:
            append(record[key])
        error_kinds(record.get("error_kind"))
        refs(probs.add(record.get("probs"), path, record))
        row_groups = record["groups"]
        for col in row_groups.keys() - groups.keys():
            groups[col] = [None] * n
        for col, values in groups.items():
            values.append(row_groups.get(col))
    return base, groups, probs


def _line_numbers(path: Path, sample_id: str, attribute: str) -> list[int]:
    """Where a duplicated (sample, attribute) pair sits; only called to write the error."""
    numbers = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if str(record.get("sample_id")) == sample_id and record.get("attribute") == attribute:
                numbers.append(number)
    return numbers


def _check_duplicates(frame: pd.DataFrame, path: Path) -> None:
    duplicated = frame.duplicated(["sample_id", "attribute"], keep=False)
    if not duplicated.any():
        return
    first = frame.loc[duplicated.idxmax()]
    lines = _line_numbers(path, first["sample_id"], first["attribute"])
    raise PredictionsError(
        f"{path}: sample {first['sample_id']!r}, attribute {first['attribute']!r} appears "
        f"more than once (lines {', '.join(map(str, lines))}); keep one line per "
        f"(sample_id, attribute) and re-score")


def read_frame(path: Path) -> tuple[pd.DataFrame, list[str], _Probs]:
    """All records as one DataFrame (group columns prefixed 'g:'), the group column names and
    the probabilities store its "probs" column points into."""
    base, groups, probs = _collect_columns(path)
    if not base["sample_id"]:
        raise PredictionsError(f"{path}: no predictions to score; run `vlmface eval` first")
    frame = pd.DataFrame({key: pd.Series(values, dtype=object) for key, values in base.items()})
    frame["sample_id"] = _as_text(frame["sample_id"])
    for col, values in groups.items():
        frame["g:" + col] = _group_values(values)
    _check_duplicates(frame, path)
    # one order whatever order the lines came in (Ray's actors write them as batches finish),
    # so that sums, and so every float of metrics.json, do not depend on it
    frame = frame.sort_values(["attribute", "sample_id"], kind="stable", ignore_index=True)
    return frame, list(groups), probs


def _as_text(values: pd.Series) -> pd.Series:
    if pd.api.types.infer_dtype(values, skipna=False) == "string":
        return values  # the usual case; skips a Python-level map over every row
    return values.map(str)


def _encode_labels(values: pd.Series, labels: list[str]) -> np.ndarray:
    """Integer codes into `labels`, appending any value not there yet (in sorted order)."""
    text = _as_text(values)
    unknown = sorted(set(text.unique()) - set(labels))
    labels.extend(unknown)
    return pd.Categorical(text, categories=labels).codes.astype(np.int64)


def _check_answer_labels(frame: pd.DataFrame, ok: np.ndarray, spec: ScoredAttribute,
                         path: Path | None) -> None:
    """An ok answer must be one of the declared labels: never a class of its own."""
    if spec.inferred or not spec.labels:
        return
    text = _as_text(frame["label"][ok])
    outside = ~text.isin(spec.labels)
    if not outside.any():
        return
    row = outside.idxmax()
    sample_id = frame.at[row, "sample_id"]
    where = f"{path}:{_line_numbers(path, sample_id, spec.name)[0]}: " if path else ""
    raise PredictionsError(
        f"{where}sample {sample_id!r}: status 'ok' with label {text[row]!r}, which is not one of "
        f"{spec.name!r}'s labels ({', '.join(spec.labels)}); map it to a label, or mark the line "
        f"status 'invalid' with label null (`vlmface reparse`), and re-score")


def _answer_errors(frame: pd.DataFrame, status: np.ndarray) -> np.ndarray:
    if "error_kind" not in frame:
        return np.zeros(len(frame), dtype=bool)
    kind = frame["error_kind"].fillna(LEGACY_ERROR_KIND).to_numpy()
    return (status == ERROR) & (kind == "answer")


def _probabilities(frame: pd.DataFrame, ok: np.ndarray, labels: list[str], spec: ScoredAttribute,
                   path: Path | None, store: _Probs | None) -> np.ndarray | None:
    """(n, labels) probabilities, NaN rows where not answered; None unless every ok line has them."""
    if store is None or "probs" not in frame or not ok.any():
        return None
    values = store.table(frame["probs"].to_numpy()[ok], labels)
    if values is None:
        return None
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():  # NaN / Infinity, or 1e999, which JSON reads as inf
        sample_id = frame["sample_id"].to_numpy()[ok][np.argmax(bad)]
        where = f"{path}:{_line_numbers(path, sample_id, spec.name)[0]}: " if path else ""
        raise PredictionsError(f"{where}sample {sample_id!r}: a probability is not a finite number; fix "
                               "the line or set probs to null and re-score")
    table = np.full((len(frame), len(labels)), np.nan)
    table[ok] = values
    return table


def _numeric(values: pd.Series, frame: pd.DataFrame, what: str, spec: ScoredAttribute,
             path: Path | None) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce")
    infinite = np.isinf(numbers.to_numpy(dtype=float))
    if infinite.any():  # e.g. 1e999, which JSON reads as inf
        row = values.index[np.argmax(infinite)]
        sample_id = frame.at[row, "sample_id"]
        where = f"{path}:{_line_numbers(path, sample_id, spec.name)[0]}: " if path else ""
        raise PredictionsError(f"{where}sample {sample_id!r}: {what} is not a finite number; fix the line "
                               "and re-score")
    bad = numbers.isna() & values.notna()
    if bad.any():
        row = bad.idxmax()
        sample_id = frame.at[row, "sample_id"]
        where = f"{path}:{_line_numbers(path, sample_id, spec.name)[0]}: " if path else ""
        raise PredictionsError(
            f"{where}sample {sample_id!r}: {what} {values[row]!r} is not a number, but "
            f"attribute {spec.name!r} is numeric; fix run.json's kind or the predictions")
    return numbers.to_numpy(dtype=float)


def encode_attribute(frame: pd.DataFrame, spec: ScoredAttribute, cols: list[str],
                     path: Path | None = None, store: _Probs | None = None) -> AttributeData:
    """`path` (the predictions file) is only used to name the line in an error; `store` holds
    the probabilities the frame's "probs" column points into."""
    status = pd.Categorical(frame["status"], categories=STATUSES).codes.astype(np.int8)
    ok = status == OK
    if spec.is_numeric:
        labels: list[str] = []
        truth = _numeric(frame["truth"], frame, "truth", spec, path)
        pred = np.full(len(frame), np.nan)
        pred[ok] = _numeric(frame["label"][ok], frame, "label", spec, path)
    else:
        _check_answer_labels(frame, ok, spec, path)
        labels = list(spec.labels)
        truth = _encode_labels(frame["truth"], labels)
        pred = np.full(len(frame), -1, dtype=np.int64)
        pred[ok] = _encode_labels(frame["label"][ok], labels)
    groups = {col: frame["g:" + col].array.remove_unused_categories()
              for col in cols if frame["g:" + col].notna().any()}
    probs = None if spec.is_numeric else _probabilities(frame, ok, labels, spec, path, store)
    return AttributeData(spec, tuple(labels), frame["sample_id"].to_numpy(), status, truth,
                         pred, groups, _answer_errors(frame, status), probs)


def _group_values(values: list) -> pd.Categorical:
    """Group values as text categories (sorted); null stays missing."""
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    names = [str(value) for value in uniques]
    categories = sorted(set(names))
    position = {name: i for i, name in enumerate(categories)}
    remap = np.array([position[name] for name in names] + [-1], dtype=np.int64)
    return pd.Categorical.from_codes(remap[codes], categories=categories)


MAX_GROUP_VALUES = 1000  # default cap on a group column's distinct values
UNIQUE_CHECK_FLOOR = 20  # the "more than half the samples unique" rule applies above this many values


def check_group_columns(frame: pd.DataFrame, cols: list[str], path: Path,
                        max_values: int = MAX_GROUP_VALUES) -> None:
    """A group column must name groups: refuse one with too many values or one unique per sample."""
    samples = frame["sample_id"].nunique()
    for col in cols:
        distinct = len(frame["g:" + col].cat.categories)
        too_many = distinct > max_values
        near_unique = distinct > UNIQUE_CHECK_FLOOR and distinct > samples / 2
        if too_many or near_unique:
            why = (f"more than the cap of {max_values}" if too_many
                   else f"more than half of the {samples} samples")
            raise PredictionsError(
                f"{path}: group column {col!r} has {distinct} distinct values ({why}); it looks like an "
                f"id, not a group: drop it from the task's group columns, bin it, or raise "
                f"--max-group-values")


def load_run(run_dir: str | Path, max_group_values: int = MAX_GROUP_VALUES) -> RunData:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PredictionsError(f"{run_dir}: not a run directory; pass the folder that holds "
                               f"{PREDICTIONS_FILE}")
    run = read_run(run_dir)
    path = run_dir / PREDICTIONS_FILE
    frame, seen, store = read_frame(path)
    cols = group_columns(run, seen)
    check_group_columns(frame, cols, path, max_group_values)
    declared = list((run.attributes if run else None) or {})
    present = list(frame["attribute"].unique())
    order = [a for a in declared if a in present] + [a for a in present if a not in declared]
    attributes = {}
    for name, sub in frame.groupby("attribute", sort=False):
        sub = sub.reset_index(drop=True)
        attributes[name] = encode_attribute(sub, resolve_attribute(name, sub, run), cols, path, store)
    return RunData(path, run, {name: attributes[name] for name in order}, cols)
