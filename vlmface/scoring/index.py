"""tables/index.md: what each table of a scored run is, one line each, the headline numbers first."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vlmface.scoring.summary import format_summary
from vlmface.scoring.tables import TABLES_DIR

INDEX_FILE = "index.md"

# table kind (the part of the file stem after "<attribute>__") -> what one of its tables holds
_KINDS: list[tuple[str, str]] = [
    (r"overall", "one row: n, accuracy (or MAE, CS@5) with CI, balanced accuracy, macro-F1, invalid, "
                 "refusal and error rates"),
    (r"disparity", "one row per group column or pair: gap (best - worst) with CI, ratio, worst and best "
                   "group, equal-opportunity gap"),
    (r"per_class", "precision, recall, F1 and support per label"),
    (r"confusion", "truth rows x predicted columns, with <invalid> and <refused> columns"),
    (r"by_(?P<col>.+)", "one row per group of {col}: n, accuracy with CI, invalid and refusal rates"),
]


def _kind(kind: str) -> tuple[int, str]:
    """(position in _KINDS, description) of a table kind; unknown kinds go last."""
    for position, (pattern, text) in enumerate(_KINDS):
        match = re.fullmatch(pattern, kind)
        if match:
            return position, text.format(**match.groupdict())
    return len(_KINDS), "table"


def index_text(metrics: dict[str, Any], tables: list[Path]) -> str:
    lines = ["# Tables of this run", "", "Headline numbers (from metrics.json):", "", "```",
             format_summary(metrics), "```", ""]
    for attr in metrics["attributes"]:
        lines += [f"## {attr}", ""]
        prefix = re.sub(r"[^\w.-]+", "_", attr) + "__"
        mine = [p for p in tables if p.suffix == ".md" and p.stem.startswith(prefix)]
        for md in sorted(mine, key=lambda p: (_kind(p.stem[len(prefix):])[0], p.stem)):
            description = _kind(md.stem[len(prefix):])[1]
            lines.append(f"- [{md.stem}]({md.name}) ([csv]({md.stem}.csv)): {description}")
        lines.append("")
    lines.append("Rebuild with `vlmface score RUN_DIR`; compare runs with `vlmface report RESULTS_DIR`.")
    return "\n".join(lines) + "\n"


def write_index(run_dir: Path, metrics: dict[str, Any], tables: list[Path]) -> Path:
    path = run_dir / TABLES_DIR / INDEX_FILE
    path.write_text(index_text(metrics, tables), encoding="utf-8")
    return path


def where_to_look(run_dir: Path, results_root: Path | None = None) -> str:
    """The end-of-run pointer: the table index, and the command that builds the report."""
    index = run_dir / TABLES_DIR / INDEX_FILE
    report = f"vlmface report {results_root}" if results_root else "vlmface report RESULTS_DIR"
    return f"tables: {index}" + ("" if index.is_file() else " (after `vlmface score`)") + f"\nreport: {report}"
