"""The one interpretation step: a backend's raw output -> label + status (+ the reason).

Every backend's answers go through `interpret` (called by vlmface.asking, once per question),
so a parser or synonym change applies to every backend alike, and `vlmface reparse` can
redo it on saved answers without asking any model again:
- generated text (status ok, no label): vlmface.parse reads it; a text that is exactly one
  label's display name (vLLM decoding restricted to the labels) is that label;
- `scores` (label -> log-likelihood under the run's choice rule, or zero-shot log-probs): the
  argmax is the label, the softmax the probabilities (unless the backend gave its own);
- `value` (a number): the numeric answer, or its bin for an ordinal attribute;
- a classifier's own label: checked against the label set (outside it: invalid);
- status refused / error: final, left as they are.
Which records can be redone from what predictions.jsonl keeps: see `reinterpretable`.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from vlmface.backends.base import Answer, Question
from vlmface.parse import parse_answer

#: extra keys this step writes; everything else in `extra` is the backend's and is kept
OWN_KEYS = ("parse", "unknown_label")
#: an extra key a backend sets when its decoding could only produce a label's display name
CONSTRAINED = "constrained"


def interpret(answer: Answer, question: Question) -> Answer:
    """The interpreted answer of one question (for a multi-attribute request: call once per question)."""
    if answer.status != "ok":
        return answer
    if answer.scores is not None:
        return _from_scores(answer, question)
    if answer.value is not None:
        return _from_value(answer, question)
    if answer.label is None:
        return _from_text(answer, question)
    return _checked(answer, question)


def interpret_all(answers: list[Answer], questions: list[Question]) -> list[Answer]:
    return [interpret(answer, question) for answer, question in zip(answers, questions)]


def _backend_extra(answer: Answer) -> dict[str, Any]:
    return {k: v for k, v in (answer.extra or {}).items() if k not in OWN_KEYS and k != CONSTRAINED}


def _from_text(answer: Answer, question: Question) -> Answer:
    own = _backend_extra(answer)
    text = answer.raw
    if (answer.extra or {}).get(CONSTRAINED) and text is not None:
        by_name = {question.display_name(label): label for label in question.labels}
        if text.strip() in by_name:
            return replace(answer, label=by_name[text.strip()], extra={"parse": "choice", **own})
    parsed = parse_answer(text, question)
    extra = {**(parsed.extra or {}), **own}
    return replace(answer, label=parsed.label, status=parsed.status, extra=extra or None)


def _from_scores(answer: Answer, question: Question) -> Answer:
    scores = answer.scores
    if set(scores) != set(question.labels):
        return replace(answer, label=None, status="invalid",
                       extra={**_backend_extra(answer), "parse": f"scores for {sorted(scores)}, "
                                                                  f"not the labels {list(question.labels)}"})
    ordered = [scores[label] for label in question.labels]
    top = max(ordered)
    label = question.labels[ordered.index(top)]  # ties: the first label in spec order
    probs = answer.probs
    if probs is None:
        weights = [math.exp(s - top) for s in ordered]
        total = sum(weights)
        probs = {name: w / total for name, w in zip(question.labels, weights)}
    return replace(answer, label=label, status="ok", probs=probs)


def _from_value(answer: Answer, question: Question) -> Answer:
    value = float(answer.value)
    if question.kind == "numeric":
        return replace(answer, label=value, status="ok")
    binned = question.label_for_value(value)
    if binned is None:
        return replace(answer, label=None, status="invalid")
    return replace(answer, label=binned, status="ok")


def _checked(answer: Answer, question: Question) -> Answer:
    """A backend that returns a label outside the label set is a bug: never score it as a label."""
    if question.kind != "numeric" and answer.label not in question.labels:
        return replace(answer, label=None, status="invalid",
                       extra={**(answer.extra or {}), "unknown_label": str(answer.label)})
    return answer


def reinterpretable(record: dict[str, Any]) -> Answer | None:
    """The raw answer behind a saved prediction, if this step made its label (else None:
    errors, API refusals and a classifier's own labels stay as they are)."""
    extra = record.get("extra") or {}
    if record.get("scores") is not None:
        return Answer(label=None, status="ok", raw=record.get("raw"), probs=record.get("probs"),
                      extra={k: v for k, v in extra.items() if k not in OWN_KEYS} or None,
                      scores=dict(record["scores"]))
    if "parse" in extra and record.get("status") != "error":
        kept = {k: v for k, v in extra.items() if k not in OWN_KEYS}
        if extra["parse"] == "choice":
            kept[CONSTRAINED] = True
        return Answer(label=None, status="ok", raw=record.get("raw"), extra=kept or None)
    return None


def answered(backend, queries: list) -> list[Answer]:
    """backend.answer(queries), interpreted: what the runner records for one-question queries
    (for notebooks and tests; the runner itself goes through vlmface.asking)."""
    return interpret_all(backend.answer(queries), [query.question for query in queries])
