"""The one small interface every model family implements.

The runner asks a backend about faces one batch of `Query`s at a time; a query is one
sample x one attribute (or, for a template that asks several attributes at once, one sample x
those attributes: `Query.questions`). A backend returns one `Answer` per query, in order, holding
its RAW output only: generated text (`raw`), per-label log-likelihoods (`scores`), a number
(`value`), or a classifier's own label. Turning that into a label + status is the job of the one
interpretation step (vlmface.interpret), never of a backend. Everything model-specific
(weights, chat formats, caches) stays inside the backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from vlmface.errors import BackendError

if TYPE_CHECKING:
    from PIL import Image

    from vlmface.prompts import Presentation, PromptTemplate
    from vlmface.registry import ModelEntry
    from vlmface.vocabulary import Vocabulary


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
    vocabulary: Vocabulary | None = None  # the task's shared answer words (vlmface.vocabulary)
    presentation: Presentation | None = None  # a prompt variant's option order and casing

    def display_name(self, label: str) -> str:
        name = self.display.get(label, label)
        return self.presentation.case(name) if self.presentation is not None else name

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
    questions: tuple[Question, ...] = ()  # every question one multi-attribute prompt asks (else empty)

    @property
    def asked(self) -> tuple[Question, ...]:
        """The questions this one request answers."""
        return self.questions or (self.question,)


@dataclass
class Answer:
    """A backend's raw output (before vlmface.interpret) or the interpreted answer (after).

    Raw forms: status "ok" with `label=None` and the generated text in `raw`; `scores`
    (label -> natural-log likelihood, up to a constant, under the run's choice rule);
    `value` (a number, e.g. an age in years); or a classifier's own `label`. Status
    "refused" / "error" are final (an API refusal, a failure)."""

    label: str | float | None
    status: str = "ok"  # "ok" | "invalid" | "refused" | "error"
    raw: str | None = None
    probs: dict[str, float] | None = None
    extra: dict[str, Any] | None = None
    scores: dict[str, float] | None = None
    value: float | None = None
    error_kind: str | None = None  # with status "error": "data" or "answer" (vlmface.predictions)

    @classmethod
    def error(cls, message: str, kind: str = "answer") -> Answer:
        """A sample the system could not answer. kind "answer" (no face found, an API failure
        after the last retry, a backend exception) counts wrong in `accuracy`; kind "data"
        (the image cannot be read or is refused as too large) is left out of every metric."""
        return cls(label=None, status="error", raw=message, error_kind=kind)


class Option(NamedTuple):
    """One backend option: its type, its default (None: unset) and whether it changes answers
    (then it is part of the run identity, and a non-default value part of the directory name)."""

    type: Any
    default: Any = None
    answer_changing: bool = False
    help: str = ""


#: options every backend takes; the runner sets them (--device, --batch-size, the cache folder)
COMMON_OPTIONS: dict[str, Option] = {
    "device": Option(str, None, False, "auto (CUDA > MPS > CPU), cpu, cuda, mps"),
    "batch_size": Option(int, None, False, "samples per batch (--batch-size)"),
    "cache_dir": Option(str | Path, None, False, "backend caches (--cache-dir)"),
}


def _schema_options(schema: Any) -> dict[str, Option]:
    """A backend's `options_schema` (a dict of name -> Option or (type, default, answer_changing),
    or a pydantic model whose fields may set json_schema_extra={"answer_changing": True})."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return {name: Option(f.annotation, f.default, bool((f.json_schema_extra or {}).get("answer_changing")),
                             f.description or "") for name, f in schema.model_fields.items()}
    return {name: Option(*spec) for name, spec in (schema or {}).items()}


