"""The denigration probe (CLIP paper, section 7.1): how often faces get a harmful label.

Prompts take the right indefinite article ("a photo of an animal.", "an East Asian male").
Each face is classified zero-shot among the people classes of the task (every combination
of the labels of the spec's `people` attributes, e.g. race7 x gender -> 14 classes such as
"White male") plus the spec's harmful classes (non-human, crime) and any `other` classes
(e.g. "child"). A class's weight is the renormalised mean of its normalised template
embeddings (CLIP_benchmark); the label is the top-1 class. Reported: the share of each
group's images whose label falls in each harmful category, with bootstrap CIs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vlmface.backends.clip_zeroshot import class_weights
from vlmface.probes.resample import wilson
from vlmface.probes.social import groupings
from vlmface.probes.spec import DatasetSettings, DenigrationSpec
from vlmface.tasks import TaskSpec

PEOPLE, OTHER, ANY_HARMFUL = "people", "other", "any harmful"
RATES_COLUMNS = ["model", "category", "group_col", "group", "n", "rate", "ci_lo", "ci_hi"]


@dataclass(frozen=True)
class Klass:
    name: str  # what the label column says
    category: str  # people | other | a harmful category
    text: str  # what fills {label} in the templates


def people_attributes(task: TaskSpec, settings: DatasetSettings) -> list[str]:
    """The spec's `people`, else the categorical (not ordinal) factors: race and gender."""
    return settings.people or [c for c in settings.factors if task.attributes[c].kind == "categorical"]


def classes(spec: DenigrationSpec, task: TaskSpec, settings: DatasetSettings) -> list[Klass]:
    attrs = people_attributes(task, settings)
    found = []
    for combo in itertools.product(*(task.attributes[a].labels for a in attrs)):
        text = " ".join(task.attributes[a].display.get(label, label) for a, label in zip(attrs, combo))
        found.append(Klass(" x ".join(combo), PEOPLE, text))
    for category, names in spec.harmful.items():
        found += [Klass(name, category, name) for name in names]
    found += [Klass(name, OTHER, name) for name in spec.other]
    return found


def prompt_texts(spec: DenigrationSpec, klasses: list[Klass]) -> list[str]:
    return list(dict.fromkeys(p for k in klasses for p in spec.prompts(k.text)))


def top1(images: np.ndarray, vectors: dict[str, np.ndarray], spec: DenigrationSpec,
         klasses: list[Klass]) -> np.ndarray:
    """(n,) index into `klasses` of each image's top-1 class."""
    weights = class_weights([np.stack([vectors[p] for p in spec.prompts(k.text)]) for k in klasses])
    return np.argmax(images @ weights.T, axis=1)


def categories(spec: DenigrationSpec) -> list[str]:
    """The categories reported: each harmful one, any harmful, and 'other' if the spec has such classes."""
    return [*spec.harmful, ANY_HARMFUL] + ([OTHER] if spec.other else [])


def rates_table(model: str, labels: np.ndarray, klasses: list[Klass], spec: DenigrationSpec,
                table: pd.DataFrame, columns: list[str], levels: dict[str, list[str]], n_boot: int,
                confidence: float, seed: int) -> pd.DataFrame:
    """% of each group's images labelled in each category, with Wilson score intervals (so a
    group with no harmful label still gets a real upper bound). n_boot and seed are unused:
    the interval is exact in form, no resampling."""
    category = np.array([klasses[i].category for i in labels])
    harmful = np.isin(category, list(spec.harmful))
    rows = []
    for col, group, mask in groupings(table, columns, levels):
        for name in categories(spec):
            hit = harmful if name == ANY_HARMFUL else category == name
            k, n = int((hit & mask).sum()), int(mask.sum())
            lo, hi = wilson(k, n, confidence)
            rows.append((model, name, col, group, n, 100 * k / n if n else np.nan, 100 * lo, 100 * hi))
    return pd.DataFrame(rows, columns=RATES_COLUMNS)



def analyse(model: str, images: np.ndarray, vectors: dict[str, np.ndarray], spec: DenigrationSpec,
            klasses: list[Klass], table: pd.DataFrame, columns: list[str], levels: dict[str, list[str]], *,
            n_boot: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict[str, pd.DataFrame]:
    labels = top1(images, vectors, spec, klasses)
    predictions = pd.DataFrame({"model": model, "sample_id": table["sample_id"].to_numpy(),
                                "label": [klasses[i].name for i in labels],
                                "category": [klasses[i].category for i in labels]})
    return {"denigration": rates_table(model, labels, klasses, spec, table, columns, levels, n_boot,
                                       confidence, seed),
            "labels": predictions}
