"""One command at a time per run directory (eval, score, merge, reparse).

`with run_lock(run_dir, "eval"):` holds an exclusive lock on RUN_DIR/LOCK_FILE for the block. The
lock is an OS file lock (flock), so it ends with its process however that process ends (even
SIGKILL); the file also records pid, host, command and start time, for the refusal message and
for the note when a later command finds the record of a holder that is gone. A second command
on a locked run raises RunInProgress and touches nothing. The lock is re-entrant within one
process (eval scores its run while holding it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from vlmface.errors import VlmfaceError

LOCK_FILE = ".vlmface.lock"

_held: dict[Path, int] = {}  # run dirs locked by this process -> nesting depth


class RunInProgress(VlmfaceError):
    """Another command holds the run directory."""


def _holder(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid', '?')} since {holder.get('since', '?')}"
            + (f" on {holder['host']}" if holder.get("host") not in (None, socket.gethostname()) else "")
            + (f", `vlmface {holder['command']}`" if holder.get("command") else ""))


def _acquire(path: Path, command: str) -> int:
    """An fd holding the lock on `path`, or RunInProgress."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunInProgress(f"{path.parent}: run in progress ({_describe(holder)}); wait for it to "
                                "finish, or stop that process first") from None
        except BaseException:
            os.close(fd)
            raise
        try:  # the file may have been removed by the holder we waited on: lock the one now there
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    stale = _holder(fd)
    if stale.get("pid"):
        print(f"note: {path.parent}: taking over the lock left by {_describe(stale)}, which is no longer "
              "running", file=sys.stderr)
    from vlmface.manifest import now

    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                         "since": now()})
    os.ftruncate(fd, 0)
    os.pwrite(fd, record.encode("utf-8"), 0)
    return fd


@contextlib.contextmanager
def run_lock(run_dir: Path, command: str, *, create: bool = False) -> Iterator[Path]:
    """Hold RUN_DIR's lock for the block. `create`: make the directory if it is missing (eval,
    merge); otherwise a missing directory is an error naming it."""
    run_dir = Path(run_dir)
    if create:
        run_dir.mkdir(parents=True, exist_ok=True)
    elif not run_dir.is_dir():
        raise VlmfaceError(f"{run_dir}: no such run directory")
    key = run_dir.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield run_dir
        finally:
            _held[key] -= 1
        return
    path = run_dir / LOCK_FILE
    fd = _acquire(path, command)
    _held[key] = 1
    try:
        yield run_dir
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
        if create:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only if the command left it empty (it failed before writing)
