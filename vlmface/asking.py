"""One batch: decoded samples -> requests -> the backend's raw answers -> interpretation -> predictions.

A request is one sample x one question, or, when a template's header declares
`attributes: [...]`, one sample x every question of the run that template asks (one prompt,
one answer, one prediction per attribute). `requests_for` and `render_request` are the only
place requests are built: the runner and `vlmface render` both use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlmface.backends.base import Answer, Backend, Query, Question
from vlmface.data import Sample
from vlmface.errors import VlmfaceError
from vlmface.interpret import interpret
from vlmface.decode import DecodedSample
from vlmface.predictions import Prediction


def template_attributes(question: Question) -> tuple[str, ...]:
    """The attributes the question's template asks in one request (empty: one per request)."""
    if question.template is None:
        return ()
    asked = question.template.attributes
    return asked if question.attribute in asked else ()


def requests_for(questions: list[Question]) -> list[tuple[Question, ...]]:
    """The questions grouped into requests, in order: a template declaring `attributes` asks all
    of those the run asks at once; every other question is a request of its own."""
    groups: dict[Any, list[Question]] = {}
    for question in questions:
        shared = template_attributes(question)
        key = (question.template.path, question.template.sha256) if shared else ("single", question.attribute)
        groups.setdefault(key, []).append(question)
    return [tuple(group) for group in groups.values()]


def render_request(questions: tuple[Question, ...], sample: Sample) -> str:
    """The prompt text of one request; `attributes` lists every attribute it asks."""
    first = questions[0]
    return first.template.render_question(attribute=first.attribute, choices=first.choices,
                                          labels=list(first.labels), task=first.task, meta=sample.meta,
                                          attributes=[q.attribute for q in questions],
                                          presentation=first.presentation, sample_id=sample.id)


def render_prompt(question: Question, sample: Sample) -> str:
    return render_request((question,), sample)


def _error_kind(answer: Answer) -> str | None:
    """Every new "error" prediction says its kind; a backend that did not say failed on the sample."""
    if answer.status != "error":
        return None
    return answer.error_kind or "answer"


@dataclass(frozen=True)
class Asker:
    style: str  # the backend's prompt_style
    group_columns: tuple[str, ...]
    backend_name: str

    def predictions(self, sample: Sample, questions: tuple[Question, ...] | list[Question],
                    answer: Answer) -> list[Prediction]:
        """One prediction per question from one raw answer, each interpreted for its question."""
        groups = {col: sample.labels.get(col, sample.meta.get(col)) for col in self.group_columns}
        out = []
        for question in questions:
            a = interpret(answer, question)
            out.append(Prediction(sample_id=sample.id, attribute=question.attribute, label=a.label,
                                  status=a.status, truth=sample.labels.get(question.attribute), groups=groups,
                                  raw=a.raw, probs=a.probs, extra=a.extra, scores=a.scores,
                                  error_kind=_error_kind(a)))
        return out

    def ask(self, backend: Backend, batch: list[DecodedSample],
            todo: dict[str, list[Question]]) -> list[Prediction]:
        predictions: list[Prediction] = []
        queries: list[Query] = []
        owners: list[tuple[Sample, tuple[Question, ...]]] = []
        for loaded in batch:
            sample, questions = loaded.sample, todo[loaded.sample.id]
            if loaded.error is not None:
                predictions += self.predictions(sample, questions, Answer.error(loaded.error, kind="data"))
                continue
            for asked in (requests_for(questions) if self.style == "question" else [(q,) for q in questions]):
                prompt = render_request(asked, sample) if self.style == "question" else None
                queries.append(Query(sample_id=sample.id, image=loaded.image, question=asked[0], prompt=prompt,
                                     meta=sample.meta, pixels=loaded.pixels,
                                     questions=asked if len(asked) > 1 else ()))
                owners.append((sample, asked))
        if queries:
            answers = backend.answer(queries)
            if len(answers) != len(queries):
                raise VlmfaceError(f"backend {self.backend_name!r} returned {len(answers)} answers "
                                   f"for {len(queries)} queries (a backend bug)")
            for (sample, asked), answer in zip(owners, answers):
                predictions += self.predictions(sample, asked, answer)
        return predictions
