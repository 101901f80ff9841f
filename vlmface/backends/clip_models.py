"""Loading CLIP-family encoders (open_clip and transformers) behind one small surface.

Weights specs (what follows `clip:` on the command line, or a registry entry's `weights`):

    local-dir:DIR        a saved model folder: open_clip if it holds open_clip_config.json,
                         else transformers (config.json); a bare existing DIR works too
    hf-hub:ORG/REPO      an open_clip model on the Hugging Face hub
    NAME/TAG             an open_clip built-in architecture + pretrained tag
                         (ViT-B-32/openai), or NAME/PATH with PATH a checkpoint file
    hf:ID_OR_DIR         a transformers CLIP / SigLIP / SigLIP2 (hub id or local folder)

A registry entry may also force the implementation with `options: {impl: transformers}`
(or `open_clip`) and give a hub `revision` (transformers only).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmface.errors import BackendError

IMPLS = ("open_clip", "transformers")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class ClipSpec:
    impl: str  # "open_clip" | "transformers"
    source: str  # "local-dir" | "hf-hub" | "builtin" | "hub-id"
    name: str  # local path, hub id, or open_clip architecture name
    pretrained: str | None = None  # open_clip tag or checkpoint file (builtin only)
    revision: str | None = None
    spec: str = ""  # the text it was parsed from

    @property
    def is_hub(self) -> bool:
        return self.source in ("hf-hub", "hub-id") or (self.source == "builtin" and not _is_file(self.pretrained))


def _is_file(path: str | None) -> bool:
    return bool(path) and Path(path).expanduser().is_file()


def _dir_impl(path: Path, where: str) -> str:
    if not path.is_dir():
        raise BackendError(f"{where}: no such directory {str(path)!r}; pass a folder holding a saved "
                           "model (open_clip_config.json + weights, or a transformers config.json + weights)")
    if (path / "open_clip_config.json").is_file():
        return "open_clip"
    if (path / "config.json").is_file():
        return "transformers"
    raise BackendError(f"{where}: {str(path)!r} holds neither open_clip_config.json (open_clip) nor "
                       "config.json (transformers); save the model there with open_clip's push_to_hf_hub "
                       "layout or transformers' save_pretrained")


def parse_spec(weights: str | None, *, impl: str | None = None, revision: str | None = None) -> ClipSpec:
    """Turn a weights string into a ClipSpec; errors say which forms are accepted."""
    where = f"clip model {weights!r}"
    if not weights:
        raise BackendError("clip model: no weights given; use e.g. clip:ViT-B-32/openai, "
                           "clip:local-dir:/path/to/dir, clip:hf-hub:ORG/REPO or clip:hf:ORG/REPO")
    if impl is not None and impl not in IMPLS:
        raise BackendError(f"{where}: option impl={impl!r}; use one of {', '.join(IMPLS)}")
    text = weights.strip()
    if text.startswith("hf:"):
        return _hf_spec(text[3:], where, revision, text)
    if text.startswith("hf-hub:"):
        if impl == "transformers":
            return _hf_spec(text[7:], where, revision, text)
        return ClipSpec("open_clip", "hf-hub", text[7:], revision=revision, spec=text)
    if text.startswith("local-dir:") or Path(text).expanduser().is_dir():
        path = Path(text.removeprefix("local-dir:")).expanduser().resolve()
        found = _dir_impl(path, where)
        return ClipSpec(impl or found, "local-dir", str(path), revision=revision, spec=text)
    if impl == "transformers":
        return _hf_spec(text, where, revision, text)
    return _builtin_spec(text, where, revision)


def _hf_spec(target: str, where: str, revision: str | None, text: str) -> ClipSpec:
    if not target:
        raise BackendError(f"{where}: nothing after 'hf:'; give a hub id (google/siglip-base-patch16-224) "
                           "or a local folder saved with save_pretrained")
    path = Path(target).expanduser()
    if path.is_dir():
        _dir_impl(path, where)
        return ClipSpec("transformers", "local-dir", str(path.resolve()), revision=revision, spec=text)
    if target.startswith(("/", "./", "../", "~")):
        raise BackendError(f"{where}: no such directory {target!r}")
    return ClipSpec("transformers", "hub-id", target, revision=revision, spec=text)


def _builtin_spec(text: str, where: str, revision: str | None) -> ClipSpec:
    import open_clip

    name, _, pretrained = text.partition("/")
    known = open_clip.list_models()
    if name not in known:
        hint = (f"; for a hub repo use clip:hf:{text} (transformers) or clip:hf-hub:{text} (open_clip)"
                if pretrained else "")
        raise BackendError(f"{where}: {name!r} is not an open_clip architecture{hint}. Forms: NAME/TAG "
                           "(e.g. ViT-B-32/openai; `open_clip.list_pretrained()` lists them), "
                           "local-dir:DIR, hf-hub:ORG/REPO, hf:ID_OR_DIR")
    if not pretrained:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "(none)"
        raise BackendError(f"{where}: give a pretrained tag, NAME/TAG, so the weights are not random; "
                           f"tags for {name}: {tags}")
    if revision:
        raise BackendError(f"{where}: open_clip tags cannot pin a hub revision; download that revision "
                           "and use clip:local-dir:DIR")
    if not _is_file(pretrained) and not open_clip.get_pretrained_cfg(name, pretrained):
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "(none)"
        raise BackendError(f"{where}: {pretrained!r} is neither a pretrained tag of {name} ({tags}) "
                           "nor a checkpoint file")
    return ClipSpec("open_clip", "builtin", name, pretrained=pretrained, spec=text)


def resolve_device(device: str | None) -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then CPU."""
    choice = (device or "auto").lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"device {device!r}: no CUDA GPU is visible; use --device cpu or auto")
    if choice == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BackendError(f"device {device!r}: Apple MPS is not available; use --device cpu or auto")
    try:
        return torch.device(choice)
    except RuntimeError:
        raise BackendError(f"device {device!r}: use auto, cpu, cuda, cuda:N or mps") from None


