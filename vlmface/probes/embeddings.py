"""The embedding stage: samples + texts -> one model's unit image and text matrices.

It uses nothing of a backend but the embedding protocol (vlmface.backends.base.EmbeddingBackend):
embed_images, embed_texts, embed_dim, identity, stats.

Images go through the backend's image-embedding cache (keyed by model identity and pixel
digest), so probing new terms, or re-running a probe, encodes no image twice; texts are
cheap and always encoded. One model is loaded at a time and released before the next.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlmface.backends.base import EmbeddingBackend
from vlmface.data import Sample
from vlmface.errors import BackendError, SampleError

CHUNK = 256  # images decoded and held at once


@dataclass
class ModelEmbeddings:
    model: str  # the spec the user passed
    images: np.ndarray  # (n, dim) unit rows, in sample order; NaN rows where `errors` says why
    errors: list[str | None]
    vectors: dict[str, np.ndarray]  # text -> unit vector
    identity: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    digests: list[str | None] = field(default_factory=list)  # pixel sha256 of each decoded image


def check_embedder(model: str):
    """The registry entry of `model` (registry alias or FAMILY:WEIGHTS) if it is a dual encoder;
    an unknown name or a model without a shared image-text space is refused (no weights load)."""
    from vlmface.registry import backend_class, resolve_model

    entry = resolve_model(model)
    if not issubclass(backend_class(entry.backend), EmbeddingBackend):
        raise BackendError(f"model {model!r} ({entry.backend} backend) has no shared image-text embedding "
                           "space; probes need a dual encoder: a clip model (CLIP, SigLIP, SigLIP2)")
    return entry


def open_embedder(model: str, options: dict[str, Any]) -> EmbeddingBackend:
    """`model` loaded as an embedding backend (its weights: a missing checkpoint fails here)."""
    from vlmface.registry import create_backend

    return create_backend(check_embedder(model), {k: v for k, v in options.items() if v is not None})


def embed(model: str, samples: list[Sample], texts: list[str], options: dict[str, Any],
          backend: EmbeddingBackend | None = None) -> ModelEmbeddings:
    """Embed every sample's image and every text with `model` (loaded here unless `backend` is
    that model already open); the backend is closed at the end."""
    backend = backend if backend is not None else open_embedder(model, options)
    try:
        started = time.perf_counter()
        images, errors, digests = _embed_images(backend, samples)
        image_s = time.perf_counter() - started
        started = time.perf_counter()
        unique = list(dict.fromkeys(texts))
        vectors = dict(zip(unique, backend.embed_texts(unique)))
        stats = {**backend.stats(), "texts_encoded": len(unique), "image_seconds": round(image_s, 3),
                 "text_seconds": round(time.perf_counter() - started, 3)}
        return ModelEmbeddings(model, images, errors, vectors, backend.identity(), stats, digests)
    finally:
        backend.close()


def _embed_images(backend: EmbeddingBackend, samples: list[Sample]) -> tuple[np.ndarray, list[str | None], list[str | None]]:
    """(unit rows, error per sample, pixel digest per sample: what `probe-compare` matches runs by)."""
    from vlmface.embedding_cache import image_digest

    dim = int(backend.embed_dim)
    rows: list[np.ndarray] = []
    errors: list[str | None] = []
    digests: list[str | None] = []
    for start in range(0, len(samples), CHUNK):
        chunk = samples[start:start + CHUNK]
        images, ids, chunk_errors = [], [], [None] * len(chunk)
        chunk_digests: list[str | None] = [None] * len(chunk)
        for i, sample in enumerate(chunk):
            try:
                images.append(sample.load_image())
                ids.append(sample.id)
                chunk_digests[i] = image_digest(images[-1])
            except SampleError as exc:
                chunk_errors[i] = f"sample {sample.id!r}: {exc}"
        vectors, failed = backend.embed_images(images, ids) if images else (None, [])
        block = np.full((len(chunk), dim), np.nan)
        decoded = [i for i, e in enumerate(chunk_errors) if e is None]
        for row, i in enumerate(decoded):
            block[i] = vectors[row]
            chunk_errors[i] = failed[row]
        rows.append(block)
        errors += chunk_errors
        digests += chunk_digests
    return (np.concatenate(rows) if rows else np.zeros((0, dim))), errors, digests
