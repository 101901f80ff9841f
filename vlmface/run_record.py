"""The one home of a run directory's file names, of the run record (run.json) and the metrics
record (metrics.json): their typed schema, reading and writing, and of the run identity.

A run directory holds RUN_FILE (what the run is and did: `RunRecord`), PREDICTIONS_FILE (one line
per sample x attribute) and, once scored, METRICS_FILE (`MetricsRecord`). Both records are typed
JSON objects that accept keys they do not declare (written by a newer or older vlmface) and write
back exactly the keys they hold, in their order, so JSON keys never change and a file read and
written again keeps its bytes. Every whole-file write goes through `write_atomic`:
temp file beside the target, fsync, rename; the temp file is removed if anything fails, so a kill,
a full disk or a read-only folder never leaves a half-written file or a stray `.tmp` behind.

`RunIdentity` is everything that changes the answers of a run; two runs with the same identity
give the same predictions. A rerun resumes only into a directory whose identity is equal, and a
refusal names every differing field (`RunIdentity.differences`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_serializer,
                      model_validator)

from vlmface.errors import PredictionsError, VlmfaceError

RUN_FILE = "run.json"
PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"

_UMASK = os.umask(0)
os.umask(_UMASK)


class OutputError(VlmfaceError):
    """A file of a run cannot be written (disk full, read-only folder...). The CLI exits with 1."""

    @classmethod
    def from_os_error(cls, exc: OSError, path: Path | str | None = None) -> OutputError:
        return cls(describe_os_error(exc, path))


def describe_os_error(exc: OSError, path: Path | str | None = None, verb: str = "cannot write",
                      use_filename: bool = True) -> str:
    """One line: the path, the errno name and the system's words, e.g.
    "cannot write out/run.json: ENOSPC (No space left on device)"."""
    where = exc.filename if use_filename and exc.filename is not None else path
    code = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno is not None else type(exc).__name__
    return f"{verb + ' ' + str(where) + ': ' if where is not None else ''}{code} ({exc.strerror or exc})"


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write-then-rename: readers see the old file or the new one, never half of one. Any OSError
    (disk full, read-only...) becomes an OutputError naming `path` and the errno."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError.from_os_error(exc, path) from None
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would make it (mkstemp makes 0600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(describe_os_error(exc, path, use_filename=False)) from None
        raise


def json_text(payload: Any) -> str:
    return json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n"


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    write_atomic(path, json_text(payload))


def write_run_status(run_dir: Path, record: RunRecord) -> bool:
    """Record a final status even on a full disk: atomically if possible, else by rewriting the
    existing run.json in place, but only within the bytes it already has (its blocks are allocated,
    so the write cannot fall short): indented if that fits, compact if that does. False (the old
    file left whole) if neither fits or the rewrite failed."""
    try:
        write_run(run_dir, record)
        return True
    except OutputError:
        pass
    path = Path(run_dir) / RUN_FILE
    try:
        room = path.stat().st_size
    except OSError:
        return False
    manifest = record.as_json()
    compact = json.dumps(manifest, ensure_ascii=False, default=str, separators=(",", ":")) + "\n"
    fitting = [text.encode("utf-8") for text in (json_text(manifest), compact)]
    fitting = [payload for payload in fitting if len(payload) <= room]
    if not fitting:
        return False
    try:
        with path.open("r+b") as handle:
            handle.write(fitting[0])
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())
        return True
    except OSError:
        return False


def canonical(value: Any) -> Any:
    """The JSON form of a value (tuples -> lists, paths -> strings), so records compare equal
    however they were built."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def short_hash(value: Any, length: int = 8) -> str:
    text = json.dumps(canonical(value), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


class Selection(BaseModel):
    """Which samples: the --limit draw (stratified by the group columns) and the shard of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int | None = None
    seed: int = 0
    shard: tuple[int, int] | None = None  # (K, N)


class RunIdentity(BaseModel):
    """Everything that changes answers. `backend` (the loaded backend's own identity(): weights
    hash, revision, resolved dtype...) is known only once the model is loaded: None before."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str
    task_spec_sha256: str | None
    source: str
    dataset_fingerprint: str
    selection: Selection
    model: dict[str, Any]  # the registry entry (alias, family, weights, revision, its options)
    options: dict[str, Any]  # every answer-changing option the backend declares, defaults filled in
    prompts: dict[str, str | None]  # attribute -> template sha256 (None: the backend uses no prompt)
    perturbation: dict[str, Any] | None = None
    prompt_variant: dict[str, Any] | None = None  # a prompt set's variant (vlmface.prompt_sets); None: plain
    backend: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        return canonical(self.model_dump())

    @classmethod
    def from_record(cls, record: Any) -> RunIdentity | None:
        """The identity stored in a run.json; None if it is missing or from an older format."""
        try:
            return cls.model_validate(record)
        except ValidationError:
            return None

    def differences(self, other: RunIdentity) -> list[str]:
        """Dotted names of every field that differs (e.g. options.temperature, selection.limit)."""
        return _diff(self.record(), other.record(), "")

    def without_backend(self) -> RunIdentity:
        return self.model_copy(update={"backend": None})


def _diff(a: Any, b: Any, prefix: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict) and prefix.count(".") < 2:
        found = []
        for key in sorted(set(a) | set(b)):
            found += _diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return found
    return [] if a == b else [prefix.rstrip(".")]


def identity_conflict(run_dir: Path, old: RunIdentity | None, new: RunIdentity) -> str | None:
    """None when a run with identity `new` may resume in run_dir, else the sentence saying why not."""
    if old is None:
        return (f"{run_dir} holds a run whose identity this version cannot read (made by an older "
                "vlmface). Pass --overwrite to replace it, or --out to write elsewhere")
    differing = old.differences(new)
    if not differing:
        return None
    shown = []
    old_record, new_record = old.record(), new.record()
    for name in differing:
        shown.append(f"{name} ({_short(_get(old_record, name))} -> {_short(_get(new_record, name))})")
    return (f"{run_dir} holds a different run (differs in: {', '.join(shown)}). "
            "Pass --overwrite to replace it, or --out to write elsewhere")


def _get(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


# ----- the run record (run.json) and the metrics record (metrics.json) ------------------------

class RunRecordError(PredictionsError):
    """run.json or metrics.json of a run cannot be read (not JSON, or a field of the wrong type)."""


class JsonRecord(BaseModel):
    """A JSON object with typed fields. Keys it does not declare are kept; it writes exactly the
    keys it was given or had assigned, in that order (a field never set is not written)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())
    _keys: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_keys(cls, data: Any, handler: Any) -> Any:
        record = handler(data)
        if isinstance(data, dict):
            record._keys = [str(key) for key in data]
        return record

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if not name.startswith("_") and name not in self._keys:
            self._keys.append(name)

    def update(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self, name, value)

    def has(self, name: str) -> bool:
        """Whether the file holds this key (a field left unset reads as its default)."""
        return name in self._keys

    @model_serializer(mode="wrap")
    def _written_keys(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        return {key: data[key] for key in self._keys if key in data}

    def as_json(self) -> dict[str, Any]:
        return self.model_dump()


class DeclaredAttribute(JsonRecord):
    """run.json `attributes.<name>`: what the task asked, for the scorer (kind, ordered labels)."""

    kind: str = "categorical"
    labels: list[Any] = []


class TemplateRecord(JsonRecord):
    """run.json `templates.<attribute>`: the prompt template used (text_sha256: the rendered text's)."""

    name: str | None = None
    path: str | None = None
    sha256: str | None = None
    text_sha256: str | None = None


class ShardRecord(JsonRecord):
    """run.json `shard`: shard `index` of `count`, and the samples it holds."""

    index: int
    count: int
    sample_ids: list[str] = []


class RunRecord(JsonRecord):
    """run.json: what a run is (`identity`, the RunIdentity record) and what it did. Fields in the
    order the runner writes them; every field is optional so that older files still read."""

    identity: dict[str, Any] | None = None
    task: str | None = None
    task_spec: str | None = None
    task_spec_sha256: str | None = None
    source: str | None = None
    data_location: str | None = None
    dataset_fingerprint: str | None = None
    n_available: int | None = None
    n_selected: int | None = None
    shard: ShardRecord | None = None
    skipped_items: dict[str, Any] | None = None
    seed: int | None = None
    limit: int | None = None
    model: str | None = None
    model_entry: dict[str, Any] | None = None
    backend: str | None = None
    model_identity: dict[str, Any] | None = None
    engine: str | None = None
    cluster: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    prompt: str | None = None
    split: str | None = None
    prompt_style: str | None = None
    templates: dict[str, TemplateRecord | None] | None = None
    attributes: dict[str, DeclaredAttribute] | None = None
    unsupported_attributes: dict[str, Any] | None = None
    unavailable_attributes: dict[str, Any] | None = None
    group_columns: list[str] | None = None
    backend_setup: dict[str, Any] | None = None
    versions: dict[str, Any] | None = None
    perturbation: dict[str, Any] | None = None  # vlmface.perturb's describe(); None: clean images
    prompt_variant: dict[str, Any] | None = None  # vlmface.prompt_sets' variant; None: plain prompts
    started: str | None = None
    backend_summary: dict[str, Any] | None = None
    status: str | None = None  # running, complete, interrupted, failed
    updated: str | None = None
    finished: str | None = None
    error: str | None = None
    counts: dict[str, int] | None = None
    timings: dict[str, int | float | None] | None = None  # (int | float: an int stays an int)
    reparsed: dict[str, Any] | None = None  # set by `vlmface reparse`
    merged: str | None = None  # set by `vlmface merge`, with merged_from and shard_seconds
    merged_from: list[str] | None = None
    shard_seconds: list[int | float | None] | None = None

    def run_identity(self) -> RunIdentity | None:
        """The identity stored here; None if missing or from an older format."""
        return RunIdentity.from_record(self.identity)

    def answer_options(self) -> dict[str, Any]:
        """The answer-changing options (from the identity; older runs: every option given)."""
        return (self.identity or {}).get("options") or self.options or {}

    def template(self, attribute: str) -> TemplateRecord | None:
        return (self.templates or {}).get(attribute)

    def declared(self, attribute: str) -> DeclaredAttribute | None:
        return (self.attributes or {}).get(attribute)


class AttributeMetrics(JsonRecord):
    """metrics.json `attributes.<name>`: the metric families' keys of one attribute."""

    kind: str = "categorical"
    labels: list[Any] = []
    kind_inferred: bool = False
    overall: dict[str, Any] = {}
    by_group: dict[str, dict[str, dict[str, Any]]] = {}  # grouping -> group value -> keys
    disparity: dict[str, dict[str, Any]] = {}  # grouping -> gap keys
    metric_families: list[str] = []


class ScoringRecord(JsonRecord):
    """metrics.json `scoring`: the ScoreSettings of the pass, run_json_found and group_columns."""

    answered_only: bool | None = None
    run_json_found: bool | None = None
    group_columns: list[str] = []


class MetricsRecord(JsonRecord):
    """metrics.json: per attribute its metrics, the run record it scored, the scoring settings."""

    attributes: dict[str, AttributeMetrics]
    run: RunRecord = Field(default_factory=RunRecord)
    scoring: ScoringRecord = Field(default_factory=ScoringRecord)


def _read_object(path: Path, what: str) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunRecordError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunRecordError(f"{path}: unreadable ({exc}); {what}") from None
    if not isinstance(content, dict):
        raise RunRecordError(f"{path}: expected a JSON object, got {type(content).__name__}; {what}")
    return content


def _validated(model: type[JsonRecord], content: dict[str, Any], path: Path, what: str) -> Any:
    try:
        return model.model_validate(content)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise RunRecordError(f"{path}: {where}: {error['msg']}; {what}") from None


_RUN_FIX = ("restore it, delete it (the scorer then infers attribute kinds) or rerun with "
            "`vlmface eval --overwrite`")


def read_run(run_dir: Path) -> RunRecord | None:
    """RUN_DIR/run.json, or None when the directory has none."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        return None
    return _validated(RunRecord, _read_object(path, _RUN_FIX), path, _RUN_FIX)


def write_run(run_dir: Path, record: RunRecord) -> None:
    write_json_atomic(Path(run_dir) / RUN_FILE, record.as_json())


def strict_json_text(content: dict[str, Any]) -> str:
    """Strict JSON (undefined numbers must already be null), as `vlmface score` writes metrics.json."""
    return json.dumps(content, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def read_metrics(run_dir: Path) -> MetricsRecord:
    """RUN_DIR/metrics.json (RunRecordError if missing, unreadable or not written by the scorer)."""
    path = Path(run_dir) / METRICS_FILE
    what = f"rescore with `vlmface score {Path(run_dir)}`"
    content = _read_object(path, what)
    if not isinstance(content.get("attributes"), dict):
        raise RunRecordError(f"{path}: no `attributes` (not written by `vlmface score`); {what}")
    return _validated(MetricsRecord, content, path, what)


def write_metrics(run_dir: Path, metrics: MetricsRecord) -> None:
    write_atomic(Path(run_dir) / METRICS_FILE, strict_json_text(metrics.as_json()))
