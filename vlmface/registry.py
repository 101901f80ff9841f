"""Model aliases -> backend family + weights + options, from models.yaml in the package.

`--model ALIAS` looks the alias up; `--model FAMILY:SPEC` (e.g. `hf:/path/to/dir`,
`clip:ViT-B-32/openai`) builds an entry on the fly for anything not in the registry.
Backend classes are imported lazily, so a missing optional extra only matters when
that family is used.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vlmface.errors import BackendError, SpecError

REGISTRY_FILE = Path(__file__).with_name("models.yaml")

#: family -> "module:Class" and the pip extra that provides its dependencies
BACKEND_FAMILIES: dict[str, tuple[str, str]] = {
    "baseline": ("vlmface.backends.baseline:BaselineBackend", "baseline"),
    "emotion": ("vlmface.backends.emotion:EmotionBackend", "emotion"),
    "clip": ("vlmface.backends.clip:ClipBackend", "clip"),
    "hf": ("vlmface.backends.hf:HFBackend", "hf"),
    "vllm": ("vlmface.backends.vllm:VLLMBackend", "vllm"),
    "api": ("vlmface.backends.api:APIBackend", "api"),
}


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    backend: str
    weights: str | None = None  # hub id, local dir, open_clip name/tag, API model name
    revision: str | None = None
    trust_remote_code: bool = False
    description: str = ""
    options: dict[str, Any] = Field(default_factory=dict)


@lru_cache(maxsize=1)
def load_registry(path: Path = REGISTRY_FILE) -> dict[str, ModelEntry]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = {}
    for name, body in raw.items():
        try:
            entries[name] = ModelEntry(name=name, **(body or {}))
        except ValidationError as exc:
            raise SpecError(f"{path}: model {name!r}: {exc}") from None
        if entries[name].backend not in BACKEND_FAMILIES:
            raise SpecError(f"{path}: model {name!r}: unknown backend {entries[name].backend!r}; "
                            f"use one of {', '.join(BACKEND_FAMILIES)}")
    return entries


def resolve_model(spec: str) -> ModelEntry:
    """An alias from the registry, or FAMILY:WEIGHTS for anything else."""
    registry = load_registry()
    if spec in registry:
        return registry[spec]
    family, sep, weights = spec.partition(":")
    if sep and family in BACKEND_FAMILIES and weights:
        return ModelEntry(name=spec, backend=family, weights=weights)
    raise BackendError(f"unknown model {spec!r}: use an alias from `vlmface list models` "
                       f"({', '.join(sorted(registry))}) or FAMILY:WEIGHTS with FAMILY one of "
                       f"{', '.join(BACKEND_FAMILIES)} (e.g. hf:/path/to/local/dir)")


def backend_class(family: str) -> type:
    target, extra = BACKEND_FAMILIES[family]
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("vlmface"):
            raise BackendError(f"backend {family!r} is not available in this version") from None
        raise BackendError(f"backend {family!r} needs the package {exc.name!r}: "
                           f"pip install 'vlmface[{extra}]'") from None
    return getattr(module, class_name)


def create_backend(entry: ModelEntry, options: dict[str, Any] | None = None):
    return backend_class(entry.backend)(entry, options)
