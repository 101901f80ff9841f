"""A sweep's predictions -> per-image outcomes at every level, aligned on the same images.

The error policy is the scorer's (`vlmface.scoring.outcomes`): the images analysed are
those every level of the perturbation holds without a data error (an unreadable file is
not the perturbation's doing); an answer error (e.g. the detector no longer finds the
face) counts as wrong, like invalid and refused answers, at every level, the clean one
included. So on a complete sweep a perturbed run's `vlmface score` accuracy equals its
row here (group "all"), and `answered_accuracy` is over answered items as there.
Numeric attributes are scored by CS@5 (within 5 years), as in `vlmface compare`.

A flip is an answer that differs from the same image's clean answer: another label, or
another status (ok -> invalid/refused/error); for numeric attributes, a value that moves
by more than 5 years.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from vlmface.errors import PredictionsError
from vlmface.scoring.load import OK, AttributeData, RunData, load_run
from vlmface.scoring.outcomes import CS_TOLERANCE, outcomes
from vlmface.perturb.runs import Sweep


@dataclass
class Paired:
    """One attribute under one perturbation: rows are images, columns are levels (sorted)."""

    attribute: str
    kind: str
    metric: str  # "accuracy" or "cs5"
    perturbation: str
    transform: str
    levels: np.ndarray
    clean: int  # column of the identity level (the clean run)
    sample_id: np.ndarray
    correct: np.ndarray  # (n, L) bool
    flipped: np.ndarray  # (n, L) bool
    error: np.ndarray  # (n, L) bool: answer errors (counted wrong)
    status: np.ndarray  # (n, L) int8 status codes (vlmface.predictions.STATUSES)
    abs_error: np.ndarray | None  # (n, L) float, NaN where not answered; numeric only
    groups: dict[str, pd.Categorical]
    counts: dict[str, int]  # n_paired, n_clean_error (data errors), n_missing (or a data error at a level)


def _truth_text(data: AttributeData, rows: np.ndarray) -> np.ndarray:
    if data.spec.is_numeric:
        return data.truth[rows].astype(object)
    return np.asarray(data.labels, dtype=object)[data.truth[rows]]


def _answers(data: AttributeData, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(answer, status) per row: the label text (or value) where ok."""
    status = data.status[rows]
    if data.spec.is_numeric:
        return data.pred[rows], status
    text = np.asarray(data.labels + ("",), dtype=object)[np.where(data.pred[rows] >= 0, data.pred[rows], -1)]
    return text, status


def _flips(clean: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray], numeric: bool) -> np.ndarray:
    (a, status_a), (b, status_b) = clean, other
    both = (status_a == OK) & (status_b == OK)
    if numeric:
        moved = np.zeros(both.shape, dtype=bool)
        moved[both] = np.abs(a[both].astype(float) - b[both].astype(float)) > CS_TOLERANCE
    else:
        moved = both & (a != b)
    return (status_a != status_b) | moved


def pair_attribute(clean: AttributeData, levels: list[tuple[float, AttributeData]], identity_level: float,
                   perturbation: str, transform: str) -> Paired:
    usable = np.flatnonzero(~clean.data_error)
    positions = [pd.Index(data.sample_id).get_indexer(clean.sample_id[usable]) for _, data in levels]
    present = np.logical_and.reduce([(p >= 0) & ~data.data_error[np.maximum(p, 0)]
                                     for p, (_, data) in zip(positions, levels)]) \
        if positions else np.ones(usable.size, bool)
    rows = usable[present]
    columns = [(identity_level, clean, rows)] + [(level, data, p[present])
                                                  for (level, data), p in zip(levels, positions)]
    columns.sort(key=lambda c: c[0])
    clean_answers = _answers(clean, rows)
    truth = _truth_text(clean, rows)
    correct, flipped, error, status, abs_error = [], [], [], [], []
    for level, data, index in columns:
        differs = _truth_text(data, index) != truth
        if differs.any():
            i = int(np.argmax(differs))
            raise PredictionsError(f"attribute {clean.spec.name!r}, sample {clean.sample_id[rows[i]]!r}: the "
                                   f"{perturbation} {level:g} run disagrees with the clean run on the truth; "
                                   "a sweep needs the same samples and labels at every level")
        out = outcomes(data, answered_only=False)
        correct.append(out.correct[index])
        flipped.append(_flips(clean_answers, _answers(data, index), clean.spec.is_numeric))
        error.append(data.answer_error[index])
        status.append(data.status[index])
        if out.abs_error is not None:
            abs_error.append(out.abs_error[index])
    numeric = clean.spec.is_numeric
    return Paired(
        attribute=clean.spec.name, kind=clean.spec.kind, metric="cs5" if numeric else "accuracy",
        perturbation=perturbation, transform=transform, levels=np.array([c[0] for c in columns]),
        clean=[c[0] for c in columns].index(identity_level), sample_id=clean.sample_id[rows],
        correct=np.column_stack(correct), flipped=np.column_stack(flipped), error=np.column_stack(error),
        status=np.column_stack(status),
        abs_error=np.column_stack(abs_error) if numeric else None,
        groups={col: cat[rows] for col, cat in clean.groups.items()},
        counts={"n_paired": int(rows.size), "n_clean_error": int(clean.status.size - usable.size),
                "n_missing": int(usable.size - rows.size)})


def pair_sweep(sweep: Sweep) -> tuple[list[Paired], list[str]]:
    """Every (attribute, perturbation) of a sweep, and notes on what was left out."""
    clean = load_run(sweep.clean)
    loaded: dict[Any, RunData] = {}
    paired, notes = [], []
    for name, runs in sweep.perturbations().items():
        for attribute, clean_data in clean.attributes.items():
            levels = []
            for run in runs:
                if run.run_dir not in loaded:
                    loaded[run.run_dir] = load_run(run.run_dir)
                data = loaded[run.run_dir]
                if attribute not in data.attributes:
                    notes.append(f"{run.run_dir}: no predictions for {attribute!r}; level {run.level:g} left out")
                    continue
                levels.append((run.level, data.attributes[attribute]))
            if not levels:
                continue
            result = pair_attribute(clean_data, levels, runs[0].identity_level, name, runs[0].transform)
            if result.counts["n_missing"]:
                notes.append(f"{attribute} under {name}: {result.counts['n_missing']} image(s) missing at some "
                             "level (an unfinished run, or a data error there) left out of every level")
            paired.append(result)
    return paired, notes
