"""The one scoring rule of `choice` mode, shared by every backend that can compute it.

`choice` asks: how likely is each label's text as the model's continuation of the prompt and
image? A backend computes, per label, the natural-log probability of each of the label's
tokens (teacher-forced after the prompt); everything after that is here, so hf, vllm and
api runs of the same model and prompt give the same answer and the same probabilities:

- the label tokens are `tokenizer(choice_prefix + display name, add_special_tokens=False)`,
  appended to the prompt's tokens (`label_token_ids`);
- option `choice_score` (part of the run identity) turns token log-probabilities into one
  score per label: "sum" (default; the log-likelihood of the whole label) or "mean" (per
  token, so long labels are not penalised for their length);
- the answer is the label with the highest score; `probs` is the softmax of the scores over
  the labels, `extra["loglik"]` the summed log-likelihoods and `extra["n_tokens"]` the lengths.

Mode `constrained` (vllm only) is a different computation: greedy decoding restricted to
the label strings, token by token, with no probabilities. It can pick a different label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from vlmface.backends.base import Answer
from vlmface.errors import BackendError

CHOICE_SCORES = ("sum", "mean")
DEFAULT_CHOICE_SCORE = "sum"


def choice_score(options: dict[str, Any]) -> str:
    """The run's scoring rule, checked."""
    rule = str(options.get("choice_score") or DEFAULT_CHOICE_SCORE)
    if rule not in CHOICE_SCORES:
        raise BackendError(f"option choice_score={rule!r}: use one of {', '.join(CHOICE_SCORES)} "
                           f"(default {DEFAULT_CHOICE_SCORE})")
    return rule


def with_choice_defaults(options: dict[str, Any]) -> dict[str, Any]:
    """The options with the effective rule filled in for choice runs (so a run that leaves
    choice_score out and one that says "sum" have the same identity), None otherwise."""
    choice = options.get("mode") == "choice"
    return {**options, "choice_score": choice_score(options) if choice else None}


def label_token_ids(tokenizer: Any, choices: Sequence[str], prefix: str = "") -> list[list[int]]:
    """The token ids of every label's continuation, in label order."""
    ids = [list(tokenizer(prefix + name, add_special_tokens=False)["input_ids"]) for name in choices]
    empty = [name for name, tokens in zip(choices, ids) if not tokens]
    if empty:
        raise BackendError(f"choice mode: label(s) {empty} tokenize to nothing")
    return ids


def label_scores(token_logprobs: Sequence[Sequence[float]], rule: str) -> list[float]:
    """One score per label from its tokens' log-probabilities."""
    if rule not in CHOICE_SCORES:
        raise BackendError(f"choice_score {rule!r}: use one of {', '.join(CHOICE_SCORES)}")
    sums = [math.fsum(tokens) for tokens in token_logprobs]
    if rule == "mean":
        return [total / len(tokens) for total, tokens in zip(sums, token_logprobs)]
    return sums


def softmax(scores: Sequence[float]) -> list[float]:
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    total = math.fsum(weights)
    return [w / total for w in weights]


def choice_answer(labels: Sequence[str], token_logprobs: Sequence[Sequence[float]], rule: str) -> Answer:
    """The answer of one query: argmax label, softmax probabilities, raw log-likelihoods."""
    if len(labels) != len(token_logprobs) or any(not tokens for tokens in token_logprobs):
        raise BackendError(f"choice mode: got log-probabilities for {len(token_logprobs)} labels, "
                           f"expected one non-empty list for each of {len(labels)}")
    scores = label_scores(token_logprobs, rule)
    probs = softmax(scores)
    best = labels[max(range(len(scores)), key=scores.__getitem__)]
    return Answer(label=best, status="ok", raw=None, probs=dict(zip(labels, probs)),
                  extra={"loglik": {label: math.fsum(t) for label, t in zip(labels, token_logprobs)},
                         "n_tokens": {label: len(t) for label, t in zip(labels, token_logprobs)},
                         "choice_score": rule})
