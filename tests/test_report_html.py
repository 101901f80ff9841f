"""build_report end to end on synthetic runs: files, a self-contained HTML, manifests."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from test_report_fixtures import build_results, deltas_frame, write_probe_folder, write_references
from vlmface.errors import VlmfaceError
from vlmface.report import build_report
from vlmface.report.html import SCRIPT


class Tags(HTMLParser):
    """Every (tag, attributes) of a page, and the text of the leaderboard cells."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    results = build_results(tmp_path_factory.mktemp("results"))
    write_probe_folder(results / "probe" / "clip", deltas_frame())
    return build_report(results, references=write_references(results.parent / "refs.yaml"))


@pytest.fixture(scope="module")
def page(report):
    return report.html.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tags(page):
    parser = Tags()
    parser.feed(page)
    return parser.tags


def test_outputs_written(report):
    out = report.out_dir
    assert out == report.collection.results_dir / "report"
    assert {p.name for p in out.iterdir()} >= {"leaderboard.csv", "leaderboard.md", "report.html", "plots"}
    pngs = sorted(p.stem for p in (out / "plots").glob("*.png"))
    assert pngs == sorted(p.stem for p in (out / "plots").glob("*.svg")) and len(pngs) == len(report.plots) // 2
    assert "4 leaderboard row(s)" in report.summary()


def test_no_external_reference_of_any_kind(page, tags):
    for tag, attrs in tags:
        for name in ("src", "href", "action", "data", "poster", "srcset"):
            value = attrs.get(name)
            assert value is None or value.startswith("data:"), (tag, name, value[:60])
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "@import" not in page and "url(" not in page
    images = [a["src"] for t, a in tags if t == "img"]
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    assert base64.b64decode(images[0].split(",", 1)[1])[:4] == b"\x89PNG"


def test_content_security_policy_allows_only_the_inline_script(tags):
    csp = next(a["content"] for t, a in tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    assert "default-src 'none'" in csp and "img-src data:" in csp and f"'sha256-{digest}'" in csp


def test_leaderboard_rows_trace_to_metrics_json(report, tags):
    rows = [a for t, a in tags if t == "tr" and "data-source" in a]
    assert len(rows) == len(report.leaderboard) == 4
    for attrs in rows:
        assert (report.collection.results_dir / attrs["data-source"]).name == "metrics.json"
        metrics = json.loads((report.collection.results_dir / attrs["data-source"]).read_text())
        assert metrics["attributes"], attrs["data-source"]


def test_published_number_and_caveat_shown(page):
    assert ">96.4 (fixture2025)<" in page
    assert 'title="PaliGemma (fixture), test, n = 400"' in page
    assert "the model served today under this name may differ" in page
    assert "1 of 3 run(s)" in page and "0 of 3 run(s)" in page  # placed / the other-prompt number


def test_references_csv_lists_every_number_for_every_run(report):
    table = pd.read_csv(report.references)
    assert report.references == report.html.parent / "references.csv"
    assert len(table) == 2 * 3 and table["placed"].sum() == 1
    other = table[(table["ref_model"] == "PaliGemma (fixture, other prompt)")
                  & table["run_id"].str.startswith("utkface/paligemma-pt")].iloc[0]
    assert other["reason_fields"] == "prompt text" and other["reasons"].startswith("prompt text: published eeee")


def test_shipped_utkface_number_is_not_placed_beside_face_chips(report, tmp_path):
    shipped = build_report(report.collection.results_dir, tmp_path, plots=False)
    table = pd.read_csv(shipped.references)
    assert shipped.leaderboard["ref_value"].isna().all()
    utk = table[(table["ref_model"].str.startswith("PaliGemma")) & (table["task"] == "utkface")
                & (table["attribute"] == "gender") & table["run_id"].str.startswith("utkface/paligemma-pt")].iloc[0]
    assert not utk["placed"] and "images: no task source holds the published images (UTKFace in-the-wild" in utk["reasons"]
    assert "nan" not in " ".join(table["reasons"].dropna())


def test_every_plot_embedded_once(report, tags):
    figures = [a["id"] for t, a in tags if t == "figure"]
    assert sorted(figures) == sorted({p.stem for p in report.plots})
    assert any(f.startswith("warmth_competence") for f in figures)


def test_run_manifests(page, report):
    assert page.count('class="manifest"') == 3
    for needle in ("ab" * 32, "f" * 64, "0123abcd", "aldahoul_paligemma", "c" * 64):
        assert needle in page  # prompt sha256, dataset fingerprint, model revision, template, spec hash


def test_missing_results_folder_is_a_clear_error(tmp_path):
    with pytest.raises(VlmfaceError, match="does not exist"):
        build_report(tmp_path / "nope")


def test_custom_out_dir_and_rebuild_does_not_read_itself(report, tmp_path):
    again = build_report(report.collection.results_dir, tmp_path / "elsewhere", plots=False)
    assert again.html.parent == tmp_path / "elsewhere" and len(again.leaderboard) == 4
    assert again.plots == [] and "no plots" in again.html.read_text()
    third = build_report(report.collection.results_dir, plots=False)  # report/ exists: not a run
    assert len(third.collection.runs) == 3 and third.collection.skipped == []


def test_report_subcommand(report, tmp_path, capsys):
    import argparse

    from vlmface.report.command import add_report

    parser = argparse.ArgumentParser(prog="vlmface")
    add_report(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", str(report.collection.results_dir), "--out", str(tmp_path / "o"),
                              "--group-col", "gender", "--no-plots"])
    assert args.handler(args) == 0
    assert "4 leaderboard row(s)" in capsys.readouterr().out
    assert set(pd.read_csv(tmp_path / "o" / "leaderboard.csv")["group_col"]) == {"gender"}
