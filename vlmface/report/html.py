"""One self-contained HTML file: leaderboard, published numbers, plots, run manifests.

Self-contained means no request of any kind when opened: styles and the table-sorting script
are inline, images are PNG data: URIs, and a Content-Security-Policy (default-src 'none', the
script allowed by its hash) makes the browser refuse anything else, should it ever creep in.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Any

import pandas as pd

from vlmface.report.display import HEADERS, display_cells
from vlmface.report.leaderboard import LEGEND

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px; color: #222; }
h1 { margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; position: sticky; top: 0; }
table.sortable th { cursor: pointer; } th[data-order="asc"]::after { content: " \\25B2"; }
th[data-order="desc"]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.wrap { min-width: 220px; max-width: 340px; }
td.source { word-break: break-all; min-width: 200px; }
td.source, code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11px; }
.scroll { overflow-x: auto; } .muted { color: #666; } .warn { color: #a15c00; }
figure { display: inline-block; margin: 8px 16px 16px 0; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #444; max-width: 720px; }
details { margin: 4px 0; } summary { cursor: pointer; font-family: ui-monospace, Menlo, monospace; }
"""

SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, index) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var asc = th.getAttribute("data-order") !== "asc";
      var key = function (row) {
        var cell = row.cells[index], value = cell.getAttribute("data-value");
        return value === null ? cell.textContent : value;
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var nx = Number(x), ny = Number(y);
        var cmp = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
        return asc ? cmp : -cmp;
      });
      rows.forEach(function (row) { body.appendChild(row); });
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-order"); });
      th.setAttribute("data-order", asc ? "asc" : "desc");
    });
  });
});
"""
CELL_CLASS = {**dict.fromkeys(["n", "accuracy % [CI] / MAE", "macro-F1 %", "worst group", "gap [CI]",
                                "invalid %", "refused %", "errors %", "published", "ours - published"],
                               "num"),
              "caveat": "wrap", "source": "source"}


def _tooltip(row: pd.Series, header: str) -> str:
    if header != "published" or not isinstance(row.get("ref_model"), str):
        return ""
    n = "" if pd.isna(row["ref_n"]) else f", n = {int(row['ref_n']):,}"
    return f' title="{escape(row["ref_model"])}, {escape(str(row["ref_split"]))}{n}"'


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
    return (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
            f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'")


def _value(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def leaderboard_html(board: pd.DataFrame) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in HEADERS)
    rows = []
    for (_, row), cells in zip(board.iterrows(), display_cells(board)):
        tds = "".join(
            f'<td class="{CELL_CLASS.get(header, "")}" data-col="{escape(header)}"'
            f' data-value="{escape(_value(value))}"{_tooltip(row, header)}>{escape(text)}</td>'
            for header, (text, value) in zip(HEADERS, cells))
        rows.append(f'<tr data-source="{escape(str(row["source"]))}" data-run="{escape(str(row["run_id"]))}"'
                    f' data-attribute="{escape(str(row["attribute"]))}">{tds}</tr>')
    return (f'<div class="scroll"><table id="leaderboard" class="sortable"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _placement_summary(ref_id: str, task: str, placements: pd.DataFrame | None) -> tuple[str, str]:
    """("placed beside k of n runs", the fields that kept it from runs of its own dataset)."""
    if placements is None or placements.empty:
        return "", ""
    mine = placements[(placements["ref_id"] == ref_id) & placements["run_id"].notna()]
    placed = int(mine["placed"].sum())
    same_task = mine[~mine["placed"] & mine["reasons"].fillna("").map(lambda r: "dataset:" not in r)]
    fields = sorted({f for text in same_task["reason_fields"].dropna() for f in text.split("; ") if f})
    return (f"{placed} of {len(mine)} run(s)" if len(mine) else "no runs"), ", ".join(fields)


def references_html(refs: pd.DataFrame, board: pd.DataFrame, placements: pd.DataFrame | None = None) -> str:
    head = ["citation", "model (as published)", "task", "split", "n", "images", "attribute", "group", "mode",
            "prompt sha256", "value", "placed beside", "not placed for (runs of this dataset)", "note"]
    body = []
    for ref in refs.itertuples():
        group = f"{ref.group_col} = {ref.group}" if isinstance(ref.group, str) else ""
        unit = "%" if ref.unit == "percent" else " years"
        note = "; ".join(n for n in (ref.note, None if ref.match else f"never placed: {ref.why}") if n)
        placed, why = _placement_summary(ref.ref_id, ref.task, placements)
        sha = ref.prompt_sha256 if ref.prompt_sha256 == "unknown" else ref.prompt_sha256[:12]
        cells = [ref.citation, ref.model, ref.task, ref.split or "",
                 "" if pd.isna(ref.n) else f"{int(ref.n):,}", ref.images, ref.attribute, group, ref.mode, sha,
                 f"{ref.value:g}{unit}", placed, why, note]
        body.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
    return (f'<details><summary>{len(refs)} published numbers</summary><div class="scroll">'
            f'<table id="references" class="sortable"><thead><tr>{"".join(f"<th>{h}</th>" for h in head)}'
            '</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div></details>')


def figures_html(figures: list[tuple[str, str, str, bytes]]) -> str:
    """figures: (section, stem, caption, PNG bytes), in order; one <h3> per section."""
    parts, section = [], None
    for name, stem, caption, png in figures:
        if name != section:
            parts.append(f"<h3>{escape(name)}</h3>")
            section = name
        data = base64.b64encode(png).decode("ascii")
        parts.append(f'<figure id="{escape(stem)}"><img alt="{escape(caption)}" '
                     f'src="data:image/png;base64,{data}"><figcaption>{escape(caption)} '
                     f"<code>plots/{escape(stem)}.png|svg</code></figcaption></figure>")
    return "\n".join(parts) or '<p class="muted">no plots</p>'


def _manifest_rows(run: pd.Series) -> list[tuple[str, str]]:
    templates = run["templates"] or {}
    prompts = "; ".join(f"{attr}: {t['name']} sha256 {t['sha256']}" if t else f"{attr}: none"
                        for attr, t in templates.items()) or "none"
    versions = ", ".join(f"{k} {v}" for k, v in (run["versions"] or {}).items())
    return [("metrics.json", run["source"]), ("model", run["model"]), ("backend", run["backend"]),
            ("weights", run["weights"]), ("model revision", run["revision"] or "not pinned"),
            ("weights sha256", run["weights_sha256"]), ("mode", run["mode"]),
            ("prompt templates (sha256)", prompts), ("task", run["task"]), ("data source", run["data_source"]),
            ("data location", run["data_location"]), ("dataset fingerprint", run["dataset_fingerprint"]),
            ("task spec sha256", run["task_spec_sha256"]), ("seed", run["seed"]), ("limit", run["limit"]),
            ("faces selected / available", f"{_value(run['n_selected'])} / {_value(run['n_available'])}"),
            ("status", run["status"]), ("started", run["started"]), ("finished", run["finished"]),
            ("versions", versions)]


def manifests_html(runs: pd.DataFrame) -> str:
    parts = []
    for _, run in runs.iterrows():
        rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(_value(v))}</td></tr>"
                       for k, v in _manifest_rows(run))
        parts.append(f'<details class="manifest" data-run="{escape(run["run_id"])}"><summary>'
                     f'{escape(run["run_id"])}</summary><table>{rows}</table></details>')
    return "\n".join(parts) or '<p class="muted">no runs</p>'


def notes_html(warnings: list[str], skipped: list[tuple[str, str]]) -> str:
    items = [f'<li class="warn">{escape(w)}</li>' for w in warnings]
    items += [f'<li class="muted">skipped {escape(p)}: {escape(why)}</li>' for p, why in skipped]
    return f"<ul>{''.join(items)}</ul>" if items else ""


def render_html(*, board: pd.DataFrame, refs: pd.DataFrame, runs: pd.DataFrame,
                figures: list[tuple[str, str, str, bytes]], title: str, subtitle: str,
                warnings: list[str], skipped: list[tuple[str, str]],
                placements: pd.DataFrame | None = None, fairness: str = "", sensitivity: str = "",
                probes: str = "") -> str:
    sensitivity = (f"<h2>Prompt sensitivity</h2><p class=\"muted\">Per prompt variant (first: the default) and "
                   f"group: accuracy, paired difference from the default, answer flips, invalid and refused "
                   f"rates (<code>prompt_sensitivity/</code> of each default run).</p>{sensitivity}"
                   if sensitivity else "")
    probes = (f"<h2>Probes</h2><p class=\"muted\">Each probe folder (found through its probe.json): what ran and "
              f"the tables its method shows; every table is a CSV in the folder.</p>{probes}" if probes else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_csp()}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{escape(title)}</h1><p class="muted">{escape(subtitle)}</p>
{notes_html(warnings, skipped)}
<h2>Leaderboard</h2><p class="muted">{escape(LEGEND)} Click a column header to sort.</p>
{leaderboard_html(board)}
<h2>Published numbers</h2>
<p class="muted">A published number is shown beside a run only when its whole setting equals the run's:
dataset, split, images (crop), label scheme, n, the exact prompt text (sha256), answer mode, model and how
non-answers count; a field the source does not state means it is never shown (see
<code>vlmface/reference_numbers.yaml</code>). <code>references.csv</code> lists every number x run with the
reasons.</p>
{references_html(refs, board, placements)}
<h2>Plots</h2>
{figures_html(figures)}
<h2>Fairness</h2><p class="muted">Per run and attribute: tests across groups with Holm and
Benjamini-Hochberg adjusted p-values, parity / equal-opportunity / equalized-odds gaps, accuracy beside
answered accuracy with answer-error, invalid and refusal rates, per-class rates ("n &lt; 10": too few
faces to report), signed error, "predicted as" shares and shrunk intersection cells
(definitions: docs/fairness.md).</p>
{fairness}
{sensitivity}
{probes}
<h2>Runs</h2><p class="muted">Each run's manifest (run.json): model revision, prompt template hashes,
dataset fingerprint, versions.</p>
{manifests_html(runs)}
<script>{SCRIPT}</script>
</body></html>
"""
