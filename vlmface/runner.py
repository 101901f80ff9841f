"""task x model x prompt -> a run directory with predictions.jsonl and run.json.

Finished work is never lost: predictions are appended and flushed per batch, and a rerun
of the same command skips every (sample, attribute) already answered, provided the run
identity (vlmface.run_record.RunIdentity) is the same; the directory is locked for the whole
command (vlmface.run_lock), and its path is built from sanitised names and must lie in --out.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import re
import shutil
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vlmface.asking import Asker, render_prompt
from vlmface.backends.base import Question
from vlmface.data import Sample, load_samples, stratified_limit
from vlmface.errors import SpecError, VlmfaceError
from vlmface.engines import EngineConfig, Setup, create_engine
from vlmface.manifest import file_sha256, now, package_versions
from vlmface.predictions import Prediction, PredictionWriter, iter_records
from vlmface.prompts import PromptTemplate, load_template
from vlmface.registry import backend_class, resolve_model
from vlmface.run_lock import LOCK_FILE, run_lock
from vlmface.run_record import (PREDICTIONS_FILE, RUN_FILE, OutputError, RunIdentity, RunRecord, Selection, canonical,
                                identity_conflict, read_run, short_hash, write_atomic, write_run,
                                write_run_status)
from vlmface.tasks import TaskSpec, load_task

#: an option value shown as is in a directory name (anything else goes into the opts-<hash> part)
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9.+-]{1,24}")
_MAX_COMPONENT = 120


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
    max_pixels: int | None = None  # larger images are per-sample errors; None: $VLMFACE_MAX_PIXELS or Pillow's
    shard: tuple[int, int] | None = None  # (K, N): this process runs shard K of N
    cache_dir: str | Path | None | bool = None  # None: OUT/.cache; False: no cache
    engine: str = "local"  # "local" or "ray"
    ray_address: str | None = None  # an existing Ray cluster; None starts a local one
    verbose: bool = False  # the engine's own (Ray's) log lines on the console
    options: dict[str, Any] = field(default_factory=dict)
    perturbation: Any = None  # a vlmface.perturb.Perturbation (one transform, one level); None: clean
    prompt_variant: Any = None  # a vlmface.prompt_sets.PromptVariant; None: the plain run
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


def path_component(name: str, what: str) -> str:
    """`name` as one directory name: runs of other characters become "_", leading and trailing
    dots and underscores go (so never "..", "." or hidden), a long name is cut and hashed."""
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", str(name)).strip("._")
    if not safe:
        raise SpecError(f"{what} {name!r} cannot name a run directory: use a name with letters or digits")
    if len(safe) > _MAX_COMPONENT:
        safe = f"{safe[:_MAX_COMPONENT - 9]}-{short_hash(name)}"
    return safe


def build_questions(task: TaskSpec, style: str, prompt: str | None,
                    attributes: list[str]) -> list[Question]:
    questions = []
    for attribute in attributes:
        template: PromptTemplate | None = None
        if style != "none":
            name = prompt or task.prompts.for_attribute(style, attribute)
            if name is None:
                raise SpecError(f"{task.where}: no default {style} prompt for {attribute!r}; "
                                f"set prompts.{style} in the spec or pass --prompt")
            template = load_template(name)
        questions.append(question_for(task, attribute, template))
    return questions


def question_for(task: TaskSpec, attribute: str, template: PromptTemplate | None) -> Question:
    """What is asked about `attribute`, and how its answers are read (labels, synonyms, vocabulary)."""
    spec = task.attributes[attribute]
    return Question(attribute=attribute, kind=spec.kind, labels=tuple(spec.labels), display=dict(spec.display),
                    bins=spec.bin_table(), template=template, task=task.name,
                    synonyms={k: tuple(v) for k, v in spec.synonyms.items()},
                    vocabulary=task.answer_vocabulary())


def prompt_text_sha256(question: Question, style: str, sample: Sample) -> str | None:
    """sha256 of the exact text the template renders for this question (a question, or the class
    texts as JSON), or None when the text depends on the sample (the template reads `meta`)."""
    if style == "question":
        text = render_prompt(question, sample)
        try:
            stand_in = render_prompt(question, Sample(id="stand-in", image=None, labels={},
                                                      meta=defaultdict(str)))
        except VlmfaceError:
            return None
        return hashlib.sha256(text.encode("utf-8")).hexdigest() if stand_in == text else None
    if style == "class_texts" and question.kind != "numeric":
        texts = json.dumps(question.class_texts(), ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(texts.encode("utf-8")).hexdigest()
    return None


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
        self.options = self.backend_cls.resolve_options(self.entry, config.options)  # checked before any data
        self.batch_size = max(1, config.batch_size or self.backend_cls.default_batch_size)
        attributes = config.attributes or self.task.evaluated_attributes
        unknown = [a for a in attributes if a not in self.task.attributes]
        if unknown:
            raise SpecError(f"--attributes: unknown {unknown}; {self.task.name} has {list(self.task.attributes)}")
        self.questions = build_questions(self.task, self.style, config.prompt, attributes)
        if config.prompt and self.style == "none":
            load_template(config.prompt)  # unknown names are refused here too, though no prompt is sent
        self.source_name, _ = self.task.source(config.source)
        self.data = load_samples(self.task, config.source, config.data_dir)
        self.unavailable = {a: why for a, why in self.data.unavailable.items() if a in attributes}
        self.questions = [q for q in self.questions if q.attribute not in self.unavailable]
        if not self.questions:
            raise VlmfaceError("the data has labels for none of the attributes asked: "
                               + "; ".join(f"{a}: {why}" for a, why in self.unavailable.items()))
        self.group_columns = [*self.task.group_columns, *self.data.group_columns]
        selected = stratified_limit(self.data.samples, self.task.group_columns, config.limit, config.seed)
        self.n_selected = len(selected)
        self.samples = shard_of(selected, config.shard)
        if not self.samples:
            raise VlmfaceError(f"shard {config.shard} of {self.n_selected} samples is empty; use fewer shards")
        _check_templates(self.questions, self.style, self.samples[0])
        self.clean_samples = self.samples
        self.plain_questions = self.questions
        self.prompt_variant = None
        self._set_perturbation(config.perturbation)
        if config.prompt_variant is not None:
            self._set_prompt_variant(config.prompt_variant)

    def _set_prompt_variant(self, variant: Any) -> None:
        """The plain questions as `variant` asks them; its default is the plain run itself."""
        self.prompt_variant = None if variant is None or variant.is_default else variant
        if self.prompt_variant is None:
            self.questions = self.plain_questions
        else:
            if self.style == "class_texts" and variant.presentation and variant.presentation.order:
                raise SpecError(f"prompt variant {variant.name!r} reorders options, which class texts do not "
                                "list; use template, casing or display variants with this model")
            self.questions = [variant.apply(q) for q in self.plain_questions]
            _check_templates(self.questions, self.style, self.samples[0])
        self.run_dir = self._run_dir()

    def with_prompt_variant(self, variant: Any) -> _Run:
        """The same run asked as `variant` (None or the default: the plain run), in its own directory."""
        run = copy.copy(self)
        run._set_prompt_variant(variant)
        return run

    def _set_perturbation(self, perturbation: Any) -> None:
        self.perturbation = perturbation
        self.samples = self.clean_samples if perturbation is None else perturbation.wrap(self.clean_samples)
        self.run_dir = self._run_dir()

    def perturbed(self, perturbation: Any) -> _Run:
        """The same run on perturbed images (None: clean), in its own run directory."""
        run = copy.copy(self)
        run._set_perturbation(perturbation)
        return run

    def _option_parts(self) -> list[str]:
        """`key-value` per answer-changing option the run sets away from its default (the registry
        entry's, else the backend's); values that are not short plain words go into one
        `opts-<hash>` part, so the directory name is unique per identity."""
        cls = self.backend_cls
        declared = cls.declared_options()
        usual = cls.resolve_options(self.entry)
        changed = {k: v for k, v in cls.check_options(self.config.options).items()
                   if declared[k].answer_changing and canonical(v) != canonical(usual.get(k))}
        plain = {k: v for k, v in changed.items()
                 if not isinstance(v, (dict, list, bool)) and _PLAIN_VALUE.fullmatch(str(v))}
        parts = [f"{k}-{v}" for k, v in sorted(plain.items())]
        hashed = {k: v for k, v in changed.items() if k not in plain}
        if hashed:
            parts.append(f"opts-{short_hash(hashed)}")
        return parts

    def _variant(self) -> str:
        prompt = self.config.prompt or ("none" if self.style == "none" else "default")
        extras = self._option_parts()
        if self.config.attributes:
            extras.append("attrs-" + "+".join(self.config.attributes))
        if self.config.shard:
            extras.append("shard-{}-of-{}".format(*self.config.shard))
        if self.perturbation is not None:
            extras.append(self.perturbation.suffix)
        if self.prompt_variant is not None:
            extras.append(self.prompt_variant.suffix)
        return "__".join([path_component(Path(prompt).stem, "prompt"), *extras])

    def _run_dir(self) -> Path:
        task_part = self.task.name
        if self.source_name != self.task.default_source:
            task_part += f"@{self.source_name}"
        out = Path(self.config.out)
        run_dir = (out / path_component(task_part, "task") / path_component(self.entry.name, "model")
                   / path_component(self._variant(), "run variant"))
        resolved, root = run_dir.resolve(), out.resolve()
        if not resolved.is_relative_to(root) or resolved == root:
            raise VlmfaceError(f"{run_dir} resolves to {resolved}, outside --out {root} (a symbolic link?); "
                               "choose another --out")
        return run_dir

    def run_identity(self, backend: dict[str, Any] | None = None) -> RunIdentity:
        """What this run's answers depend on; `backend`: the loaded backend's identity()."""
        shard = self.config.shard
        return RunIdentity(
            task=self.task.name,
            task_spec_sha256=file_sha256(self.task.path) if self.task.path else None,
            source=self.source_name,
            dataset_fingerprint=self.data.fingerprint,
            selection=Selection(limit=self.config.limit, seed=self.config.seed, shard=tuple(shard) if shard else None),
            model=self.entry.model_dump(),
            options=self.backend_cls.answer_changing_options(self.options),
            prompts={q.attribute: q.template.sha256 if q.template else None for q in self.questions},
            perturbation=self.perturbation.describe() if self.perturbation is not None else None,
            prompt_variant=self._variant_record(),
            backend=backend)

    def _variant_record(self) -> dict[str, Any] | None:
        """The variant and the plain run's prompts (so its default run can be found from run.json)."""
        if self.prompt_variant is None:
            return None
        return {**self.prompt_variant.describe(),
                "plain_prompts": {q.attribute: q.template.sha256 if q.template else None
                                  for q in self.plain_questions}}


