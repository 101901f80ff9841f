"""The report's fairness section and figures: drawn from metrics.json and robustness tables,
with the numbers the scorer wrote (never recomputed)."""

from __future__ import annotations

import json
import re
from html import escape

import numpy as np
import pytest

from scoring_fixtures import record
from fake_backends import sweep_planted
from test_report_fixtures import GENDER, build_results, manifest, scored_run
from vlmface.perturb.analysis import robustness
from vlmface.report import build_report


def _clip_like_records(rng, n: int) -> list[dict]:
    """A zero-shot run that saved probabilities: gender answers with a softmax over both labels."""
    records = []
    for i in range(n):
        truth = GENDER[i % 2]
        p_right = float(np.clip(rng.normal(0.8 if i % 4 else 0.6, 0.15), 0.01, 0.99))
        right = rng.random() < p_right
        label = truth if right else GENDER[1 - i % 2]
        p_label = max(p_right, 1 - p_right) if right else min(p_right, 1 - p_right) + 0.5
        r = record(f"c{i}", "gender", label, truth, race=("Black", "White")[i % 4 // 2], gender=truth)
        r["probs"] = {label: p_label, next(g for g in GENDER if g != label): 1 - p_label}
        records.append(r)
    return records


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    results = build_results(tmp_path_factory.mktemp("results"))
    scored_run(results / "utkface" / "clip-tiny" / "clip_photo",
               manifest("utkface", "clip-tiny", {"gender": {"kind": "categorical", "labels": list(GENDER)}},
                        prompt="clip_photo", backend="clip"),
               _clip_like_records(np.random.default_rng(1), 200))
    return build_report(results)


@pytest.fixture(scope="module")
def page(report):
    return report.html.read_text(encoding="utf-8")


def test_fairness_section_shows_tests_with_adjusted_p_values(report, page):
    assert "<h2>Fairness</h2>" in page
    metrics = json.loads((report.collection.results_dir / "utkface" / "paligemma-pt" / "aldahoul_paligemma"
                          / "metrics.json").read_text())
    test = metrics["attributes"]["gender"]["disparity"]["race"]["test"]
    block = page.split('class="fairness" data-run="utkface/paligemma-pt/aldahoul_paligemma" data-attribute="gender"')[1]
    block = block.split("</details>")[0]
    for header in ("p Holm", "p BH", "DP gap", "TPR gap", "EOdds gap", "answered accuracy", "answer errors"):
        assert f"<th>{header}</th>" in block, header
    row = re.search(r"<tr><td>race</td>(.*?)</tr>", block).group(1)
    assert f"<td>{test['method']}</td>" in row
    p_holm = test["p_holm"]
    assert (f"<td>{p_holm:.3f}</td>" if p_holm >= 0.001 else f"<td>{p_holm:.3g}</td>") in row


def test_small_cells_read_n_lt_10_and_signed_age_error_is_shown(page):
    assert "n &lt; 10" in page
    run = 'class="fairness" data-run="utkface/paligemma-pt/aldahoul_paligemma"'
    age = page.split(f'{run} data-attribute="age"')[1].split("</details>")[0]
    assert "mean error (years)" in age and ("aged up" in age or "aged down" in age or "no clear bias" in age)
    assert "misclassified_rate" in page or "predicted as by race" in page


def test_fairness_figures_are_embedded(report, page):
    stems = {p.stem.split("__")[0] for p in report.plots if p.suffix == ".png"}
    assert {"reliability", "signed_error", "class_rates"} <= stems
    for path in report.plots:
        if path.suffix == ".png" and path.stem.startswith(("reliability", "signed_error", "class_rates")):
            assert f'<figure id="{escape(path.stem)}">' in page


def test_robustness_curves_in_the_report(planted_task, tmp_path):
    runs = sweep_planted(planted_task, tmp_path / "out")
    robustness([r.run_dir for r in runs], n_boot=100, plots=False)
    for run in runs:
        from vlmface.scoring import score_run

        score_run(run.run_dir, n_boot=20)
    result = build_report(tmp_path / "out", plots=True)
    stems = [p.stem for p in result.plots if p.suffix == ".png"]
    assert any(s.startswith("robustness__") and s.endswith("__answer__exposure") for s in stems)
    assert "robustness · " in result.html.read_text(encoding="utf-8")
