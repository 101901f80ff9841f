"""The embedding protocol (vlmface.backends.base.EmbeddingBackend): the CLIP backend declares it,
and a probe runs on any backend that implements it and nothing else (here a numpy toy, no
torch), on real UTKFace faces, with tables equal to a direct computation from its vectors."""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vlmface.backends.base import Backend, EmbeddingBackend, l2_normalize
from vlmface.probes import load_probe, probe

DIM = 6


class ToyEmbedder(Backend, EmbeddingBackend):
    """Images -> their mean R, G, B and their spread; texts -> a vector seeded by their sha256."""

    embed_dim = DIM

    def answer(self, queries):
        raise AssertionError("a probe never asks a question")

    def embed_images(self, images, ids=None):
        rows = [image_vector(image) for image in images]
        return l2_normalize(np.stack(rows)), [None] * len(rows)

    def embed_texts(self, texts):
        return l2_normalize(np.stack([text_vector(t) for t in texts]))


def image_vector(image: Image.Image) -> np.ndarray:
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    return np.concatenate([pixels.mean(axis=(0, 1)), pixels.std(axis=(0, 1))])


def text_vector(text: str) -> np.ndarray:
    seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).normal(size=DIM)


def test_the_clip_backend_declares_the_protocol_and_one_normalisation_serves_all():
    from vlmface.backends import clip, clip_zeroshot
    from vlmface.probes import measures

    assert issubclass(clip.ClipBackend, EmbeddingBackend)
    assert EmbeddingBackend.__abstractmethods__ == {"embed_dim", "embed_images", "embed_texts", "identity"}
    for module in (clip, clip_zeroshot, measures):
        assert "def normalize" not in inspect.getsource(module) and module.l2_normalize is l2_normalize
    rows = l2_normalize(np.array([[3.0, 4.0], [0.0, 2.0]]))
    np.testing.assert_allclose(rows, [[0.6, 0.8], [0.0, 1.0]])


def test_a_probe_runs_on_any_embedding_backend(monkeypatch, utkface_dir, tmp_path):
    from vlmface import registry

    monkeypatch.setitem(registry.BACKEND_FAMILIES, "toyembed", (f"{__name__}:ToyEmbedder", "dev"))
    result = probe("social-perception", "utkface", "toyembed:v1", data_dir=utkface_dir, limit=30, seed=1,
                   out=tmp_path / "out", n_boot=5, device="cpu", cache_dir=False, plots=False)
    record = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert record["models"][0]["identity"] == {"backend": "toyembed", "weights": "v1"}
    samples = pd.read_csv(tmp_path / "out" / "samples.csv", dtype=str)
    images = l2_normalize(np.stack([image_vector(Image.open(Path(utkface_dir) / s)) for s in samples["sample_id"]]))
    spec = load_probe("social-perception")
    cos = lambda prompts: (images @ l2_normalize(np.stack([text_vector(p) for p in prompts])).T).mean(axis=1)  # noqa: E731
    neutral = cos(spec.neutral_prompts)
    warmth = np.mean([100 * (cos(spec.prompts(term)) - neutral) for term in spec.dimensions["warmth"]], axis=0)
    deltas = result.deltas
    row = deltas[(deltas["dimension"] == "warmth") & (deltas["term"] == "") & (deltas["group_col"] == "all")]
    assert row["delta_cos"].item() == pytest.approx(warmth.mean(), abs=1e-9)
    assert row["n"].item() == 30
