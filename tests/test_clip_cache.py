"""The image-embedding cache: shared across runs and attributes, keyed so it never serves a
stale vector, and safe when a run is killed mid-way (real faces, tiny offline model)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest
from PIL import Image

from tiny_models import build_tiny_open_clip
from vlmface.backends.base import Query, Question
from vlmface.backends.clip import CACHE_SUBDIR, ClipBackend
from vlmface.cli import main
from vlmface.embedding_cache import EmbeddingCache, image_digest
from vlmface.interpret import answered
from vlmface.prompts import load_template
from vlmface.registry import ModelEntry

REPO_ROOT = Path(__file__).resolve().parents[1]
FACES = REPO_ROOT.parent / "shared" / "data" / "utkface" / "crop_part1"
GENDER = Question(attribute="gender", kind="categorical", labels=("Male", "Female"),
                  display={"Male": "male", "Female": "female"}, template=load_template("clip_photo"))
RACE = Question(attribute="race5", kind="categorical", labels=("White", "Black", "Asian", "Indian", "Others"),
                template=load_template("clip_photo_single"))


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Tiny models run fastest on one thread (see conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def faces() -> list[Image.Image]:
    assert FACES.is_dir(), f"real faces expected at {FACES} (see ../shared/data/README.md)"
    return [Image.open(f).convert("RGB") for f in sorted(FACES.glob("*.jpg"))[5::311][:20]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_tiny_open_clip(tmp_path_factory.mktemp("open_clip"))


def backend(weights: str, cache_dir: Path | None, **options) -> ClipBackend:
    return ClipBackend(ModelEntry(name="test", backend="clip", weights=weights),
                       {"device": "cpu", "batch_size": 8, "cache_dir": cache_dir, **options})


def ask(clip: ClipBackend, images, question: Question):
    return answered(clip, [Query(sample_id=str(i), image=im, question=question) for i, im in enumerate(images)])


def entries(cache_root: Path) -> list[Path]:
    return sorted(cache_root.glob(f"{CACHE_SUBDIR}/*/??/*.npy"))


# ----- reuse across runs and attributes --------------------------------------------------------
def test_a_second_run_of_another_attribute_reads_every_embedding_from_the_cache(model_dir, faces, tmp_path):
    first = backend(f"local-dir:{model_dir}", tmp_path)
    ask(first, faces, GENDER)
    assert first.stats()["embedding_cache"] | {"dir": None} == {
        "dir": None, "hits": 0, "misses": len(faces), "writes": len(faces), "bad_entries": 0}
    assert len(entries(tmp_path)) == len(faces)

    second = backend(f"local-dir:{model_dir}", tmp_path)  # a new run: new process state, same cache
    cached = ask(second, faces, RACE)
    stats = second.stats()
    assert stats["images_encoded"] == 0
    assert stats["embedding_cache"]["hits"] == len(faces) and stats["embedding_cache"]["misses"] == 0

    fresh = ask(backend(f"local-dir:{model_dir}", None), faces, RACE)
    for a, b in zip(cached, fresh):
        assert a.label == b.label and a.probs == pytest.approx(b.probs, abs=1e-6)


def test_other_weights_or_dtype_never_share_entries(model_dir, faces, tmp_path_factory, tmp_path):
    base = backend(f"local-dir:{model_dir}", tmp_path)
    ask(base, faces[:3], GENDER)
    other_dir = build_tiny_open_clip(tmp_path_factory.mktemp("other"), seed=7)  # same config, new weights
    other = backend(f"local-dir:{other_dir}", tmp_path)
    ask(other, faces[:3], GENDER)
    bf16 = backend(f"local-dir:{model_dir}", tmp_path, dtype="bf16")
    answers = ask(bf16, faces[:3], GENDER)
    assert all(a.status == "ok" for a in answers)
    keys = {base.cache.key, other.cache.key, bf16.cache.key}
    assert len(keys) == 3
    assert other.stats()["embedding_cache"]["hits"] == 0 and bf16.stats()["embedding_cache"]["hits"] == 0
    meta = json.loads((base.cache.dir / "meta.json").read_text())
    assert meta["weights_sha256"] == base.identity()["weights_sha256"] and meta["dtype"] == "fp32"


def test_a_bad_entry_is_a_miss_and_gets_rewritten(model_dir, faces, tmp_path):
    clip = backend(f"local-dir:{model_dir}", tmp_path)
    want = ask(clip, faces[:3], GENDER)
    paths = [clip.cache.path(image_digest(im)) for im in faces[:3]]
    paths[0].write_bytes(paths[0].read_bytes()[:50])  # truncated
    np.save(paths[1], np.zeros(3, dtype=np.float32))  # wrong shape
    np.save(paths[2], np.full(clip.encoder.dim, np.nan, dtype=np.float32))  # not finite
    again = backend(f"local-dir:{model_dir}", tmp_path)
    got = ask(again, faces[:3], GENDER)
    assert again.stats()["embedding_cache"]["bad_entries"] == 3 and again.stats()["images_encoded"] == 3
    for a, b in zip(got, want):
        assert a.probs == pytest.approx(b.probs, abs=1e-6)
    third = backend(f"local-dir:{model_dir}", tmp_path)
    ask(third, faces[:3], GENDER)
    assert third.stats()["embedding_cache"]["hits"] == 3


def test_entries_are_plain_npy_and_never_pickles(model_dir, faces, tmp_path):
    clip = backend(f"local-dir:{model_dir}", tmp_path)
    ask(clip, faces[:2], GENDER)
    for path in entries(tmp_path):
        vector = np.load(path, allow_pickle=False)
        assert vector.dtype == np.float32 and vector.shape == (clip.encoder.dim,)


# ----- interruption ------------------------------------------------------------------------------
_KILL_MID_WRITE = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from pathlib import Path
    from vlmface import embedding_cache

    root, kill_at = Path(sys.argv[1]), int(sys.argv[2])
    calls = {"n": 0}
    real_save = np.save

    def dying_save(handle, array, allow_pickle=False):
        calls["n"] += 1
        if calls["n"] == kill_at:  # half the bytes on disk, then the process dies
            import io
            buffer = io.BytesIO()
            real_save(buffer, array, allow_pickle=False)
            handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        real_save(handle, array, allow_pickle=allow_pickle)

    embedding_cache.np.save = dying_save
    cache = embedding_cache.EmbeddingCache(root, {"model": "test"}, dim=8)
    for i in range(10):
        cache.put(f"{i:064x}", np.full(8, i, dtype=np.float32))
""")


