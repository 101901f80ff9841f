"""One perturbation at one level, applied to samples as they are decoded.

`PerturbedSample.load_image()` decodes and then transforms, so the perturbation runs
wherever decoding runs (the main process, loader workers, Ray decode tasks), before the
backend's own preprocessing, with every backend and engine, and nothing is written to
disk. Randomness is seeded by (spec seed, sample id, perturbation name), not by the
level: a random patch sits at the same place at every level of one sample and noise is
one field scaled by the level (common random numbers), so levels differ only in dose.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from vlmface.data import Sample
from vlmface.errors import SampleError, SpecError
from vlmface.perturb.spec import PerturbationSet, TransformSpec
from vlmface.perturb.transforms import TRANSFORMS

# Bump when a transform's pixels change for the same spec, so old runs are not resumed as if equal.
TRANSFORMS_VERSION = 1


def _format_level(level: float) -> str:
    return f"{level:g}"


@dataclass(frozen=True)
class Perturbation:
    """Picklable: `name` perturbed with `spec` at `level`, seeded by `seed`."""

    name: str
    spec: TransformSpec
    level: float
    seed: int = 0

    def generator(self, sample_id: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(sample_id.encode()), zlib.crc32(self.name.encode())])

    def __call__(self, image: Image.Image, sample_id: str) -> Image.Image:
        if self.level == self.spec.identity:
            return image
        function = TRANSFORMS[self.spec.transform]
        return function(image, self.level, self.spec, self.generator(sample_id))

    @property
    def suffix(self) -> str:
        """The run directory's variant suffix, e.g. perturb-exposure-0.4."""
        return f"perturb-{self.name}-{_format_level(self.level)}"

    def describe(self) -> dict[str, Any]:
        """What decides the pixels: part of the run identity and of run.json."""
        return {"name": self.name, "transform": self.spec.transform, "level": self.level,
                "identity_level": self.spec.identity, "params": self.spec.params(), "seed": self.seed,
                "version": TRANSFORMS_VERSION}

    def wrap(self, samples: list[Sample]) -> list[Sample]:
        return [PerturbedSample(id=x.id, image=x.image, labels=x.labels, meta=x.meta, perturbation=self)
                for x in samples]


@dataclass
class PerturbedSample(Sample):
    perturbation: Perturbation | None = None

    def load_image(self, max_pixels: int | None = None) -> Image.Image:
        image = super().load_image(max_pixels)
        if self.perturbation is None:
            return image
        try:
            return self.perturbation(image, self.id)
        except Exception as exc:  # one odd image (e.g. 1 px wide) must not stop the run
            raise SampleError(f"{self.image.describe()}: perturbation {self.perturbation.suffix} "
                              f"failed ({type(exc).__name__}: {exc})") from None


def perturbations_of(spec: PerturbationSet, only: list[str] | None = None) -> list[Perturbation]:
    """Every (perturbation, non-identity level) of a spec, in spec order; `only` selects names."""
    if only:
        unknown = sorted(set(only) - set(spec.perturbations))
        if unknown:
            raise SpecError(f"{spec.where}: no perturbation {unknown}; it has {', '.join(spec.perturbations)}")
    return [Perturbation(name, transform, level, spec.seed)
            for name, transform in spec.perturbations.items() if not only or name in only
            for level in transform.perturbed_levels]
