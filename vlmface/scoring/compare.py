"""Paired comparison of two runs on the same samples.

Per attribute both runs scored: the samples present in both (by sample_id) are
paired; a pair where either run has status "error" is left out (no answer to compare).
Invalid and refused count as wrong, as in `score_run`. The score is accuracy, or CS@5
for numeric attributes. `difference` is B - A with a paired-bootstrap CI (the four
cells of the (A correct, B correct) table resampled jointly) and the exact McNemar
p-value: a two-sided binomial test on the discordant pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from vlmface.errors import PredictionsError
from vlmface.scoring.bootstrap import paired_difference_samples, percentile_ci, rng_for
from vlmface.scoring.load import ERROR, AttributeData, load_run
from vlmface.scoring.outcomes import outcomes
from vlmface.scoring.settings import ScoreSettings
from vlmface.scoring.tables import json_ready


def _truth_text(data: AttributeData, rows: np.ndarray) -> np.ndarray:
    if data.spec.is_numeric:
        return data.truth[rows]
    return np.asarray(data.labels, dtype=object)[data.truth[rows]]


def _check_same_truth(a: AttributeData, b: AttributeData, rows_a: np.ndarray,
                      rows_b: np.ndarray) -> None:
    differs = _truth_text(a, rows_a) != _truth_text(b, rows_b)
    if differs.any():
        i = int(np.argmax(differs))
        raise PredictionsError(
            f"attribute {a.spec.name!r}, sample {a.sample_id[rows_a[i]]!r}: the runs disagree on "
            f"the truth ({_truth_text(a, rows_a)[i]!r} vs {_truth_text(b, rows_b)[i]!r}); a "
            "paired comparison needs both runs on the same samples and labels")


def compare_attribute(a: AttributeData, b: AttributeData,
                      settings: ScoreSettings) -> dict[str, Any]:
    positions = pd.Index(a.sample_id).get_indexer(b.sample_id)
    rows_b = np.flatnonzero(positions >= 0)
    rows_a = positions[rows_b]
    _check_same_truth(a, b, rows_a, rows_b)
    usable = (a.status[rows_a] != ERROR) & (b.status[rows_b] != ERROR)
    right_a = outcomes(a, answered_only=False).correct[rows_a][usable]
    right_b = outcomes(b, answered_only=False).correct[rows_b][usable]
    cells = np.array([(right_a & right_b).sum(), (right_a & ~right_b).sum(),
                      (~right_a & right_b).sum(), (~right_a & ~right_b).sum()])
    n, discordant = int(cells.sum()), int(cells[1] + cells[2])
    result: dict[str, Any] = {
        "metric": "cs5" if a.spec.is_numeric else "accuracy", "n_paired": n,
        "n_unpaired_a": len(a.sample_id) - rows_a.size,
        "n_unpaired_b": len(b.sample_id) - rows_b.size,
        "n_excluded_error": int((~usable).sum()),
        "accuracy_a": right_a.mean() if n else None, "accuracy_b": right_b.mean() if n else None,
        "difference": (cells[2] - cells[1]) / n if n else None, "difference_ci": [None, None],
        "mcnemar_p": binomtest(int(cells[1]), discordant, 0.5).pvalue if discordant else 1.0,
        "a_only_correct": int(cells[1]), "b_only_correct": int(cells[2]),
    }
    if n:
        samples = paired_difference_samples(cells, settings.n_boot,
                                            rng_for(settings.seed, a.spec.name, "paired"))
        result["difference_ci"] = percentile_ci(samples, settings.confidence).tolist()
    return result


def compare_runs(run_a: str | Path, run_b: str | Path, *, n_boot: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> dict[str, Any]:
    """Paired comparison of two runs, per attribute both have (see the module docstring)."""
    settings = ScoreSettings(n_boot=n_boot, seed=seed, confidence=confidence)
    a, b = load_run(run_a), load_run(run_b)
    shared = [name for name in a.attributes if name in b.attributes]
    result: dict[str, Any] = {"run_a": str(run_a), "run_b": str(run_b), "attributes": {},
                              "skipped": {}, "scoring": settings.to_json()}
    for name in shared:
        data_a, data_b = a.attributes[name], b.attributes[name]
        if data_a.spec.is_numeric != data_b.spec.is_numeric:
            result["skipped"][name] = "numeric in one run, categorical in the other"
            continue
        result["attributes"][name] = compare_attribute(data_a, data_b, settings)
    for name in sorted(set(a.attributes) ^ set(b.attributes)):
        result["skipped"][name] = "scored in only one of the runs"
    if not any(r["n_paired"] for r in result["attributes"].values()):
        raise PredictionsError(
            f"{run_a} and {run_b} share no scorable sample (same sample_id and attribute, no "
            "error status); compare runs of the same task on the same samples")
    return json_ready(result)
