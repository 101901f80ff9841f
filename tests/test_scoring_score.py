"""score_run (vlmface/scoring/score.py): the defaults it scores with are the documented ones (they
are written to metrics.json["scoring"]), and the run-level step adds the Holm and
Benjamini-Hochberg p-values over every test of the run."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from scoring_fixtures import planted_records, run_json, write_run
from vlmface.scoring import score_run


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Planted accuracy by race (no effect of gender), 40 faces per race, scored with the defaults."""
    records = planted_records(np.random.default_rng(5), 40)
    return score_run(write_run(tmp_path_factory.mktemp("run"), records, run_json()))


def test_score_run_scores_with_the_documented_defaults(scored):
    """README: `vlmface score RUN_DIR [--min-group-n 30] [--n-boot 1000]`; seed 0, 95% CIs."""
    scoring = scored["scoring"]
    assert (scoring["min_group_n"], scoring["n_boot"], scoring["seed"], scoring["confidence"]) == (30, 1000, 0, 0.95)
    assert (scoring["min_cell_n"], scoring["max_group_values"], scoring["intersections"]) == (10, 1000, 2)
    assert scoring["answered_only"] is False and scoring["reference_group"] is None


def test_every_test_of_the_run_gets_holm_and_bh_p_values(scored):
    tests = [entry["test"] for entry in scored["attributes"]["emotion"]["disparity"].values() if entry.get("test")]
    p = [t["p_value"] for t in tests]
    assert len(tests) >= 2 and None not in p and scored["scoring"]["n_tests"] == len(tests)
    assert [t["p_holm"] for t in tests] == pytest.approx(list(multipletests(p, method="holm")[1]), abs=1e-12)
    assert [t["p_bh"] for t in tests] == pytest.approx(list(multipletests(p, method="fdr_bh")[1]), abs=1e-12)
