"""One chat-completions request per query: the image as a JPEG data URL, the prompt, the params.

The cache key describes the request without the image bytes: the image is named by the sha256
of its pixels plus the encoding settings, so the key does not depend on the JPEG encoder's
version and a cached rerun never has to encode an image at all.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from vlmface.response_cache import request_key

CACHE_FORMAT = 1  # bump when the meaning of a cached entry changes


@dataclass(frozen=True)
class ImageEncoding:
    max_side: int = 512  # long side cap in pixels; smaller images are never enlarged
    quality: int = 90  # JPEG quality
    detail: str | None = None  # OpenAI's image "detail" (low | high | auto); None: not sent

    def describe(self) -> dict[str, Any]:
        return {"max_side": self.max_side, "quality": self.quality, "detail": self.detail}


def pixel_sha256(image: Image.Image) -> str:
    digest = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def jpeg_data_url(image: Image.Image, encoding: ImageEncoding) -> str:
    """The image re-encoded as JPEG (RGB, long side capped) in a base64 data URL."""
    picture = image.convert("RGB") if image.mode != "RGB" else image.copy()
    if max(picture.size) > encoding.max_side:
        picture.thumbnail((encoding.max_side, encoding.max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=encoding.quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass
class ChatRequest:
    """Everything sent for one query; identical requests share one key and one HTTP call."""

    model: str
    prompt: str
    image: Image.Image
    image_sha256: str
    encoding: ImageEncoding
    params: dict[str, Any]  # max_tokens, temperature, and any extra params
    system: str | None = None
    endpoint: str = ""  # base URL: the same model name on two servers is two models
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = request_key({
            "format": CACHE_FORMAT, "endpoint": self.endpoint, "model": self.model,
            "messages": self._messages({"sha256": self.image_sha256, **self.encoding.describe()}),
            "params": self.params})

    def _messages(self, image_ref: Any) -> list[dict[str, Any]]:
        image_part: dict[str, Any] = {"url": image_ref}
        if self.encoding.detail:
            image_part["detail"] = self.encoding.detail
        messages: list[dict[str, Any]] = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": [{"type": "image_url", "image_url": image_part},
                                                     {"type": "text", "text": self.prompt}]})
        return messages

    def body(self, data_url: str) -> dict[str, Any]:
        """Keyword arguments of chat.completions.create."""
        return {"model": self.model, "messages": self._messages(data_url), **self.params}

    def estimated_input_tokens(self, image_tokens: int) -> int:
        """A generous upper bound on prompt tokens, for budgeting before anything was measured."""
        text = len(self.prompt) + len(self.system or "")
        return text // 2 + 16 + image_tokens
