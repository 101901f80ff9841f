"""Run integrity (issue 13, part A): a run directory is always what it says it is.

Each test is one case of the issue, on real UTKFace faces: the identity of a run (declared
backend options, whole-identity resume check), the per-run lock, path containment and
--overwrite, write faults (disk full, read-only), and the API's 401 message.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import ClassVar

import pytest

from vlmface import registry
from vlmface.backends.base import Option
from vlmface.cli import main
from vlmface.errors import BackendError, SpecError, VlmfaceError
from vlmface.predictions import read_records
from vlmface.run_lock import LOCK_FILE, RunInProgress, run_lock
import vlmface.run_record
from vlmface.run_record import OutputError, RunIdentity, RunRecord, json_text, write_atomic, write_run_status
from vlmface.runner import EvalConfig, evaluate

from chat_server import ChatServer, fake_key
from conftest import REPO_ROOT
from fake_backends import FakeBackend


class VersionedBackend(FakeBackend):
    """The fake model with one answer-changing option and weights whose hash a test can change."""

    options_schema: ClassVar = {"temperature": Option(float, 0.0, True, "sampling temperature"),
                                "verbose": Option(bool, False, False, "log more")}
    weights_sha256: ClassVar[str] = "a" * 64

    def identity(self):
        return {"backend": "versioned", "weights": self.entry.weights, "weights_sha256": self.weights_sha256}


@pytest.fixture
def versioned(monkeypatch, fake_backend):
    monkeypatch.setitem(registry.BACKEND_FAMILIES, "versioned", ("test_run_integrity:VersionedBackend", "dev"))
    monkeypatch.setattr(VersionedBackend, "weights_sha256", "a" * 64)
    return VersionedBackend


def _config(utkface_dir: Path, out: Path, **overrides) -> EvalConfig:
    settings = dict(task="utkface", model="versioned:w", data_dir=utkface_dir, out=out, limit=12,
                    attributes=["gender"], score=False, progress=False)
    return EvalConfig(**{**settings, **overrides})


def _eval_argv(utkface_dir: Path, out: Path, *extra: str, limit: int = 12) -> list[str]:
    return ["eval", "--task", "utkface", "--model", "baseline", "--data-dir", str(utkface_dir),
            "--limit", str(limit), "--out", str(out), "--no-score", "--no-progress", *extra]


def _pairs(run_dir: Path) -> Counter:
    return Counter((r["sample_id"], r["attribute"]) for r in read_records(run_dir / "predictions.jsonl"))


# ----- identity ------------------------------------------------------------------------------

def test_an_unknown_option_is_refused_naming_it_and_the_valid_ones(utkface_dir, tmp_path, capsys):
    assert main(_eval_argv(utkface_dir, tmp_path, "--option", "typo_option=1")) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --option: the baseline backend has no option 'typo_option'; "
                            "its options are: batch_size, cache_dir, device")
    assert error.count("\n") == 1 and not any(tmp_path.iterdir())  # nothing was created


def test_an_option_of_the_wrong_type_is_refused(versioned, utkface_dir, tmp_path):
    with pytest.raises(BackendError, match=r"temperature='hot'.*valid number"):
        evaluate(_config(utkface_dir, tmp_path, options={"temperature": "hot"}))
    assert versioned.instances == []


def test_registry_entries_declare_only_known_options():
    for name, entry in registry.load_registry().items():
        registry.backend_class(entry.backend).resolve_options(entry)  # raises on an undeclared key


@pytest.mark.parametrize("value, problem", [
    ("&a [x, x]", "anchors and aliases"),
    ("{a: &x [1, 2], b: *x}", "anchors and aliases"),
    ("[" + ", ".join(["1"] * 100) + "]", "too large a value (100 items"),
    ("[[[[1]]]]", "4 levels deep"),
    ("x" * 3000, "value of 3000 characters"),
])
def test_option_values_are_plain_and_small(value, problem, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["eval", "--task", "utkface", "--model", "baseline", "--option", f"request_params={value}"])
    assert exited.value.code == 2 and problem in capsys.readouterr().err


def test_the_api_temperature_gets_its_own_run_directory(utkface_dir, tmp_path, monkeypatch):
    """Before: `--option temperature=1.0` resumed into the default run (0 new predictions) and left
    run.json saying 1.0 over answers made at 0.0."""
    key = fake_key()
    monkeypatch.setenv("VLMFACE_TEST_KEY", key)
    with ChatServer(key=key) as server:
        def run(**options):
            return evaluate(EvalConfig(task="utkface", model="api:test-model", data_dir=utkface_dir, limit=6,
                                       out=tmp_path, attributes=["gender"], score=False, progress=False,
                                       cache_dir=False, options={"base_url": server.url, "concurrency": 2,
                                                                 "api_key_env": "VLMFACE_TEST_KEY", **options}))
        default = run()
        sent = server.requests
        hot = run(temperature=1.0)
        assert server.requests - sent == 6  # the answers at 1.0 were asked for, not taken from the 0.0 run
    assert hot.run_dir != default.run_dir and hot.counts == {"ok": 6}
    assert hot.run_dir.name.startswith("default__") and "temperature-1.0" in hot.run_dir.name
    first, second = (json.loads((r.run_dir / "run.json").read_text()) for r in (default, hot))
    assert first["identity"]["options"]["temperature"] == 0.0 and second["identity"]["options"]["temperature"] == 1.0
    assert first["identity"]["backend"]["temperature"] == 0.0
    assert key not in json.dumps(first) + json.dumps(second)


def test_non_default_options_make_the_directory_name_and_plain_ones_stay_readable(versioned, utkface_dir, tmp_path):
    default = evaluate(_config(utkface_dir, tmp_path))
    assert default.run_dir.name == "default__attrs-gender"
    same = evaluate(_config(utkface_dir, tmp_path, options={"temperature": 0, "verbose": True}))
    assert same.run_dir == default.run_dir and same.counts == {}  # the default value, and a non-answer option
    hot = evaluate(_config(utkface_dir, tmp_path, options={"temperature": 0.7}))
    assert hot.run_dir.name == "default__temperature-0.7__attrs-gender"


def test_resume_compares_the_whole_identity_and_names_every_difference(versioned, utkface_dir, tmp_path):
    first = evaluate(_config(utkface_dir, tmp_path))
    before = (first.run_dir / "predictions.jsonl").read_bytes()
    with pytest.raises(VlmfaceError, match=r"differs in: selection\.limit \(12 -> 20\), selection\.seed \(0 -> 3\)"):
        evaluate(_config(utkface_dir, tmp_path, limit=20, seed=3))
    assert versioned.instances[1:] == []  # refused before the model was loaded
    assert (first.run_dir / "predictions.jsonl").read_bytes() == before


def test_a_changed_backend_identity_is_refused_before_anything_is_written(versioned, utkface_dir, tmp_path):
    """Before: the backend's identity() was stored but never compared."""
    first = evaluate(_config(utkface_dir, tmp_path, limit=6))
    evaluate(_config(utkface_dir, tmp_path, limit=6))  # the same weights: resumes (nothing left to do)
    run_json = (first.run_dir / "run.json").read_bytes()
    versioned.weights_sha256 = "b" * 64
    with pytest.raises(VlmfaceError, match=r"differs in: backend\.weights_sha256 \(\"a+\.\.\. -> \"b+\.\.\.\)"):
        evaluate(_config(utkface_dir, tmp_path, limit=6))
    assert (first.run_dir / "run.json").read_bytes() == run_json