def _previous_identity(run_dir: Path) -> tuple[bool, RunIdentity | None]:
    """(whether run_dir holds a run record, its identity: None if unreadable or of an older format)."""
    previous = read_run(run_dir)
    if previous is None:
        return False, None
    return True, previous.run_identity()


def _overwrite(run_dir: Path) -> None:
    """--overwrite: empty exactly this run directory, and only if it is a vlmface run."""
    entries = [p for p in run_dir.iterdir() if p.name != LOCK_FILE]
    if not entries:
        return
    record = None
    try:
        record = read_run(run_dir)
    except VlmfaceError:
        pass
    if record is None or not record.has("identity"):
        raise VlmfaceError(f"--overwrite: {run_dir} holds no vlmface {RUN_FILE}, so it is not a run directory "
                           "and nothing was deleted; remove it yourself or choose another --out")
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _prepare_dir(run: _Run) -> None:
    """Called with the run's lock held: overwrite if asked, else refuse a different run."""
    if run.config.overwrite:
        _overwrite(run.run_dir)
    exists, old = _previous_identity(run.run_dir)
    if exists:
        conflict = identity_conflict(run.run_dir, old.without_backend() if old else None, run.run_identity())
        if conflict:
            raise VlmfaceError(conflict)


def _check_backend_identity(run: _Run, setup: Setup) -> None:
    """Once the model is loaded, before anything is written: the backend's own identity too."""
    exists, old = _previous_identity(run.run_dir)
    if exists and old is not None and old.backend is not None:
        conflict = identity_conflict(run.run_dir, old, run.run_identity(setup.identity))
        if conflict:
            raise VlmfaceError(conflict)




