"""A deterministic stand-in model, to test the pipeline without loading weights."""

from __future__ import annotations

import hashlib
from typing import ClassVar

from vlmface.backends.base import Answer, Backend, Query


class FakeBackend(Backend):
    """Answers a label chosen from a hash of the image pixels; records every prompt it saw."""

    prompt_style = "question"
    instances: ClassVar[list[FakeBackend]] = []

    def __init__(self, entry, options=None):
        super().__init__(entry, options)
        self.prompts: list[str] = []
        FakeBackend.instances.append(self)

    def answer(self, queries: list[Query]) -> list[Answer]:
        answers = []
        for query in queries:
            self.prompts.append(query.prompt)
            labels = query.question.labels
            digest = int(hashlib.sha256(query.image.tobytes()).hexdigest(), 16)
            if query.question.kind == "numeric":
                answers.append(Answer(label=float(digest % 80), raw=str(digest % 80)))
            else:
                answers.append(Answer(label=labels[digest % len(labels)], raw=labels[digest % len(labels)]))
        return answers
