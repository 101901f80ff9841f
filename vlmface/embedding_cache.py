"""An on-disk cache of image embeddings, shared by runs, processes and attributes.

Layout (one small .npy per image, no pickle):

    ROOT/<space>/meta.json          what the space is: model identity + preprocessing
    ROOT/<space>/<hh>/<digest>.npy  float32 vector for the image whose pixel digest is <digest>
    ROOT/<space>/tmp/               files being written (stale ones are swept on open)

`space` is a hash of everything that decides the vector besides the image (model weights
fingerprint, implementation, dtype, preprocessing), so a key never names a stale vector.
Writes go to tmp/ and are renamed into place (os.replace is atomic on one file system),
so concurrent runs and killed runs leave either a whole entry or none. A reader that
still meets a bad entry (e.g. a disk filled mid-write before a crash) treats it as a miss
and overwrites it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_STALE_TMP_S = 3600.0


def image_digest(image: Any) -> str:
    """sha256 of a decoded PIL image's mode, size and pixels (not of the file bytes, so a
    re-encoded copy of the same pixels shares its entry)."""
    h = hashlib.sha256()
    h.update(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def space_key(description: dict[str, Any]) -> str:
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    writes: int = 0
    bad_entries: int = 0  # unreadable entries found and treated as misses

    def as_dict(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "writes": self.writes,
                "bad_entries": self.bad_entries}


class EmbeddingCache:
    """Vectors of one fixed dimension, keyed by image digest, inside one space."""

    def __init__(self, root: str | Path, description: dict[str, Any], dim: int):
        self.root = Path(root)
        self.description = description
        self.key = space_key(description)
        self.dim = int(dim)
        self.dir = self.root / self.key
        self.stats = CacheStats()
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        self._write_meta()
        self._sweep_tmp()

    def path(self, digest: str) -> Path:
        return self.dir / digest[:2] / f"{digest}.npy"

    def get(self, digest: str) -> np.ndarray | None:
        path = self.path(digest)
        try:
            vector = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            self.stats.misses += 1
            return None
        except (OSError, ValueError, EOFError):
            return self._bad(digest)
        if vector.dtype != np.float32 or vector.shape != (self.dim,) or not np.isfinite(vector).all():
            return self._bad(digest)
        self.stats.hits += 1
        return vector

    def get_many(self, digests: Iterable[str]) -> dict[str, np.ndarray]:
        found = {}
        for digest in digests:
            vector = self.get(digest)
            if vector is not None:
                found[digest] = vector
        return found

    def put(self, digest: str, vector: np.ndarray) -> None:
        vector = np.ascontiguousarray(vector, dtype=np.float32)
        if vector.shape != (self.dim,):
            raise ValueError(f"embedding cache {self.dir}: expected a vector of {self.dim}, got {vector.shape}")
        target = self.path(digest)
        target.parent.mkdir(exist_ok=True)
        self._atomic_write(target, lambda handle: np.save(handle, vector, allow_pickle=False))
        self.stats.writes += 1

    def _bad(self, digest: str) -> None:
        self.stats.bad_entries += 1
        self.stats.misses += 1
        return None

    def _atomic_write(self, target: Path, write) -> None:
        tmp = self.dir / "tmp" / f"{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            with tmp.open("wb") as handle:
                write(handle)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def _write_meta(self) -> None:
        meta = self.dir / "meta.json"
        if meta.exists():
            return
        text = json.dumps({"space": self.key, "dim": self.dim, **self.description}, indent=2,
                          sort_keys=True, default=str)
        self._atomic_write(meta, lambda handle: handle.write(text.encode("utf-8")))

    def _sweep_tmp(self) -> None:
        """Remove files a killed writer left in tmp/ (old enough not to be in use)."""
        cutoff = time.time() - _STALE_TMP_S
        for leftover in (self.dir / "tmp").iterdir():
            try:
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
            except OSError:
                pass
