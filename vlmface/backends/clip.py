"""CLIP-family zero-shot backend (open_clip, transformers CLIP / SigLIP / SigLIP2).

The runner hands over a `class_texts` template per attribute; each label's texts are
encoded once in `prepare`, each distinct image once per batch (and once ever, with the
embedding cache), and every query is answered with the full class distribution.
Which weights load, and how a spec string is read: see `clip_models`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmface.backends import clip_zeroshot as zs
from vlmface.backends.base import Answer, Backend, EmbeddingBackend, Option, Query, Question, l2_normalize
from vlmface.backends.clip_models import load_encoder, parse_spec, resolve_device, resolve_dtype
from vlmface.embedding_cache import EmbeddingCache, image_digest

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32
CACHE_SUBDIR = "image-embeddings"
TEXT_CACHE_SUBDIR = "text-embeddings"
# what embed_images hangs its queries on: the batching and failure handling need a question
_EMBEDDING = Question(attribute="embedding", kind="categorical", labels=())


@dataclass
class _Head:
    """The zero-shot classifier of one question: canonical labels and their text vectors."""

    labels: tuple[str, ...]
    texts: dict[str, list[str]]
    weights: np.ndarray  # (n_labels, dim), unit rows


@dataclass
class _Stats:
    images_encoded: int = 0
    bad_images: int = 0
    texts_encoded: int = 0
    warnings: list[str] = field(default_factory=list)


def _question_key(question: Question) -> tuple:
    template = question.template
    return (question.task, question.attribute, question.labels, tuple(sorted(question.display.items())),
            template.sha256 if template is not None else None, question.presentation)


class ClipBackend(Backend, EmbeddingBackend):
    prompt_style = "class_texts"
    options_schema = {
        "dtype": Option(str, None, True, "fp32, fp16 or bf16 (default: fp32 on CPU, fp16 on GPU)"),
        "impl": Option(str, None, True, "open_clip or transformers (default: from the weights)"),
    }

    def __init__(self, entry, options: dict[str, Any] | None = None):
        super().__init__(entry, options)
        settings = self.options
        self.spec = parse_spec(entry.weights, impl=settings.get("impl"), revision=entry.revision)
        self.device = resolve_device(settings.get("device"))
        self.dtype = resolve_dtype(settings.get("dtype"), self.device)
        self.batch_size = max(1, int(settings.get("batch_size") or DEFAULT_BATCH_SIZE))
        self.encoder = load_encoder(self.spec, self.device, self.dtype)
        self._heads: dict[tuple, _Head] = {}
        self._stats = _Stats()
        self.cache = self._open_cache(settings.get("cache_dir"), CACHE_SUBDIR, self._cache_space())
        self.text_cache = self._open_cache(settings.get("cache_dir"), TEXT_CACHE_SUBDIR, self._text_space())

    def _open_cache(self, cache_dir: str | Path | None, subdir: str, space: dict[str, Any]) -> EmbeddingCache | None:
        if not cache_dir:
            return None
        try:
            return EmbeddingCache(Path(cache_dir) / subdir, space, self.encoder.dim)
        except OSError as exc:  # the cache saves time; its absence must not stop a run
            self._warn(f"embedding cache under {cache_dir} cannot be used ({exc.strerror or exc}); "
                       "everything will be encoded")
            return None

    # ----- what run.json records -------------------------------------------------------------
    def _cache_space(self) -> dict[str, Any]:
        """Everything besides the pixels that decides an image vector (never paths or devices)."""
        return {"impl": self.encoder.impl, "library": self.encoder.identity()["library"],
                "weights_sha256": self.encoder.weights_sha256, "dtype": self.dtype,
                "preprocessing": self.encoder.preprocessing()}

    def _text_space(self) -> dict[str, Any]:
        """What decides a text vector: the weights, dtype and tokenizer settings."""
        identity = self.encoder.identity()
        return {"impl": self.encoder.impl, "library": identity["library"], "dtype": self.dtype,
                "weights_sha256": self.encoder.weights_sha256,
                "tokenizer": identity.get("text_tokenizer_kwargs")}

    def identity(self) -> dict[str, Any]:
        return {"backend": self.entry.backend, "weights": self.entry.weights, **self.encoder.identity(),
                "weights_sha256": self.encoder.weights_sha256, "dtype": self.dtype,
                "device": str(self.device), "embed_dim": self.encoder.dim,
                "logit_scale": self.encoder.logit_scale, "logit_bias": self.encoder.logit_bias,
                "preprocessing": self.encoder.preprocessing()}

    def scoring(self) -> str:
        if self.encoder.logit_bias is None:
            return "softmax(logit_scale * cos(image, class))"
        return ("sigmoid(logit_scale * cos(image, class) + logit_bias) per class, renormalised to sum to 1 "
                "in probs; the raw sigmoids are in extra.sigmoid")

    def run_summary(self) -> dict[str, Any]:
        return self.stats()

    def stats(self) -> dict[str, Any]:
        """Counters for run.json at the end of a run (cache hits, images encoded...)."""
        found = {"images_encoded": self._stats.images_encoded, "bad_images": self._stats.bad_images}
        if self.cache is not None:
            found["embedding_cache"] = {"dir": str(self.cache.dir), **self.cache.stats.as_dict()}
        found["texts_encoded"] = self._stats.texts_encoded
        if self.text_cache is not None:
            found["text_embedding_cache"] = {"dir": str(self.text_cache.dir), **self.text_cache.stats.as_dict()}
        return found

    # ----- loading ---------------------------------------------------------------------------
    @property
    def default_workers(self) -> int:
        """On a GPU, decoding and preprocessing in worker processes keep the model busy; on a CPU
        they would compete with the model for the same cores."""
        return min(4, max(1, (os.cpu_count() or 2) // 2)) if self.device.type == "cuda" else 0

    def preprocessor(self):
        return self.encoder.image_transform()

    # ----- questions -------------------------------------------------------------------------
    def unsupported_reason(self, question: Question) -> str | None:
        if question.kind == "numeric" or not question.labels:
            return (f"attribute {question.attribute!r} is numeric: zero-shot CLIP can only pick among labels; "
                    "evaluate a binned (ordinal) attribute instead")
        if question.template is None or question.template.kind != "class_texts":
            return (f"attribute {question.attribute!r} has no class_texts template; CLIP needs one: "
                    "--prompt clip_photo (or another prompts/clip_*.jinja)")
        return None

    def prepare(self, questions: list[Question]) -> dict[str, Any]:
        class_texts, templates = {}, {}
        for question in questions:
            if self.unsupported_reason(question) is not None:
                continue
            head = self._head(question)
            class_texts[question.attribute] = head.texts
            templates[question.attribute] = {"name": question.template.name,
                                             "sha256": question.template.sha256}
        return {"model": self.identity(), "scoring": self.scoring(), "class_texts": class_texts,
                "class_text_templates": templates, "warnings": list(self._stats.warnings),
                "embedding_cache": None if self.cache is None else {"dir": str(self.cache.dir),
                                                                    "space": self.cache.key}}

    def _head(self, question: Question) -> _Head:
        key = _question_key(question)
        if key not in self._heads:
            texts = question.class_texts()
            self._warn_about_texts(question, texts)
            flat = [text for label in question.labels for text in texts[label]]
            vectors = self._encode_texts(list(dict.fromkeys(flat)))
            weights = zs.class_weights([np.stack([vectors[t] for t in texts[label]]) for label in question.labels])
            self._heads[key] = _Head(question.labels, texts, weights)
        return self._heads[key]

    def _encode_texts(self, texts: list[str]) -> dict[str, np.ndarray]:
        """text -> raw vector; cached texts are read, not encoded (a new prompt or term costs only itself)."""
        digests = {text: hashlib.sha256(text.encode("utf-8")).hexdigest() for text in texts}
        cached = self.text_cache.get_many(digests.values()) if self.text_cache is not None else {}
        found = {text: cached[d] for text, d in digests.items() if d in cached}
        missing = [text for text in texts if text not in found]
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            encoded = self.encoder.encode_texts(chunk).astype(np.float32)
            self._stats.texts_encoded += len(chunk)
            found.update(zip(chunk, encoded))
            if self.text_cache is not None:
                try:
                    for text, vector in zip(chunk, encoded):
                        self.text_cache.put(digests[text], vector)
                except OSError as exc:  # a full or read-only disk must not stop the evaluation
                    self._warn(f"text embedding cache {self.text_cache.dir}: cannot write ({exc.strerror or exc})")
        return found

    def _warn_about_texts(self, question: Question, texts: dict[str, list[str]]) -> None:
        for label in question.labels:
            if "_" in label and label not in question.display:
                self._warn(f"attribute {question.attribute!r}: label {label!r} has no display name, so its "
                           f"class text reads {texts[label][0]!r}; add one under display: in the task spec")
        seen: dict[tuple[str, ...], str] = {}
        for label in question.labels:
            other = seen.setdefault(tuple(texts[label]), label)
            if other != label:
                self._warn(f"attribute {question.attribute!r}: labels {other!r} and {label!r} have the same class "
                           "texts, so CLIP cannot tell them apart")

    def _warn(self, message: str) -> None:
        if message not in self._stats.warnings:
            self._stats.warnings.append(message)
            log.warning(message)

    # ----- answering -------------------------------------------------------------------------
    def answer(self, queries: list[Query]) -> list[Answer]:
        answers: list[Answer | None] = [None] * len(queries)
        for i, query in enumerate(queries):
            reason = self.unsupported_reason(query.question)
            if reason is not None:
                answers[i] = Answer.error(reason)
        digests = self._digests(queries, answers)
        vectors, failures = self._image_vectors(queries, digests)
        by_head: dict[tuple, list[int]] = {}
        for i, query in enumerate(queries):
            if answers[i] is not None:
                continue
            if digests[i] in failures:
                answers[i] = Answer.error(failures[digests[i]])
            else:
                by_head.setdefault(_question_key(query.question), []).append(i)
        for rows in by_head.values():
            head = self._head(queries[rows[0]].question)
            for i, answer in zip(rows, self._classify(head, np.stack([vectors[digests[i]] for i in rows]))):
                answers[i] = answer
        return answers

    # ----- the embedding protocol (vlmface.backends.base.EmbeddingBackend) -------------------
    @property
    def embed_dim(self) -> int:
        return self.encoder.dim

    def embed_images(self, images: list, ids: list[str] | None = None) -> tuple[np.ndarray, list[str | None]]:
        """(n, dim) unit float64 rows, one per image, through the embedding cache, and per image
        None or the error that left its row NaN (unreadable image, encoder failure...)."""
        ids = [str(i) for i in range(len(images))] if ids is None else [str(i) for i in ids]
        queries = [Query(sample_id=sid, image=image, question=_EMBEDDING) for sid, image in zip(ids, images)]
        answers: list[Answer | None] = [None] * len(queries)
        digests = self._digests(queries, answers)
        vectors, failures = self._image_vectors(queries, digests)
        rows = np.full((len(queries), self.encoder.dim), np.nan)
        errors: list[str | None] = [None] * len(queries)
        for i, digest in enumerate(digests):
            if answers[i] is not None:
                errors[i] = answers[i].raw
            elif digest in failures:
                errors[i] = failures[digest]
            else:
                rows[i] = l2_normalize(vectors[digest])
        return rows, errors

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """(n, dim) unit float64 rows, one per text (duplicates encoded once)."""
        vectors = self._encode_texts(list(dict.fromkeys(texts)))
        if not texts:
            return np.zeros((0, self.encoder.dim))
        return l2_normalize(np.stack([vectors[t] for t in texts]))

    def _digests(self, queries: list[Query], answers: list[Answer | None]) -> list[str | None]:
        """Pixel digest per query still to answer, computed once per distinct image object."""
        by_object: dict[int, str | Answer] = {}
        digests: list[str | None] = []
        for i, query in enumerate(queries):
            if answers[i] is not None:
                digests.append(None)
                continue
            image = query.image
            if id(image) not in by_object:
                try:
                    by_object[id(image)] = image_digest(image)
                except Exception as exc:  # not a PIL image, truncated file decoded lazily...
                    self._stats.bad_images += 1
                    by_object[id(image)] = Answer.error(f"sample {query.sample_id!r}: unreadable image "
                                                        f"({type(exc).__name__}: {exc})", kind="data")
            found = by_object[id(image)]
            if isinstance(found, Answer):
                answers[i] = found
                digests.append(None)
            else:
                digests.append(found)
        return digests

    def _image_vectors(self, queries: list[Query], digests: list[str | None]
                       ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """digest -> raw image embedding; digests that failed -> error message."""
        wanted: dict[str, Query] = {}
        for query, digest in zip(queries, digests):
            if digest is not None:
                wanted.setdefault(digest, query)
        vectors = self.cache.get_many(wanted) if self.cache is not None else {}
        missing = [d for d in wanted if d not in vectors]
        failures: dict[str, str] = {}
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            encoded, failed = self._encode_images([(d, wanted[d]) for d in chunk])
            vectors.update(encoded)
            failures.update(failed)
        return vectors, failures

    def _encode_images(self, items: list[tuple[str, Query]]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        kept, batch, failed = self._preprocess(items)
        if not kept:
            return {}, failed
        try:
            embeddings = self._forward(batch)
        except Exception:
            if len(kept) == 1:
                raise
            embeddings = self._forward_one_by_one(kept, batch, failed)
        encoded = {}
        for (digest, query), vector in zip(kept, embeddings):
            if vector is None:
                continue
            if np.isfinite(vector).all():
                encoded[digest] = vector
            else:  # fp16 overflow: an answer from it would be noise, and it must not be cached
                self._stats.bad_images += 1
                failed[digest] = f"sample {query.sample_id!r}: the image embedding is not finite (try --dtype fp32)"
        self._store(encoded)
        return encoded, failed

    def _preprocess(self, items):
        """(items kept, their batched inputs, digest -> error). Inputs the loader's workers made
        (query.pixels) are used as they are; otherwise one call for the whole batch, and if that
        fails, image by image, so one bad image costs only its own answer."""
        if all(query.pixels is not None for _, query in items):
            return items, {k: torch.cat([q.pixels[k] for _, q in items]) for k in items[0][1].pixels}, {}
        try:
            return items, self.encoder.prepare_images([query.image for _, query in items]), {}
        except Exception:
            pass
        kept, inputs, failed = [], [], {}
        for digest, query in items:
            try:
                inputs.append(self.encoder.prepare_images([query.image]))
                kept.append((digest, query))
            except Exception as exc:
                self._stats.bad_images += 1
                failed[digest] = f"sample {query.sample_id!r}: preprocessing failed ({type(exc).__name__}: {exc})"
        batch = {name: torch.cat([x[name] for x in inputs]) for name in inputs[0]} if inputs else {}
        return kept, batch, failed

    def _forward_one_by_one(self, kept, batch, failed) -> list[np.ndarray | None]:
        """A batch failed: find the images that break the encoder; if all do, the model is at fault."""
        vectors, errors = [], []
        for row, (digest, query) in enumerate(kept):
            try:
                vectors.append(self._forward({k: v[row:row + 1] for k, v in batch.items()})[0])
            except Exception as exc:
                errors.append(exc)
                vectors.append(None)
                self._stats.bad_images += 1
                failed[digest] = f"sample {query.sample_id!r}: encoder failed ({type(exc).__name__}: {exc})"
        if len(errors) == len(kept):
            raise errors[0]
        return vectors

    def _forward(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        embeddings = self.encoder.encode_images(batch).astype(np.float32)
        self._stats.images_encoded += len(embeddings)
        return embeddings

    def _store(self, encoded: dict[str, np.ndarray]) -> None:
        if self.cache is None:
            return
        try:
            for digest, vector in encoded.items():
                self.cache.put(digest, vector)
        except OSError as exc:  # a full or read-only disk must not stop the evaluation
            self._warn(f"embedding cache {self.cache.dir}: cannot write ({exc.strerror or exc}); answers are "
                       "unaffected, but these images will be encoded again next run")

    def _classify(self, head: _Head, image_vectors: np.ndarray) -> list[Answer]:
        """Per image: each label's log-probability (softmax models) or log-sigmoid (SigLIP) as
        `scores`, and the probabilities; vlmface.interpret takes the label (the argmax)."""
        bias = self.encoder.logit_bias
        z = zs.logits(image_vectors, head.weights, self.encoder.logit_scale, bias)
        probs, sigmoid = zs.probs_from_logits(z, sigmoid=bias is not None)
        z64 = z.astype(np.float64)
        if bias is None:
            log_scores = z64 - np.logaddexp.reduce(z64, axis=-1, keepdims=True)
        else:
            log_scores = zs.log_sigmoid(z64)
        answers = []
        for row, p in enumerate(probs):
            extra = None if sigmoid is None else {"sigmoid": dict(zip(head.labels, map(float, sigmoid[row])))}
            scores = dict(zip(head.labels, map(float, log_scores[row])))
            answers.append(Answer(label=None, status="ok", raw=None, scores=scores,
                                  probs=dict(zip(head.labels, map(float, p))), extra=extra))
        return answers

    def close(self) -> None:
        self.encoder = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
