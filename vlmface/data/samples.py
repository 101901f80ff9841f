"""A sample: an id, a lazily decoded face image, canonical labels and metadata."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image, UnidentifiedImageError

from vlmface.errors import SampleError

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

    def load_image(self) -> Image.Image:
        return decode_image(self.image.read_bytes(), self.image.describe())


def decode_image(data: bytes, where: str) -> Image.Image:
    """Bytes -> RGB image, fully decoded so corrupt or truncated files fail here."""
    if not data:
        raise SampleError(f"{where}: image file is empty")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError:
        raise SampleError(f"{where}: not a readable image (corrupt or unsupported format)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise SampleError(f"{where}: image is corrupt or truncated ({exc})") from None
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")  # L, P, CMYK, I;16 ...