def _finished(run_dir: Path, retry_errors: bool) -> set[tuple[str, str]]:
    path = run_dir / PREDICTIONS_FILE
    if not path.exists():
        return set()
    records = list(iter_records(path))
    if retry_errors and any(r["status"] == "error" for r in records):
        kept = [r for r in records if r["status"] != "error"]
        write_atomic(path, "".join(Prediction(**r).to_json() + "\n" for r in kept))
        records = kept
    return {(r["sample_id"], r["attribute"]) for r in records}


def _run_record(run: _Run, setup: Setup) -> RunRecord:
    unsupported = setup.unsupported
    return RunRecord.model_validate({
        "identity": run.run_identity(setup.identity).record(),
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
        "options": canonical(run.options),
        "prompt": run.config.prompt,
        "split": run.task.source(run.source_name)[1].split,
        "prompt_style": run.style,
        "templates": {q.attribute: {"name": q.template.name, "path": str(q.template.path),
                                    "sha256": q.template.sha256,
                                    "text_sha256": prompt_text_sha256(q, run.style, run.samples[0])}
                      if q.template else None
                      for q in run.questions},
        "attributes": {q.attribute: {"kind": q.kind, "labels": list(q.labels)}
                       for q in run.questions if q.attribute not in unsupported},
        "unsupported_attributes": unsupported,
        "unavailable_attributes": run.unavailable,
        "group_columns": run.group_columns,
        "backend_setup": setup.prepared,
        "versions": package_versions(),
    } | ({"perturbation": run.perturbation.describe()} if run.perturbation is not None else {}) \
      | ({"prompt_variant": run._variant_record()} if run.prompt_variant is not None else {}))


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