def resolve_dtype(dtype: str | None, device: torch.device) -> str:
    """None: fp16 on CUDA (as CLIP was trained), fp32 elsewhere."""
    if dtype is None:
        return "fp16" if device.type == "cuda" else "fp32"
    if dtype not in DTYPES:
        raise BackendError(f"dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return dtype


def weights_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer (names, dtypes, shapes, bytes): the same weights
    share embedding-cache entries whichever route loaded them, and edited weights never do."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)};".encode())
        h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return h.hexdigest()


def offline_hint(spec: ClipSpec, exc: BaseException) -> BackendError:
    """The error for weights that could not be fetched: say how to get them onto this machine."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    state = ("the hub is off (HF_HUB_OFFLINE=1)" if offline
             else "the Hugging Face hub could not be reached (set HF_HUB_OFFLINE=1 to fail fast offline)")
    if spec.impl == "transformers":
        how = (f"download them where there is internet (`hf download {spec.name} --local-dir DIR`), copy DIR "
               "here and pass --model clip:hf:DIR")
    elif spec.source == "hf-hub":
        how = (f"download them where there is internet (`hf download {spec.name} --local-dir DIR`), copy DIR "
               "here and pass --model clip:local-dir:DIR")
    else:
        import open_clip

        hf_hub = (open_clip.get_pretrained_cfg(spec.name, spec.pretrained or "") or {}).get("hf_hub", "")
        repo = os.path.split(hf_hub)[0]  # "org/repo/" or "org/repo/file.bin"
        fetch = (f"`hf download {repo} --local-dir DIR`" if repo else
                 f"open_clip.create_model('{spec.name}', pretrained='{spec.pretrained}') and save it with "
                 "open_clip_config.json into DIR")
        how = (f"download the checkpoint where there is internet ({fetch}), copy DIR here and pass "
               "--model clip:local-dir:DIR")
    # Offline, the library's own message only repeats "could not download" at length: one line is enough.
    reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    tail = "" if offline else f" ({type(exc).__name__}: {reason})"
    return BackendError(f"cannot load CLIP weights {spec.spec!r}: they are not on this machine and {state}. "
                        f"To run offline, {how}.{tail}")


def _clean_repr(obj: Any) -> str:
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))


class OpenClipImageTransform:
    """Picklable image -> model inputs of one image, for the loader's worker processes."""

    def __init__(self, preprocess):
        self.preprocess = preprocess

    def __call__(self, image) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.preprocess(image).unsqueeze(0)}


