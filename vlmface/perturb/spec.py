"""Perturbation specs: perturbations/*.yaml (or a --perturb file) validated with pydantic.

A spec is data: named perturbations, each one transform with its parameters and a list
of levels. Every transform has an identity level (gamma 1, blur 0, ...): that level is
the clean image, so it is never rendered: it is the clean run, shared by every
perturbation of the same run.

    description: exposure and blur
    seed: 0                       # seeds random patches and noise (with sample id and name)
    perturbations:
      exposure: {transform: gamma, levels: [0.4, 0.6, 1.6, 2.5]}
      blur:     {transform: gaussian_blur, levels: [1, 2, 4]}

Errors name the file, the field and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vlmface.errors import SpecError
from vlmface.specfiles import find_specs, read_yaml_mapping, search_dirs, spec_path, validation_message

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")


class _Transform(BaseModel):
    """Fields every transform has; subclasses add their parameters and level bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    levels: list[float] = Field(min_length=1)
    description: str = ""

    identity: ClassVar[float] = 0.0  # the level that leaves the image unchanged
    bounds: ClassVar[tuple[float, float]] = (0.0, float("inf"))  # allowed levels, inclusive
    open_low: ClassVar[bool] = False  # the lower bound itself is not allowed
    axis: ClassVar[str] = "level"  # what a level means, for plot axes
    random: ClassVar[bool] = False  # draws from the per-sample generator

    @model_validator(mode="after")
    def _check_levels(self) -> _Transform:
        low, high = self.bounds
        bad = [v for v in self.levels if not (low < v if self.open_low else low <= v) or v > high]
        if bad:
            side = ">" if self.open_low else ">="
            raise ValueError(f"levels {bad} out of range: a {self.transform} level must be {side} {low:g}"
                             f" and <= {high:g} ({self.axis})")
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"levels {self.levels} has duplicates")
        return self

    @property
    def perturbed_levels(self) -> list[float]:
        """The levels to render, in the order given; the identity is the clean run."""
        return [v for v in self.levels if v != self.identity]

    def params(self) -> dict:
        """What decides the pixels besides the level (recorded in run.json and the run identity)."""
        return self.model_dump(exclude={"levels", "description"})


class Gamma(_Transform):
    """out = 255 (in/255)^level: below 1 brightens (over-exposure), above 1 darkens."""

    transform: Literal["gamma"]
    identity: ClassVar[float] = 1.0
    bounds: ClassVar[tuple[float, float]] = (0.0, 10.0)
    open_low: ClassVar[bool] = True
    axis: ClassVar[str] = "gamma"


class Exposure(_Transform):
    """Exposure change in stops (EV), applied in linear light: +1 doubles the light."""

    transform: Literal["exposure"]
    bounds: ClassVar[tuple[float, float]] = (-10.0, 10.0)
    axis: ClassVar[str] = "exposure (EV stops)"


class Contrast(_Transform):
    """out = m + level (in - m), m the image's mean luminance: below 1 flattens."""

    transform: Literal["contrast"]
    identity: ClassVar[float] = 1.0
    bounds: ClassVar[tuple[float, float]] = (0.0, 10.0)
    axis: ClassVar[str] = "contrast factor"


class Grayscale(_Transform):
    """Blend towards luminance: 0 keeps colour, 1 is fully gray (still 3 channels)."""

    transform: Literal["grayscale"]
    bounds: ClassVar[tuple[float, float]] = (0.0, 1.0)
    axis: ClassVar[str] = "desaturation"


class GaussianBlur(_Transform):
    """Gaussian blur of standard deviation `level`, in pixels or as a share of the short side."""

    transform: Literal["gaussian_blur"]
    units: Literal["px", "fraction"] = "px"
    bounds: ClassVar[tuple[float, float]] = (0.0, 1000.0)
    axis: ClassVar[str] = "blur sigma"


class Downscale(_Transform):
    """Shrink by `level` (Lanczos), then (restore) scale back up to the original size (bicubic):
    resolution is lost but the model sees the usual size."""

    transform: Literal["downscale"]
    restore: bool = True
    identity: ClassVar[float] = 1.0
    bounds: ClassVar[tuple[float, float]] = (1.0, 1000.0)
    axis: ClassVar[str] = "downscale factor"


class Jpeg(_Transform):
    """Re-encode as JPEG at quality `level`. Level 100 is the identity: the clean image,
    not re-encoded (the loss at quality 95-100 is negligible)."""

    transform: Literal["jpeg"]
    identity: ClassVar[float] = 100.0
    bounds: ClassVar[tuple[float, float]] = (1.0, 100.0)
    axis: ClassVar[str] = "JPEG quality"

    @field_validator("levels")
    @classmethod
    def _whole(cls, levels: list[float]) -> list[float]:
        if any(v != int(v) for v in levels):
            raise ValueError(f"JPEG qualities are whole numbers, got {levels}")
        return levels