def test_a_process_killed_in_the_middle_of_a_write_leaves_no_entry_behind(tmp_path):
    done = subprocess.run([sys.executable, "-c", _KILL_MID_WRITE, str(tmp_path), "5"], cwd=REPO_ROOT,
                          capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    cache = EmbeddingCache(tmp_path, {"model": "test"}, dim=8)
    assert not cache.path(f"{4:064x}").exists()  # the 5th write never became an entry
    for i in range(4):
        np.testing.assert_array_equal(cache.get(f"{i:064x}"), np.full(8, i, dtype=np.float32))
    leftovers = list((cache.dir / "tmp").iterdir())
    assert len(leftovers) == 1  # the half-written file, outside the entry tree
    os.utime(leftovers[0], (time.time() - 7200, time.time() - 7200))
    EmbeddingCache(tmp_path, {"model": "test"}, dim=8)  # opening sweeps stale leftovers
    assert not leftovers[0].exists()


def _eval_command(model_dir: Path, out: Path, limit: int) -> list[str]:
    return [sys.executable, "-m", "vlmface.cli", "eval", "--task", "utkface", "--model", f"clip:local-dir:{model_dir}",
            "--data-dir", str(FACES), "--limit", str(limit), "--out", str(out), "--attributes", "gender,race5",
            "--batch-size", "4", "--no-score", "--no-progress"]


LIMIT = 100  # killed after 20 cached vectors: most of the run is still to come
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_a_run_killed_mid_way_leaves_only_whole_entries_and_the_rerun_reuses_them(model_dir, tmp_path):
    out = tmp_path / "results"
    command = _eval_command(model_dir, out, limit=LIMIT)
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV)
    deadline = time.time() + 120
    while len(entries(out / ".cache")) < 20 and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed: " + process.stdout.read().decode()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    written = entries(out / ".cache")
    assert 20 <= len(written) < LIMIT
    space = written[0].parents[1]
    dim = json.loads((space / "meta.json").read_text())["dim"]
    for path in written:  # every entry that exists is whole
        vector = np.load(path, allow_pickle=False)
        assert vector.shape == (dim,) and np.isfinite(vector).all()

    assert main(command[3:]) == 0  # `vlmface eval` again, in this process: it resumes the killed run
    run_dirs = [p.parent for p in out.glob("utkface/*/*/run.json")]
    run = json.loads((run_dirs[0] / "run.json").read_text())
    stats = run["backend_summary"]["embedding_cache"]  # the killed invocation wrote none
    # The rerun only encodes samples without predictions; those whose vector was cached before the
    # kill are hits, and no entry the kill left behind is unreadable.
    assert stats["bad_entries"] == 0 and stats["hits"] <= len(written)
    assert stats["hits"] + run["backend_summary"]["images_encoded"] == run["counts"]["new_predictions"] // 2
    assert len(entries(out / ".cache")) == LIMIT


