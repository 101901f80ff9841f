"""The prompt-sensitivity folders of a results folder, for the HTML report: their plots (drawn from
the tidy tables) and a compact table per folder (accuracy by variant and group, with CIs)."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Iterator

import pandas as pd

from vlmface.prompt_sets.analysis import OUT_DIR

_COLUMNS = {"variant": "variant", "group_column": "group column", "group": "group", "n": "n",
            "accuracy": "accuracy % [CI]", "difference": "vs default, pp [CI]", "flip_rate": "flips vs default %",
            "invalid_rate": "invalid %", "refused_rate": "refused %"}


def sensitivity_folders(results_dir: Path, exclude: Path | None = None) -> list[Path]:
    """Every */prompt_sensitivity/ holding variants.csv, hidden folders and `exclude` skipped."""
    found = []
    for path in sorted(Path(results_dir).rglob(f"{OUT_DIR}/variants.csv")):
        relative = path.relative_to(results_dir).parts
        if any(part.startswith(".") for part in relative):
            continue
        if exclude is not None and path.resolve().is_relative_to(Path(exclude).resolve()):
            continue
        found.append(path.parent)
    return found


def _name(folder: Path, results_dir: Path) -> str:
    return folder.parent.relative_to(results_dir).as_posix()


def sensitivity_plots(results_dir: Path, exclude: Path | None = None) -> Iterator[tuple[str, str, str, object]]:
    """(section, stem, caption, draw) per plot: accuracy by variant and group, gaps across variants."""
    from vlmface.prompt_sets.plots import plot_accuracy, plot_gaps

    for folder in sensitivity_folders(results_dir, exclude):
        name = _name(folder, results_dir)
        variants = pd.read_csv(folder / "variants.csv", dtype={"group": str, "variant": str}, keep_default_na=False,
                               na_values={"accuracy_ci_lo": [""], "accuracy_ci_hi": [""]})
        gaps_path = folder / "gaps.csv"
        gaps = pd.read_csv(gaps_path, dtype={"group_a": str, "group_b": str, "variant": str}) \
            if gaps_path.stat().st_size > 1 else pd.DataFrame()
        stem = name.replace("/", "__")
        for attribute, rows in variants.groupby("attribute", sort=False):
            section = f"prompt sensitivity · {name}"
            yield (section, f"prompt_sensitivity__{stem}__{attribute}__accuracy",
                   f"{attribute}: accuracy by prompt variant and group, with CIs",
                   lambda r=rows: plot_accuracy(r))
            if len(gaps) and (gaps["attribute"] == attribute).any():
                yield (section, f"prompt_sensitivity__{stem}__{attribute}__gaps",
                       f"{attribute}: gap between groups under each prompt variant, with CIs",
                       lambda g=gaps[gaps["attribute"] == attribute]: plot_gaps(g))


def _pct(value: float, lo: float | None = None, hi: float | None = None) -> str:
    if pd.isna(value):
        return ""
    text = f"{100 * value:.1f}"
    return text + (f" [{100 * lo:.1f}, {100 * hi:.1f}]" if lo is not None and not pd.isna(lo) else "")


def sensitivity_html(results_dir: Path, exclude: Path | None = None) -> str:
    parts = []
    for folder in sensitivity_folders(results_dir, exclude):
        variants = pd.read_csv(folder / "variants.csv", dtype={"group": str, "variant": str}, keep_default_na=False,
                               na_values={c: [""] for c in ("accuracy", "accuracy_ci_lo", "accuracy_ci_hi", "difference",
                                                            "difference_ci_lo", "difference_ci_hi")})
        for attribute, rows in variants.groupby("attribute", sort=False):
            head = "".join(f"<th>{escape(h)}</th>" for h in _COLUMNS.values())
            body = []
            for r in rows.itertuples():
                cells = [r.variant, r.group_column, r.group, str(r.n),
                         _pct(r.accuracy, r.accuracy_ci_lo, r.accuracy_ci_hi),
                         "" if r.default else _pct(r.difference, r.difference_ci_lo, r.difference_ci_hi),
                         "" if r.default else _pct(r.flip_rate), _pct(r.invalid_rate), _pct(r.refused_rate)]
                body.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
            parts.append(f"<details><summary>{escape(_name(folder, results_dir))} · {escape(attribute)}</summary>"
                         f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
                         f"<tbody>{''.join(body)}</tbody></table></div></details>")
    return "\n".join(parts)
