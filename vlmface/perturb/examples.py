"""Opt-in contact sheets (`--perturb-examples N`): the first N faces of a run, clean and at
every level of each perturbation, so a spec can be checked by eye. The only place that
writes perturbed pixels to disk."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from vlmface.data import Sample
from vlmface.perturb.apply import Perturbation

THUMB = 112
LABEL_H = 14


def contact_sheet(samples: list[Sample], perturbations: list[Perturbation]) -> Image.Image:
    """Rows: samples; columns: clean, then the levels in the order given."""
    columns = ["clean"] + [f"{p.level:g}" for p in perturbations]
    sheet = Image.new("RGB", (THUMB * len(columns), LABEL_H + THUMB * len(samples)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(columns):
        draw.text((c * THUMB + 4, 1), label, fill="black")
    for r, sample in enumerate(samples):
        clean = sample.load_image()
        images = [clean] + [p(clean, sample.id) for p in perturbations]
        for c, image in enumerate(images):
            thumb = image.resize((THUMB, THUMB), Image.Resampling.BICUBIC)
            sheet.paste(thumb, (c * THUMB, LABEL_H + r * THUMB))
    return sheet


def write_examples(samples: list[Sample], perturbations: list[Perturbation], out: Path) -> list[Path]:
    """One PNG per perturbation name under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    by_name: dict[str, list[Perturbation]] = {}
    for p in perturbations:
        by_name.setdefault(p.name, []).append(p)
    written = []
    for name, levels in by_name.items():
        path = out / f"{name}.png"
        contact_sheet(samples, sorted(levels, key=lambda p: p.level)).save(path)
        written.append(path)
    return written