class HFImageTransform:
    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, image) -> dict[str, torch.Tensor]:
        return dict(self.image_processor(images=[image], return_tensors="pt"))


@contextmanager
def _root_logger_quiet():
    before = logging.root.level
    logging.root.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logging.root.setLevel(before)


class OpenClipEncoder:
    impl = "open_clip"

    def __init__(self, spec: ClipSpec, device: torch.device, dtype: str):
        import open_clip

        self.spec, self.device, self.dtype = spec, device, dtype
        self.quick_gelu = False
        if spec.source == "local-dir":
            model_name, pretrained = f"local-dir:{spec.name}", None
        elif spec.source == "hf-hub":
            model_name, pretrained = f"hf-hub:{spec.name}", None
        else:
            model_name, pretrained = spec.name, spec.pretrained
            # A tag trained with QuickGELU (all OpenAI weights) gives wrong embeddings on the plain
            # architecture; open_clip only warns, so follow the tag.
            tag_cfg = open_clip.get_pretrained_cfg(spec.name, spec.pretrained or "") or {}
            self.quick_gelu = bool(tag_cfg.get("quick_gelu", False))
        try:
            with _root_logger_quiet():  # open_clip logs a download failure on the root logger; we raise it
                model, _, preprocess = open_clip.create_model_and_transforms(
                    model_name, pretrained=pretrained, precision=dtype, device=device,
                    force_quick_gelu=self.quick_gelu, require_pretrained=True)
            self.tokenizer = open_clip.get_tokenizer(model_name)
        except Exception as exc:  # open_clip raises bare RuntimeError/OSError for every failure
            if spec.is_hub:
                raise offline_hint(spec, exc) from None
            raise BackendError(f"cannot load open_clip model {spec.spec!r}: {type(exc).__name__}: {exc}") from None
        self.model = model.eval()
        self.preprocess = preprocess
        self.input_dtype = DTYPES[dtype] if dtype != "fp32" else torch.float32
        self.logit_scale = float(model.logit_scale.detach().float().exp().cpu())
        bias = getattr(model, "logit_bias", None)
        self.logit_bias = None if bias is None else float(bias.detach().float().cpu())
        self.weights_sha256 = weights_fingerprint(model)
        with torch.inference_mode():
            probe = self.tokenizer(["a"]).to(device)
            self.dim = int(model.encode_text(probe).shape[-1])

    def prepare_images(self, images: list) -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.stack([self.preprocess(image) for image in images])}

    def image_transform(self) -> OpenClipImageTransform:
        return OpenClipImageTransform(self.preprocess)

    @torch.inference_mode()
    def encode_images(self, inputs: dict[str, torch.Tensor]) -> np.ndarray:
        pixels = inputs["pixel_values"].to(self.device, dtype=self.input_dtype, non_blocking=True)
        return self.model.encode_image(pixels).float().cpu().numpy()

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(texts).to(self.device)
        return self.model.encode_text(tokens).float().cpu().numpy()

    def preprocessing(self) -> dict[str, Any]:
        import torchvision

        cfg = getattr(self.model.visual, "preprocess_cfg", {})
        return {"transform": _clean_repr(self.preprocess), "config": {k: cfg[k] for k in sorted(cfg)},
                "torchvision": torchvision.__version__}

    def identity(self) -> dict[str, Any]:
        import open_clip

        found = {"impl": self.impl, "library": f"open_clip_torch {open_clip.__version__}",
                 "source": self.spec.source, "name": self.spec.name}
        if self.spec.pretrained:
            found["pretrained"] = self.spec.pretrained
        if self.quick_gelu:
            found["quick_gelu"] = True
        return found