def evaluate_prompt_variants(config: EvalConfig, variants: list[Any]) -> list[RunResult]:
    """The run of `config` once per prompt variant on the same samples, each a normal, resumable
    run in its own directory (the default variant: the plain run's); the model is loaded once."""
    base = _Run(replace(config, prompt_variant=None))
    return _evaluate_runs(config, [base.with_prompt_variant(v) for v in variants])


def _evaluate_runs(config: EvalConfig, runs: list[_Run]) -> list[RunResult]:
    with contextlib.ExitStack() as locks:
        for run in runs:
            locks.enter_context(run_lock(run.run_dir, "eval", create=True))
        for run in runs:  # every directory conflict is reported before a model is loaded
            _prepare_dir(run)
        return _evaluate_locked(config, runs)


def _evaluate_locked(config: EvalConfig, runs: list[_Run]) -> list[RunResult]:
    first = runs[0]
    cache_dir = None if config.cache_dir is False else Path(config.cache_dir or Path(config.out) / ".cache")
    options = {"batch_size": first.batch_size, "cache_dir": cache_dir, **config.options}
    asker = Asker(first.style, tuple(first.group_columns), first.entry.backend)
    engine_config = EngineConfig(first.entry, options, asker, first.batch_size, config.workers,
                                 config.ray_address, max_pixels=config.max_pixels,
                                 verbose=config.verbose)
    # Ray actors load the model per run anyway (and report settings, not counters): one engine
    # per run there; locally one engine serves every run.
    groups = [runs] if config.engine == "local" else [[run] for run in runs]
    done: list[tuple[_Run, dict[str, int], Setup]] = []
    for group in groups:
        done += _with_engine(create_engine(config.engine, engine_config), group, config.retry_errors)
    for attribute, why in first.unavailable.items():
        _note(f"{attribute!r} is unavailable in this data ({why}); not evaluated")
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
        for attribute, labels in (setup.prepared.get("never_predicted_labels") or {}).items():
            _note(f"{runs[0].entry.name} can never predict {attribute} label(s) {labels} (counted wrong)")
        if not setup.questions:
            raise VlmfaceError(f"{runs[0].entry.name} can answer none of the attributes asked "
                               f"({', '.join(q.attribute for q in runs[0].questions)})")
        for run in runs:
            _check_backend_identity(run, setup)
        for index, run in enumerate(runs):
            before = engine.summary() if index else None  # counters so far, to split them per run
            finished = _finished(run.run_dir, retry_errors)
            record = _run_record(run, setup)
            previous = read_run(run.run_dir)
            record.started = (previous.started if previous else None) or now()
            if previous and previous.backend_summary:
                record.backend_summary = previous.backend_summary
            record.status = "running"
            write_run(run.run_dir, record)
            questions = [q for q in run.questions if q.attribute not in setup.unsupported]
            done.append((run, _execute(run, engine, questions, finished, record, before), setup))
    finally:
        engine.close()
    return done


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def _execute(run: _Run, engine, questions: list[Question], done: set[tuple[str, str]],
             record: RunRecord, before: dict[str, Any] | None = None) -> dict[str, int]:
    """Answer what is left and record how it ended: complete, interrupted, or failed (a file of
    the run could not be written: one OutputError line, finished predictions kept)."""
    try:
        return _answer_pending(run, engine, questions, done, record, before)
    except BaseException as exc:
        failed = isinstance(exc, OutputError)
        record.update(status="failed" if failed else "interrupted", updated=now(),
                      backend_summary=_accumulate(record.backend_summary, _since(before, engine.summary())))
        if failed:
            record.error = str(exc)
        saved = write_run_status(run.run_dir, record)
        if failed:
            raise OutputError(f"{exc}; {'' if saved else f'{RUN_FILE} could not be updated either; '}"
                              "the finished predictions are kept: free space (or make the folder "
                              "writable) and rerun the same command to resume") from None
        raise


