"""--ray-address: joining an existing Ray cluster started with `ray start --head`, token
authentication on, everything bound to 127.0.0.1 (baseline model, 600 real UTKFace faces).

One head per module, in its own temp dir; it is stopped by stopping only the processes of that
temp dir (`ray stop` would stop every Ray instance on the machine, other users' included)."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from vlmface.predictions import read_records
from vlmface.run_record import RUN_FILE
from vlmface.runner import EvalConfig, evaluate

from conftest import REPO_ROOT
from ray_sockets import ListeningSockets, processes_matching

pytest.importorskip("ray", reason="the ray engine needs `pip install 'vlmface[ray]'`")
psutil = pytest.importorskip("psutil")
# one Ray at a time under `pytest -n N` (make test): a local instance and a cluster started beside it
# would share the 2 cores and ray.init() could find the other one
pytestmark = pytest.mark.xdist_group("ray")

N_FACES = 120  # 8 batches of 16 on the cluster's actor
RAY = str(Path(sys.executable).with_name("ray"))
RAY_VARIABLES = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RAY_VARIABLES}
    return env | {"PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"} | extra


def _stop(temp_dir: str) -> None:
    """`ray stop` for this cluster only: its processes are the ones naming its temp dir."""
    processes = processes_matching(re.escape(temp_dir))
    for process in processes:
        with_suppressed(process.terminate)
    _, alive = psutil.wait_procs(processes, timeout=3)  # a test cluster: no state worth a longer wait
    for process in alive:
        with_suppressed(process.kill)


def with_suppressed(action) -> None:
    try:
        action()
    except psutil.Error:
        pass


class Head:
    def __init__(self, temp_dir: str, port: int, token_file: Path):
        self.temp_dir, self.port, self.token_file = temp_dir, port, token_file
        self.address = f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def head():
    temp_dir = tempfile.mkdtemp(prefix="vlmray", dir="/tmp")  # short: Ray's socket paths have a length limit
    token_file = Path(temp_dir) / "token"
    token_file.write_text(secrets.token_hex(16))
    port = _free_port()
    env = _clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file),
                     RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")  # Ray's switch for "this node is 127.0.0.1"
    started = subprocess.run(
        [RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
         "--num-gpus", "0", "--include-dashboard", "false", "--dashboard-host", "127.0.0.1",
         "--temp-dir", temp_dir, "--disable-usage-stats"],
        env=env, capture_output=True, text=True, timeout=180)
    try:
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        yield Head(temp_dir, port, token_file)
    finally:
        _stop(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _eval_command(utkface_dir: Path, out: Path, address: str) -> list[str]:
    return [sys.executable, "-m", "vlmface.cli", "eval", "--task", "utkface", "--model", "baseline",
            "--data-dir", str(utkface_dir), "--limit", str(N_FACES), "--out", str(out),
            "--engine", "ray", "--ray-address", address, "--no-score", "--no-progress"]


def _keyed(run_dir: Path) -> dict:
    return {(r["sample_id"], r["attribute"]): r for r in read_records(run_dir / "predictions.jsonl")}


@pytest.mark.slow
def test_a_run_on_a_token_cluster_equals_a_local_run(head, utkface_dir, tmp_path):
    local = evaluate(EvalConfig(task="utkface", model="baseline", data_dir=utkface_dir, limit=N_FACES,
                                out=tmp_path / "local", score=False, progress=False)).run_dir
    sockets = ListeningSockets(re.escape(head.temp_dir))
    # The token only in the file named by RAY_AUTH_TOKEN_PATH; RAY_AUTH_MODE left unset.
    process = subprocess.Popen(_eval_command(utkface_dir, tmp_path / "ray", head.address), cwd=REPO_ROOT,
                               env=_clean_env(RAY_AUTH_TOKEN_PATH=str(head.token_file)),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sockets.pids[process.pid] = "driver"
    sockets.start()
    output = process.communicate(timeout=600)[0]
    hosts = sockets.stop()
    assert process.returncode == 0, output[-3000:]
    run_dir = tmp_path / "ray" / "utkface" / "baseline" / "none"
    assert _keyed(run_dir) == _keyed(local)
    # Loopback only: every listening socket of the head's processes and of the driver.
    assert set(hosts) == {"127.0.0.1"}, hosts
    assert {"gcs_server", "raylet", "driver"} <= hosts["127.0.0.1"], hosts
    # The cluster in run.json, without its address or token.
    record_text = (run_dir / RUN_FILE).read_text()
    cluster = json.loads(record_text)["cluster"]
    assert cluster["nodes"] == 1 and cluster["node_resources"] == [{"cpus": 2.0, "gpus": 0.0}]
    assert cluster["ray_version"] and cluster["actors"] >= 1
    assert head.token_file.read_text() not in record_text and str(head.port) not in record_text
    # A quiet console: no Ray log lines, no deprecation warnings.
    assert not re.search(r"\b(INFO|WARNING|DeprecationWarning)\b|Traceback", output), output[-3000:]


@pytest.mark.slow
def test_a_wrong_token_is_one_clear_line(head, utkface_dir, tmp_path):
    started = time.monotonic()
    result = subprocess.run(_eval_command(utkface_dir, tmp_path, head.address), cwd=REPO_ROOT,
                            env=_clean_env(RAY_AUTH_TOKEN="not-the-token"), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: the Ray cluster at {head.address} refused the authentication token (missing "
                     "or wrong): set RAY_AUTH_TOKEN to the cluster's token, point RAY_AUTH_TOKEN_PATH at a "
                     "file holding it, or put it in ~/.ray/auth_token (`ray get-auth-token` on the head "
                     "prints it)"], result.stderr[-3000:]
    assert "not-the-token" not in result.stdout + result.stderr
    assert time.monotonic() - started < 120  # Ray's own retry loop alone takes 20 s and then a traceback


def test_an_unreachable_address_is_one_line_in_bounded_time(utkface_dir, tmp_path):
    port = _free_port()  # nothing listens there
    result = subprocess.run(_eval_command(utkface_dir, tmp_path, f"127.0.0.1:{port}"), cwd=REPO_ROOT,
                            env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"error: no Ray cluster answers at 127.0.0.1:{port} within 5 s (Connection refused); start one "
        "with `ray start --head` or fix --ray-address / RAY_ADDRESS"], result.stderr[-3000:]
