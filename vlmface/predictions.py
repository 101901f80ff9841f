"""The predictions.jsonl contract between the runner and the scorer.

One JSON object per (sample, attribute). The runner appends and flushes a batch at a
time, so a crash can leave at most one truncated last line; readers ignore it (and the
runner redoes that sample on resume). Any other malformed line is an error that names
the file and line number: invalid JSON, bytes that are not UTF-8, a missing key, an
unknown status, NaN/Infinity in a label, truth or probability.

Error policy: a line with status "error" carries `error_kind`, "data" (the image cannot
be read or is refused as too large: left out of every metric) or "answer" (no face
found, an API failure after the last retry, a backend exception: the system's failure,
counted wrong in `accuracy`). A file written before `error_kind` existed has "error"
lines without it; those are read as "data", which is how they were scored before.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vlmface.errors import PredictionsError
from vlmface.run_record import OutputError

STATUSES = ("ok", "invalid", "refused", "error")
ERROR_KINDS = ("data", "answer")
LEGACY_ERROR_KIND = "data"  # an "error" line without error_kind (files from before the policy)
REQUIRED_KEYS = ("sample_id", "attribute", "label", "status", "groups", "truth")


@dataclass
class Prediction:
    sample_id: str
    attribute: str
    label: str | float | None
    status: str
    truth: str | float | None
    groups: dict[str, Any] = field(default_factory=dict)
    raw: str | None = None
    probs: dict[str, float] | None = None
    extra: dict[str, Any] | None = None
    perturbation: str | None = None  # image perturbation name (vlmface.perturb); absent when clean
    level: float | None = None  # its level; absent when clean
    scores: dict[str, float] | None = None  # raw per-label log-likelihoods (choice, zero-shot); absent otherwise
    error_kind: str | None = None  # with status "error": one of ERROR_KINDS; absent otherwise

    def to_json(self) -> str:
        record = asdict(self)
        for optional in ("extra", "perturbation", "level", "scores", "error_kind"):
            if record[optional] is None:
                del record[optional]
        return json.dumps(record, ensure_ascii=False, allow_nan=False)


def _finite(value: Any) -> bool:
    return not (isinstance(value, float) and not math.isfinite(value))


def _check_numbers(record: dict[str, Any], where: str) -> None:
    for key in ("label", "truth"):
        if not _finite(record[key]):
            raise PredictionsError(f"{where}: {key} is {record[key]!r} for sample {record['sample_id']!r}; "
                                   "a non-finite number cannot be scored: fix the line (or mark it status "
                                   "'invalid' with label null) and re-score")


def _check_probs(record: dict[str, Any], where: str) -> None:
    """On every line, not only those with a NaN/Infinity literal: a list, a text or a boolean would
    otherwise be read as no probabilities (the attribute silently loses calibration) or as 1.0."""
    probs = record.get("probs")
    if probs is None:
        return
    if not isinstance(probs, dict):
        raise PredictionsError(f"{where}: 'probs' must be an object of label -> probability or null")
    for label, value in probs.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise PredictionsError(f"{where}: probs[{label!r}] is {value!r} for sample "
                                   f"{record['sample_id']!r}; probabilities must be finite numbers: fix "
                                   "the line or set probs to null and re-score")


def _check_error_kind(record: dict[str, Any], where: str) -> None:
    kind = record.get("error_kind")
    if kind is None:
        return
    if record["status"] != "error":
        raise PredictionsError(f"{where}: error_kind {kind!r} on a line with status {record['status']!r}; "
                               "only status 'error' lines carry error_kind: remove it")
    if kind not in ERROR_KINDS:
        raise PredictionsError(f"{where}: unknown error_kind {kind!r}; expected one of "
                               f"{', '.join(ERROR_KINDS)}")


class _NonFinite:
    """json.loads hook: NaN / Infinity / -Infinity literals are noted (then label and truth are
    checked in detail); the common, all-finite line pays nothing for that check."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, name: str) -> float:
        self.seen = True
        return float(name)


def _check_record(record: Any, where: str, nonfinite: bool) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise PredictionsError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise PredictionsError(f"{where}: missing key(s) {', '.join(missing)}; every line needs "
                               f"{', '.join(REQUIRED_KEYS)}")
    for key in ("sample_id", "attribute"):
        value = record[key]
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
            raise PredictionsError(f"{where}: {key} is {value!r}; every line names its sample and attribute "
                                   "(a non-empty text, or an integer sample id): fix the line and re-score")
    if record["status"] not in STATUSES:
        raise PredictionsError(f"{where}: unknown status {record['status']!r}; "
                               f"expected one of {', '.join(STATUSES)}")
    if record["truth"] is None:
        raise PredictionsError(f"{where}: missing truth for sample {record['sample_id']!r}")
    if nonfinite:
        _check_numbers(record, where)
    _check_probs(record, where)
    if "error_kind" in record:
        _check_error_kind(record, where)
    if record["status"] == "ok" and record["label"] is None:
        raise PredictionsError(f"{where}: status 'ok' but label is null")
    if not isinstance(record["groups"], dict):
        raise PredictionsError(f"{where}: 'groups' must be an object of group column -> value")
    return record


class _Where:
    """`path:line`, formatted only when an error needs it."""

    def __init__(self, path: Path, number: int):
        self.path, self.number = path, number

    def __str__(self) -> str:
        return f"{self.path}:{self.number}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield validated records; a truncated last line (no trailing newline) is skipped."""
    path = Path(path)
    if not path.exists():
        raise PredictionsError(f"{path}: no predictions file; run `vlmface eval` first")
    hook = _NonFinite()
    decode = json.JSONDecoder(parse_constant=hook).decode  # one decoder: json.loads(..., hook) builds one per line
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PredictionsError(f"{path}:{number}: bytes that are not UTF-8 ({exc.reason} at byte "
                                       f"{exc.start}); predictions files are UTF-8: re-encode or delete "
                                       "that line and re-score") from None
            if not line.strip():
                continue
            hook.seen = False
            try:
                record = decode(line)
            except json.JSONDecodeError as exc:
                if not line.endswith("\n") and not handle.read(1):
                    return  # tolerated: a truncated last line, the run was killed mid-write
                raise PredictionsError(f"{path}:{number}: not valid JSON ({exc.msg}); "
                                       "fix or delete that line and re-score") from None
            yield _check_record(record, _Where(path, number), hook.seen)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    return list(iter_records(path))


class PredictionWriter:
    """Appends predictions, one write + fsync per batch, so finished work survives a kill. A batch
    that cannot be written (disk full, read-only) is cut off again, so the file stays whole lines,
    and the failure is an OutputError naming the file and the errno."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._drop_truncated_tail()
            self._handle = self.path.open("ab", buffering=0)  # unbuffered: nothing left to flush on close
        except OSError as exc:
            raise OutputError.from_os_error(exc, self.path) from None

    def _drop_truncated_tail(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        with self.path.open("r+b") as handle:
            handle.truncate(keep)

    def write_batch(self, predictions: Iterable[Prediction]) -> None:
        data = memoryview("".join(p.to_json() + "\n" for p in predictions).encode("utf-8"))
        if not data:
            return
        fd = self._handle.fileno()
        start = os.fstat(fd).st_size
        try:
            while data:
                data = data[self._handle.write(data):]
            os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass  # the next writer drops a truncated tail anyway
            raise OutputError.from_os_error(exc, self.path) from None

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
