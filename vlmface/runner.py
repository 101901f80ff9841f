"""task x model x prompt -> a run directory with predictions.jsonl and run.json.

Finished work is never lost: predictions are appended and flushed per batch, and a rerun
of the same command skips every (sample, attribute) already answered.
"""

from __future__ import annotations

import copy
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vlmface.asking import Asker, render_prompt
from vlmface.backends.base import Question
from vlmface.data import Sample, load_samples, stratified_limit
from vlmface.errors import SpecError, VlmfaceError
from vlmface.engines import EngineConfig, Setup, create_engine
from vlmface.manifest import RUN_FILE, file_sha256, now, package_versions, read_run, write_json_atomic
from vlmface.predictions import PREDICTIONS_FILE, Prediction, PredictionWriter, iter_records
from vlmface.prompts import PromptTemplate, load_template
from vlmface.registry import backend_class, resolve_model
from vlmface.tasks import TaskSpec, load_task

# Options that change answers, hence the identity of a run (and its directory name).
IDENTITY_OPTIONS = ("mode", "max_new_tokens", "dtype", "base_url", "chat_format", "prompt_prefix",
                    "choice_prefix", "choice_score")


@dataclass
class EvalConfig:
    task: str | Path
    model: str
    prompt: str | None = None
    limit: int | None = None
    seed: int = 0
    data_dir: str | Path | None = None
    source: str | None = None
    out: str | Path = "results"
    attributes: list[str] | None = None
    batch_size: int | None = None  # samples per batch; None: the backend's default
    workers: int | None = None  # image loader processes; None: the backend's default
    shard: tuple[int, int] | None = None  # (K, N): this process runs shard K of N
    cache_dir: str | Path | None | bool = None  # None: OUT/.cache; False: no cache
    engine: str = "local"  # "local" or "ray"
    ray_address: str | None = None  # an existing Ray cluster; None starts a local one
    verbose: bool = False  # the engine's own (Ray's) log lines on the console
    options: dict[str, Any] = field(default_factory=dict)
    perturbation: Any = None  # a vlmface.perturb.Perturbation (one transform, one level); None: clean
    overwrite: bool = False
    retry_errors: bool = False
    score: bool = True
    progress: bool = True


@dataclass
class RunResult:
    run_dir: Path
    counts: dict[str, int]
    unsupported: dict[str, str]
    metrics: dict[str, Any] | None = None

    @property
    def predictions_path(self) -> Path:
        return self.run_dir / PREDICTIONS_FILE


def shard_of(samples: list[Sample], shard: tuple[int, int] | None) -> list[Sample]:
    """Shard K of N: every N-th selected sample from the K-th, so shards are disjoint,
    cover the selection, differ in size by at most one, and depend only on the selection."""
    if shard is None:
        return samples
    index, count = shard
    if not 0 <= index < count:
        raise VlmfaceError(f"--shard {index}/{count}: K must be in 0..{count - 1}")
    return samples[index::count]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_")[:120] or "run"


def build_questions(task: TaskSpec, style: str, prompt: str | None,
               attributes: list[str]) -> list[Question]:
    questions = []
    for attribute in attributes:
        spec = task.attributes[attribute]
        template: PromptTemplate | None = None
        if style != "none":
            name = prompt or task.prompts.for_attribute(style, attribute)
            if name is None:
                raise SpecError(f"{task.where}: no default {style} prompt for {attribute!r}; "
                                f"set prompts.{style} in the spec or pass --prompt")
            template = load_template(name)
        questions.append(Question(attribute=attribute, kind=spec.kind, labels=tuple(spec.labels),
                                  display=dict(spec.display), bins=spec.bin_table(),
                                  template=template, task=task.name,
                                  synonyms={k: tuple(v) for k, v in spec.synonyms.items()}))
    return questions


def _check_templates(questions: list[Question], style: str, sample: Sample) -> None:
    """Render every template once, so a bad variable fails before any model is loaded."""
    for question in questions:
        if style == "question":
            render_prompt(question, sample)
        elif style == "class_texts" and question.kind != "numeric":
            question.class_texts()


