"""Text embeddings are cached like image embeddings: a second run encodes no class text."""

from __future__ import annotations

import numpy as np

from vlmface.backends.base import Question
from vlmface.backends.clip import ClipBackend
from vlmface.prompts import load_template
from vlmface.registry import ModelEntry

from tiny_models import build_tiny_open_clip


def _backend(model_dir, cache_dir):
    entry = ModelEntry(name="tiny", backend="clip", weights=f"local-dir:{model_dir}")
    return ClipBackend(entry, {"cache_dir": cache_dir, "device": "cpu"})


def test_second_backend_reads_every_class_text_from_the_cache(tmp_path):
    model_dir = build_tiny_open_clip(tmp_path / "model")
    question = Question(attribute="race5", kind="categorical", labels=("White", "Black", "Asian", "Indian", "Others"),
                        template=load_template("clip_photo"), task="utkface")
    first = _backend(model_dir, tmp_path / "cache")
    first.prepare([question])
    n_texts = sum(len(v) for v in question.class_texts().values())
    assert first.stats()["texts_encoded"] == n_texts > 0
    second = _backend(model_dir, tmp_path / "cache")
    second.prepare([question])
    stats = second.stats()
    assert stats["texts_encoded"] == 0 and stats["text_embedding_cache"]["hits"] == n_texts
    texts = [t for ts in question.class_texts().values() for t in ts]
    np.testing.assert_array_equal(first.embed_texts(texts), second.embed_texts(texts))
    uncached = _backend(model_dir, None)
    np.testing.assert_allclose(uncached.embed_texts(texts), second.embed_texts(texts), atol=1e-6)
