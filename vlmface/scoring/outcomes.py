"""Per-item outcomes and their counts: the one place that decides what counts as what.

The error policy (README, "Scoring"):
- a data error (status "error", error_kind "data": the image cannot be read or is refused
  as too large; also every "error" line of a file written before error_kind existed) is
  left out of every metric; it is counted in `n_total`, `n_error` and `n_data_error`.
- an answer error (error_kind "answer": no face found, an API failure after the last
  retry, a backend exception on that sample) is the system's failure: it counts wrong in
  `accuracy`, like "invalid" and "refused" (never mapped to a label).
- `accuracy` is over every item but data errors (what the whole system delivers);
  `answered_accuracy` is over answered ("ok") items only. With `answered_only`, `accuracy`
  itself is over answered items too.
- answer-error, invalid and refusal rates are over the items asked (`n_total - n_data_error`).
- numeric attributes: the absolute error exists only for answered items, so MAE is
  over answered items; CS@5 counts non-answers as misses like accuracy does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vlmface.scoring.load import ERROR, INVALID, OK, REFUSED, AttributeData

CS_TOLERANCE = 5.0  # years, for CS@5


@dataclass
class Outcomes:
    status: np.ndarray
    scored: np.ndarray  # in the accuracy denominators
    answer_error: np.ndarray  # status "error" of kind "answer" (counted wrong)
    correct: np.ndarray  # accuracy (categorical/ordinal) or within CS_TOLERANCE (numeric)
    near: np.ndarray | None = None  # ordinal: off by at most one bin
    abs_error: np.ndarray | None = None  # numeric: NaN where there is no answer
    truth: np.ndarray | None = None  # label codes (categorical/ordinal)


def outcomes(data: AttributeData, answered_only: bool) -> Outcomes:
    status = data.status
    ok = status == OK
    scored = ok if answered_only else ~data.data_error
    if data.spec.is_numeric:
        abs_error = np.abs(data.pred - data.truth)  # NaN where pred is NaN
        correct = ok & (abs_error <= CS_TOLERANCE)
        return Outcomes(status, scored, data.answer_error, correct, abs_error=abs_error)
    correct = ok & (data.pred == data.truth)
    near = None
    if data.spec.kind == "ordinal":
        k = len(data.spec.labels)  # undeclared labels have no place in the order
        in_order = (data.pred >= 0) & (data.pred < k) & (data.truth < k)
        near = ok & in_order & (np.abs(data.pred - data.truth) <= 1)
    return Outcomes(status, scored, data.answer_error, correct, near=near, truth=data.truth)


def counts(out: Outcomes, codes: np.ndarray, n_groups: int) -> dict[str, np.ndarray]:
    """Per-group counts; rows whose code is -1 (null group value) are left out."""
    keep = codes >= 0
    codes, status = codes[keep], out.status[keep]
    answer_error = out.answer_error[keep]
    answered = status == OK
    table = {
        "n_total": np.bincount(codes, minlength=n_groups),
        "n_error": np.bincount(codes[status == ERROR], minlength=n_groups),
        "n_answer_error": np.bincount(codes[answer_error], minlength=n_groups),
        "n_invalid": np.bincount(codes[status == INVALID], minlength=n_groups),
        "n_refused": np.bincount(codes[status == REFUSED], minlength=n_groups),
        "n": np.bincount(codes[out.scored[keep]], minlength=n_groups),
        "n_correct": np.bincount(codes[(out.correct & out.scored)[keep]], minlength=n_groups),
        "n_answered": np.bincount(codes[answered], minlength=n_groups),
        "n_answered_correct": np.bincount(codes[answered & out.correct[keep]], minlength=n_groups),
    }
    table["n_data_error"] = table["n_error"] - table["n_answer_error"]
    if out.near is not None:
        table["n_near"] = np.bincount(codes[(out.near & out.scored)[keep]], minlength=n_groups)
    if out.abs_error is not None:
        table["sum_abs_error"] = np.bincount(codes[answered], weights=out.abs_error[keep][answered],
                                             minlength=n_groups)
    return table


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise share; NaN (null in JSON) where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1),
                        np.nan)


def rates(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    asked = table["n_total"] - table["n_data_error"]
    return {
        "answered_accuracy": ratio(table["n_answered_correct"], table["n_answered"]),
        "answer_error_rate": ratio(table["n_answer_error"], asked),
        "invalid_rate": ratio(table["n_invalid"], asked),
        "refusal_rate": ratio(table["n_refused"], asked),
        "error_rate": ratio(table["n_error"], table["n_total"]),
    }
