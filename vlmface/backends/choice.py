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
- the backend returns the scores (`Answer.scores`); the interpretation step (vlmface.interpret)
  takes the argmax as the answer and the softmax over the labels as `probs`; `extra["loglik"]`
  keeps the summed log-likelihoods and `extra["n_tokens"]` the label lengths.

Mode `constrained` (vllm only) is a different computation: greedy decoding restricted to
the label strings, token by token, with no probabilities. It can pick a different label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from vlmface.backends.base import Answer, Option
from vlmface.errors import BackendError

CHOICE_SCORES = ("sum", "mean")
DEFAULT_CHOICE_SCORE = "sum"

#: the choice options of every backend that has the mode (part of its options_schema)
CHOICE_OPTIONS: dict[str, Option] = {
    "choice_score": Option(str, DEFAULT_CHOICE_SCORE, True,
                           "choice mode: sum (default; the label's log-likelihood) or mean (per token)"),
    "choice_prefix": Option(str, None, True, "choice mode: text between the prompt and each label (default: none)"),
}


def choice_score(options: dict[str, Any]) -> str:
    """The run's scoring rule, checked."""
    rule = str(options.get("choice_score") or DEFAULT_CHOICE_SCORE)
    if rule not in CHOICE_SCORES:
        raise BackendError(f"option choice_score={rule!r}: use one of {', '.join(CHOICE_SCORES)} "
                           f"(default {DEFAULT_CHOICE_SCORE})")
    return rule


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


def choice_answer(labels: Sequence[str], token_logprobs: Sequence[Sequence[float]], rule: str) -> Answer:
    """The raw answer of one query: per-label scores under `rule` (vlmface.interpret takes the
    argmax and the softmax), and the summed log-likelihoods."""
    if len(labels) != len(token_logprobs) or any(not tokens for tokens in token_logprobs):
        raise BackendError(f"choice mode: got log-probabilities for {len(token_logprobs)} labels, "
                           f"expected one non-empty list for each of {len(labels)}")
    scores = label_scores(token_logprobs, rule)
    return Answer(label=None, status="ok", raw=None, scores=dict(zip(labels, scores)),
                  extra={"loglik": {label: math.fsum(t) for label, t in zip(labels, token_logprobs)},
                         "n_tokens": {label: len(t) for label, t in zip(labels, token_logprobs)},
                         "choice_score": rule})