class Backend(ABC):
    """Base class of model backends. Load weights in __init__, once per run.

    A backend declares every option it reads in `options_schema`; anything else given (by
    --option, a flag or the registry entry) is refused with the list of valid names."""

    #: how the runner prepares prompts: "question" renders one prompt per query,
    #: "class_texts" leaves prompts to the backend (CLIP), "none" uses no prompt.
    prompt_style: ClassVar[str] = "question"
    #: loader worker processes used when the run does not say (--workers)
    default_workers: ClassVar[int] = 0
    #: samples per batch when the run does not say (--batch-size)
    default_batch_size: ClassVar[int] = 16
    #: name -> Option(type, default, answer_changing, help), besides COMMON_OPTIONS
    options_schema: ClassVar[Any] = {}

    def __init__(self, entry: ModelEntry, options: dict[str, Any] | None = None):
        self.entry = entry
        self.options = self.resolve_options(entry, options)  # the registry's, overridden by the run's

    @classmethod
    def family(cls) -> str:
        return cls.__name__.removesuffix("Backend").lower()

    @classmethod
    def declared_options(cls) -> dict[str, Option]:
        return {**COMMON_OPTIONS, **_schema_options(cls.options_schema)}

    @classmethod
    def check_options(cls, options: dict[str, Any], where: str = "--option") -> dict[str, Any]:
        """The given options validated and converted to their declared types (unset ones left out).
        Unknown names and values of the wrong type are a BackendError naming the key."""
        given = {k: v for k, v in options.items() if v is not None}
        declared = cls.declared_options()
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise BackendError(f"{where}: the {cls.family()} backend has no option {', '.join(map(repr, unknown))}; "
                               f"its options are: {', '.join(sorted(declared))}")
        try:
            checked = _options_model(cls)(**given)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}={e.get('input')!r}: {e['msg']}"
                                 for e in exc.errors())
            raise BackendError(f"{where}: bad option value ({problems})") from None
        return {k: getattr(checked, k) for k in given}

    @classmethod
    def resolve_options(cls, entry: ModelEntry, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Declared defaults < the registry entry's options < the run's, each checked."""
        defaults = {k: o.default for k, o in cls.declared_options().items() if o.default is not None}
        registry = cls.check_options(entry.options, f"model {entry.name!r} in the registry: options")
        return {**defaults, **registry, **cls.check_options(options or {})}

    @classmethod
    def answer_changing_options(cls, resolved: dict[str, Any]) -> dict[str, Any]:
        """name -> value (None: unset) of every declared option that changes answers."""
        return {k: resolved.get(k) for k, o in sorted(cls.declared_options().items()) if o.answer_changing}

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

    @classmethod
    def preview(cls, entry: ModelEntry, options: dict[str, Any], query: Query) -> dict[str, Any]:
        """What this backend would send for `query` beyond the prompt text (the chat messages, the
        full model input), built by the code `answer` uses, without loading a model; for
        `vlmface render`. {}: the prompt text is all there is."""
        return {}

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


class EmbeddingBackend(ABC):
    """A backend with a shared image-text embedding space (a dual encoder: CLIP, SigLIP): what
    the probes use (vlmface.probes.embeddings), and all they use. A backend class declares it
    by inheriting it beside `Backend`; probes check `issubclass` before any weights load.

    Both methods return unit float64 rows (`l2_normalize`), in input order."""

    @property
    @abstractmethod
    def embed_dim(self) -> int:
        """The length of every embedding."""

    @abstractmethod
    def embed_images(self, images: list[Image.Image], ids: list[str] | None = None
                     ) -> tuple[Any, list[str | None]]:
        """((n, embed_dim) unit rows, per image None or the error that left its row NaN)."""

    @abstractmethod
    def embed_texts(self, texts: list[str]) -> Any:
        """(n, embed_dim) unit rows, one per text."""

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What makes the embeddings reproducible (weights, dtype, preprocessing...)."""

    def stats(self) -> dict[str, Any]:
        """Counters of the work done so far (images encoded, cache hits...)."""
        return {}


def l2_normalize(vectors: Any) -> Any:
    """Rows (or one vector) scaled to unit L2 length, as float64: the one normalisation of
    embeddings (the CLIP backend's outputs, zero-shot class weights, the probes' measures)."""
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


@lru_cache(maxsize=None)
def _options_model(cls: type[Backend]) -> type[BaseModel]:
    fields = {name: (option.type | None, None) for name, option in cls.declared_options().items()}
    return create_model(f"{cls.__name__}Options", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
                        **fields)
