"""`choice` mode on OpenAI-compatible chat APIs, from the token log-probabilities they return.

A chat-completions API returns log-probabilities only for the tokens it generates: with
`logprobs: true, top_logprobs: K` (OpenAI allows K <= 20) and one token to generate, it lists
the K most likely first answer tokens. A label whose text (`choice_prefix` + display name) is
exactly one of those tokens is a one-token continuation, and its log-probability is its
log-likelihood: the same number the hf and vllm backends compute, so the shared rule
(vlmface.backends.choice) applies unchanged. A label that is not among them (it takes several
tokens, or it is less likely than the K-th token) cannot be scored this way: that query is an
answer error naming the labels, never a guess. A provider that returns no log-probabilities
at all stops the run with the reason (choice is not available there; use mode generate).

Why not multi-token labels: scoring "Latino or Hispanic" needs the log-probability of each of
its tokens given the earlier ones, i.e. log-probabilities of tokens the caller supplies. The
OpenAI chat-completions API has no such field (logprobs cover generated tokens only; `echo`
with logprobs existed only on the legacy /v1/completions endpoint, which takes no images, and
OpenAI no longer serves it for current models). Forcing the label as an assistant prefix does
not help either: the API still reports only the tokens it generates after it. vLLM's own
OpenAI server has non-standard fields for it (`prompt_logprobs`, `continue_final_message`,
`return_token_ids`), but its chat template would tokenize the label inside the assistant turn,
not as the hf/vllm backends do, so it would not be the same computation; for a vLLM-served
model use the `vllm` backend, which scores multi-token labels exactly.
"""

from __future__ import annotations

from typing import Any

from vlmface.backends.base import Answer, Question
from vlmface.backends.choice import choice_answer
from vlmface.errors import BackendError

TOP_LOGPROBS = 20  # the most OpenAI's API returns


def choice_params(max_tokens_param: str, top: int = TOP_LOGPROBS) -> dict[str, Any]:
    """The request parameters of a choice query: one token, its top log-probabilities."""
    return {max_tokens_param: 1, "logprobs": True, "top_logprobs": int(top)}


def first_token_top_logprobs(choice: Any) -> list[list[Any]] | None:
    """[[token, logprob], ...] of the first generated token, or None if the API sent none."""
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    first = content[0]
    top = [[item.token, float(item.logprob)] for item in (getattr(first, "top_logprobs", None) or [])]
    if first.token not in {token for token, _ in top}:
        top.append([first.token, float(first.logprob)])
    return top


def no_logprobs_error(model: str, endpoint: str) -> BackendError:
    return BackendError(f"mode 'choice' needs token log-probabilities, and {model!r} at {endpoint} returned "
                        "none (the request asked for logprobs/top_logprobs); this API cannot score labels: "
                        "use --mode generate, or serve the model with vLLM and use the vllm backend")


def choice_from_top(question: Question, top: list[list[Any]], rule: str, prefix: str = "") -> Answer:
    """The answer from the first token's top log-probabilities (see the module docstring)."""
    best: dict[str, float] = {}
    for token, logprob in top:
        best[token] = max(float(logprob), best.get(token, float("-inf")))
    texts = [prefix + name for name in question.choices]
    missing = [text for text in texts if text not in best]
    if missing:
        return Answer.error(f"choice: label(s) {missing} are not among the {len(top)} most likely first tokens "
                            "the API returned, so their log-likelihood is unknown (a label of several tokens "
                            "cannot be scored through a chat API); use --mode generate for this task")
    answer = choice_answer(question.labels, [[best[text]] for text in texts], rule)
    answer.extra = {**(answer.extra or {}), "top_logprobs": len(top)}
    return answer
