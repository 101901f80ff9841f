"""tables/index.md: every table of a scored run listed once, one line each, headline numbers first."""

from __future__ import annotations

import re

import numpy as np

from scoring_fixtures import planted_records, record, run_json, write_run
from vlmface.scoring import score_run
from vlmface.scoring.index import where_to_look


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


def test_each_attribute_lists_only_its_own_md_tables_each_once(tmp_path):
    records = planted_records(np.random.default_rng(4), 15)
    records += [record(f"a{i}", "age", 20.0 + i % 50, 25.0 + i % 40, race=("A", "B")[i % 2])
                for i in range(40)]
    run = run_json()
    run["attributes"]["age"] = {"kind": "numeric", "labels": []}
    run_dir = write_run(tmp_path / "run", records, run)
    score_run(run_dir, n_boot=20)
    text = (run_dir / "tables" / "index.md").read_text()
    sections = dict(re.findall(r"^## (\S+)\n\n((?:- .*\n)+)", text, re.M))
    assert list(sections) == ["emotion", "age"]
    for attr, body in sections.items():
        stems = re.findall(r"^- \[(\S+)\]\((\S+)\) \(\[csv\]\((\S+)\)\): ", body, re.M)
        own = sorted(p.stem for p in (run_dir / "tables").glob(f"{attr}__*.md"))
        assert sorted(stem for stem, _, _ in stems) == own  # each .md once, no .csv line, no other attribute
        assert all((md, csv) == (f"{stem}.md", f"{stem}.csv") for stem, md, csv in stems)


def test_where_to_look_points_at_the_index_and_the_report_command(tmp_path):
    run_dir = write_run(tmp_path / "run", planted_records(np.random.default_rng(5), 10), run_json())
    index = run_dir / "tables" / "index.md"
    assert where_to_look(run_dir) == f"tables: {index} (after `vlmface score`)\nreport: vlmface report RESULTS_DIR"
    score_run(run_dir, n_boot=10)
    assert where_to_look(run_dir, tmp_path) == f"tables: {index}\nreport: vlmface report {tmp_path}"
