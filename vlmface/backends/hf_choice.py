"""Token log-probabilities of label continuations given a prompt and an image (hf backend, choice mode).

Decoder-only models: one prefill of the prompt (batch 1, so no padding and no position
offsets), then its cache is repeated once per label and all continuations are scored in one
forward pass, right-padded (causal attention: a pad after a token cannot change that token's
logits). This follows the path generate() takes, so prefix-LM models (PaliGemma: bidirectional
over image + prompt, causal after) are scored exactly as they decode.
Encoder-decoder models: the decoder is teacher-forced from its start tokens, one row per label.
"""

from __future__ import annotations

import inspect
from typing import Any


def _cache_keyword(model) -> str:
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _right_padded(rows: list[list[int]], pad_id: int):
    import torch

    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), max(width, 1)), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return ids


def decoder_logliks(model, inputs: dict[str, Any], conts: list[list[int]],
                    pad_id: int | None) -> list[list[float]]:
    """Per label: the log-probability of each of its tokens (vlmface.backends.choice sums them)."""
    import torch

    pad_id = 0 if pad_id is None else pad_id
    with torch.inference_mode():
        first = model(**inputs, use_cache=True)
        logp = first.logits[0, -1].float().log_softmax(-1)
        scores = [[logp[cont[0]].item()] for cont in conts]
        if max(len(cont) for cont in conts) == 1:
            return scores
        cache = getattr(first, "cache", None) or getattr(first, "past_key_values", None)
        cache.batch_repeat_interleave(len(conts))
        ids = _right_padded([cont[:-1] for cont in conts], pad_id).to(inputs["input_ids"].device)
        prompt_len = inputs["input_ids"].shape[1]
        mask = torch.ones((len(conts), prompt_len + ids.shape[1]), dtype=torch.long, device=ids.device)
        rest = model(input_ids=ids, attention_mask=mask, use_cache=True, **{_cache_keyword(model): cache})
        logp = rest.logits.float().log_softmax(-1)
    for k, cont in enumerate(conts):
        scores[k] += [logp[k, t - 1, cont[t]].item() for t in range(1, len(cont))]
    return scores


def decoder_prefix(model) -> list[int]:
    """The tokens generate() puts before the first free decoder token."""
    gen, config = model.generation_config, model.config
    start = gen.decoder_start_token_id
    if start is None:
        start = getattr(config, "decoder_start_token_id", None)
    if start is None:
        raise ValueError("encoder-decoder model without decoder_start_token_id in its generation config")
    forced = getattr(gen, "forced_bos_token_id", None)
    return [start] + ([forced] if forced is not None else [])


def encoder_decoder_logliks(model, inputs: dict[str, Any], conts: list[list[int]],
                            pad_id: int | None) -> list[list[float]]:
    import torch

    pad_id = 0 if pad_id is None else pad_id
    prefix = decoder_prefix(model)
    rows = [prefix + cont for cont in conts]
    device = inputs["input_ids"].device
    decoder_ids = _right_padded([row[:-1] for row in rows], pad_id).to(device)
    repeated = {key: value.repeat(len(rows), *[1] * (value.dim() - 1)) if hasattr(value, "repeat") else value
                for key, value in inputs.items()}
    with torch.inference_mode():
        logp = model(**repeated, decoder_input_ids=decoder_ids).logits.float().log_softmax(-1)
    return [[logp[k, t - 1, row[t]].item() for t in range(len(prefix), len(row))] for k, row in enumerate(rows)]
