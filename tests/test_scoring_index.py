"""tables/index.md: every table of a scored run listed once, one line each, headline numbers first."""

from __future__ import annotations

import re

import numpy as np

from scoring_fixtures import planted_records, run_json, write_run
from vlmface.scoring import score_run


def test_index_lists_every_table_once_after_the_headline(tmp_path):
    run_dir = write_run(tmp_path / "run", planted_records(np.random.default_rng(3), 40), run_json())
    metrics = score_run(run_dir, n_boot=50)
    text = (run_dir / "tables" / "index.md").read_text()
    accuracy = metrics["attributes"]["emotion"]["overall"]["accuracy"]
    headline = text.index(f"accuracy {accuracy:.3f}")
    linked = re.findall(r"^- \[(\S+)\]\((\S+)\.md\) \(\[csv\]\((\S+)\.csv\)\): (.+)$", text, re.M)
    tables = sorted(p.stem for p in (run_dir / "tables").glob("*.md") if p.name != "index.md")
    assert sorted(stem for stem, _, _, _ in linked) == tables
    assert all(stem == md == csv for stem, md, csv, _ in linked)
    assert headline < text.index("- [emotion__overall]") < text.index("- [emotion__by_race]")
    assert "one row per group of race:" in text and "table" not in [d for *_, d in linked]