class _Run:
    def __init__(self, config: EvalConfig):
        self.config = config
        self.task = load_task(config.task)
        self.entry = resolve_model(config.model)
        self.backend_cls = backend_class(self.entry.backend)
        self.style = self.backend_cls.prompt_style
        self.batch_size = max(1, config.batch_size or self.backend_cls.default_batch_size)
        attributes = config.attributes or self.task.evaluated_attributes
        unknown = [a for a in attributes if a not in self.task.attributes]
        if unknown:
            raise SpecError(f"--attributes: unknown {unknown}; {self.task.name} has {list(self.task.attributes)}")
        self.questions = build_questions(self.task, self.style, config.prompt, attributes)
        self.source_name, _ = self.task.source(config.source)
        self.data = load_samples(self.task, config.source, config.data_dir)
        selected = stratified_limit(self.data.samples, self.task.group_columns, config.limit, config.seed)
        self.n_selected = len(selected)
        self.samples = shard_of(selected, config.shard)
        if not self.samples:
            raise VlmfaceError(f"shard {config.shard} of {self.n_selected} samples is empty; use fewer shards")
        _check_templates(self.questions, self.style, self.samples[0])
        self.clean_samples = self.samples
        self._set_perturbation(config.perturbation)

    def _set_perturbation(self, perturbation: Any) -> None:
        self.perturbation = perturbation
        self.samples = self.clean_samples if perturbation is None else perturbation.wrap(self.clean_samples)
        self.run_dir = self._run_dir()

    def perturbed(self, perturbation: Any) -> _Run:
        """The same run on perturbed images (None: clean), in its own run directory."""
        run = copy.copy(self)
        run._set_perturbation(perturbation)
        return run

    def _variant(self) -> str:
        prompt = self.config.prompt or ("none" if self.style == "none" else "default")
        extras = [f"{k}-{self.config.options[k]}" for k in IDENTITY_OPTIONS
                  if k != "base_url" and self.config.options.get(k) not in (None, "", "generate")]
        if self.config.attributes:
            extras.append("attrs-" + "+".join(self.config.attributes))
        if self.config.shard:
            extras.append("shard-{}-of-{}".format(*self.config.shard))
        if self.perturbation is not None:
            extras.append(self.perturbation.suffix)
        return "__".join([Path(prompt).stem, *extras])

    def _run_dir(self) -> Path:
        task_part = self.task.name
        if self.source_name != self.task.default_source:
            task_part += f"@{self.source_name}"
        return Path(self.config.out) / _safe(task_part) / _safe(self.entry.name) / _safe(self._variant())

    def identity(self) -> dict[str, Any]:
        identity = {
            "task": self.task.name,
            "source": self.source_name,
            "dataset_fingerprint": self.data.fingerprint,
            "seed": self.config.seed,
            "limit": self.config.limit,
            "model": self.entry.model_dump(),
            "prompts": {q.attribute: q.template.sha256 if q.template else None for q in self.questions},
            "options": {k: self.config.options.get(k) for k in IDENTITY_OPTIONS},
            "shard": list(self.config.shard) if self.config.shard else None,
        }
        if self.perturbation is not None:  # absent when clean, so clean runs keep their identity
            identity["perturbation"] = self.perturbation.describe()
        return identity


def _prepare_dir(run: _Run) -> None:
    if run.config.overwrite and run.run_dir.exists():
        shutil.rmtree(run.run_dir)
    previous = read_run(run.run_dir)
    if previous is not None and previous.get("identity") != run.identity():
        old, new = previous.get("identity", {}), run.identity()
        differing = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise VlmfaceError(f"{run.run_dir} holds a different run (differs in: {', '.join(differing)}). "
                           "Pass --overwrite to replace it, or --out to write elsewhere")


def _finished(run_dir: Path, retry_errors: bool) -> set[tuple[str, str]]:
    path = run_dir / PREDICTIONS_FILE
    if not path.exists():
        return set()
    records = list(iter_records(path))
    if retry_errors and any(r["status"] == "error" for r in records):
        kept = [r for r in records if r["status"] != "error"]
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(Prediction(**r).to_json() + "\n" for r in kept), encoding="utf-8")
        tmp.replace(path)
        records = kept
    return {(r["sample_id"], r["attribute"]) for r in records}


