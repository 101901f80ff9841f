"""Paired comparison of runs on the same samples (e.g. one study through several backends).

Per attribute both runs scored: the samples present in both (by sample_id) are
paired; a pair where either run has status "error" is left out (no answer to compare).
Invalid and refused count as wrong, as in `score_run`. The score is accuracy, or CS@5
for numeric attributes. `difference` is B - A with a paired-bootstrap CI (the four
cells of the (A correct, B correct) table resampled jointly) and the exact McNemar
p-value: a two-sided binomial test on the discordant pairs.

Agreement: the share of paired items with the same answer (the same label, or the same
non-answer status: invalid, refused, error); `flip_rate` = 1 - agreement, overall and per
value of every group column. Where both runs saved probabilities for an item (choice mode,
zero-shot CLIP), `prob_diff` gives the max and mean |p_A(label) - p_B(label)| over those
items and labels.

`compare_many` compares 2 or more runs: every pair as above plus one summary row per run
(backend, mode, dtype, choice rule, accuracy per attribute (CS@5 for numeric ones), seconds per sample and cost from
run.json when present). Runs must hold the same samples; it refuses them otherwise, saying
how many differ (`shared_only=True` compares the shared samples instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from vlmface.errors import PredictionsError
from vlmface.predictions import STATUSES, iter_records
from vlmface.run_record import PREDICTIONS_FILE, RunRecord
from vlmface.scoring.bootstrap import paired_difference_samples, percentile_ci, rng_for
from vlmface.scoring.load import ERROR, OK, AttributeData, RunData, load_run
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


def _answers(data: AttributeData, rows: np.ndarray) -> np.ndarray:
    """Per row: the predicted label code / value, or a status name when there is no answer."""
    answers = np.where(data.status[rows] == OK, data.pred[rows].astype(object), None)
    names = np.asarray(STATUSES, dtype=object)[data.status[rows]]
    return np.where(data.status[rows] == OK, answers, names)


def _agreement(a: AttributeData, b: AttributeData, rows_a: np.ndarray, rows_b: np.ndarray) -> dict[str, Any]:
    """Share of paired items with the same answer, and the flip rate per group value."""
    same = _answers(a, rows_a) == _answers(b, rows_b)
    by_group: dict[str, dict[str, dict[str, Any]]] = {}
    for col, values in a.groups.items():
        codes = np.asarray(values.codes)[rows_a]
        by_group[col] = {str(value): {"n": int((codes == k).sum()),
                                      "flip_rate": float(1 - same[codes == k].mean())}
                         for k, value in enumerate(values.categories) if (codes == k).any()}
    return {"agreement": float(same.mean()) if same.size else None,
            "flip_rate": float(1 - same.mean()) if same.size else None,
            "n_flips": int((~same).sum()), "flips_by_group": by_group}


def _prob_diff(probs_a: dict[str, dict], probs_b: dict[str, dict], ids: np.ndarray) -> dict[str, Any] | None:
    diffs = []
    for sample_id in ids:
        pa, pb = probs_a.get(sample_id), probs_b.get(sample_id)
        if pa and pb:
            diffs += [abs(float(pa[k]) - float(pb.get(k, 0.0))) for k in pa.keys() | pb.keys() if k in pa]
    if not diffs:
        return None
    n_items = sum(1 for s in ids if probs_a.get(s) and probs_b.get(s))
    return {"n_items": n_items, "max": max(diffs), "mean": float(np.mean(diffs))}


def compare_attribute(a: AttributeData, b: AttributeData, settings: ScoreSettings,
                      probs: tuple[dict, dict] | None = None) -> dict[str, Any]:
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
        **_agreement(a, b, rows_a, rows_b),
        "prob_diff": _prob_diff(*probs, a.sample_id[rows_a]) if probs else None,
    }
    if n:
        samples = paired_difference_samples(cells, settings.n_boot,
                                            rng_for(settings.seed, a.spec.name, "paired"))
        result["difference_ci"] = percentile_ci(samples, settings.confidence).tolist()
    return result


def saved_probs(run_dir: Path) -> dict[str, dict[str, dict[str, float]]]:
    """attribute -> sample_id -> the probabilities the run saved (items without any left out)."""
    found: dict[str, dict[str, dict[str, float]]] = {}
    for record in iter_records(Path(run_dir) / PREDICTIONS_FILE):
        if record.get("probs"):
            found.setdefault(record["attribute"], {})[str(record["sample_id"])] = record["probs"]
    return found


def _compare_pair(a: RunData, b: RunData, probs: tuple[dict, dict], settings: ScoreSettings) -> dict[str, Any]:
    result: dict[str, Any] = {"run_a": _run_dir(a), "run_b": _run_dir(b), "attributes": {}, "skipped": {},
                              "scoring": settings.to_json()}
    for name in [name for name in a.attributes if name in b.attributes]:
        data_a, data_b = a.attributes[name], b.attributes[name]
        if data_a.spec.is_numeric != data_b.spec.is_numeric:
            result["skipped"][name] = "numeric in one run, categorical in the other"
            continue
        pair_probs = (probs[0].get(name, {}), probs[1].get(name, {}))
        result["attributes"][name] = compare_attribute(data_a, data_b, settings, pair_probs)
    for name in sorted(set(a.attributes) ^ set(b.attributes)):
        result["skipped"][name] = "scored in only one of the runs"
    if not any(r["n_paired"] for r in result["attributes"].values()):
        raise PredictionsError(
            f"{_run_dir(a)} and {_run_dir(b)} share no scorable sample (same sample_id and attribute, no "
            "error status); compare runs of the same task on the same samples")
    return result


def compare_runs(run_a: str | Path, run_b: str | Path, *, n_boot: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> dict[str, Any]:
    """Paired comparison of two runs, per attribute both have (see the module docstring)."""
    settings = ScoreSettings(n_boot=n_boot, seed=seed, confidence=confidence)
    a, b = load_run(run_a), load_run(run_b)
    return json_ready(_compare_pair(a, b, (saved_probs(run_a), saved_probs(run_b)), settings))


def _run_dir(run: RunData) -> str:
    return str(run.path.parent if run.path.name == PREDICTIONS_FILE else run.path)


def _sample_ids(run: RunData, attributes: set[str]) -> set[tuple[str, str]]:
    return {(str(s), name) for name, data in run.attributes.items() if name in attributes for s in data.sample_id}


def check_same_samples(runs: list[RunData]) -> None:
    """Refuse runs whose samples differ on an attribute they both scored, saying how many
    (an attribute only one run has, e.g. race for a gender-only model, is skipped, not refused)."""
    for run in runs[1:]:
        shared = set(runs[0].attributes) & set(run.attributes)
        first, other = _sample_ids(runs[0], shared), _sample_ids(run, shared)
        if other != first:
            raise PredictionsError(
                f"{_run_dir(run)} and {_run_dir(runs[0])} hold different samples: {len(other - first)} "
                f"(sample, attribute) items only in the first, {len(first - other)} only in the second "
                f"({len(first & other)} shared). Compare runs of the same task, --limit and --seed, "
                "or pass --shared-only to compare the shared samples")


def run_summary(run: RunData) -> dict[str, Any]:
    """One summary row: what the run was (backend, mode, dtype...) and how fast and dear it was."""
    info = run.run or RunRecord()
    identity = info.model_identity or {}
    options = info.options or {}
    timings, backend = info.timings or {}, info.backend_summary or {}
    return {"run": _run_dir(run), "model": info.model, "backend": identity.get("backend", info.backend),
            "mode": identity.get("mode", options.get("mode")), "dtype": identity.get("dtype", options.get("dtype")),
            "choice_score": identity.get("choice_score", options.get("choice_score")),
            "prompt": info.prompt, "seconds_per_sample": timings.get("seconds_per_sample"),
            "seconds": timings.get("seconds"), "cost_usd": backend.get("cost_usd")}


def compare_many(run_dirs: list[str | Path], *, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95,
                 shared_only: bool = False) -> dict[str, Any]:
    """Every pair of 2+ runs on the same samples, plus a summary row per run."""
    if len(run_dirs) < 2:
        raise PredictionsError("compare needs at least two run directories")
    settings = ScoreSettings(n_boot=n_boot, seed=seed, confidence=confidence)
    runs = [load_run(path) for path in run_dirs]
    if not shared_only:
        check_same_samples(runs)
    probs = [saved_probs(path) for path in run_dirs]
    summary = []
    for run in runs:
        row = run_summary(run)
        row["score"] = {name: float(outcomes(data, answered_only=False).correct[data.status != ERROR].mean())
                           for name, data in run.attributes.items() if (data.status != ERROR).any()}
        row["metric"] = {name: "cs5" if data.spec.is_numeric else "accuracy" for name, data in run.attributes.items()}
        summary.append(row)
    pairs = [_compare_pair(runs[i], runs[j], (probs[i], probs[j]), settings)
             for i in range(len(runs)) for j in range(i + 1, len(runs))]
    return json_ready({"runs": summary, "pairs": pairs, "scoring": settings.to_json()})
