"""`choice` mode on vLLM: every label's continuation scored with prompt log-probabilities.

The same tokens as the hf backend. For one query the model's own processor (the one the hf
backend runs) lays out the prompt: `reference` is its `input_ids` (image tokens expanded,
BOS and any suffix it adds), and each label's tokens (`vlmface.backends.choice.label_token_ids`)
follow it. vLLM rewrites a token prompt itself (it expands or inserts the image tokens), so
the engine gets `engine_prompt(reference)`: the processor's image-token run collapsed back to
the one placeholder vLLM expands (LLaVA-style models), or, for models whose vLLM processor
inserts `<image>*n + <bos>` at the start itself (IMAGE_INSERTED_BY_VLLM, vLLM 0.32
models/paligemma.py), without that run and BOS. Every output is then checked: the engine's
`prompt_token_ids` must start with `reference + label` exactly (vLLM may append tokens after
it, as PaliGemma's "\\n", which a causal label never sees), else the query is an error naming
the first position that differs. No position search, no silent mismatch.

Request: `SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False,
skip_reading_prefix_cache=False)`. vLLM 0.32 by default does not read the prefix cache for a
request with prompt log-probabilities; we let it read, so the L label requests of a query
share the image and prompt blocks (the image is encoded and the prompt prefilled about once
per image, in full blocks: 16 tokens on GPU, 128 by default on CPU). The price: rows read from
the cache hold NO log-probabilities (vLLM returns uninitialised values there, and
`detokenize=False` keeps it from decoding them), so a label is scored from a request only if
its first token's row was computed: `output.num_cached_tokens < len(reference)`
(`needs_rerun`). Otherwise (the prompt ends on a block boundary, or two labels share their
first block-filling tokens, or the same query repeats) that label's request is sent again
with `skip_reading_prefix_cache=True`. `CacheStats` counts cached prompt tokens and reruns.

Not the same computation for prefix-LM models (PaliGemma): transformers attends
bidirectionally over the whole prefix (image + BOS + prompt + "\\n", token_type_ids 0), vLLM 0.32
only over the image tokens on GPU and not at all on CPU (its CPU attention is causal); the
tokens are the same, the attention mask is not (tiny PaliGemma on CPU: 1.2e-4 nats). The
backend records `prefix_lm_attention` in run.json and warns.

The one place that reads vLLM's outputs is `label_token_logprobs`; the unit tests fake the
engine at this boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vlmface.errors import BackendError

#: vLLM processors that insert the image tokens + BOS at the prompt's start themselves
IMAGE_INSERTED_BY_VLLM = {"paligemma"}


def reference_ids(processor: Any, prompt: str, image: Any) -> list[int]:
    """The prompt's token ids exactly as the model's processor makes them (what the hf backend scores)."""
    batch = processor(text=[prompt], images=[[image]], return_tensors="pt")
    return [int(t) for t in batch["input_ids"][0]]


def engine_prompt(reference: list[int], image_token: int, bos: int | None, inserted: bool) -> list[int]:
    """The token prompt vLLM turns back into `reference` (see the module docstring)."""
    first = reference.index(image_token) if image_token in reference else None
    if first is None:
        raise BackendError(f"vLLM choice: the processor's prompt has no image token {image_token}")
    end = first
    while end < len(reference) and reference[end] == image_token:
        end += 1
    if not inserted:
        return reference[:first] + [image_token] + reference[end:]
    if first != 0 or end >= len(reference) or reference[end] != bos:
        raise BackendError("vLLM choice: expected the processor's prompt to start with the image tokens "
                           f"and BOS (as vLLM lays it out), got {reference[:3]}...{reference[end:end + 2]}")
    return reference[end + 1:]


def label_requests(prompt: list[int], image: Any, labels: Sequence[list[int]]) -> list[dict[str, Any]]:
    """One vLLM token prompt per label: engine prompt + label tokens, with the image."""
    return [{"prompt_token_ids": prompt + list(label), "multi_modal_data": {"image": image}} for label in labels]


def sampling_params(vllm: Any, read_cache: bool) -> Any:
    return vllm.SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0, detokenize=False,
                               skip_reading_prefix_cache=not read_cache)


def needs_rerun(output: Any, reference: Sequence[int]) -> bool:
    """True if the row that predicts the label's first token came from the prefix cache
    (no log-probabilities there): score this label again without reading the cache."""
    return int(getattr(output, "num_cached_tokens", 0) or 0) >= len(reference)


def _check_layout(ids: Sequence[int], expected: list[int]) -> None:
    if list(ids[:len(expected)]) == expected:
        return
    at = next((k for k, (a, b) in enumerate(zip(ids, expected)) if a != b), min(len(ids), len(expected)))
    raise BackendError(
        "vLLM choice: vLLM laid out the prompt differently from the model's processor (first difference at "
        f"token {at}: vLLM {list(ids[at:at + 4])}, processor {expected[at:at + 4]}), so it would not score "
        "what the hf backend scores; use the hf backend's choice mode for this model")


def label_token_logprobs(output: Any, reference: list[int], label: Sequence[int]) -> list[float]:
    """The log-probability of each label token, from one vLLM RequestOutput whose prompt was
    `reference + label` (checked)."""
    ids, logprobs = output.prompt_token_ids, output.prompt_logprobs
    if logprobs is None:
        raise BackendError("vLLM choice: the engine returned no prompt_logprobs")
    _check_layout(ids, list(reference) + list(label))
    if not reference:
        raise BackendError("vLLM choice: empty prompt; nothing to condition on")
    values = []
    for position in range(len(reference), len(reference) + len(label)):
        entry = logprobs[position] or {}
        token = ids[position]
        if token not in entry:
            raise BackendError(f"vLLM choice: no log-probability for prompt token {token} at {position}")
        values.append(float(entry[token].logprob))
    return values


@dataclass
class CacheStats:
    """How much of the label requests' prompts vLLM read from its prefix cache."""
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    reruns: int = 0

    def add(self, output: Any) -> None:
        self.requests += 1
        self.prompt_tokens += len(output.prompt_token_ids)
        self.cached_tokens += int(getattr(output, "num_cached_tokens", 0) or 0)

    def as_dict(self) -> dict[str, Any]:
        rate = self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0
        return {"requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "cached_tokens": self.cached_tokens, "cache_hit_rate": round(rate, 4), "reruns": self.reruns}