def _answer_pending(run: _Run, engine, questions: list[Question], done: set[tuple[str, str]],
                    record: RunRecord, before: dict[str, Any] | None) -> dict[str, int]:
    todo = _pending(run, questions, done)
    pending = [sample for sample in run.samples if sample.id in todo]
    if done:
        print(f"resuming: {len(run.samples) - len(pending)} of {len(run.samples)} faces done "
              f"({run.run_dir})", file=sys.stderr)
    counts: Counter[str] = Counter()
    started = time.perf_counter()
    with PredictionWriter(run.run_dir / PREDICTIONS_FILE) as writer, \
            tqdm(total=len(pending), unit="face", disable=not run.config.progress,
                 desc=_progress_label(run)) as bar:
        for n_samples, predictions in engine.batches(pending, todo):
            if run.perturbation is not None:
                for prediction in predictions:
                    prediction.perturbation = run.perturbation.name
                    prediction.level = run.perturbation.level
            writer.write_batch(predictions)
            counts.update(p.status for p in predictions)
            bar.update(n_samples)
    seconds = time.perf_counter() - started
    summary = _since(before, engine.summary())
    if summary:
        print(f"{run.entry.name} (this invocation): " + ", ".join(f"{k}={v}" for k, v in summary.items()))
        record.backend_summary = _accumulate(record.backend_summary, summary)
    totals = Counter(r["status"] for r in iter_records(run.run_dir / PREDICTIONS_FILE))
    record.update(status="complete", finished=now(), counts={
        "samples": len(run.samples), "resumed_skipped_pairs": len(done),
        "new_predictions": sum(counts.values()), **dict(totals)},
        timings={"seconds": round(seconds, 3),
                 "seconds_per_sample": round(seconds / max(1, len(pending)), 5)})
    write_run(run.run_dir, record)
    return dict(counts)


def _progress_label(run: _Run) -> str:
    """task/model, and in a perturbation sweep which perturbation and level this run is."""
    label = f"{run.task.name}/{run.entry.name}"
    if run.perturbation is None:
        return label
    return f"{label} {run.perturbation.name}={run.perturbation.level:g}"


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
