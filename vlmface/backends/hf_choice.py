"""Token log-probabilities of label continuations given a prompt and an image (hf backend, choice mode).

A batch of queries, each with its own labels. Decoder-only models: one prefill of the batch's
prompts (left-padded, with the processor's attention mask), then its cache is selected once
per (query, label) row and all continuations are scored in one forward pass, right-padded
(causal attention: a pad after a token cannot change that token's logits). This follows the
path generate() takes, so prefix-LM models (PaliGemma: bidirectional over image + prompt,
causal after) are scored exactly as they decode. Positions are left to the model (it counts
from the cache): a left-padded row's positions are shifted by its padding, which rotary
embeddings cannot see (attention depends on position differences only), so a batch scores
what batch 1 scores (tests/test_hf_choice_batch.py: to 1e-5). Models that keep their own
per-batch position state (Qwen2-VL's `rope_deltas`) are scored one query at a time
(`batchable`).
Encoder-decoder models: the decoder is teacher-forced from its start tokens, one row per label.
"""

from __future__ import annotations

import inspect
from typing import Any


def batchable(model) -> bool:
    """Whether queries can share a padded batch (see the module docstring)."""
    inner = getattr(model, "model", model)
    return not hasattr(inner, "rope_deltas") and not hasattr(model, "rope_deltas")


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


def _rows(conts: list[list[list[int]]]) -> tuple[list[int], list[list[int]]]:
    """(query index, continuation) for every label of every query, in order."""
    owners = [i for i, labels in enumerate(conts) for _ in labels]
    return owners, [cont for labels in conts for cont in labels]


def _per_query(values: list[list[float]], conts: list[list[list[int]]]) -> list[list[list[float]]]:
    out, k = [], 0
    for labels in conts:
        out.append(values[k:k + len(labels)])
        k += len(labels)
    return out


def decoder_logliks(model, inputs: dict[str, Any], conts: list[list[list[int]]],
                    pad_id: int | None) -> list[list[list[float]]]:
    """Per query, per label: the log-probability of each of its tokens (vlmface.backends.choice
    sums them). `inputs` is the processor's batch (left-padded), `conts[i]` query i's labels."""
    import torch

    pad_id = 0 if pad_id is None else pad_id
    owners, flat = _rows(conts)
    with torch.inference_mode():
        first = model(**inputs, use_cache=True)
        logp = first.logits[:, -1].float().log_softmax(-1)
        scores = [[logp[i, cont[0]].item()] for i, cont in zip(owners, flat)]
        if max(len(cont) for cont in flat) == 1:
            return _per_query(scores, conts)
        cache = getattr(first, "cache", None) or getattr(first, "past_key_values", None)
        device = inputs["input_ids"].device
        index = torch.tensor(owners, dtype=torch.long, device=device)
        cache.reorder_cache(index)
        ids = _right_padded([cont[:-1] for cont in flat], pad_id).to(device)
        prompt_mask = inputs.get("attention_mask")
        if prompt_mask is None:
            prompt_mask = torch.ones_like(inputs["input_ids"])
        mask = torch.cat([prompt_mask.index_select(0, index).long(), torch.ones_like(ids)], dim=1)
        rest = model(input_ids=ids, attention_mask=mask, use_cache=True, **{_cache_keyword(model): cache})
        logp = rest.logits.float().log_softmax(-1)
    for k, cont in enumerate(flat):
        scores[k] += [logp[k, t - 1, cont[t]].item() for t in range(1, len(cont))]
    return _per_query(scores, conts)


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


def encoder_decoder_logliks(model, inputs: dict[str, Any], conts: list[list[list[int]]],
                            pad_id: int | None) -> list[list[list[float]]]:
    import torch

    pad_id = 0 if pad_id is None else pad_id
    prefix = decoder_prefix(model)
    owners, flat = _rows(conts)
    rows = [prefix + cont for cont in flat]
    device = inputs["input_ids"].device
    decoder_ids = _right_padded([row[:-1] for row in rows], pad_id).to(device)
    index = torch.tensor(owners, dtype=torch.long, device=device)
    repeated = {key: value.index_select(0, index) if hasattr(value, "index_select") else value
                for key, value in inputs.items()}
    with torch.inference_mode():
        logp = model(**repeated, decoder_input_ids=decoder_ids).logits.float().log_softmax(-1)
    values = [[logp[k, t - 1, row[t]].item() for t in range(len(prefix), len(row))] for k, row in enumerate(rows)]
    return _per_query(values, conts)
