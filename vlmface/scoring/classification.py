"""Overall metrics of a categorical or ordinal attribute (sklearn's definitions).

The confusion matrix has the labels as rows (truth) and the labels plus two extra
columns, `<invalid>` and `<refused>`, so a non-answer is visible and never counted as
a label. Per-class recall counts a non-answer as a miss; precision is over the items
predicted as that class (zero_division=0). balanced_accuracy is the mean recall over
classes present in the truth; macro_f1 is the mean F1 over classes present in the
truth or in the answers, as sklearn does over the union of labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlmface.scoring.bootstrap import percentile_ci, proportion_ci, proportion_samples, rng_for
from vlmface.scoring.load import INVALID, OK, AttributeData
from vlmface.scoring.outcomes import Outcomes, counts, rates, ratio
from vlmface.scoring.settings import ScoreSettings

NON_ANSWERS = ("<invalid>", "<refused>")


def confusion_matrix(data: AttributeData, out: Outcomes) -> np.ndarray:
    k = len(data.labels)
    column = np.where(out.status == OK, data.pred, np.where(out.status == INVALID, k, k + 1))
    index = data.truth[out.scored] * (k + 2) + column[out.scored]
    return np.bincount(index, minlength=k * (k + 2)).reshape(k, k + 2)


def per_class_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    k = matrix.shape[0]
    tp = np.diag(matrix[:, :k]).astype(float)
    support = matrix.sum(axis=1)
    predicted = matrix[:, :k].sum(axis=0)
    precision = np.nan_to_num(ratio(tp, predicted))
    recall = np.nan_to_num(ratio(tp, support))
    f1 = np.nan_to_num(ratio(2 * tp, support + predicted))
    return {"precision": precision, "recall": recall, "f1": f1, "support": support,
            "predicted": predicted}


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _confusion_json(matrix: np.ndarray, labels: tuple[str, ...]) -> dict[str, Any]:
    columns = list(labels) + list(NON_ANSWERS)
    return {truth: {col: int(v) for col, v in zip(columns, row)}
            for truth, row in zip(labels, matrix)}


def status_block(table: dict[str, np.ndarray], i: int = 0) -> dict[str, Any]:
    """n counts and rates of row `i` of a counts table, as JSON values."""
    shares = rates(table)
    return {"n_total": int(table["n_total"][i]), "n_error": int(table["n_error"][i]),
            "n_data_error": int(table["n_data_error"][i]),
            "n_answer_error": int(table["n_answer_error"][i]),
            "n_invalid": int(table["n_invalid"][i]), "n_refused": int(table["n_refused"][i]),
            "n_answered": int(table["n_answered"][i]),
            **{key: float(shares[key][i]) for key in
               ("answered_accuracy", "answer_error_rate", "invalid_rate", "refusal_rate",
                "error_rate")}}


def overall_classification(data: AttributeData, out: Outcomes,
                           settings: ScoreSettings) -> dict[str, Any]:
    table = counts(out, np.zeros(len(out.status), dtype=np.int64), 1)
    n = int(table["n"][0])
    rng = rng_for(settings.seed, data.spec.name, "overall")
    samples = proportion_samples(table["n_correct"], table["n"], settings.n_boot, rng)
    matrix = confusion_matrix(data, out)
    scores = per_class_scores(matrix)
    present = scores["support"] > 0
    result: dict[str, Any] = {
        "n": n,
        "accuracy": float(ratio(table["n_correct"], table["n"])[0]),
        "accuracy_ci": proportion_ci(table["n_correct"], table["n"], samples,
                                     settings.confidence)[0][:, 0].tolist(),
        "balanced_accuracy": _mean_or_none(scores["recall"][present]),
        "macro_f1": _mean_or_none(scores["f1"][present | (scores["predicted"] > 0)]),
    }
    if out.near is not None:
        near = proportion_samples(table["n_near"], table["n"], settings.n_boot, rng)
        result["off_by_one_accuracy"] = float(ratio(table["n_near"], table["n"])[0])
        result["off_by_one_accuracy_ci"] = percentile_ci(near, settings.confidence)[:, 0].tolist()
    result.update(status_block(table))
    answered = proportion_samples(table["n_answered_correct"], table["n_answered"], settings.n_boot, rng)
    result["answered_accuracy_ci"] = percentile_ci(answered, settings.confidence)[:, 0].tolist()
    result["per_class"] = {label: {name: scores[name][i].item()
                                   for name in ("precision", "recall", "f1", "support")}
                           for i, label in enumerate(data.labels)}
    result["confusion"] = _confusion_json(matrix, data.labels)
    if data.undeclared_labels:
        result["undeclared_labels"] = list(data.undeclared_labels)
    return result
