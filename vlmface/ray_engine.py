"""--engine ray: Ray Data decodes images in CPU tasks and runs the backend in an actor pool.

One actor per GPU (or per CPU slot on a CPU cluster) holds the model. Predictions come
back to the driver, which alone appends them to predictions.jsonl: a batch whose actor is
killed is retried by Ray on a restarted actor (Ray Data's actor pools restart actors and
retry their tasks without limit by default), and written once, when it completes.
Works on a local Ray instance (no address) and on an existing cluster (--ray-address).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

from vlmface.backends.base import Question
from vlmface.data import Sample
from vlmface.engines import EngineConfig, Setup, setup_backend
from vlmface.errors import VlmfaceError
from vlmface.decode import DecodedSample
from vlmface.predictions import Prediction
from vlmface.ray_cluster import cluster_facts, init_ray
from vlmface.registry import backend_class

DECODE_CPUS = 0.5


def _resolve(value: Any) -> Any:
    import ray

    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


def _decode(batch: dict[str, np.ndarray], samples: Any, max_pixels: int | None = None) -> dict[str, np.ndarray]:
    """CPU task: indices -> raw RGB pixels (or the reason an image cannot be used)."""
    samples = _resolve(samples)
    pixels, widths, heights, errors = [], [], [], []
    for index in batch["index"]:
        try:
            image = samples[int(index)].load_image(max_pixels)
            pixels.append(image.tobytes())
            widths.append(image.width)
            heights.append(image.height)
            errors.append("")
        except Exception as exc:  # SampleError and friends: recorded per sample
            pixels.append(b"")
            widths.append(0)
            heights.append(0)
            errors.append(str(exc) or type(exc).__name__)
    return {"index": batch["index"], "pixels": np.array(pixels, dtype=object),
            "width": np.array(widths), "height": np.array(heights), "error": np.array(errors, dtype=object)}


class _BatchAnsweringActor:
    """Actor: holds the backend; decoded batch -> prediction lines (JSON)."""

    def __init__(self, config: EngineConfig, questions: list[Question], samples: Any,
                 todo: dict[str, list[Question]]):
        self.config, self.samples, self.todo = config, _resolve(samples), todo
        self.backend = backend_class(config.entry.backend)(config.entry, config.options)
        self.backend.prepare(questions)
        self.preprocess = self.backend.preprocessor()

    def _loaded(self, index: int, pixels: bytes, width: int, height: int, error: str) -> DecodedSample:
        sample = self.samples[index]
        if error:
            return DecodedSample(sample, error=error)
        image = Image.frombytes("RGB", (width, height), pixels)
        return DecodedSample(sample, image=image, pixels=self.preprocess(image) if self.preprocess else None)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        loaded = [self._loaded(int(i), p, int(w), int(h), e)
                  for i, p, w, h, e in zip(batch["index"], batch["pixels"], batch["width"],
                                           batch["height"], batch["error"])]
        predictions = self.config.asker.ask(self.backend, loaded, self.todo)
        return {"line": np.array([p.to_json() for p in predictions], dtype=object)}


def _remote_setup(config: EngineConfig, questions: list[Question]) -> Setup:
    backend = backend_class(config.entry.backend)(config.entry, config.options)
    try:
        return setup_backend(backend, questions)
    finally:
        backend.close()


class RayEngine:
    def __init__(self, config: EngineConfig):
        import ray

        self.ray = ray
        self.config = config
        init_ray(config.ray_address, config.verbose)
        gpus = ray.cluster_resources().get("GPU", 0)
        self.gpus_per_actor = 1 if gpus else 0
        cpus = ray.cluster_resources().get("CPU", 1)
        self.actors = config.workers or int(gpus) or max(1, int(cpus) - 1)
        # Actors must leave CPU for the decode tasks, or the pipeline deadlocks.
        self.cpus_per_actor = min(1.0, (cpus - DECODE_CPUS) / self.actors)
        if self.cpus_per_actor <= 0:
            raise VlmfaceError(f"the Ray cluster has {cpus} CPUs: too few for {self.actors} actors plus decoding")
        self.questions: list[Question] = []

    def setup(self, questions: list[Question]) -> Setup:
        """Asked of a throwaway worker, so the driver never loads the model."""
        task = self.ray.remote(_remote_setup).options(num_gpus=self.gpus_per_actor)
        setup = self.ray.get(task.remote(self.config, questions))
        self.questions = setup.questions
        setup.cluster = cluster_facts() | {"actors": self.actors, "cpus_per_actor": round(self.cpus_per_actor, 3),
                                           "gpus_per_actor": self.gpus_per_actor}
        return setup

    def batches(self, pending: list[Sample],
                todo: dict[str, list[Question]]) -> Iterator[tuple[int, list[Prediction]]]:
        if not pending:
            return
        from ray.data import ActorPoolStrategy

        data = self.ray
        samples = data.put(pending)
        size = self.config.batch_size
        dataset = (data.data.from_items([{"index": i} for i in range(len(pending))],
                                        override_num_blocks=max(1, -(-len(pending) // size)))
                   .map_batches(_decode, fn_args=(samples, self.config.max_pixels), batch_size=size,
                                batch_format="numpy",
                                num_cpus=DECODE_CPUS)
                   .map_batches(_BatchAnsweringActor,
                                fn_constructor_args=(self.config, self.questions, samples, todo),
                                batch_size=size, batch_format="numpy", num_cpus=self.cpus_per_actor,
                                num_gpus=self.gpus_per_actor, compute=ActorPoolStrategy(size=self.actors)))
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                predictions = [Prediction(**json.loads(line)) for line in batch["line"]]
                yield len({p.sample_id for p in predictions}), predictions
        except self.ray.exceptions.RayError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise VlmfaceError(f"the Ray run stopped ({type(exc).__name__}: {first}); the finished batches "
                               "are kept: run the same command again to resume (--verbose shows Ray's log)") from None

    def summary(self) -> dict[str, Any]:
        """No counters: the cluster and the actor pool are recorded once, in Setup.cluster."""
        return {}

    def close(self) -> None:
        """Leave a cluster we joined running; Ray stops a local instance at exit."""
