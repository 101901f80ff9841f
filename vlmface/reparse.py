"""`vlmface reparse RUN_DIR`: interpret every saved raw answer again, without asking any model.

The saved raw outputs (text, per-label scores) go through vlmface.interpret with the current
parser and the task's current synonyms and vocabulary (or those of `--task-spec`), and with the
templates the run used (their `options:` spellings). predictions.jsonl is rewritten atomically;
the previous file is kept as predictions.prev.jsonl; the run is re-scored. Records the step did
not make (errors, API refusals, a classifier's own labels) are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmface.backends.base import Question
from vlmface.errors import SpecError, VlmfaceError
from vlmface.interpret import interpret, reinterpretable
from vlmface.manifest import file_sha256, now
from vlmface.predictions import Prediction, read_records
from vlmface.prompts import PromptTemplate, load_template, load_template_file
from vlmface.run_lock import run_lock
from vlmface.run_record import PREDICTIONS_FILE, RUN_FILE, RunRecord, TemplateRecord, read_run, write_atomic, write_run
from vlmface.tasks import TaskSpec, load_task

PREVIOUS_FILE = "predictions.prev.jsonl"


@dataclass
class ReparseResult:
    run_dir: Path
    records: int
    reinterpreted: int
    changed: int  # label or status differs
    transitions: dict[str, int] = field(default_factory=dict)  # "invalid->ok" -> count
    metrics: dict[str, Any] | None = None


def _template(saved: TemplateRecord | None) -> PromptTemplate | None:
    """The template a run used: its file if still there, else the template of that name."""
    if not saved:
        return None
    path = Path(saved.path or "")
    try:
        return load_template_file(path) if path.is_file() else load_template(saved.name)
    except SpecError:
        return None  # the template is gone: only its `options:` spellings are lost


def _questions(task: TaskSpec, run: RunRecord, attributes: set[str]) -> dict[str, Question]:
    from vlmface.runner import question_for

    unknown = sorted(attributes - set(task.attributes))
    if unknown:
        raise VlmfaceError(f"{task.where} has no attribute(s) {unknown} that the run's predictions hold; "
                           "pass --task-spec with a spec that declares them")
    from vlmface.prompt_sets.spec import variant_from_record

    variant = variant_from_record(run.prompt_variant)  # its display names are answer spellings too
    questions = {a: question_for(task, a, _template(run.template(a))) for a in sorted(attributes)}
    return {a: variant.apply(q) for a, q in questions.items()} if variant else questions


def _task(run_dir: Path, run: RunRecord, task_spec: Path | None) -> TaskSpec:
    if task_spec is not None:
        return load_task(task_spec)
    if run.task_spec and Path(run.task_spec).is_file():
        return load_task(run.task_spec)
    if run.task:
        return load_task(run.task)
    raise VlmfaceError(f"{run_dir / RUN_FILE}: names no task spec; pass --task-spec PATH")


def reparse_predictions(records: list[dict[str, Any]], questions: dict[str, Question]) -> tuple[list[dict], int]:
    """The records with every answer the step made redone; and how many were redone."""
    out, redone = [], 0
    for record in records:
        answer = reinterpretable(record)
        if answer is None:
            out.append(record)
            continue
        redone += 1
        new = interpret(answer, questions[record["attribute"]])
        out.append({**record, "label": new.label, "status": new.status, "probs": new.probs,
                    "extra": new.extra, "scores": new.scores})
    return out, redone


def _lines(records: list[dict[str, Any]]) -> str:
    return "".join(Prediction(**r).to_json() + "\n" for r in records)


def reparse_run(run_dir: str | Path, task_spec: str | Path | None = None, score: bool = True) -> ReparseResult:
    """Re-interpret RUN_DIR's saved answers under its run lock; see the module docstring."""
    run_dir = Path(run_dir)
    with run_lock(run_dir, "reparse"):
        return _reparse(run_dir, Path(task_spec) if task_spec else None, score)


def _reparse(run_dir: Path, task_spec: Path | None, score: bool) -> ReparseResult:
    run = read_run(run_dir)
    if run is None:
        raise VlmfaceError(f"{run_dir}: no {RUN_FILE}; reparse needs a run directory written by `vlmface eval`")
    path = run_dir / PREDICTIONS_FILE
    records = read_records(path)
    task = _task(run_dir, run, task_spec)
    questions = _questions(task, run, {r["attribute"] for r in records})
    new, redone = reparse_predictions(records, questions)
    transitions: dict[str, int] = {}
    changed = 0
    for old, record in zip(records, new):
        if (old["label"], old["status"]) != (record["label"], record["status"]):
            changed += 1
            key = f"{old['status']}->{record['status']}"
            transitions[key] = transitions.get(key, 0) + 1
    write_atomic(run_dir / PREVIOUS_FILE, path.read_bytes())
    write_atomic(path, _lines(new))
    run.reparsed = {"at": now(), "task_spec": str(task.path), "changed": changed,
                       "task_spec_sha256": file_sha256(task.path) if task.path else None}
    write_run(run_dir, run)
    metrics = None
    if score:
        from vlmface.scoring import score_run

        metrics = score_run(run_dir)
    return ReparseResult(run_dir, len(records), redone, changed, transitions, metrics)
