"""Deterministic stand-in models, to test the pipeline without loading weights: `FakeBackend`
(a label from a hash of the pixels), and backends whose accuracy per group is planted, with the
tasks they answer (exposure effects per group; an option-order effect)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

from PIL import Image

from vlmface.backends.base import Answer, Backend, Query


class FakeBackend(Backend):
    """Answers a label chosen from a hash of the image pixels; records every prompt it saw."""

    prompt_style = "question"
    instances: ClassVar[list[FakeBackend]] = []

    def __init__(self, entry, options=None):
        super().__init__(entry, options)
        self.prompts: list[str] = []
        FakeBackend.instances.append(self)

    def answer(self, queries: list[Query]) -> list[Answer]:
        answers = []
        for query in queries:
            self.prompts.append(query.prompt)
            labels = query.question.labels
            digest = int(hashlib.sha256(query.image.tobytes()).hexdigest(), 16)
            if query.question.kind == "numeric":
                answers.append(Answer(label=float(digest % 80), raw=str(digest % 80)))
            else:
                answers.append(Answer(label=labels[digest % len(labels)], raw=labels[digest % len(labels)]))
        return answers


def _group_and_index(sample_id: str) -> tuple[str, int]:
    """`img/B_017.png` -> ("B", 17): the planted tasks name each image by its group and index."""
    group, index = sample_id.split("/")[-1].removesuffix(".png").split("_")
    return group, int(index)


def _write_gray_manifest(root: Path, groups, n: int) -> Path:
    """n hard links per group to one gray 8x8 image, and a manifest (image, answer=yes, group)."""
    images = root / "img"
    images.mkdir()
    Image.new("RGB", (8, 8), (GRAY,) * 3).save(images / "gray.png")
    rows = []
    for group in groups:
        for i in range(n):
            (images / f"{group}_{i:03d}.png").hardlink_to(images / "gray.png")
            rows.append(f"img/{group}_{i:03d}.png,yes,{group}")
    (root / "manifest.csv").write_text("image,answer,group\n" + "\n".join(rows) + "\n")
    return root / "manifest.csv"


# --- planted exposure effects (tests/test_perturb_analysis.py, test_error_policy.py, test_report_fairness.py)

PLANTED_N = 200  # images per group
# gamma level -> group -> planted accuracy (multiples of 1/PLANTED_N, so a group's share is exact)
PLANTED = {1.0: {"A": 0.90, "B": 0.90, "C": 0.80},
           0.5: {"A": 0.90, "B": 0.85, "C": 0.80},
           2.0: {"A": 0.80, "B": 0.60, "C": 0.75}}
GRAY = 128  # every synthetic image is this gray; the gamma level is read back from it


def observed_gray(level: float) -> int:
    return round(255 * (GRAY / 255) ** level)


class PlantedBackend(Backend):
    """Reads the exposure level from the pixel value, the group and the image's quantile u from
    its file name; answers right iff u < planted accuracy. u is the same at every level, so an
    image right at a level is right at every easier level (outcomes are nested, as in a real
    dose-response) and a group's accuracy is exactly the planted share."""

    prompt_style = "none"

    def answer(self, queries):
        levels = {observed_gray(level): level for level in PLANTED}
        answers = []
        for query in queries:
            level = levels[query.image.getpixel((0, 0))[0]]
            group, index = _group_and_index(query.sample_id)
            u = (index + 0.5) / PLANTED_N
            right = u < PLANTED[level][group]
            answers.append(Answer(label="yes" if right else "no", raw=f"u={u:.4f}"))
        return answers


class FlakyPlantedBackend(PlantedBackend):
    """The planted backend, but at gamma 2 every 5th image of group B gets "no face found"."""

    def answer(self, queries):
        answers = super().answer(queries)
        for i, query in enumerate(queries):
            group, index = _group_and_index(query.sample_id)
            if group == "B" and index % 5 == 0 and query.image.getpixel((0, 0))[0] < 100:  # gamma 2
                answers[i] = Answer.error("no face found by the detector")
        return answers


PLANTED_TASK = """
name: planted
sources:
  local: {kind: manifest, image_column: image}
attributes:
  answer: {labels: ["yes", "no"]}
  group: {labels: [A, B, C]}
group_columns: [group]
evaluate: [answer]
"""


def write_planted_task(root: Path) -> tuple[Path, Path, Path]:
    """(task spec, manifest, perturbation spec) of the planted exposure task under `root`."""
    manifest = _write_gray_manifest(root, PLANTED[1.0], PLANTED_N)
    spec = root / "planted.yaml"
    spec.write_text(PLANTED_TASK)
    perturbations = root / "exposure.yaml"
    perturbations.write_text("perturbations:\n  exposure: {transform: gamma, levels: [0.5, 1.0, 2.0]}\n")
    return spec, manifest, perturbations


def sweep_planted(planted_task, out: Path, model: str = "planted:none"):
    """The clean run and both exposure levels of the planted task, written under `out`."""
    from vlmface.perturb import load_perturbations, perturbations_of
    from vlmface.runner import EvalConfig, evaluate_perturbed

    spec, manifest, perturbations = planted_task
    config = EvalConfig(task=spec, model=model, data_dir=manifest, out=out, score=False, progress=False)
    return evaluate_perturbed(config, [None, *perturbations_of(load_perturbations(perturbations))])


# --- planted option-order effect (tests/test_prompt_sets.py)

ORDER_N = 100  # images per group
# planted accuracy per group: B loses 0.3 whenever "yes" is not printed first, A never moves
ORDER_PLANTED = {"A": {True: 0.9, False: 0.9}, "B": {True: 0.9, False: 0.6}}


class OrderBackend(Backend):
    """Reads the printed option order from the prompt; the group and quantile u of the image from
    its file name; answers right iff u < planted accuracy of (group, "yes" printed first)."""

    prompt_style = "question"

    def answer(self, queries):
        out = []
        for query in queries:
            listed = query.prompt.split("Choose one of: ")[1].split(". Answer")[0].split(", ")
            group, index = _group_and_index(query.sample_id)
            right = (index + 0.5) / ORDER_N < ORDER_PLANTED[group][listed[0].lower() == "yes"]
            out.append(Answer(label=None, raw="yes" if right else "no"))
        return out


ORDER_TASK = """
name: order
sources:
  local: {kind: manifest, image_column: image}
attributes:
  answer: {labels: ["yes", "no", "maybe"]}
  group: {labels: [A, B]}
group_columns: [group]
evaluate: [answer]
prompts:
  question: {"*": vlm_question}
prompt_sets:
  orders: {seed: 0, permutations: all, variants: {upper: {casing: upper}}}
"""


def write_order_task(root: Path) -> tuple[Path, Path]:
    """(task spec, manifest) of the planted option-order task under `root`."""
    manifest = _write_gray_manifest(root, ORDER_PLANTED, ORDER_N)
    spec = root / "order.yaml"
    spec.write_text(ORDER_TASK)
    return spec, manifest
