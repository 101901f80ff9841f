"""Real-size model architectures with random weights, for benchmarks/gpu_bench.py.

Throughput depends on the architecture, sequence lengths and batching, not on the weight values,
so a model built from its published configuration with random weights runs at the real speed.
Every builder takes `tiny=True` for the CPU smoke run (same code, toy dimensions).

Sources of the dimensions (the published configs):
  open_clip ViT-B-32 / ViT-L-14  open_clip's bundled model configs (pretrained=None)
  PaliGemma-3B (224)             google/paligemma-3b-pt-224 config.json: SigLIP So400m/14 vision tower
                                 (1152 wide, 27 layers, 4304 MLP, 16 heads), Gemma-2B text model
                                 (2048 wide, 18 layers, 16384 MLP, 8 heads, 1 KV head, head_dim 256,
                                 vocab 257216), 256 image tokens
  LLaVA-1.5-7B                   llava-hf/llava-1.5-7b-hf config.json: CLIP ViT-L/14-336 vision tower
                                 (1024 wide, 24 layers, 4096 MLP, 16 heads), Llama-2-7B-sized text
                                 model (4096 wide, 32 layers, 11008 MLP, 32 heads, vocab 32064),
                                 576 image tokens, feature layer -2
"""

from __future__ import annotations

import json
from pathlib import Path

#: parameter counts as published (model cards / papers), for the architecture test
PUBLISHED_PARAMS = {"ViT-B-32": 151_277_313, "ViT-L-14": 427_616_513,
                    "paligemma-3b-224": 2_923_335_408, "llava-1.5-7b": 7_063_427_072}

PALIGEMMA_VOCAB, LLAVA_VOCAB = 257_216, 32_064
_SENTENCES = [
    "What is the gender of the person in this image? Answer Male or Female.", "Male", "Female",
    "answer en What is the race of the person? White Black Asian Indian Others",
    "USER: ASSISTANT: The person is a young woman. The person is an old man.",
]
LLAVA_CHAT = ("{% for message in messages %}{% if message['role'] == 'user' %}USER: "
              "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n"
              "{% else %}{{ c['text'] }}{% endif %}{% endfor %} {% else %}ASSISTANT: "
              "{% for c in message['content'] %}{{ c['text'] }}{% endfor %}</s>{% endif %}{% endfor %}"
              "{% if add_generation_prompt %}ASSISTANT:{% endif %}")


# ----- open_clip -------------------------------------------------------------------------------
def open_clip_config(name: str, tiny: bool) -> dict:
    import open_clip

    if tiny:
        return {"embed_dim": 32, "quick_gelu": True,
                "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
    return {**open_clip.get_model_config(name), "quick_gelu": True}  # the OpenAI weights' activation


def build_open_clip(name: str, directory: Path, *, tiny: bool, device: str = "cpu") -> Path:
    """A random-weight open_clip model saved as open_clip_config.json + open_clip_model.safetensors
    (load it with `local-dir:DIR`)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    cfg = open_clip_config(name, tiny)
    torch.manual_seed(0)
    with torch.device(device):
        model = open_clip.CLIP(**{k: v for k, v in cfg.items() if k != "quick_gelu"},
                               quick_gelu=cfg["quick_gelu"])
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {
        "mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD),
        "interpolation": "bicubic", "resize_mode": "shortest"}}))
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()},
              str(directory / "open_clip_model.safetensors"))
    return directory


# ----- offline tokenizers of the real vocabulary size ------------------------------------------
def synthetic_tokenizer(vocab_size: int, specials: list[str], *, bos: str, eos: str, pad: str, unk: str):
    """A byte-level BPE trained on a few sentences, then padded with filler tokens up to
    `vocab_size` entries (specials included), so embedding and output layers have the real width."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = list(dict.fromkeys([pad, unk, bos, eos]))
    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_SENTENCES * 4, trainers.BpeTrainer(
        vocab_size=min(400, vocab_size), special_tokens=core, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    state = json.loads(tok.to_str())
    vocab = state["model"]["vocab"]
    for i in range(vocab_size - len(vocab) - len(specials)):
        vocab[f"<unused{i}>"] = len(vocab)
    tok = Tokenizer.from_str(json.dumps(state))
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad,
                                      unk_token=unk)
    wrapped.add_special_tokens({"additional_special_tokens": specials})
    return wrapped


# ----- transformers VLMs -----------------------------------------------------------------------
def paligemma_config(tiny: bool, vocab_size: int = PALIGEMMA_VOCAB, image_token: int = 257_152):
    from transformers import PaliGemmaConfig

    if tiny:
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      patch_size=32)
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                    num_key_value_heads=1, head_dim=16)
        projection = 32
    else:
        vision = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                      patch_size=14, projection_dim=2048, projector_hidden_act="gelu_fast")
        text = dict(hidden_size=2048, intermediate_size=16384, num_hidden_layers=18, num_attention_heads=8,
                    num_key_value_heads=1, head_dim=256, max_position_embeddings=8192,
                    hidden_activation="gelu_pytorch_tanh")
        projection = 2048
    return PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", image_size=224, vision_use_head=False, **vision),
        text_config=dict(model_type="gemma", vocab_size=vocab_size, pad_token_id=0, bos_token_id=2,
                         eos_token_id=1, **text),
        projection_dim=projection, image_token_index=image_token, vocab_size=vocab_size)


