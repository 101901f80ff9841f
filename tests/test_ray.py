"""--engine ray and --shard: the same predictions and metrics as one process, even when a
Ray worker is killed mid-run (baseline model, real UTKFace faces, local Ray on 2 cores)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from vlmface.merge import merge_runs
from vlmface.predictions import read_records
from vlmface.runner import EvalConfig, evaluate
from vlmface.scoring import score_run

from conftest import REPO_ROOT
from ray_sockets import ListeningSockets

pytest.importorskip("ray", reason="the ray engine needs `pip install 'vlmface[ray]'`")
psutil = pytest.importorskip("psutil")
# one Ray at a time under `pytest -n N` (make test): a local instance and a cluster started beside it
# would share the 2 cores and ray.init() could find the other one
pytestmark = pytest.mark.xdist_group("ray")

N_FACES = 160  # 10 batches of 16 over 2 actors: each answers several (equality needs no more faces)
KILLED_RUN_FACES = 200  # a worker is killed after 200 lines (50 faces): most batches are still to come


def _keyed(run_dir):
    return {(r["sample_id"], r["attribute"]): r for r in read_records(run_dir / "predictions.jsonl")}


def _metrics(run_dir):
    """Exactly: the scorer sorts records by (attribute, sample_id), so Ray's line order (not one
    process's) changes no bit of any metric."""
    return score_run(run_dir, n_boot=200)["attributes"]


@pytest.fixture(scope="module")
def single_process(utkface_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    return evaluate(EvalConfig(task="utkface", model="baseline", data_dir=utkface_dir, limit=N_FACES,
                               out=out, score=False, progress=False)).run_dir


@pytest.mark.slow
def test_ray_engine_equals_a_single_process(single_process, utkface_dir, tmp_path):
    # This process's local Ray: its session directory ends with our pid.
    sockets = ListeningSockets(rf"session_[0-9_-]+_{os.getpid()}\b", {os.getpid(): "driver"})
    sockets.start()
    result = evaluate(EvalConfig(task="utkface", model="baseline", data_dir=utkface_dir, limit=N_FACES,
                                 out=tmp_path, engine="ray", workers=2, score=False, progress=False))
    hosts = sockets.stop()
    assert _keyed(result.run_dir) == _keyed(single_process)
    assert _metrics(result.run_dir) == _metrics(single_process)
    assert set(hosts) == {"127.0.0.1"}, hosts  # the local instance listens on loopback only
    assert {"gcs_server", "raylet", "driver"} <= hosts["127.0.0.1"], hosts


@pytest.mark.slow
def test_shards_and_merge_equal_a_single_process(single_process, utkface_dir, tmp_path):
    shards = [evaluate(EvalConfig(task="utkface", model="baseline", data_dir=utkface_dir, limit=N_FACES,
                                  out=tmp_path, shard=(k, 3), score=False, progress=False)).run_dir
              for k in range(3)]
    merged = merge_runs(shards, tmp_path / "merged")
    assert _keyed(merged) == _keyed(single_process)
    assert _metrics(merged) == _metrics(single_process)


def _ray_actors() -> list:
    found = []
    for process in psutil.process_iter(["cmdline", "name"]):
        text = " ".join(process.info["cmdline"] or []) + (process.info["name"] or "")
        if "MapBatches(_BatchAnsweringActor)" in text:
            found.append(process)
    return found


@pytest.mark.slow
def test_a_killed_ray_worker_loses_and_doubles_nothing(utkface_dir, tmp_path):
    predictions = tmp_path / "utkface" / "baseline" / "none" / "predictions.jsonl"
    command = [sys.executable, "-m", "vlmface.cli", "eval", "--task", "utkface", "--model", "baseline",
               "--data-dir", str(utkface_dir), "--limit", str(KILLED_RUN_FACES), "--out", str(tmp_path),
               "--engine", "ray",
               "--workers", "2", "--batch-size", "16", "--no-score", "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    killed = None
    deadline = time.time() + 300
    while process.poll() is None and time.time() < deadline and killed is None:
        lines = predictions.read_bytes().count(b"\n") if predictions.exists() else 0
        actors = _ray_actors() if lines >= 200 else []  # scanning every process only once it is time
        if actors:
            killed = actors[0].pid
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.1)
    output = process.communicate(timeout=300)[0].decode(errors="replace")
    assert killed is not None, "no Ray worker was found to kill before the run ended"
    assert process.returncode == 0, output[-3000:]
    records = read_records(predictions)
    pairs = [(r["sample_id"], r["attribute"]) for r in records]
    assert len(pairs) == len(set(pairs)) == KILLED_RUN_FACES * 4
