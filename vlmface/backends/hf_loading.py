"""Loading a transformers VLM: device, dtype, processor and the right model class.

Kept apart from the answering logic in hf.py so both fit on a screen. Any loading failure
becomes a BackendError that says what to do (download the weights, pass a local dir...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmface.errors import BackendError

DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
          "half": "float16", "fp32": "float32", "float32": "float32", "float": "float32"}

#: model class names tried in order when the caller does not name one
MODEL_CLASSES = ("AutoModelForImageTextToText", "AutoModelForCausalLM", "AutoModelForSeq2SeqLM")


@dataclass
class Loaded:
    model: Any
    processor: Any
    device: Any  # torch.device
    dtype: Any  # torch.dtype
    model_type: str
    model_class: str


def pick_device(requested: str | None = None):
    import torch

    if requested and requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(requested: str | None, device):
    import torch

    if requested and requested != "auto":
        name = DTYPES.get(str(requested).lower().removeprefix("torch."))
        if name is None:
            raise BackendError(f"unknown dtype {requested!r}: use one of auto, {', '.join(sorted(DTYPES))}")
        return getattr(torch, name)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def _where(weights: str) -> str | None:
    """A local directory for `weights`, or None if it names a hub repo."""
    path = Path(weights).expanduser()
    if path.is_dir():
        return str(path)
    if weights.startswith((".", "/", "~")) or os.sep in weights.strip("/").replace("/", "", 1):
        raise BackendError(f"model directory {weights!r} does not exist; pass an existing local "
                           "directory or a Hugging Face hub id such as google/paligemma-3b-mix-224")
    return None


def _load_error(weights: str, local: str | None, exc: Exception) -> BackendError:
    if local is not None:
        return BackendError(f"cannot load the model in {local}: {exc}. The directory needs the files "
                            "save_pretrained writes (config.json, weights, processor/tokenizer files)")
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    return BackendError(
        f"cannot load {weights!r} from the Hugging Face hub: {str(exc).splitlines()[0]}. "
        + ("The hub is switched off (HF_HUB_OFFLINE=1) and the weights are not in the local cache. "
           if offline else "The hub is unreachable or the repo id is wrong, and the weights are not cached. ")
        + f"Download them first (`hf download {weights}`, with a token if the repo is gated), "
          "or pass a local directory: --model hf:/path/to/model_dir")


def load_processor(weights: str, *, revision: str | None = None, trust_remote_code: bool = False,
                   cache_dir: str | None = None) -> tuple[Any, Any]:
    """(processor, config) from a hub id or a local dir, without the model weights."""
    import transformers

    local = _where(weights)
    common = {"revision": revision, "trust_remote_code": trust_remote_code, "cache_dir": cache_dir}
    try:
        config = transformers.AutoConfig.from_pretrained(local or weights, **common)
        processor = transformers.AutoProcessor.from_pretrained(local or weights, **common)
    except (OSError, ValueError) as exc:
        raise _load_error(weights, local, exc) from None
    return processor, config


def load(weights: str, *, revision: str | None = None, trust_remote_code: bool = False,
         device: str | None = None, dtype: str | None = None, cache_dir: str | None = None,
         model_class: str | None = None, attn_implementation: str | None = None,
         device_map: str | dict | None = None) -> Loaded:
    """Processor + model from a hub id or a local dir; trust_remote_code only from the registry."""

    local = _where(weights)
    source = local or weights
    common = {"revision": revision, "trust_remote_code": trust_remote_code, "cache_dir": cache_dir}
    processor, config = load_processor(weights, **common)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    kwargs: dict[str, Any] = {**common, "dtype": torch_dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if device_map:
        kwargs["device_map"] = device_map
    model, used = _load_model(source, weights, local, kwargs, model_class)
    if not device_map:
        model = model.to(torch_device)
    else:
        torch_device = next(model.parameters()).device
    model.eval()
    return Loaded(model=model, processor=processor, device=torch_device, dtype=torch_dtype,
                  model_type=getattr(config, "model_type", "unknown"), model_class=used)


def _load_model(source: str, weights: str, local: str | None, kwargs: dict, model_class: str | None):
    import transformers

    names = (model_class,) if model_class else MODEL_CLASSES
    unsupported = []
    for name in names:
        auto = getattr(transformers, name, None)
        if auto is None:
            raise BackendError(f"options.model_class {name!r} is not a transformers class")
        try:
            return auto.from_pretrained(source, **kwargs), name
        except ValueError as exc:
            if "Unrecognized configuration class" not in str(exc):
                raise _load_error(weights, local, exc) from None
            unsupported.append(name)
        except OSError as exc:
            raise _load_error(weights, local, exc) from None
    raise BackendError(f"{weights!r}: transformers {transformers.__version__} has no generative class for "
                       f"this model ({', '.join(unsupported)} all refused its config). Upgrade transformers, "
                       "set trust_remote_code: true in its registry entry if the repo ships its own code, "
                       "or name the class in options.model_class")
