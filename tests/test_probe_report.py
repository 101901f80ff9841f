"""`vlmface report` over a results folder holding real probe folders (tiny random CLIPs on real
UTKFace faces): each probe, found through its probe.json, gets its method's figures in Plots and
the tables its method shows in the Probes section; a folder without probe.json is not guessed at."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from tiny_models import build_tiny_open_clip
from vlmface.probes import probe
from vlmface.report import build_report


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Tiny models run fastest on one thread (see conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def results(tmp_path_factory, utkface_dir):
    root = tmp_path_factory.mktemp("probe_report")
    models = [f"clip:local-dir:{build_tiny_open_clip(root / 'models' / n, seed=s)}" for n, s in (("a", 1), ("b", 2))]
    results = root / "results"
    common = dict(data_dir=utkface_dir, limit=40, seed=0, n_boot=10, device="cpu", cache_dir=root / "cache",
                  plots=False)
    probe("social-perception", "utkface", models, names="a,b", out=results / "probe" / "social", **common)
    probe("denigration", "utkface", models[:1], names="a", out=results / "probe" / "den", **common)
    (results / "probe" / "old").mkdir()
    (results / "probe" / "old" / "deltas.csv").write_bytes((results / "probe" / "social" / "deltas.csv").read_bytes())
    (results / "probe" / "stale").mkdir()
    (results / "probe" / "stale" / "probe.json").write_text(json.dumps({"probe": {"name": "x"}}))
    report = build_report(results)
    return results, report, report.html.read_text(encoding="utf-8")


def _section(page: str, name: str) -> str:
    return page.split(f'<section class="probe" data-probe="{name}">', 1)[1].split("</section>", 1)[0]


def test_each_probe_gets_its_methods_figures_in_the_page(results):
    _, report, page = results
    figures = set(re.findall(r'<figure id="([^"]+)"><img alt="[^"]*" src="data:image/png;base64,', page))
    assert {"warmth_competence__probe_social", "factor_effects__probe_social", "model_differences__probe_social",
            "model_heatmap__probe_social", "denigration__probe_den"} <= figures
    assert "<h3>social perception · probe/social</h3>" in page and "<h3>denigration · probe/den</h3>" in page
    assert {p.name for p in report.plots} >= {"denigration__probe_den.png", "warmth_competence__probe_social.svg"}
    assert not any("probe_old" in f for f in figures)  # deltas.csv without probe.json: not a probe folder


def test_the_probes_section_shows_the_tables_each_method_offers(results):
    folder, report, page = results
    den = _section(page, "probe/den")
    assert "denigration.csv" in den and "probe denigration (denigration) on task utkface: 40 images" in den
    rates = pd.read_csv(folder / "probe" / "den" / "denigration.csv", dtype={"group": str})
    for row in rates.itertuples():
        assert f"<td>{row.category}</td>" in den and f"<td>{row.rate:.2f}</td>" in den
    social = _section(page, "probe/social")
    assert "comparison.csv" in social and "markedness.csv" in social
    comparison = pd.read_csv(folder / "probe" / "social" / "comparison.csv", dtype=str)
    for row in comparison.head(10).itertuples():
        assert f"<td>{row.measure}</td>" in social and f"<td>{row.highest}</td>" in social
    markedness = pd.read_csv(folder / "probe" / "social" / "markedness.csv")
    assert all(f"<td>{v:.2f}</td>" in social for v in markedness["markedness"])
    assert 'data-probe="probe/old"' not in page
    assert any(path.endswith("stale/probe.json") and "no `outputs`" in why for path, why in report.collection.skipped)