def _manifest(run: _Run, setup: Setup) -> dict:
    unsupported = setup.unsupported
    return {
        "identity": run.identity(),
        "task": run.task.name,
        "task_spec": str(run.task.path),
        "task_spec_sha256": file_sha256(run.task.path) if run.task.path else None,
        "source": run.source_name,
        "data_location": run.data.location,
        "dataset_fingerprint": run.data.fingerprint,
        "n_available": len(run.data.samples),
        "n_selected": run.n_selected,
        "shard": None if not run.config.shard else {
            "index": run.config.shard[0], "count": run.config.shard[1],
            "sample_ids": [s.id for s in run.samples]},
        "skipped_items": {"count": len(run.data.skipped),
                          "examples": [{"item": i, "reason": r} for i, r in run.data.skipped[:20]]},
        "seed": run.config.seed,
        "limit": run.config.limit,
        "model": run.entry.name,
        "model_entry": run.entry.model_dump(),
        "backend": run.entry.backend,
        "model_identity": setup.identity,
        "engine": run.config.engine,
        "cluster": setup.cluster,
        "options": run.config.options,
        "prompt": run.config.prompt,
        "templates": {q.attribute: {"name": q.template.name, "path": str(q.template.path),
                                    "sha256": q.template.sha256} if q.template else None
                      for q in run.questions},
        "attributes": {q.attribute: {"kind": q.kind, "labels": list(q.labels)}
                       for q in run.questions if q.attribute not in unsupported},
        "unsupported_attributes": unsupported,
        "group_columns": run.task.group_columns,
        "backend_setup": setup.prepared,
        "versions": package_versions(),
    } | ({"perturbation": run.perturbation.describe()} if run.perturbation is not None else {})


def _pending(run: _Run, questions: list[Question], done: set[tuple[str, str]]) -> dict[str, list[Question]]:
    """sample id -> the questions still to ask about it, in sample order."""
    todo = {}
    for sample in run.samples:
        remaining = [q for q in questions if (sample.id, q.attribute) not in done]
        if remaining:
            todo[sample.id] = remaining
    return todo


def evaluate(config: EvalConfig) -> RunResult:
    return _evaluate_runs(config, [_Run(config)])[0]


def evaluate_perturbed(config: EvalConfig, perturbations: list[Any]) -> list[RunResult]:
    """The run of `config` once per image perturbation (None: the clean images), each a normal,
    resumable run in its own directory; on the local engine the model is loaded once for all."""
    base = _Run(replace(config, perturbation=None))
    return _evaluate_runs(config, [base.perturbed(p) for p in perturbations])


def _evaluate_runs(config: EvalConfig, runs: list[_Run]) -> list[RunResult]:
    for run in runs:  # every directory conflict is reported before a model is loaded
        _prepare_dir(run)
    first = runs[0]
    cache_dir = None if config.cache_dir is False else Path(config.cache_dir or Path(config.out) / ".cache")
    options = {"batch_size": first.batch_size, "cache_dir": cache_dir, **config.options}
    asker = Asker(first.style, tuple(first.task.group_columns), first.entry.backend)
    engine_config = EngineConfig(first.entry, options, asker, first.batch_size, config.workers,
                                 config.ray_address, config.verbose)
    # Ray actors load the model per run anyway (and report settings, not counters): one engine
    # per run there; locally one engine serves every run.
    groups = [runs] if config.engine == "local" else [[run] for run in runs]
    done: list[tuple[_Run, dict[str, int], Setup]] = []
    for group in groups:
        done += _with_engine(create_engine(config.engine, engine_config), group, config.retry_errors)
    if first.data.skipped:
        _note(f"{len(first.data.skipped)} item(s) of the dataset were skipped: "
              + "; ".join(f"{i}: {r}" for i, r in first.data.skipped[:5]))
    return [RunResult(run_dir=run.run_dir, counts=counts, unsupported=setup.unsupported,
                      metrics=_score(run.run_dir, show=len(runs) == 1) if config.score else None)
            for run, counts, setup in done]


