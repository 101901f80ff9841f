"""Tiny random-weight generative VLMs, built offline and saved like hub checkpoints.

Each builder writes a model + processor to a directory with `save_pretrained`, so tests load
them back through the backend's real loading code (`AutoProcessor`/`AutoModel*.from_pretrained`).
Sizes are the smallest each family accepts; every build takes well under a second.
"""

from __future__ import annotations

from pathlib import Path

import torch

SENTENCES = [
    "What is the race of the person in this image?", "What is the gender of the person?",
    "How old is the person in this image? Answer with a number.", "Choose one of: Black, White, Asian, "
    "Indian, Latino or Hispanic, Middle Eastern, East Asian, Southeast Asian.", "Male or Female.",
    "neutral happy sad surprise fear disgust anger angry contempt", "The person is a young woman.",
    "The person is an old man. He is 65 years old.", "answer en caption en describe the face",
    "USER: ASSISTANT: User: Assistant:", "0-9 10-19 20-39 40-59 More than 60 0 1 2 3 4 5 6 7 8 9",
    "I'm sorry, I can't determine that.", "{\"race\": \"White\", \"gender\": \"Male\"}",
]

LLAVA_CHAT = ("{% for message in messages %}{% if message['role'] == 'user' %}USER: "
              "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n"
              "{% else %}{{ c['text'] }}{% endif %}{% endfor %} {% else %}ASSISTANT: "
              "{% for c in message['content'] %}{{ c['text'] }}{% endfor %}</s>{% endif %}{% endfor %}"
              "{% if add_generation_prompt %}ASSISTANT:{% endif %}")
IDEFICS_CHAT = ("<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}:"
                "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>"
                "{% else %}{{ c['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
                "{% if add_generation_prompt %}Assistant:{% endif %}")


def _tokenizer(extra_special: list[str], **kwargs):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(SENTENCES * 4, trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                      bos_token="<s>", eos_token="</s>", **kwargs)
    if extra_special:
        wrapped.add_special_tokens({"additional_special_tokens": extra_special})
    return wrapped


def _llama(vocab: int, head_dim: int = 16) -> dict:
    return dict(model_type="llama", hidden_size=2 * head_dim, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=2, head_dim=head_dim, vocab_size=vocab,
                max_position_embeddings=512, pad_token_id=0, bos_token_id=2, eos_token_id=3)


def _save(model, processor, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_llava(out: Path, head_dim: int = 16) -> Path:
    """head_dim >= 32 for vLLM's CPU build."""
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    torch.manual_seed(0)
    tok = _tokenizer(["<image>"])
    image_processor = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=4,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=LLAVA_CHAT)
    config = LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, image_size=28, patch_size=4),
        text_config=_llama(len(tok), head_dim), image_token_index=processor.image_token_id, image_seq_length=49,
        vision_feature_layer=-1, vision_feature_select_strategy="default", projector_hidden_act="gelu")
    return _save(LlavaForConditionalGeneration(config).eval(), processor, out)


def build_paligemma(out: Path, head_dim: int = 16, newline_token: bool = False) -> Path:
    """head_dim >= 32 and a literal "\\n" token (vLLM's PaliGemma processor looks it up) for vLLM's CPU build."""
    from transformers import (PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor,
                              SiglipImageProcessor)

    torch.manual_seed(0)
    tok = _tokenizer(["<image>"])
    if newline_token:
        tok.add_tokens(["\n"])
    image_processor = SiglipImageProcessor(size={"height": 224, "width": 224})
    image_processor.image_seq_length = (224 // 32) ** 2
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok)
    config = PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, image_size=224, patch_size=32,
                           vision_use_head=False),
        text_config=dict(model_type="gemma", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=head_dim, vocab_size=len(tok),
                         pad_token_id=0, bos_token_id=2, eos_token_id=3),
        projection_dim=32, image_token_index=processor.image_token_id)
    return _save(PaliGemmaForConditionalGeneration(config).eval(), processor, out)


