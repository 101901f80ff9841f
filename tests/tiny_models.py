"""Tiny random-weight models, built offline from configs and saved to a local dir.

Tests load them through the same code path as real weights (`local-dir:DIR`,
`from_pretrained(DIR)`), so the loaders are exercised without the hub. Each builder
takes the directory to fill and returns it; it is deterministic given `seed`.
"""

from __future__ import annotations

import json
from pathlib import Path

_SENTENCES = [
    "a photo of a person.", "a close-up photo of a face.", "a portrait of a man.",
    "a portrait of a woman.", "a photo of a happy person.", "a photo of a sad person.",
    "a photo of an angry person.", "a photo of a surprised person.", "a photo of a child.",
    "a photo of an old person.", "a photo of a young adult.", "a White person.",
    "a Black person.", "an East Asian person.", "a Southeast Asian person.", "an Indian person.",
    "a Latino or Hispanic person.", "a Middle Eastern person.", "a 20 to 29 year old person.",
    "a low resolution photo of the face of a neutral person, cropped.",
    "the face of a fearful, disgusted or trustworthy person.",
]


def train_bpe_tokenizer(vocab_size: int = 400, *, bos: str = "<s>", eos: str = "</s>",
                        pad: str = "<pad>", unk: str = "<unk>", template: str = "$A"):
    """A byte-level BPE trained in well under a second, wrapped as a fast tokenizer.

    `template` places the special tokens (e.g. "<s> $A </s>"): CLIP pools its text at the
    end-of-text token, so without one every text would read the same to the model.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [pad, unk, bos, eos]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_SENTENCES * 4, trainer=trainer)
    used = [t for t in specials if t in template.split()]
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, tok.token_to_id(t)) for t in used])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos,
                                   pad_token=pad, unk_token=unk, model_max_length=77)


def build_tiny_open_clip(directory: str | Path, *, seed: int = 0, image_size: int = 64,
                         logit_scale: float = 100.0, logit_bias: float | None = None) -> Path:
    """An open_clip CLIP (or SigLIP-style, with `logit_bias`) saved as
    open_clip_config.json + open_clip_model.safetensors: load it with `local-dir:DIR`.

    The text tower uses open_clip's bundled BPE (vocab 49408), so no download is needed.
    A large logit_scale spreads the probabilities of a random model over the classes.
    """
    import math

    import open_clip
    import torch
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": image_size, "layers": 2, "width": 64, "head_width": 32,
                       "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }
    if logit_bias is not None:
        model_cfg["init_logit_bias"] = logit_bias
    torch.manual_seed(seed)
    model = open_clip.CLIP(**model_cfg)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(logit_scale))
    preprocess_cfg = {"mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD)}
    (directory / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}, indent=2))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "open_clip_model.safetensors"))
    return directory


def build_tiny_hf_clip(directory: str | Path, *, seed: int = 0, image_size: int = 64,
                       logit_scale: float = 100.0) -> Path:
    """A transformers CLIPModel + CLIPProcessor saved with save_pretrained."""
    import math

    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    directory = Path(directory)
    tokenizer = train_bpe_tokenizer(bos="<|startoftext|>", eos="<|endoftext|>",
                                    template="<|startoftext|> $A <|endoftext|>")
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size})
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 77,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": image_size, "patch_size": 16},
        projection_dim=32, logit_scale_init_value=math.log(logit_scale))
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def _siglip_text_config(tokenizer) -> dict:
    return {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": 64, "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "projection_size": 32}


def _save_sigmoid_model(model_class, config, processor, directory: Path, seed: int, logit_scale: float,
                        logit_bias: float) -> Path:
    """Build a SigLIP-family model with a set sigmoid scale and bias, save it with its processor."""
    import math

    import torch

    torch.manual_seed(seed)
    model = model_class(config).eval()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(logit_scale))
        model.logit_bias.fill_(logit_bias)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def build_tiny_hf_siglip(directory: str | Path, *, seed: int = 0, image_size: int = 64,
                         logit_scale: float = 100.0, logit_bias: float = -10.0) -> Path:
    """A transformers SiglipModel + SiglipProcessor saved with save_pretrained."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    directory = Path(directory)
    tokenizer = train_bpe_tokenizer(template="$A </s>")
    tokenizer.model_max_length = 64
    image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size})
    processor = SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = SiglipConfig(
        text_config=_siglip_text_config(tokenizer),
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": image_size, "patch_size": 16})
    return _save_sigmoid_model(SiglipModel, config, processor, directory, seed, logit_scale, logit_bias)


def build_tiny_hf_siglip2(directory: str | Path, *, seed: int = 0, max_patches: int = 256,
                          logit_scale: float = 10.0, logit_bias: float = -2.0) -> Path:
    """A transformers Siglip2Model (NaFlex: variable patches + pixel_attention_mask) + processor.

    Keep max_patches at the processor's default (256): Siglip2Processor(text=, images=) applies its
    own default, so another value would make the processor and its image processor disagree.
    """
    from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model, Siglip2Processor

    directory = Path(directory)
    tokenizer = train_bpe_tokenizer(template="$A </s>")
    tokenizer.model_max_length = 64
    image_processor = Siglip2ImageProcessor(patch_size=16, max_num_patches=max_patches)
    processor = Siglip2Processor(image_processor=image_processor, tokenizer=tokenizer)
    config = Siglip2Config(
        text_config=_siglip_text_config(tokenizer),
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "patch_size": 16, "num_patches": max_patches})
    return _save_sigmoid_model(Siglip2Model, config, processor, directory, seed, logit_scale, logit_bias)