def _with_engine(engine, runs: list[_Run], retry_errors: bool) -> list[tuple[_Run, dict[str, int], Setup]]:
    done = []
    try:
        setup = engine.setup(runs[0].questions)
        for attribute, reason in setup.unsupported.items():
            _note(f"{runs[0].entry.name} cannot answer {attribute!r}: {reason}; skipped")
        if not setup.questions:
            raise VlmfaceError(f"{runs[0].entry.name} can answer none of the attributes asked "
                               f"({', '.join(q.attribute for q in runs[0].questions)})")
        for index, run in enumerate(runs):
            before = engine.summary() if index else None  # counters so far, to split them per run
            finished = _finished(run.run_dir, retry_errors)
            manifest = _manifest(run, setup)
            previous = read_run(run.run_dir) or {}
            manifest["started"] = previous.get("started", now())
            if previous.get("backend_summary"):
                manifest["backend_summary"] = previous["backend_summary"]
            manifest["status"] = "running"
            write_json_atomic(run.run_dir / RUN_FILE, manifest)
            done.append((run, _execute(run, engine, setup.questions, finished, manifest, before), setup))
    finally:
        engine.close()
    return done


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def _execute(run: _Run, engine, questions: list[Question], done: set[tuple[str, str]],
             manifest: dict[str, Any], before: dict[str, Any] | None = None) -> dict[str, int]:
    todo = _pending(run, questions, done)
    pending = [sample for sample in run.samples if sample.id in todo]
    counts: Counter[str] = Counter()
    started = time.perf_counter()
    with PredictionWriter(run.run_dir / PREDICTIONS_FILE) as writer, \
            tqdm(total=len(pending), unit="face", disable=not run.config.progress,
                 desc=f"{run.task.name}/{run.entry.name}") as bar:
        try:
            for n_samples, predictions in engine.batches(pending, todo):
                if run.perturbation is not None:
                    for prediction in predictions:
                        prediction.perturbation = run.perturbation.name
                        prediction.level = run.perturbation.level
                writer.write_batch(predictions)
                counts.update(p.status for p in predictions)
                bar.update(n_samples)
        except BaseException:
            manifest.update(status="interrupted", updated=now(),
                            backend_summary=_accumulate(manifest.get("backend_summary"),
                                                        _since(before, engine.summary())))
            write_json_atomic(run.run_dir / RUN_FILE, manifest)
            raise
    seconds = time.perf_counter() - started
    summary = _since(before, engine.summary())
    if summary:
        print(f"{run.entry.name} (this invocation): " + ", ".join(f"{k}={v}" for k, v in summary.items()))
        manifest["backend_summary"] = _accumulate(manifest.get("backend_summary"), summary)
    totals = Counter(r["status"] for r in iter_records(run.run_dir / PREDICTIONS_FILE))
    manifest.update(status="complete", finished=now(), counts={
        "samples": len(run.samples), "resumed_skipped_pairs": len(done),
        "new_predictions": sum(counts.values()), **dict(totals)},
        timings={"seconds": round(seconds, 3),
                 "seconds_per_sample": round(seconds / max(1, len(pending)), 5)})
    write_json_atomic(run.run_dir / RUN_FILE, manifest)
    return dict(counts)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _combine(old: Any, new: Any, op) -> Any:
    """op(old, new) on the numbers of two nested summaries (counters, tokens, cost); any other
    value: the new one; keys only in `old` are kept."""
    if old is None:
        return new
    if isinstance(old, dict) and isinstance(new, dict):
        return {k: _combine(old.get(k), v, op) for k, v in new.items()} | \
            {k: v for k, v in old.items() if k not in new}
    return op(old, new) if _is_number(old) and _is_number(new) else new


def _since(before: Any, current: Any) -> Any:
    """What an engine counted since the `before` snapshot (None: since it started)."""
    return _combine(before, current, lambda b, c: c - b)


def _accumulate(previous: Any, current: Any) -> Any:
    """Add this invocation's numbers (tokens, cost, requests) to those of earlier ones."""
    return _combine(previous, current, lambda p, c: p + c)


def _score(run_dir: Path, show: bool = True) -> dict[str, Any]:
    from vlmface.scoring import format_summary, score_run

    metrics = score_run(run_dir)
    if show:
        print(format_summary(metrics))
    return metrics
