"""The one home of a run directory's file names, of run.json (read/write) and of the run identity.

A run directory holds RUN_FILE (what the run is and did), PREDICTIONS_FILE (one line per sample x
attribute) and, once scored, METRICS_FILE. Every whole-file write goes through `write_atomic`:
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

from pydantic import BaseModel, ConfigDict, ValidationError

from vlmface.errors import VlmfaceError

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


def read_run(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VlmfaceError(f"{path}: not a readable run record ({exc}); restore it or pass --overwrite") from None


def write_run(run_dir: Path, manifest: dict[str, Any]) -> None:
    write_json_atomic(Path(run_dir) / RUN_FILE, manifest)


def write_run_status(run_dir: Path, manifest: dict[str, Any]) -> bool:
    """Record a final status even on a full disk: atomically if possible, else by rewriting the
    existing run.json in place, but only within the bytes it already has (its blocks are allocated,
    so the write cannot fall short): indented if that fits, compact if that does. False (the old
    file left whole) if neither fits or the rewrite failed."""
    try:
        write_run(run_dir, manifest)
        return True
    except OutputError:
        pass
    path = Path(run_dir) / RUN_FILE
    try:
        room = path.stat().st_size
    except OSError:
        return False
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
