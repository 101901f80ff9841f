"""The probes of a results folder, in the report: found through their probe.json (and
probe-compare.json), never by guessing file names.

Each record's `outputs` names the method, its tables (name -> file) and the tables to show;
the report shows those tables in its Probes section, and the method's figures
(ProbeMethod.figures, the same ones `vlmface probe` draws) in its Plots section. A method whose
module cannot be imported here still gets its tables shown, with a note, and no figures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from vlmface.errors import SpecError
from vlmface.probes.method import ProbeMethod, method_for
from vlmface.probes.outputs import read_table

RECORD_FILES = ("probe.json", "probe-compare.json")
MAX_ROWS = 200  # rows of a table shown in the page (the CSV has them all)
COMMON_TABLES = {
    "comparison": "per model x measure x factor: the groups scoring highest and lowest",
    "side_by_side": "markedness, ranking measures and denigration rates of every model, with CIs",
    "model_differences": "paired differences (B - A) of each group's mean score between models",
}


@dataclass
class ProbeFolder:
    path: Path
    name: str  # the folder, relative to the results folder
    record: dict[str, Any]  # probe.json or probe-compare.json
    method: ProbeMethod | None  # None: not importable here (see `note`)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    note: str = ""

    @property
    def outputs(self) -> dict[str, Any]:
        return self.record["outputs"]

    @property
    def label(self) -> str:
        return self.method.label if self.method else self.outputs["method"]

    @property
    def section(self) -> str:
        return f"{self.label} · {self.name}"

    def figures(self):
        return self.method.figures(self.tables, self.name) if self.method else []


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and folder.resolve() in path.resolve().parents


def find_probes(results_dir: Path, exclude: Path | None = None) -> tuple[list[ProbeFolder], list[tuple[str, str]]]:
    """(every probe folder under `results_dir` with its tables, (record, why) of those left out)."""
    found, skipped = [], []
    records = sorted(p for name in RECORD_FILES for p in Path(results_dir).rglob(name))
    for path in records:
        rel = path.relative_to(results_dir)
        if any(part.startswith(".") for part in rel.parts) or _inside(path, exclude):
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            skipped.append((str(path), f"unreadable ({exc})"))
            continue
        if not isinstance(record, dict) or "outputs" not in record:
            skipped.append((str(path), "written by an older vlmface (no `outputs` in it); run the probe again"))
            continue
        found.append(_folder(path, rel.parent.as_posix() or "probe", record))
    return found, skipped


def _folder(path: Path, name: str, record: dict[str, Any]) -> ProbeFolder:
    outputs = record["outputs"]
    module = (record.get("probe") or {}).get("module")
    try:
        method, note = method_for(outputs["method"], module, str(path)), ""
    except SpecError as exc:
        method, note = None, f"no figures: {exc}"
    tables = {name: read_table(path.parent / file) for name, file in outputs["tables"].items()
              if (path.parent / file).is_file()}
    return ProbeFolder(path.parent, name, record, method, tables, note)


def _what(record: dict[str, Any]) -> str:
    if record.get("command") == "probe-compare":
        return (f"probe-compare of {len(record.get('inputs', []))} probe folder(s) on task {record.get('task')}: "
                f"{record.get('images')} images, models {', '.join(record.get('names', []))}")
    probe = record.get("probe", {})
    models = ", ".join(m.get("name", m.get("model", "?")) for m in record.get("models", []))
    return (f"probe {probe.get('name')} ({probe.get('method')}) on task {record.get('task')}: "
            f"{record.get('data', {}).get('used')} images, models {models}")


def _table_html(frame: pd.DataFrame) -> str:
    shown = frame.head(MAX_ROWS)
    html = shown.to_html(index=False, border=0, classes="sortable", na_rep="", float_format=lambda v: f"{v:.2f}")
    more = f'<p class="muted">first {MAX_ROWS} of {len(frame)} rows</p>' if len(frame) > MAX_ROWS else ""
    return f'<div class="scroll">{html}</div>{more}'


def probes_html(probes: list[ProbeFolder]) -> str:
    """Per probe folder: what ran, then each table its method shows (outputs.shown)."""
    parts = []
    for folder in probes:
        described = {**COMMON_TABLES, **(folder.method.tables if folder.method else {})}
        parts.append(f'<section class="probe" data-probe="{escape(folder.name)}"><h3>{escape(folder.section)}</h3>'
                     f'<p class="muted">{escape(_what(folder.record))}; figures under Plots, '
                     f'<code>{escape(str(folder.path))}</code></p>')
        if folder.note:
            parts.append(f'<p class="warn">{escape(folder.note)}</p>')
        for name in folder.outputs.get("shown", []):
            if name not in folder.tables:
                continue
            file = folder.outputs["tables"][name]
            parts.append(f'<h4>{escape(name)} <code>{escape(file)}</code></h4>'
                         f'<p class="muted">{escape(described.get(name, ""))}</p>{_table_html(folder.tables[name])}')
        parts.append("</section>")
    return "\n".join(parts)