def llava_config(tiny: bool, vocab_size: int = LLAVA_VOCAB, image_token: int = 32_000):
    from transformers import LlavaConfig

    if tiny:
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      image_size=56, patch_size=14)
        text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                    num_key_value_heads=2)
        seq = (56 // 14) ** 2
    else:
        vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                      image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
        text = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                    num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5)
        seq = 576
    return LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", **vision),
        text_config=dict(model_type="llama", vocab_size=vocab_size, pad_token_id=0, bos_token_id=1,
                         eos_token_id=2, **text),
        image_token_index=image_token, image_seq_length=seq, vision_feature_layer=-2,
        vision_feature_select_strategy="default", projector_hidden_act="gelu")


def paligemma_processor(tiny: bool):
    from transformers import PaliGemmaProcessor, SiglipImageProcessor

    tok = synthetic_tokenizer(PALIGEMMA_VOCAB if not tiny else 500, ["<image>"],
                              bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>")
    image_processor = SiglipImageProcessor(size={"height": 224, "width": 224})
    image_processor.image_seq_length = (224 // (32 if tiny else 14)) ** 2
    return PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok)


def llava_processor(tiny: bool):
    from transformers import CLIPImageProcessor, LlavaProcessor

    side = 56 if tiny else 336
    tok = synthetic_tokenizer(LLAVA_VOCAB if not tiny else 500, ["<image>"],
                              bos="<s>", eos="</s>", pad="<pad>", unk="<unk>")
    image_processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=14,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=LLAVA_CHAT)


HF_FAMILIES = {"paligemma-3b-224": (paligemma_config, paligemma_processor, "PaliGemmaForConditionalGeneration"),
               "llava-1.5-7b": (llava_config, llava_processor, "LlavaForConditionalGeneration")}


def hf_config_for(name: str, processor, tiny: bool):
    config_fn, _, _ = HF_FAMILIES[name]
    vocab = len(processor.tokenizer)
    return config_fn(tiny, vocab_size=vocab, image_token=processor.image_token_id)


def build_hf_vlm(name: str, directory: Path, *, tiny: bool, device: str = "cpu", dtype: str = "float32",
                 weights: bool = True) -> Path:
    """Save a random-weight VLM + processor like a hub checkpoint (`hf:DIR` / `vllm:DIR` load it).
    weights=False saves the config and processor only (enough for vLLM's load_format="dummy")."""
    import torch
    import transformers

    _, processor_fn, class_name = HF_FAMILIES[name]
    directory.mkdir(parents=True, exist_ok=True)
    processor = processor_fn(tiny)
    config = hf_config_for(name, processor, tiny)
    if weights:
        torch.manual_seed(0)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(getattr(torch, dtype))
        try:
            with torch.device(device):  # initialising on the GPU takes seconds, on the CPU minutes
                model = getattr(transformers, class_name)(config).eval()
        finally:
            torch.set_default_dtype(previous)
        model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
        model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
        model.save_pretrained(directory)
        del model
    else:
        config.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def meta_param_count(name: str) -> int:
    """Parameters of the full-size architecture, built on the meta device (no memory used)."""
    import torch

    with torch.device("meta"):
        if name in HF_FAMILIES:
            import transformers

            config_fn, _, class_name = HF_FAMILIES[name]
            model = getattr(transformers, class_name)(config_fn(tiny=False))
        else:
            import open_clip

            cfg = open_clip_config(name, tiny=False)
            model = open_clip.CLIP(**{k: v for k, v in cfg.items() if k != "quick_gelu"})
    return sum(p.numel() for p in model.parameters())