# ----- through the runner --------------------------------------------------------------------------
def test_eval_end_to_end_writes_probabilities_and_class_texts(model_dir, tmp_path, monkeypatch):
    from vlmface import runner
    closed: list[dict] = []
    real_close = ClipBackend.close

    def close_and_keep_stats(self):
        closed.append(self.stats())
        real_close(self)

    monkeypatch.setattr(ClipBackend, "close", close_and_keep_stats)
    config = dict(task="utkface", model=f"clip:local-dir:{model_dir}", data_dir=FACES, limit=40,
                  out=tmp_path, score=False, progress=False)
    result = runner.evaluate(runner.EvalConfig(attributes=["gender", "age", "age5"], **config))
    assert "age" in result.unsupported and "numeric" in result.unsupported["age"]
    records = [json.loads(line) for line in result.predictions_path.read_text().splitlines()]
    assert len(records) == 80 and {r["attribute"] for r in records} == {"gender", "age5"}
    for record in records:
        assert record["status"] == "ok" and record["label"] in record["probs"]
        assert sum(record["probs"].values()) == pytest.approx(1.0, abs=1e-6)
    run = json.loads((result.run_dir / "run.json").read_text())
    setup = run["backend_setup"]
    assert setup["class_texts"]["gender"]["Female"][0] == "a photo of a female person."
    assert set(setup["class_texts"]["age5"]) == {"0-9", "10-19", "20-39", "40-59", "60+"}
    assert run["model_identity"]["weights_sha256"] == setup["model"]["weights_sha256"]
    assert closed[-1]["images_encoded"] == 40

    # another attribute and prompt set on the same faces: a new run directory, the same cache
    runner.evaluate(runner.EvalConfig(attributes=["race5"], prompt="clip_photo_single", **config))
    assert closed[-1]["images_encoded"] == 0
    assert closed[-1]["embedding_cache"]["hits"] == 40 and closed[-1]["embedding_cache"]["misses"] == 0


def test_an_unwritable_cache_is_warned_about_and_the_answers_still_come(model_dir, faces, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    clip = backend(f"local-dir:{model_dir}", blocker)
    assert clip.cache is None and "cannot be used" in clip.prepare([GENDER])["warnings"][0]
    assert all(a.status == "ok" for a in ask(clip, faces[:2], GENDER))

    writable = backend(f"local-dir:{model_dir}", tmp_path / "cache")
    writable.cache.path = lambda digest: blocker / digest  # every write fails (not a directory)
    assert all(a.status == "ok" for a in ask(writable, faces[:2], GENDER))
    assert any("cannot write" in w for w in writable.prepare([GENDER])["warnings"])
