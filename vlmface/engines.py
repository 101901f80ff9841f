"""Where the model runs. `local`: this process (default). `ray`: an actor pool on a Ray
cluster (vlmface.ray_engine). Both yield finished batches of predictions to the runner,
which alone writes predictions.jsonl, so a batch is written once or not at all."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from vlmface.asking import Asker
from vlmface.backends.base import Backend, Question
from vlmface.data import Sample
from vlmface.errors import VlmfaceError
from vlmface.decode import iter_batches
from vlmface.predictions import Prediction
from vlmface.registry import ModelEntry, backend_class


@dataclass
class Setup:
    """What the backend said before the first batch."""

    questions: list[Question]  # the ones it can answer
    unsupported: dict[str, str]  # attribute -> why not
    prepared: dict[str, Any] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)
    cluster: dict[str, Any] | None = None  # the Ray cluster and actor pool (ray engine); no addresses


def setup_backend(backend: Backend, questions: list[Question]) -> Setup:
    unsupported = {q.attribute: reason for q in questions
                   if (reason := backend.unsupported_reason(q)) is not None}
    answerable = [q for q in questions if q.attribute not in unsupported]
    prepared = backend.prepare(answerable) if answerable else {}
    return Setup(answerable, unsupported, prepared, backend.identity())


@dataclass
class EngineConfig:
    entry: ModelEntry
    options: dict[str, Any]
    asker: Asker
    batch_size: int
    workers: int | None
    ray_address: str | None = None
    max_pixels: int | None = None  # None: $VLMFACE_MAX_PIXELS or Pillow's bomb threshold
    verbose: bool = False  # the engine's own logging (Ray's) on the console


class LocalEngine:
    def __init__(self, config: EngineConfig):
        self.config = config
        self.backend: Backend | None = None

    def setup(self, questions: list[Question]) -> Setup:
        self.backend = backend_class(self.config.entry.backend)(self.config.entry, self.config.options)
        return setup_backend(self.backend, questions)

    def batches(self, pending: list[Sample],
                todo: dict[str, list[Question]]) -> Iterator[tuple[int, list[Prediction]]]:
        """(samples in the batch, their predictions) per finished batch."""
        workers = self.config.workers if self.config.workers is not None else self.backend.default_workers
        for batch in iter_batches(pending, self.config.batch_size, workers, self.backend.preprocessor(),
                                  self.config.max_pixels):
            yield len(batch), self.config.asker.ask(self.backend, batch, todo)

    def summary(self) -> dict[str, Any]:
        return self.backend.run_summary() if self.backend else {}

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()


ENGINES = {"local": "vlmface.engines:LocalEngine", "ray": "vlmface.ray_engine:RayEngine"}


def create_engine(name: str, config: EngineConfig):
    if name not in ENGINES:
        raise VlmfaceError(f"unknown engine {name!r}; use one of {', '.join(ENGINES)}")
    module_name, _, class_name = ENGINES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise VlmfaceError(f"engine {name!r} needs the package {exc.name!r}: pip install 'vlmface[ray]'") from None
    return getattr(module, class_name)(config)
