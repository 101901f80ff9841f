"""The one small interface every model family implements.

The runner asks a backend about faces one batch of `Query`s at a time; a query is one
sample x one attribute. A backend returns one `Answer` per query, in order. Everything
model-specific (weights, chat formats, caches) stays inside the backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from PIL import Image

    from vlmface.prompts import PromptTemplate
    from vlmface.registry import ModelEntry


@dataclass(frozen=True)
class Question:
    """What is asked about one attribute; the same for every sample of a run."""

    attribute: str
    kind: str  # "categorical" | "ordinal" | "numeric"
    labels: tuple[str, ...]  # canonical labels in spec order; empty for numeric
    display: dict[str, str] = field(default_factory=dict)  # label -> natural-language name
    bins: tuple[tuple[str, float, float], ...] = ()  # (label, lo, hi) with lo <= x < hi
    template: PromptTemplate | None = None
    task: str = ""
    synonyms: dict[str, tuple[str, ...]] = field(default_factory=dict)  # label -> extra answer spellings

    def display_name(self, label: str) -> str:
        return self.display.get(label, label)

    @property
    def choices(self) -> list[str]:
        """The labels as a model should read them."""
        return [self.display_name(label) for label in self.labels]

    def class_texts(self) -> dict[str, list[str]]:
        """label -> the texts of every class_texts template line rendered for it."""
        if self.template is None:
            return {}
        return {label: self.template.render_class_texts(label=self.display_name(label), raw_label=label,
                                                        attribute=self.attribute, task=self.task)
                for label in self.labels}

    def label_for_value(self, value: float) -> str | None:
        """Bin a number (e.g. predicted age in years) into this attribute's labels."""
        for label, lo, hi in self.bins:
            if lo <= value < hi:
                return label
        return None


@dataclass
class Query:
    """One unit of work: one sample, one attribute."""

    sample_id: str
    image: Image.Image  # RGB, decoded once per sample by the runner
    question: Question
    prompt: str | None = None  # rendered question for generative backends
    meta: dict[str, Any] = field(default_factory=dict)
    pixels: Any = None  # the backend's preprocessor(image), computed in loader workers


@dataclass
class Answer:
    label: str | float | None
    status: str = "ok"  # "ok" | "invalid" | "refused" | "error"
    raw: str | None = None
    probs: dict[str, float] | None = None
    extra: dict[str, Any] | None = None
    error_kind: str | None = None  # with status "error": "data" or "answer" (vlmface.predictions)

    @classmethod
    def error(cls, message: str, kind: str = "answer") -> Answer:
        """A sample the system could not answer. kind "answer" (no face found, an API failure
        after the last retry, a backend exception) counts wrong in `accuracy`; kind "data"
        (the image cannot be read or is refused as too large) is left out of every metric."""
        return cls(label=None, status="error", raw=message, error_kind=kind)


class Backend(ABC):
    """Base class of model backends. Load weights in __init__, once per run."""

    #: how the runner prepares prompts: "question" renders one prompt per query,
    #: "class_texts" leaves prompts to the backend (CLIP), "none" uses no prompt.
    prompt_style: ClassVar[str] = "question"
    #: loader worker processes used when the run does not say (--workers)
    default_workers: ClassVar[int] = 0
    #: samples per batch when the run does not say (--batch-size)
    default_batch_size: ClassVar[int] = 16

    def __init__(self, entry: ModelEntry, options: dict[str, Any] | None = None):
        self.entry = entry
        given = {k: v for k, v in (options or {}).items() if v is not None}
        self.options = {**entry.options, **given}  # the registry's options, overridden by the run's

    def identity(self) -> dict[str, Any]:
        """What makes this model's answers reproducible (weights id, revision, dtype...)."""
        return {"backend": self.entry.backend, "weights": self.entry.weights}

    def unsupported_reason(self, question: Question) -> str | None:
        """None if this backend can answer `question`, else a sentence saying why not."""
        return None

    def preprocessor(self) -> Callable[[Image.Image], Any] | None:
        """A picklable image -> model-input function, run in the loader's worker processes
        so decoding and preprocessing keep up with the model. None: the backend does it."""
        return None

    def prepare(self, questions: list[Question]) -> dict[str, Any]:
        """Per-run setup before the first batch; returns facts for run.json."""
        return {}

    @abstractmethod
    def answer(self, queries: list[Query]) -> list[Answer]:
        """One Answer per query, in order. Never raise for a single bad sample:
        return Answer.error(...) for it instead."""

    def run_summary(self) -> dict[str, Any]:
        """Facts known only after the last batch (tokens, cost, cache hits), for run.json."""
        return {}

    def close(self) -> None:
        """Release models, servers or pools."""
