"""Builders of scored synthetic runs for the report tests (this module holds no tests).

Each run is a real run directory: predictions.jsonl written with tests/scoring_fixtures.py,
a run.json shaped like the runner's, and metrics.json + tables from the real scorer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from scoring_fixtures import planted_records, record, write_run
from vlmface.scoring import score_run

GENDER = ("Male", "Female")
EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
TEXT_SHA = "d" * 64  # sha256 of the prompt text every fixture run records


def write_references(path: Path) -> Path:
    """A published-numbers file with one number whose whole setting is that of the paligemma-pt gender run
    of build_results (so it is placed), and one differing only in the prompt text (never placed)."""
    model = {"model": "PaliGemma (fixture)", "weights": ["org/paligemma-pt"], "snapshot": "unknown",
             "aliases": ["paligemma-pt"], "prompt": "aldahoul_paligemma", "prompt_sha256": TEXT_SHA,
             "values": {"gender": 96.4}}
    other = {**model, "model": "PaliGemma (fixture, other prompt)", "prompt_sha256": "e" * 64,
             "values": {"gender": 90.0}}
    setting = {"task": "utkface", "split": "test", "n": 400, "metric": "accuracy", "unit": "percent",
               "images": "fixture face chips", "sources": ["local"], "mode": "generate",
               "non_answers": "counted wrong"}
    data = {"citations": {"fixture2025": "A fixture paper"},
            "tables": [{"citation": "fixture2025", "setting": setting, "attributes": {"gender": {"n_labels": 2}},
                        "models": [model, other]}]}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def manifest(task: str, model: str, attributes: dict[str, dict[str, Any]], *, prompt: str | None = None,
             mode: str | None = None, limit: int | None = None, backend: str = "hf",
             source: str = "local", split: str | None = "test") -> dict[str, Any]:
    """A run.json with the fields the runner writes and the report reads."""
    sha = "ab" * 32
    templates = {a: ({"name": prompt, "path": f"prompts/{prompt}.jinja", "sha256": sha, "text_sha256": TEXT_SHA}
                     if prompt else None)
                 for a in attributes}
    return {
        "identity": {"task": task, "options": {"mode": mode, "max_new_tokens": None, "dtype": None}},
        "task": task, "source": source, "split": split, "prompt_style": "question", "dataset_fingerprint": "f" * 64, "data_location": "/data/x",
        "task_spec_sha256": "c" * 64, "n_available": 5000, "n_selected": 400, "seed": 0, "limit": limit,
        "model": model, "backend": backend,
        "model_entry": {"name": model, "backend": backend, "weights": f"org/{model}", "revision": "rev123"},
        "model_identity": {"backend": backend, "weights": f"org/{model}", "revision": "0123abcd"},
        "options": {"mode": mode} if mode else {}, "prompt": prompt, "templates": templates,
        "attributes": attributes, "group_columns": ["race", "gender"], "status": "complete",
        "started": "2025-01-01T00:00:00+00:00", "finished": "2025-01-01T00:10:00+00:00",
        "versions": {"python": "3.11", "vlmface": "0.1.0"},
    }


def _age_records(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    races = ("Black", "East Asian", "Indian", "White")
    return [record(f"age-{i}", "age", float(truth + rng.normal(0, 3 + 2 * (i % 4))), float(truth),
                   race=races[i % 4], gender=GENDER[i % 2])
            for i, truth in enumerate(rng.integers(5, 80, size=n))]


def scored_run(folder: Path, run: dict[str, Any], records: list[dict[str, Any]]) -> Path:
    write_run(folder, records, run)
    score_run(folder, n_boot=100)
    return folder


def build_results(root: Path) -> Path:
    """Three runs under ROOT: a gender+age run of `paligemma-pt` on utkface (its published
    number is in reference_numbers.yaml), a second model on the same task with refusals, and an
    emotion run without group columns' effect."""
    rng = np.random.default_rng(0)
    gender = {"kind": "categorical", "labels": list(GENDER)}
    accurate = {"Black": 0.9, "East Asian": 0.95, "Indian": 0.97, "White": 0.98}
    scored_run(root / "utkface" / "paligemma-pt" / "aldahoul_paligemma",
               manifest("utkface", "paligemma-pt", {"gender": gender, "age": {"kind": "numeric", "labels": []}},
                        prompt="aldahoul_paligemma", limit=400),
               planted_records(rng, 100, "gender", accurate, invalid=0.0, refused=0.0, labels=GENDER)
               + _age_records(rng, 200))
    scored_run(root / "utkface" / "smolvlm" / "vlm_question__mode-choice",
               manifest("utkface", "smolvlm", {"gender": gender}, prompt="vlm_question", mode="choice"),
               planted_records(rng, 60, "gender", invalid=0.1, refused=0.15, labels=GENDER))
    scored_run(root / "fer2013" / "smolvlm" / "vlm_question",
               manifest("fer2013", "smolvlm", {"emotion": {"kind": "categorical", "labels": list(EMOTIONS)}},
                        prompt="vlm_question"),
               planted_records(rng, 40, "emotion"))
    return root


def deltas_frame(seed: int = 0, models=("clip-vit-b-32",)) -> pd.DataFrame:
    """A probe's deltas.csv: per model x dimension x group, the dimension mean (empty term)
    and two term rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for model in models:
        for dimension, terms in (("warmth", ("warm", "friendly")), ("competence", ("competent", "skilled"))):
            for col, groups in (("race", ("Asian", "Black", "White")), ("gender", ("female", "male")),
                                ("age", ("young", "old"))):
                for group in groups:
                    values = rng.normal(0, 1.5, size=len(terms))
                    for term, value in [("", values.mean()), *zip(terms, values)]:
                        rows.append({"model": model, "dimension": dimension, "term": term, "group_col": col,
                                     "group": group, "n": 100, "delta_cos": value,
                                     "ci_lo": value - 0.3, "ci_hi": value + 0.3})
    return pd.DataFrame(rows)


def write_probe_folder(folder, deltas: pd.DataFrame, **tables: pd.DataFrame):
    """A social-perception probe folder as `vlmface probe` leaves it, for the report: its tables
    and the probe.json `outputs` the report finds them through."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    written = {"deltas": deltas, **tables}
    for name, frame in written.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    outputs = {"method": "social_perception", "tables": {name: f"{name}.csv" for name in written},
               "shown": [], "figures": []}
    record = {"probe": {"name": "social-perception", "method": "social_perception"}, "task": "utkface",
              "data": {"used": 100}, "models": [{"name": m} for m in dict.fromkeys(deltas["model"])],
              "outputs": outputs}
    (folder / "probe.json").write_text(json.dumps(record), encoding="utf-8")
    return folder