def test_identity_records_round_trip(versioned, utkface_dir, tmp_path):
    result = evaluate(_config(utkface_dir, tmp_path, limit=4))
    record = json.loads((result.run_dir / "run.json").read_text())["identity"]
    identity = RunIdentity.from_record(record)
    assert identity is not None and identity.differences(identity) == []
    assert identity.selection.limit == 4 and identity.options == {"temperature": 0.0}
    assert identity.backend["weights_sha256"] == "a" * 64 and set(identity.prompts) == {"gender"}


# ----- concurrency ---------------------------------------------------------------------------

def test_two_identical_evals_started_together_one_runs_one_refuses(utkface_dir, tmp_path):
    """Before: both wrote every prediction, so both failed, and so did every rerun."""
    argv = [sys.executable, "-m", "vlmface.cli", *_eval_argv(utkface_dir, tmp_path, "--batch-size", "4", limit=60)]
    processes = [subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outcomes = sorted((p.wait(timeout=300), p.stderr.read()) for p in processes)
    (ran, _), (refused, message) = outcomes
    assert (ran, refused) == (0, 2), outcomes
    assert "run in progress (pid " in message and " since 20" in message and "Traceback" not in message
    pairs = _pairs(tmp_path / "utkface" / "baseline" / "none")
    assert len(pairs) == 60 * 4 and set(pairs.values()) == {1}  # every prediction once
    assert not (tmp_path / "utkface" / "baseline" / "none" / LOCK_FILE).exists()


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    code = ("import sys, time; from pathlib import Path; from vlmface.run_lock import run_lock\n"
            "with run_lock(Path(sys.argv[1]), 'eval', create=True):\n"
            "    print('held', flush=True); time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_score_refuses_a_locked_run_and_a_sigkilled_holder_is_taken_over(tmp_path, capsys):
    run_dir = tmp_path / "run"
    holder = _hold_lock(run_dir)
    try:
        with pytest.raises(RunInProgress, match=rf"run in progress \(pid {holder.pid} since "):
            with run_lock(run_dir, "score"):
                pass
        assert main(["score", str(run_dir)]) == 2
        assert f"run in progress (pid {holder.pid} since" in capsys.readouterr().err
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (run_dir / LOCK_FILE).exists()  # what a SIGKILL leaves
    with run_lock(run_dir, "eval"):
        assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"taking over the lock left by pid {holder.pid}" in capsys.readouterr().err
    assert not (run_dir / LOCK_FILE).exists()


def test_merge_refuses_while_a_shard_is_locked(fake_backend, utkface_dir, tmp_path):
    from vlmface.merge import merge_runs

    shards = [evaluate(_config(utkface_dir, tmp_path, model="fake:none", shard=(k, 2))).run_dir for k in range(2)]
    holder = _hold_lock(shards[1])
    try:
        with pytest.raises(RunInProgress, match=rf"run in progress \(pid {holder.pid} since "):
            merge_runs(shards, tmp_path / "merged")
        assert not (tmp_path / "merged").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    merged = merge_runs(shards, tmp_path / "merged")
    assert len(_pairs(merged)) == 12 and json.loads((merged / "run.json").read_text())["identity"]["selection"]["shard"] is None


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with run_lock(tmp_path, "eval"):
        with run_lock(tmp_path, "score"):
            assert (tmp_path / LOCK_FILE).exists()
        assert (tmp_path / LOCK_FILE).exists()
    assert not (tmp_path / LOCK_FILE).exists()


# ----- containment ---------------------------------------------------------------------------

def test_unknown_and_dot_prompt_names_are_refused_for_the_baseline(utkface_dir, tmp_path, capsys):
    """Before: `--prompt ..` put the baseline's run in out/utkface/ (and --overwrite deleted it)."""
    sibling = tmp_path / "utkface" / "baseline" / "none"
    assert main(_eval_argv(utkface_dir, tmp_path, limit=4)) == 0
    for name in ("..", "typo"):
        assert main(_eval_argv(utkface_dir, tmp_path, "--prompt", name, "--overwrite", limit=4)) == 2
        assert f"unknown prompt template '{name}'" in capsys.readouterr().err
    assert (sibling / "run.json").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["utkface"]


def test_a_template_or_task_named_dots_cannot_name_a_directory(fake_backend, utkface_dir, tmp_path):
    template = tmp_path / "prompts" / "..jinja"
    template.parent.mkdir()
    template.write_text("{{ attribute }}?")
    with pytest.raises(SpecError, match=r"prompt '\.' cannot name a run directory"):
        evaluate(_config(utkface_dir, tmp_path / "out", model="fake:none", prompt=str(template)))
    spec = (REPO_ROOT / "tasks" / "utkface.yaml").read_text()
    task = tmp_path / "dots.yaml"
    task.write_text(spec.replace("name: utkface", 'name: ".."', 1))
    assert 'name: ".."' in task.read_text()
    with pytest.raises(SpecError, match=r"task '\.\.' cannot name a run directory"):
        evaluate(_config(utkface_dir, tmp_path / "out", model="fake:none", task=task))
    assert not (tmp_path / "out").exists() and fake_backend.instances == []


def test_a_run_dir_behind_a_symlink_out_of_out_is_refused(fake_backend, utkface_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "utkface").symlink_to(elsewhere)
    with pytest.raises(VlmfaceError, match="outside --out"):
        evaluate(_config(utkface_dir, tmp_path / "out", model="fake:none"))
    assert not any(elsewhere.iterdir())


def test_overwrite_removes_exactly_its_run_and_only_a_vlmface_run(fake_backend, utkface_dir, tmp_path):
    kept = evaluate(_config(utkface_dir, tmp_path, model="fake:none", attributes=["age"]))
    replaced = evaluate(_config(utkface_dir, tmp_path, model="fake:none"))
    again = evaluate(_config(utkface_dir, tmp_path, model="fake:none", limit=6, overwrite=True))
    assert again.run_dir == replaced.run_dir and len(read_records(again.predictions_path)) == 6
    assert len(read_records(kept.predictions_path)) == 12  # the sibling run is untouched
    foreign = tmp_path / "utkface" / "fake_none" / "other__attrs-gender"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    template = tmp_path / "other.jinja"
    template.write_text("{{ attribute }}?")
    with pytest.raises(VlmfaceError, match="holds no vlmface run.json.*nothing was deleted"):
        evaluate(_config(utkface_dir, tmp_path, model="fake:none", prompt=str(template), overwrite=True))
    assert (foreign / "notes.txt").read_text() == "mine"


# ----- faults ----------------------------------------------------------------------------------

def _no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_disk_full_ends_with_one_line_status_failed_and_a_rerun_resumes(utkface_dir, tmp_path, monkeypatch, capsys):
    """Before: five chained ENOSPC tracebacks, run.json left at `running`, stray .tmp files."""
    import vlmface.predictions

    real_fsync, calls = os.fsync, {"n": 0}

    def fsync_until_full(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("predictions.jsonl"):
            calls["n"] += 1
            if calls["n"] > 3:  # after three batches of predictions the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(vlmface.predictions.os, "fsync", fsync_until_full)
    argv = _eval_argv(utkface_dir, tmp_path, "--batch-size", "4", limit=20)
    assert main(argv) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    run_dir = tmp_path / "utkface" / "baseline" / "none"
    assert error.startswith(f"error: cannot write {run_dir / 'predictions.jsonl'}: ENOSPC (No space left on device)")
    assert "rerun the same command to resume" in error
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "failed" and "ENOSPC" in manifest["error"]
    assert len(_pairs(run_dir)) == 3 * 4 * 4  # three whole batches of 4 faces x 4 attributes
    assert _no_temp_files(tmp_path) and not (run_dir / LOCK_FILE).exists()
    monkeypatch.setattr(vlmface.predictions.os, "fsync", real_fsync)  # space freed
    assert main(argv) == 0
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["resumed_skipped_pairs"] == 48
    assert len(_pairs(run_dir)) == 20 * 4 and set(_pairs(run_dir).values()) == {1}


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_really_full_disk_and_a_read_only_one(utkface_dir, tmp_path):
    """On a real tmpfs (this needs root, as in the project's test machines): 64 KiB fill up mid-run,
    then the same folder remounted read-only, then with room: the run resumes."""
    out = tmp_path / "small"
    if not _mount_tmpfs(out, "32k"):
        pytest.fail("cannot mount a tmpfs here; test_disk_full_ends_with_one_line... covers ENOSPC without one")
    try:
        argv = [sys.executable, "-m", "vlmface.cli", *_eval_argv(utkface_dir, out, "--batch-size", "4", limit=40)]
        full = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert full.returncode == 1, full.stderr
        assert full.stderr.strip().splitlines()[-1].startswith("error: cannot write ") and "ENOSPC" in full.stderr
        assert "Traceback" not in full.stderr
        run_dir = out / "utkface" / "baseline" / "none"
        manifest = json.loads((run_dir / "run.json").read_text())
        assert manifest["status"] == "failed" and _no_temp_files(out)
        kept = len(_pairs(run_dir))
        assert 0 < kept < 160
        subprocess.run(["mount", "-o", "remount,ro", str(out)], check=True)
        readonly = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert readonly.returncode == 1 and "EROFS (Read-only file system)" in readonly.stderr
        assert readonly.stderr.count("\n") <= 2 and "Traceback" not in readonly.stderr
        subprocess.run(["mount", "-o", "remount,rw,size=4m", str(out)], check=True)
        resumed = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        manifest = json.loads((run_dir / "run.json").read_text())
        assert manifest["status"] == "complete" and manifest["counts"]["resumed_skipped_pairs"] == kept
        assert len(_pairs(run_dir)) == 160 and set(_pairs(run_dir).values()) == {1}
    finally:
        subprocess.run(["umount", str(out)], capture_output=True)


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OutputError, match=r"cannot write .*metrics\.json: ENOSPC"):
        write_atomic(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_status_recorded_on_a_full_disk_never_leaves_a_truncated_run_json(tmp_path, monkeypatch):
    """CI once saw this: the in-place fallback wrote the longer `failed` manifest (it adds `error`)
    over a shorter run.json on a full tmpfs and left it cut mid-string. The fallback now writes only
    within the file's existing bytes: indented if it fits, compact if that fits, else nothing."""
    def full_disk(run_dir, manifest):
        raise OutputError("cannot write run.json: ENOSPC (No space left on device)")

    monkeypatch.setattr(vlmface.run_record, "write_run", full_disk)
    running = {"status": "running", "identity": {"task": "utkface", "labels": ["Female", "Male"] * 40}}
    path = tmp_path / "run.json"
    path.write_text(json_text(running))
    failed = {**running, "status": "failed", "error": "cannot write " + "x" * 200 + ": ENOSPC"}
    assert len(json_text(failed)) > path.stat().st_size > len(json.dumps(failed, separators=(",", ":")))
    assert write_run_status(tmp_path, RunRecord.model_validate(failed)) is True
    assert json.loads(path.read_text()) == failed and path.read_text().startswith('{"status":"failed"')

    huge = {**running, "status": "failed", "error": "y" * 10_000}
    before = path.read_bytes()
    assert write_run_status(tmp_path, RunRecord.model_validate(huge)) is False
    assert path.read_bytes() == before  # the old record, whole

    shorter = {"status": "interrupted"}
    assert write_run_status(tmp_path, RunRecord.model_validate(shorter)) is True
    assert path.read_text() == json_text(shorter)


# ----- API -----------------------------------------------------------------------------------

def test_a_401_names_the_key_variable_never_the_key(utkface_dir, tmp_path, monkeypatch, capsys):
    key = fake_key()
    monkeypatch.setenv("VLMFACE_WRONG_KEY", key)
    with ChatServer(key="sk-vlmfacetest-the-right-one") as server:
        code = main(["eval", "--task", "utkface", "--model", "api:test-model", "--data-dir", str(utkface_dir),
                     "--limit", "3", "--attributes", "gender", "--out", str(tmp_path), "--no-score",
                     "--no-progress", "--base-url", server.url, "--api-key-env", "VLMFACE_WRONG_KEY",
                     "--no-cache"])
    error = capsys.readouterr().err
    assert code == 2 and "HTTP 401" in error
    assert "environment variable VLMFACE_WRONG_KEY" in error and "--api-key-env" in error
    assert key not in error and key not in "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