def build_florence2(out: Path) -> Path:
    from transformers import (CLIPImageProcessor, Florence2Config, Florence2ForConditionalGeneration,
                              Florence2Processor)

    torch.manual_seed(0)
    locs = [f"<loc_{i}>" for i in range(1000)]
    tok = _tokenizer(locs, extra_special_tokens={"image_token": "<image>"})
    image_processor = CLIPImageProcessor(size={"height": 64, "width": 64}, do_center_crop=False,
                                         crop_size={"height": 64, "width": 64})
    image_processor.image_seq_length = (64 // 32) ** 2 + 1  # DaViT: stride 32, plus one pooled token
    processor = Florence2Processor(image_processor=image_processor, tokenizer=tok,
                                   post_processor_config={"ocr": {}, "phrase_grounding": {},
                                                          "pure_text": {}, "description_with_bboxes": {}})
    config = Florence2Config(
        vision_config=dict(depths=[1, 1, 1, 1], embed_dim=[16, 16, 32, 32], num_heads=[1, 1, 2, 2],
                           num_groups=[1, 1, 2, 2], window_size=4, projection_dim=32),
        text_config=dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                         decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                         vocab_size=len(tok), max_position_embeddings=256, pad_token_id=0,
                         bos_token_id=2, eos_token_id=3, decoder_start_token_id=3, forced_bos_token_id=2),
        image_token_id=tok.convert_tokens_to_ids("<image>"))
    model = Florence2ForConditionalGeneration(config).eval()
    model.generation_config.decoder_start_token_id = 3
    model.generation_config.forced_bos_token_id = 2
    return _save(model, processor, out)


def _idefics_parts(smol: bool):
    from transformers import Idefics3ImageProcessor

    rows = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    tok = _tokenizer(["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", *rows])
    image_processor = Idefics3ImageProcessor(do_image_splitting=False, size={"longest_edge": 224},
                                             max_image_size={"longest_edge": 224})
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=224, patch_size=16)
    return tok, image_processor, vision


def build_idefics3(out: Path) -> Path:
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor

    torch.manual_seed(0)
    tok, image_processor, vision = _idefics_parts(smol=False)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tok, image_seq_len=49,
                                  chat_template=IDEFICS_CHAT)
    config = Idefics3Config(vision_config=vision, text_config=_llama(len(tok)), scale_factor=2,
                            image_token_id=processor.image_token_id)
    return _save(Idefics3ForConditionalGeneration(config).eval(), processor, out)


def build_smolvlm(out: Path) -> Path:
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMProcessor
    from transformers import SmolVLMVideoProcessor

    torch.manual_seed(0)
    tok, image_processor, vision = _idefics_parts(smol=True)
    processor = SmolVLMProcessor(image_processor=image_processor, tokenizer=tok,
                                 video_processor=SmolVLMVideoProcessor(), image_seq_len=49,
                                 chat_template=IDEFICS_CHAT)
    config = SmolVLMConfig(vision_config=vision, text_config=_llama(len(tok)), scale_factor=2,
                           image_token_id=processor.image_token_id)
    return _save(SmolVLMForConditionalGeneration(config).eval(), processor, out)


def to_hub_llava_layout(folder: Path) -> Path:
    """Rename a transformers-5 LLaVA or PaliGemma vision tower (vision_tower.*) to the hub layout
    vLLM reads (vision_tower.vision_model.*); transformers still loads the renamed file."""
    from safetensors.torch import load_file, save_file

    for shard in folder.glob("*.safetensors"):
        tensors = load_file(shard)
        renamed = {("vision_tower.vision_model." + k.removeprefix("vision_tower.")
                    if k.startswith("vision_tower.") and not k.startswith("vision_tower.vision_model.") else k): v
                   for k, v in tensors.items()}
        save_file(renamed, shard, metadata={"format": "pt"})
    return folder


BUILDERS = {"llava": build_llava, "paligemma": build_paligemma, "florence2": build_florence2,
            "idefics3": build_idefics3, "smolvlm": build_smolvlm}
