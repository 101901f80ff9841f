"""One batch: loaded samples -> queries -> the backend's answers -> predictions."""

from __future__ import annotations

from dataclasses import dataclass

from vlmface.backends.base import Answer, Backend, Query, Question
from vlmface.data import Sample
from vlmface.errors import VlmfaceError
from vlmface.loader import LoadedSample
from vlmface.predictions import Prediction


def render_prompt(question: Question, sample: Sample) -> str:
    return question.template.render_question(attribute=question.attribute, choices=question.choices,
                                             labels=list(question.labels), task=question.task,
                                             meta=sample.meta)


def checked(answer: Answer, question: Question) -> Answer:
    """A backend that returns a label outside the label set is a bug: never score it as a label."""
    if answer.status == "ok" and question.kind != "numeric" and answer.label not in question.labels:
        return Answer(label=None, status="invalid", raw=answer.raw,
                      extra={"unknown_label": str(answer.label)})
    return answer


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

    def predictions(self, sample: Sample, questions: list[Question], answers: list[Answer]) -> list[Prediction]:
        groups = {col: sample.labels.get(col) for col in self.group_columns}
        return [Prediction(sample_id=sample.id, attribute=q.attribute, label=a.label, status=a.status,
                           truth=sample.labels.get(q.attribute), groups=groups, raw=a.raw, probs=a.probs,
                           extra=a.extra, error_kind=_error_kind(a))
                for q, a in zip(questions, answers)]

    def ask(self, backend: Backend, batch: list[LoadedSample],
            todo: dict[str, list[Question]]) -> list[Prediction]:
        predictions: list[Prediction] = []
        queries: list[Query] = []
        owners: list[tuple[Sample, Question]] = []
        for loaded in batch:
            sample, questions = loaded.sample, todo[loaded.sample.id]
            if loaded.error is not None:
                predictions += self.predictions(sample, questions, [Answer.error(loaded.error, kind="data")] * len(questions))
                continue
            for question in questions:
                prompt = render_prompt(question, sample) if self.style == "question" else None
                queries.append(Query(sample_id=sample.id, image=loaded.image, question=question, prompt=prompt,
                                     meta=sample.meta, pixels=loaded.pixels))
                owners.append((sample, question))
        if queries:
            answers = backend.answer(queries)
            if len(answers) != len(queries):
                raise VlmfaceError(f"backend {self.backend_name!r} returned {len(answers)} answers "
                                   f"for {len(queries)} queries (a backend bug)")
            for (sample, question), answer in zip(owners, answers):
                predictions += self.predictions(sample, [question], [checked(answer, question)])
        return predictions
