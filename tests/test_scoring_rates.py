"""Class-rate gap CIs (vlmface/scoring/metrics/rates.py), fast, on planted predictions (the
fairlearn comparison on the real baseline is tests/test_fairness_metrics.py): a group too small
to compare changes no bit of the gap CIs, and resampling in chunks gives the draws one pass gives."""

from __future__ import annotations

import numpy as np
import pytest

from scoring_fixtures import planted_records, record, run_json, write_run
from vlmface.scoring import score_run
from vlmface.scoring.bootstrap import percentile_ci
from vlmface.scoring.metrics import rates

GAPS = ("dp_gap", "tpr_gap", "eodds_gap")
LABELS = ("happy", "neutral", "sad")


def _gap_cis(tmp_path, records: list[dict]) -> dict[str, list]:
    metrics = score_run(write_run(tmp_path, records, run_json(labels=LABELS, group_columns=("race",))),
                        n_boot=200, min_group_n=30, min_cell_n=5)
    race = metrics["attributes"]["emotion"]["disparity"]["race"]
    return {name: race[name + "_ci"] for name in GAPS}


def test_a_group_too_small_to_compare_changes_no_gap_ci(tmp_path):
    """'Indian' (5 faces, under min_group_n) sorts between the compared groups; it is left out of
    the resampling, so the CIs equal those of the same run without it, bit for bit."""
    accuracy = {"Black": 0.55, "East Asian": 0.7, "White": 0.9}
    records = planted_records(np.random.default_rng(11), 60, accuracy=accuracy, labels=LABELS)
    small = [record(f"in{i}", "emotion", "sad", "happy", race="Indian", gender="Male") for i in range(5)]
    with_small, without = _gap_cis(tmp_path / "a", records + small), _gap_cis(tmp_path / "b", records)
    assert with_small == without and None not in with_small["tpr_gap"]


def test_resampling_in_chunks_gives_the_one_pass_distribution(monkeypatch):
    """The gap draws are made in chunks of CHUNK_CELLS // cells resamples (memory bound); with
    chunks of 7 resamples no call draws more, every one of the 3,000 draws is filled and the CI
    matches one pass."""
    matrix = np.array([[[30, 5, 3, 2], [4, 25, 6, 1], [2, 3, 28, 2]],
                       [[18, 12, 6, 4], [9, 20, 8, 3], [7, 6, 22, 5]]])
    valid = {name: np.ones((2, 3), dtype=bool) for name in ("selection_rate", "tpr", "fpr")}
    one_pass = rates._gap_draws(matrix, valid, 3000, np.random.default_rng(1))
    monkeypatch.setattr(rates, "CHUNK_CELLS", 7 * matrix.size)
    sizes: list[int] = []

    class Counting:  # the generator, noting how many resamples each call draws (the memory bound)
        def __init__(self, rng):
            self.rng = rng

        def multinomial(self, n, p, size):
            sizes.append(size)
            return self.rng.multinomial(n, p, size=size)

    chunked = rates._gap_draws(matrix, valid, 3000, Counting(np.random.default_rng(2)))
    assert max(sizes) == 7 and sum(sizes) == 2 * 3000  # two groups, chunks of 7 resamples
    for name in GAPS:
        assert np.isfinite(chunked[name]).all() and ((chunked[name] >= 0) & (chunked[name] <= 1)).all()
        assert percentile_ci(chunked[name], 0.95) == pytest.approx(percentile_ci(one_pass[name], 0.95), abs=0.03)
        assert chunked[name].mean() == pytest.approx(one_pass[name].mean(), abs=0.01)


def test_the_eodds_gap_names_the_rate_it_comes_from(tmp_path):
    """eodds_gap is the larger of the TPR and FPR spreads of its label; eodds_gap_rate says which
    (here TPR: accuracy is planted by race, so the true-positive rates spread most)."""
    accuracy = {"Black": 0.45, "East Asian": 0.7, "White": 0.95}
    records = planted_records(np.random.default_rng(4), 60, accuracy=accuracy, labels=LABELS)
    metrics = score_run(write_run(tmp_path, records, run_json(labels=LABELS, group_columns=("race",))),
                        n_boot=20, min_group_n=30, min_cell_n=5)
    attr = metrics["attributes"]["emotion"]
    race, groups = attr["disparity"]["race"], attr["by_group"]["race"].values()
    label = race["eodds_gap_label"]
    spread = {rate: max(g[rate][label] for g in groups) - min(g[rate][label] for g in groups)
              for rate in ("tpr", "fpr")}
    assert race["eodds_gap"] == pytest.approx(max(spread.values()), abs=1e-12)
    assert spread["tpr"] > spread["fpr"] and race["eodds_gap_rate"] == "tpr"
