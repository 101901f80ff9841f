"""Builders of realistic run directories for the scorer tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
RACE_ACCURACY = {"Black": 0.55, "East Asian": 0.70, "Indian": 0.80, "White": 0.90}
GENDERS = ("Female", "Male")


def record(sample_id: str, attribute: str, label: Any, truth: Any, status: str = "ok",
           **groups: Any) -> dict[str, Any]:
    return {"sample_id": sample_id, "attribute": attribute, "label": label, "status": status,
            "raw": None if label is None else str(label), "probs": None, "groups": groups,
            "truth": truth}


def write_run(run_dir: Path, records: list[dict[str, Any]], run: dict[str, Any] | None = None,
              tail: str = "") -> Path:
    """A run directory with predictions.jsonl (+ run.json when given; `tail` appended raw)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r) + "\n" for r in records)
    (run_dir / "predictions.jsonl").write_text(lines + tail, encoding="utf-8")
    if run is not None:
        (run_dir / "run.json").write_text(json.dumps(run), encoding="utf-8")
    return run_dir


def run_json(attribute: str = "emotion", kind: str = "categorical",
             labels: tuple = LABELS, group_columns: tuple = ("race", "gender")) -> dict[str, Any]:
    return {"task": "test", "model": "fake", "group_columns": list(group_columns),
            "attributes": {attribute: {"kind": kind, "labels": list(labels)}}}


def planted_records(rng: np.random.Generator, n_per_race: int, attribute: str = "emotion",
                    accuracy: dict[str, float] = RACE_ACCURACY, invalid: float = 0.05,
                    refused: float = 0.03, labels: tuple = LABELS) -> list[dict[str, Any]]:
    """Per race, each item is right with the planted probability; a wrong item is invalid,
    refused or a wrong label. Gender is assigned at random (no planted effect)."""
    records = []
    for race, p in accuracy.items():
        truth = rng.integers(len(labels), size=n_per_race)
        right = rng.random(n_per_race) < p
        kind = rng.random(n_per_race)
        shift = rng.integers(1, len(labels), size=n_per_race)
        genders = rng.choice(GENDERS, size=n_per_race)
        for i in range(n_per_race):
            status = "ok"
            label: Any = labels[truth[i]]
            if not right[i]:
                wrong = 1 - p
                if kind[i] < invalid / wrong:
                    status, label = "invalid", None
                elif kind[i] < (invalid + refused) / wrong:
                    status, label = "refused", None
                else:
                    label = labels[(truth[i] + shift[i]) % len(labels)]
            records.append(record(f"{race}-{i}", attribute, label, labels[truth[i]], status,
                                  race=race, gender=str(genders[i])))
    return records
