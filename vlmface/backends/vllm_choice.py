"""`choice` mode on vLLM: every label's continuation scored with prompt log-probabilities.

For one query and its L labels, L requests go to the engine, each the query's prompt tokens
followed by one label's tokens (`vlmface.backends.choice.label_token_ids`, exactly the tokens
the hf backend scores), with the image as `multi_modal_data` and
`SamplingParams(max_tokens=1, prompt_logprobs=0)`: vLLM then returns, for every prompt
position, the log-probability of the token that is there. The label's positions are found
at the end of the engine's own (image-expanded) `prompt_token_ids`, and their log-probabilities
go to the shared rule (sum or mean, softmax over labels).

Cost: the L requests of a query share the image and the prompt. The backend turns prefix
caching on, but vLLM 0.32 does not READ the prefix cache for a request that asks for prompt
log-probabilities (SamplingParams sets `skip_reading_prefix_cache`, since cached positions get
no log-probabilities), so each label's request prefills prompt + image tokens again: about L
times the prefill of one generate request. (vLLM's multimodal processor cache still keeps the
image's preprocessing once per image.) Reading the cache up to the label, with
`prompt_logprob_start` + `prompt_logprob_token_ids`, is a possible speed-up not done here.

Equivalence with the hf backend (tests/test_vllm_cpu_choice.py, vLLM 0.32 CPU): a tiny LLaVA
gives the same log-likelihoods to 1e-6. PaliGemma does not yet: for a token prompt vLLM inserts
the image tokens and BOS itself and appends "\n" after the whole prompt, so the label does not
follow the "\n" that the transformers processor puts after the question, and the raw prompt's
literal <image> token stays in (tiny PaliGemma: log-likelihoods differ by up to 0.11 nats,
probabilities by < 1e-4). Check such models with `vlmface compare` before trusting vllm choice.

The one place that reads vLLM's outputs is `label_token_logprobs`; the tests fake the engine
at this boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vlmface.errors import BackendError


def prompt_token_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The prompt's tokens as the model's processor makes them, before any image expansion
    (vLLM expands the image placeholder of a token prompt itself)."""
    return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])


def label_requests(prompt_ids: list[int], image: Any, labels: Sequence[list[int]]) -> list[dict[str, Any]]:
    """One vLLM token prompt per label: prompt tokens + label tokens, with the image."""
    return [{"prompt_token_ids": prompt_ids + list(label), "multi_modal_data": {"image": image}}
            for label in labels]


def _label_start(ids: Sequence[int], label: Sequence[int]) -> int:
    """Where `label` ends up in the engine's prompt (the last occurrence: a processor may add
    a token after the text, as PaliGemma's adds a newline)."""
    n = len(label)
    for start in range(len(ids) - n, -1, -1):
        if list(ids[start:start + n]) == list(label):
            return start
    raise BackendError("vLLM choice: the label tokens are not in the engine's prompt tokens "
                       f"(label {list(label)}, prompt tail {list(ids[-n - 3:])})")


def label_token_logprobs(output: Any, label: Sequence[int]) -> list[float]:
    """The log-probability of each label token, from one vLLM RequestOutput."""
    ids, logprobs = output.prompt_token_ids, output.prompt_logprobs
    if logprobs is None:
        raise BackendError("vLLM choice: the engine returned no prompt_logprobs")
    start = _label_start(ids, label)
    if start == 0:
        raise BackendError("vLLM choice: the label is the whole prompt; nothing to condition on")
    values = []
    for position in range(start, start + len(label)):
        entry = logprobs[position] or {}
        token = ids[position]
        if token not in entry:
            raise BackendError(f"vLLM choice: no log-probability for prompt token {token} at {position}")
        values.append(float(entry[token].logprob))
    return values
