"""The classic baseline (vlmface/backends/baseline.py) on real UTKFace faces: one predictor per
process, shared by every backend (building its face detector costs about a second per eval), with
the same answers from a fresh backend as from the first."""

from __future__ import annotations

import pytest
from PIL import Image

from conftest import UTKFACE_DIR
from vlmface.backends.base import Query, Question
from vlmface.backends.baseline import BaselineBackend
from vlmface.registry import resolve_model

GENDER = Question(attribute="gender", kind="categorical", labels=("Male", "Female"))
AGE = Question(attribute="age", kind="numeric", labels=())


def _queries() -> list[Query]:
    faces = sorted(UTKFACE_DIR.glob("*.jpg"))[:3]
    return [Query(sample_id=f.name, image=Image.open(f).convert("RGB"), question=q) for f in faces for q in (GENDER, AGE)]


def test_backends_share_one_predictor_and_answer_alike():
    entry = resolve_model("baseline")
    first, second = BaselineBackend(entry), BaselineBackend(entry)
    assert first._model is second._model
    queries = _queries()
    answers, again = first.answer(queries), second.answer(queries)
    assert [(a.label, a.value, a.probs, a.raw) for a in answers] == [(a.label, a.value, a.probs, a.raw) for a in again]
    for query, answer in zip(queries, answers):
        if query.question is GENDER:
            assert answer.label in ("Male", "Female") and sum(answer.probs.values()) == pytest.approx(1.0)
        else:
            assert answer.label is None and 0 < answer.value < 120