class HFEncoder:
    impl = "transformers"

    def __init__(self, spec: ClipSpec, device: torch.device, dtype: str):
        from transformers import AutoModel, AutoProcessor

        self.spec, self.device, self.dtype = spec, device, dtype
        kwargs = {"revision": spec.revision} if spec.revision else {}
        try:
            self.processor = AutoProcessor.from_pretrained(spec.name, **kwargs)
            model = AutoModel.from_pretrained(spec.name, dtype=DTYPES[dtype], **kwargs)
        except Exception as exc:  # OSError offline, ValueError for unknown configs, ...
            if spec.source == "hub-id":
                raise offline_hint(spec, exc) from None
            raise BackendError(f"cannot load transformers model {spec.spec!r}: {type(exc).__name__}: {exc}") from None
        if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
            raise BackendError(f"{spec.spec!r} is a {type(model).__name__}, not a dual encoder; the clip backend "
                               "takes CLIP, SigLIP and SigLIP2 checkpoints (use the hf backend for VLMs)")
        self.model = model.to(device).eval()
        self.model_type = model.config.model_type
        self.input_dtype = DTYPES[dtype]
        self.logit_scale = float(model.logit_scale.detach().float().exp().cpu())
        bias = getattr(model, "logit_bias", None)
        self.logit_bias = None if bias is None else float(bias.detach().float().reshape(-1)[0].cpu())
        self.text_kwargs = self._text_kwargs(model)
        self.commit = getattr(model.config, "_commit_hash", None)
        self.weights_sha256 = weights_fingerprint(model)
        self.dim = int(self.encode_texts(["a"]).shape[-1])

    @staticmethod
    def _text_kwargs(model) -> dict[str, Any]:
        # SigLIP was trained on texts padded to the full 64 tokens; pooling reads the last position.
        if model.config.model_type.startswith("siglip"):
            return {"padding": "max_length", "truncation": True,
                    "max_length": int(model.config.text_config.max_position_embeddings)}
        return {"padding": True, "truncation": True}

    def prepare_images(self, images: list) -> dict[str, torch.Tensor]:
        return dict(self.processor.image_processor(images=images, return_tensors="pt"))

    def image_transform(self) -> HFImageTransform:
        return HFImageTransform(self.processor.image_processor)

    @torch.inference_mode()
    def encode_images(self, inputs: dict[str, torch.Tensor]) -> np.ndarray:
        moved = {k: v.to(self.device, dtype=self.input_dtype) if v.is_floating_point() else v.to(self.device)
                 for k, v in inputs.items()}
        return self.model.get_image_features(**moved).pooler_output.float().cpu().numpy()

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self.processor.tokenizer(texts, return_tensors="pt", **self.text_kwargs)
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        return self.model.get_text_features(**tokens).pooler_output.float().cpu().numpy()

    def preprocessing(self) -> dict[str, Any]:
        import transformers

        image_processor = self.processor.image_processor
        config = json.loads(image_processor.to_json_string())
        return {"processor": type(image_processor).__name__, "config": config,
                "transformers": transformers.__version__}

    def identity(self) -> dict[str, Any]:
        import transformers

        found = {"impl": self.impl, "library": f"transformers {transformers.__version__}",
                 "source": self.spec.source, "name": self.spec.name, "model_type": self.model_type,
                 "text_tokenizer_kwargs": self.text_kwargs}
        if self.spec.revision or self.commit:
            found["revision"] = self.commit or self.spec.revision
        return found


def load_encoder(spec: ClipSpec, device: torch.device, dtype: str):
    return (OpenClipEncoder if spec.impl == "open_clip" else HFEncoder)(spec, device, dtype)
