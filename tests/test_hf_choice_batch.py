"""hf choice mode batches queries (left-padded prefill, one cache row per label) and scores
exactly what one query at a time scores, on a tiny LLaVA and a tiny PaliGemma fed real faces."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 notes inside transformers

from PIL import Image  # noqa: E402

import tiny_vlms  # noqa: E402
from vlmface.backends.base import Query, Question  # noqa: E402
from vlmface.backends.hf import HFBackend  # noqa: E402
from vlmface.interpret import answered  # noqa: E402
from vlmface.registry import ModelEntry  # noqa: E402

UTKFACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface" / "crop_part1"
RACE = Question("race", "categorical", ("White", "Black", "Asian", "Latino_Hispanic"),
                display={"Latino_Hispanic": "Latino or Hispanic"})
GENDER = Question("gender", "categorical", ("Male", "Female"))
AGE = Question("age", "numeric", ())


def _queries() -> list[Query]:
    faces = [Image.open(f).convert("RGB") for f in sorted(UTKFACE.glob("*.jpg"))[:3]]
    prompts = ["Race?", "What is the race of the person in this image? Choose one of: White, Black, Asian.",
               "What is the gender of the person?", "Male or Female."]
    queries = [Query(f"{i}-{k}", face, RACE if k < 2 else GENDER, prompt=prompt)
               for i, face in enumerate(faces) for k, prompt in enumerate(prompts)]
    return queries[:5] + [Query("age", faces[0], AGE, prompt="How old?")] + queries[5:]


@pytest.mark.parametrize("family", ["llava", "paligemma"])
def test_batched_choice_scores_what_batch_one_scores(family, tmp_path):
    folder = tiny_vlms.BUILDERS[family](tmp_path / family)
    queries = _queries()
    results, prefill_rows = {}, {}
    for size in (1, 4):
        backend = HFBackend(ModelEntry(name="tiny", backend="hf", weights=str(folder)),
                            {"device": "cpu", "dtype": "fp32", "mode": "choice", "batch_size": size})
        rows = prefill_rows[size] = []
        backend.model.register_forward_pre_hook(
            lambda module, args, kwargs: rows.append((kwargs["input_ids"].shape[0], int(kwargs["attention_mask"].min())))
            if "pixel_values" in kwargs else None,
            with_kwargs=True)
        results[size] = answered(backend, queries)
    assert [rows for rows, _ in prefill_rows[1]] == [1] * 12
    assert [rows for rows, _ in prefill_rows[4]] == [4, 4, 4]  # the age query never enters a batch
    assert all(padded == 0 for _, padded in prefill_rows[4])  # every batch mixes prompt lengths (left pads)
    for query, one, batched in zip(queries, results[1], results[4]):
        assert one.status == batched.status
        if not query.question.labels:
            assert one.status == "error" and "numeric" in batched.raw
            continue
        assert one.status == "ok" and one.label == batched.label
        for label in query.question.labels:
            assert batched.extra["loglik"][label] == pytest.approx(one.extra["loglik"][label], abs=1e-5)
            assert batched.probs[label] == pytest.approx(one.probs[label], abs=1e-5)
