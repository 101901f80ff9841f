"""Decode (and preprocess) images ahead of the model, in worker processes when asked.

With workers > 0 a torch DataLoader runs decoding and the backend's preprocessor in
separate processes, so they keep pace with the model; without torch, a thread pool does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from PIL import Image

from vlmface.data import Sample
from vlmface.errors import SampleError


@dataclass
class DecodedSample:
    sample: Sample
    image: Image.Image | None = None
    pixels: Any = None
    error: str | None = None


class _Decode:
    """Picklable: sample -> DecodedSample (a bad image becomes an error, never an exception)."""

    def __init__(self, preprocess: Callable[[Image.Image], Any] | None, max_pixels: int | None = None):
        self.preprocess, self.max_pixels = preprocess, max_pixels

    def __call__(self, sample: Sample) -> DecodedSample:
        try:
            image = sample.load_image(self.max_pixels)
        except SampleError as exc:
            return DecodedSample(sample, error=str(exc))
        try:
            pixels = self.preprocess(image) if self.preprocess else None
        except Exception as exc:  # a preprocessor can fail on one odd image: record, go on
            return DecodedSample(sample, error=f"{sample.image.describe()}: preprocessing failed ({exc})")
        return DecodedSample(sample, image=image, pixels=pixels)


class _Samples:
    def __init__(self, samples: list[Sample], decode: _Decode):
        self.samples, self.decode = samples, decode

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> DecodedSample:
        return self.decode(self.samples[index])


def _as_list(batch: list[DecodedSample]) -> list[DecodedSample]:
    return batch


def iter_batches(samples: list[Sample], batch_size: int, workers: int = 0,
                 preprocess: Callable[[Image.Image], Any] | None = None,
                 max_pixels: int | None = None) -> Iterator[list[DecodedSample]]:
    """Batches of decoded samples; an image over `max_pixels` (None: the default limit, see
    vlmface.data.samples.default_max_pixels) or unreadable becomes that sample's error."""
    decode = _Decode(preprocess, max_pixels)
    if workers <= 0:
        for start in range(0, len(samples), batch_size):
            yield [decode(sample) for sample in samples[start:start + batch_size]]
        return
    try:
        from torch.utils.data import DataLoader
    except ImportError:
        yield from _threaded(samples, batch_size, workers, decode)
        return
    loader = DataLoader(_Samples(samples, decode), batch_size=batch_size, num_workers=workers,
                        collate_fn=_as_list, prefetch_factor=2)
    yield from loader


def _threaded(samples: list[Sample], batch_size: int, workers: int, decode: _Decode) -> Iterator[list[DecodedSample]]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(decode, samples)
        batch: list[DecodedSample] = []
        for decoded in results:
            batch.append(decoded)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
