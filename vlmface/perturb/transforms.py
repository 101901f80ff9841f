"""The transforms: (RGB image, level, spec, generator) -> a new RGB image (same size, except
`downscale` with restore: false).

Pure Pillow/numpy, deterministic: the only randomness comes from the generator passed
in (seeded per sample by `vlmface.perturb.apply`). Intensity maps are 256-entry lookup
tables, so they are exact and fast; other arithmetic is float32, rounded once.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from vlmface.perturb import spec as s

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL's "L"
BAND_CENTERS = {"eyes": 0.37, "mouth": 0.72}  # share of the height, in aligned face chips
RANDOM_AREA = (0.2, 0.8)  # where a random patch's centre may fall, as a share of each side


def _to_image(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "RGB")


def _lut(image: Image.Image, curve: Callable[[np.ndarray], np.ndarray]) -> Image.Image:
    """Apply an intensity curve (on 0..1) to every channel through a lookup table."""
    x = np.arange(256, dtype=np.float64) / 255.0
    table = np.clip(np.rint(curve(x) * 255.0), 0, 255).astype(int).tolist()
    return image.point(table * 3)


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def gamma(image: Image.Image, level: float, spec: s.Gamma, rng: np.random.Generator) -> Image.Image:
    return _lut(image, lambda x: x ** level)


def exposure(image: Image.Image, level: float, spec: s.Exposure, rng: np.random.Generator) -> Image.Image:
    gain = 2.0 ** level
    return _lut(image, lambda x: _linear_to_srgb(np.clip(_srgb_to_linear(x) * gain, 0.0, 1.0)))


def contrast(image: Image.Image, level: float, spec: s.Contrast, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    mean = float((pixels @ LUMA).mean())
    return _to_image(mean + np.float32(level) * (pixels - mean))


def grayscale(image: Image.Image, level: float, spec: s.Grayscale, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    luma = (pixels @ LUMA)[..., None]
    return _to_image((1 - np.float32(level)) * pixels + np.float32(level) * luma)


def gaussian_blur(image: Image.Image, level: float, spec: s.GaussianBlur,
                  rng: np.random.Generator) -> Image.Image:
    sigma = level * min(image.size) if spec.units == "fraction" else level
    return image.filter(ImageFilter.GaussianBlur(radius=sigma))


def downscale(image: Image.Image, level: float, spec: s.Downscale, rng: np.random.Generator) -> Image.Image:
    width, height = image.size
    small = image.resize((max(1, round(width / level)), max(1, round(height / level))),
                         Image.Resampling.LANCZOS)
    return small.resize((width, height), Image.Resampling.BICUBIC) if spec.restore else small


def jpeg(image: Image.Image, level: float, spec: s.Jpeg, rng: np.random.Generator) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(level))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def occlude(image: Image.Image, level: float, spec: s.Occlude, rng: np.random.Generator) -> Image.Image:
    width, height = image.size
    centre = rng.uniform(*RANDOM_AREA, size=2)  # drawn for every region, so streams never shift
    pixels = np.array(image)
    if spec.region == "random":
        side = round(level * min(width, height))
        left, top = round(centre[0] * width - side / 2), round(centre[1] * height - side / 2)
        box = (left, top, left + side, top + side)
    else:
        middle = spec.center if spec.center is not None else BAND_CENTERS[spec.region]
        band = round(level * height)
        top = round(middle * height - band / 2)
        box = (0, top, width, top + band)
    left, top = max(0, box[0]), max(0, box[1])
    pixels[top:max(top, box[3]), left:max(left, box[2])] = spec.fill
    return Image.fromarray(pixels, "RGB")


def rotate(image: Image.Image, level: float, spec: s.Rotate, rng: np.random.Generator) -> Image.Image:
    return image.rotate(level, resample=Image.Resampling.BICUBIC, expand=False,
                        fillcolor=(spec.fill,) * 3)


def flip(image: Image.Image, level: float, spec: s.Flip, rng: np.random.Generator) -> Image.Image:
    return ImageOps.mirror(image) if level else image.copy()


def gaussian_noise(image: Image.Image, level: float, spec: s.GaussianNoise,
                   rng: np.random.Generator) -> Image.Image:
    width, height = image.size
    noise = rng.standard_normal((height, width, 3), dtype=np.float32)
    return _to_image(np.asarray(image, dtype=np.float32) + np.float32(level) * noise)


TRANSFORMS: dict[str, Callable] = {
    "gamma": gamma, "exposure": exposure, "contrast": contrast, "grayscale": grayscale,
    "gaussian_blur": gaussian_blur, "downscale": downscale, "jpeg": jpeg, "occlude": occlude,
    "rotate": rotate, "flip": flip, "gaussian_noise": gaussian_noise,
}
