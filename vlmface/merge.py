"""`vlmface merge`: shard runs -> one run directory, checked to cover every sample once."""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path
from typing import Any

from vlmface.errors import VlmfaceError
from vlmface.manifest import now
from vlmface.predictions import Prediction, iter_records
from vlmface.run_lock import run_lock
from vlmface.run_record import (PREDICTIONS_FILE, RUN_FILE, RunIdentity, RunRecord, read_run, write_atomic,
                                write_run)


def _shard_record(run_dir: Path) -> RunRecord:
    record = read_run(run_dir)
    if record is None:
        raise VlmfaceError(f"{run_dir}: no {RUN_FILE}; pass the run directories that `vlmface eval --shard` made")
    if not record.shard:
        raise VlmfaceError(f"{run_dir}: not a shard run (it was made without --shard)")
    return record


def _check_shards(run_dirs: list[Path], manifests: list[RunRecord]) -> None:
    counts = {m.shard.count for m in manifests}
    if len(counts) != 1:
        raise VlmfaceError(f"shards come from different splits (N = {sorted(counts)})")
    count = counts.pop()
    seen = Counter(m.shard.index for m in manifests)
    missing = sorted(set(range(count)) - set(seen))
    doubled = sorted(index for index, n in seen.items() if n > 1)
    if missing or doubled:
        raise VlmfaceError(f"shards of N = {count}: missing {missing or 'none'}, given twice {doubled or 'none'}")
    base = _unsharded(run_dirs[0], manifests[0])
    for run_dir, manifest in zip(run_dirs, manifests):
        differing = base.differences(_unsharded(run_dir, manifest))
        if differing:
            raise VlmfaceError(f"{run_dir} is a shard of a different run (differs in: {', '.join(differing)})")


def _unsharded(run_dir: Path, manifest: RunRecord) -> RunIdentity:
    identity = manifest.run_identity()
    if identity is None:
        raise VlmfaceError(f"{run_dir}/{RUN_FILE}: no run identity this version can read (made by an older "
                           "vlmface?); rerun that shard")
    return identity.model_copy(update={"selection": identity.selection.model_copy(update={"shard": None})})


def _collect(run_dirs: list[Path], manifests: list[RunRecord]) -> list[dict[str, Any]]:
    attributes = list(manifests[0].attributes or {})
    owner: dict[str, Path] = {}
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    for run_dir, manifest in zip(run_dirs, manifests):
        for sample_id in manifest.shard.sample_ids:
            if sample_id in owner:
                problems.append(f"sample {sample_id!r} is assigned to both {owner[sample_id]} and {run_dir}")
            owner[sample_id] = run_dir
        found = Counter()
        for record in iter_records(run_dir / PREDICTIONS_FILE):
            if owner.get(record["sample_id"]) != run_dir:
                problems.append(f"{run_dir}: sample {record['sample_id']!r} does not belong to this shard")
            found[(record["sample_id"], record["attribute"])] += 1
            records.append(record)
        problems += [f"{run_dir}: sample {sid!r} has {n} predictions for {attr!r}"
                     for (sid, attr), n in found.items() if n > 1]
        unfinished = sorted({sid for sid in manifest.shard.sample_ids
                             for attr in attributes if (sid, attr) not in found})
        if unfinished:
            problems.append(f"{run_dir}: {len(unfinished)} sample(s) not finished, e.g. {unfinished[:5]}; "
                            "rerun that shard's command to complete it")
    if problems:
        raise VlmfaceError("cannot merge:\n  " + "\n  ".join(problems[:20]))
    if len(owner) != manifests[0].n_selected:
        raise VlmfaceError(f"the shards hold {len(owner)} samples but the run selected "
                           f"{manifests[0].n_selected}")
    order = {sid: i for i, sid in enumerate(sorted(owner))}
    attribute_order = {a: i for i, a in enumerate(attributes)}
    return sorted(records, key=lambda r: (order[r["sample_id"]], attribute_order.get(r["attribute"], 0)))


def merge_runs(run_dirs: list[Path], out: Path) -> Path:
    """Check that the shards cover every selected sample exactly once, then write one run. Every
    shard and the merged directory are locked meanwhile."""
    run_dirs, out = [Path(d) for d in run_dirs], Path(out)
    with contextlib.ExitStack() as locks:
        for run_dir in run_dirs:
            if run_dir.is_dir():
                locks.enter_context(run_lock(run_dir, "merge"))
        manifests = [_shard_record(d) for d in run_dirs]
        _check_shards(run_dirs, manifests)
        records = _collect(run_dirs, manifests)
        if (out / PREDICTIONS_FILE).exists():
            raise VlmfaceError(f"{out} already holds predictions; merge into a new directory")
        locks.enter_context(run_lock(out, "merge", create=True))
        merged = RunRecord.model_validate({k: v for k, v in manifests[0].as_json().items()
                                           if k not in ("shard", "counts", "timings")})
        merged.update(identity=_unsharded(run_dirs[0], manifests[0]).record(), status="complete",
                      merged=now(), merged_from=[str(d) for d in run_dirs],
                      counts=dict(Counter(r["status"] for r in records)),
                      shard_seconds=[(m.timings or {}).get("seconds") for m in manifests])
        write_atomic(out / PREDICTIONS_FILE, "".join(Prediction(**r).to_json() + "\n" for r in records))
        write_run(out, merged)
    return out