class Occlude(_Transform):
    """A filled band or patch. `level` is the band height (share of the image height) or,
    for `random`, the patch side (share of the short side). Band centres default to where
    eyes and mouth sit in aligned face chips; set `center` (share of the height) for others.
    A random patch is centred uniformly in the middle 60% of the image, at the same place for
    every level of one sample (so bigger levels cover more of the same spot)."""

    transform: Literal["occlude"]
    region: Literal["eyes", "mouth", "random"]
    center: float | None = Field(default=None, ge=0.0, le=1.0)
    fill: int = Field(default=0, ge=0, le=255)
    bounds: ClassVar[tuple[float, float]] = (0.0, 1.0)
    axis: ClassVar[str] = "occluded share"
    random: ClassVar[bool] = True


class Rotate(_Transform):
    """In-plane rotation by `level` degrees, counter-clockwise, same size, corners filled."""

    transform: Literal["rotate"]
    fill: int = Field(default=0, ge=0, le=255)
    bounds: ClassVar[tuple[float, float]] = (-180.0, 180.0)
    axis: ClassVar[str] = "rotation (degrees)"


class Flip(_Transform):
    """Horizontal mirror: level 1 flips, 0 is the identity."""

    transform: Literal["flip"]
    bounds: ClassVar[tuple[float, float]] = (0.0, 1.0)
    axis: ClassVar[str] = "flipped"

    @field_validator("levels")
    @classmethod
    def _binary(cls, levels: list[float]) -> list[float]:
        if any(v not in (0.0, 1.0) for v in levels):
            raise ValueError(f"flip levels are 0 (clean) or 1 (mirrored), got {levels}")
        return levels


class GaussianNoise(_Transform):
    """Additive Gaussian noise of standard deviation `level` (0-255 scale); one noise field
    per sample, scaled by the level, so levels differ only in strength."""

    transform: Literal["gaussian_noise"]
    bounds: ClassVar[tuple[float, float]] = (0.0, 255.0)
    axis: ClassVar[str] = "noise sigma (0-255)"
    random: ClassVar[bool] = True


TransformSpec = Annotated[Union[Gamma, Exposure, Contrast, Grayscale, GaussianBlur, Downscale, Jpeg,
                                Occlude, Rotate, Flip, GaussianNoise], Field(discriminator="transform")]
TRANSFORM_NAMES = ("gamma", "exposure", "contrast", "grayscale", "gaussian_blur", "downscale", "jpeg",
                   "occlude", "rotate", "flip", "gaussian_noise")


class PerturbationSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    seed: int = 0
    perturbations: dict[str, TransformSpec]
    path: Path | None = Field(default=None, exclude=True)

    @field_validator("perturbations")
    @classmethod
    def _names(cls, perturbations: dict[str, TransformSpec]) -> dict[str, TransformSpec]:
        if not perturbations:
            raise ValueError("declare at least one perturbation (name: {transform: ..., levels: [...]})")
        bad = [name for name in perturbations if not NAME.match(name)]
        if bad:
            raise ValueError(f"names {bad}: use letters, digits and '_' (they become directory names)")
        return perturbations

    @property
    def where(self) -> str:
        return str(self.path) if self.path else f"perturbation spec {self.name!r}"


def _format_error(where: str, exc: ValidationError) -> str:
    message = validation_message(where, "perturbation spec", exc,
                                 "see the transform's parameters in vlmface/perturb/spec.py")
    if any(e["type"] in ("union_tag_invalid", "union_tag_not_found") for e in exc.errors()):
        message += f"\n  (transforms are {', '.join(TRANSFORM_NAMES)})"
    return message


def perturbation_set(raw: dict, name: str, where: str, path: Path | None = None) -> PerturbationSet:
    """A validated set from a mapping (a spec file's content, or a block of a larger spec)."""
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: a perturbation spec is a mapping with 'perturbations'")
    raw = {"name": name, **raw}
    try:
        return PerturbationSet(**raw, path=path)
    except ValidationError as exc:
        raise SpecError(_format_error(where, exc)) from None


def task_perturbation_set(task, name: str) -> PerturbationSet:
    """A task spec's own perturbation set `name` (its `perturbations:` block), validated like a
    perturbations/*.yaml file; errors name the task file and perturbations.NAME."""
    if name not in task.perturbations:
        raise SpecError(f"{task.where}: no perturbation set {name!r}; it declares "
                        f"{', '.join(task.perturbations) or 'none'}")
    return perturbation_set(task.perturbations[name], name, f"{task.where}: perturbations.{name}", task.path)


def perturbation_dirs() -> list[Path]:
    """$VLMFACE_PERTURBATIONS (os.pathsep-separated; `--perturbations-dir` prepends), then the shipped ones."""
    return search_dirs("VLMFACE_PERTURBATIONS", "perturbations")


def available_perturbations() -> dict[str, Path]:
    return find_specs(perturbation_dirs())


def load_perturbations(name_or_path: str | Path) -> PerturbationSet:
    """A spec by name (perturbations/NAME.yaml) or by path to a YAML file."""
    path = spec_path(name_or_path, available_perturbations(), "perturbation spec")
    raw = read_yaml_mapping(path, "perturbation spec (perturbations: NAME: {transform, levels})")
    return perturbation_set(raw, path.stem, str(path), path)
