"""A sample: an id, a lazily decoded face image, canonical labels and metadata."""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from vlmface.errors import SampleError

# Our own max-pixels check replaces Pillow's warning (it would print once per large face).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

#: Pillow's own refusal threshold (twice Image.MAX_IMAGE_PIXELS, about 179 million pixels)
DEFAULT_MAX_PIXELS = 2 * 89_478_485
MAX_PIXELS_ENV = "VLMFACE_MAX_PIXELS"
#: longest side an image is decoded at; larger ones are reduced while decoding (models see far less)
DECODE_MAX_SIDE = 4096
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


class ImageRef(Protocol):
    def read_bytes(self) -> bytes: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class FileImage:
    path: Path

    def read_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            raise SampleError(f"{self.path}: image file is missing") from None
        except OSError as exc:
            raise SampleError(f"{self.path}: cannot read image ({exc.strerror})") from None

    def describe(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class DatasetImage:
    """Row `index` of a `datasets.Dataset` whose image column is cast with decode=False."""

    dataset: Any
    index: int
    column: str

    def read_bytes(self) -> bytes:
        cell = self.dataset[self.index][self.column]
        if cell is None:
            raise SampleError(f"{self.describe()}: image is missing")
        if cell.get("bytes"):
            return cell["bytes"]
        if cell.get("path"):
            return FileImage(Path(cell["path"])).read_bytes()
        raise SampleError(f"{self.describe()}: image has neither bytes nor a path")

    def describe(self) -> str:
        return f"row {self.index} of column {self.column!r}"


@dataclass
class Sample:
    id: str
    image: ImageRef
    labels: dict[str, str | float]
    meta: dict[str, Any] = field(default_factory=dict)

    def load_image(self, max_pixels: int | None = None) -> Image.Image:
        return decode_image(self.image.read_bytes(), self.image.describe(), max_pixels)


def decode_image(data: bytes, where: str, max_pixels: int | None = None) -> Image.Image:
    """Bytes -> RGB image, fully decoded so corrupt or truncated files fail here.

    An image of more than `max_pixels` pixels (default: `default_max_pixels()`) is refused before
    decoding; a large one is decoded reduced (JPEG at 1/2..1/8 scale, others reduced right after)
    so its longest side is at most DECODE_MAX_SIDE; 16/32-bit and float images are scaled to 8 bits.
    """
    if not data:
        raise SampleError(f"{where}: image file is empty")
    limit = default_max_pixels() if max_pixels is None else max_pixels
    _let_pillow_open(limit)
    try:
        image = Image.open(io.BytesIO(data))
        _refuse_if_too_large(image.size, limit, where)
        _draft_if_large(image)
        image.load()
    except Image.DecompressionBombError as exc:  # Pillow's own check, in Image.open
        size = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(size.group(1)):,} pixels" if size else "too many pixels"
        raise SampleError(f"{where}: image is {pixels}, more than the max-pixels limit of {limit:,}; "
                          f"skipped (a decompression bomb, or raise the limit with --max-pixels or "
                          f"{MAX_PIXELS_ENV})") from None
    except UnidentifiedImageError:
        raise SampleError(f"{where}: not a readable image (corrupt or unsupported format)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise SampleError(f"{where}: image is corrupt or truncated ({exc})") from None
    return _to_rgb(_reduce_if_large(image))


def default_max_pixels() -> int:
    """$VLMFACE_MAX_PIXELS, else DEFAULT_MAX_PIXELS (Pillow's decompression-bomb threshold)."""
    value = os.environ.get(MAX_PIXELS_ENV)
    if not value:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(value.replace("_", ""))
    except ValueError:
        limit = 0
    if limit <= 0:
        raise SampleError(f"{MAX_PIXELS_ENV}={value!r}: give a positive whole number of pixels")
    return limit


def _let_pillow_open(limit: int) -> None:
    """Pillow refuses images above 2 x Image.MAX_IMAGE_PIXELS itself: raise that (never lower it)
    when a larger limit was asked for, so `limit` is the one that applies."""
    if Image.MAX_IMAGE_PIXELS is not None and limit > 2 * Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit // 2 + 1


def _refuse_if_too_large(size: tuple[int, int], limit: int, where: str) -> None:
    if size[0] * size[1] > limit:
        raise SampleError(f"{where}: image is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, more "
                          f"than the max-pixels limit of {limit:,}; skipped (a decompression bomb, or "
                          f"raise the limit with --max-pixels or {MAX_PIXELS_ENV})")


def _draft_if_large(image: Image.Image) -> None:
    """JPEG decodes at 1/2, 1/4 or 1/8 scale for free: the smallest that keeps DECODE_MAX_SIDE."""
    longest = max(image.size)
    if longest > DECODE_MAX_SIDE and image.format == "JPEG":
        scale = DECODE_MAX_SIDE / longest
        image.draft(image.mode, (math.ceil(image.width * scale), math.ceil(image.height * scale)))


def _reduce_if_large(image: Image.Image) -> Image.Image:
    factor = math.ceil(max(image.size) / DECODE_MAX_SIDE)
    if factor <= 1:
        return image
    try:
        return image.reduce(factor)
    except ValueError:  # a mode reduce() does not take (I;16...): to 8 bits first
        return _to_rgb(image).reduce(factor)


def _wide_to_8bit(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit int or float grey image -> 8-bit L, scaled by the range its values use:
    I;16* by 65535 -> 255; I and F by the smallest of 0..1 (float only), 0..255, 0..65535 and
    0..2**31-1 that holds their maximum. Negative values and NaN become 0 (black)."""
    values = np.asarray(image, dtype=np.float64)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
    top = float(values.max()) if values.size else 0.0
    if image.mode.startswith("I;16"):
        full = 65535.0
    elif image.mode == "F" and top <= 1.0:
        full = 1.0
    else:
        full = next(r for r in (255.0, 65535.0, 2.0 ** 31 - 1) if top <= r or r == 2.0 ** 31 - 1)
    return Image.fromarray(np.rint(values.clip(max=full) * (255.0 / full)).astype(np.uint8), mode="L")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        image = _wide_to_8bit(image)
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")  # L, P, CMYK ...
