"""Shared fixtures. Tests run offline on real faces from ../shared/data (never copied here)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# One torch/OpenMP thread per test process (and the CLI subprocesses and Ray workers it starts):
# the tests' models are tiny, and under `make test` two workers share the cores, where extra
# threads only spin (test_hf.py alone: 34 s of CPU with the default threads, 14 s with one).
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
UTKFACE_DIR = SHARED_DATA / "utkface" / "crop_part1"
FER_DIR = SHARED_DATA / "fer2013" / "PrivateTest"


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks
def pytest_collection_modifyitems(config, items):
    """For `pytest -n N --dist loadgroup` (make test): a test module runs on one worker, so its
    module fixtures (one baseline run shared by several tests) are built once; a module that sets
    its own `xdist_group` (the Ray tests, which must not share the 2 cores with each other) keeps
    it. Modules holding `slow` tests are scheduled first, so the longest ones do not start last."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))
    if config.pluginmanager.hasplugin("xdist") and config.getoption("dist", "no") != "no":
        slow = {item.path for item in items if item.get_closest_marker("slow")}
        items.sort(key=lambda item: item.path not in slow)  # stable: each module keeps its order


def _group(item) -> str | None:
    marker = item.get_closest_marker("xdist_group")
    return marker.args[0] if marker and marker.args else None


def pytest_runtest_teardown(item, nextitem):
    """The Ray tests' in-process `--engine ray` runs start a local Ray that would otherwise live
    until this process exits: its ten idle daemons take about 15% of a core from the tests after
    them. It is stopped when the last test of the "ray" group is done."""
    if _group(item) == "ray" and (nextitem is None or _group(nextitem) != "ray"):
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()


@pytest.fixture(scope="session")
def utkface_dir() -> Path:
    assert UTKFACE_DIR.is_dir(), f"real faces expected at {UTKFACE_DIR} (see ../shared/data/README.md)"
    return UTKFACE_DIR


@pytest.fixture(scope="session")
def fer_dir() -> Path:
    assert FER_DIR.is_dir(), f"real faces expected at {FER_DIR} (see ../shared/data/README.md)"
    return FER_DIR


@pytest.fixture
def fake_backend(monkeypatch):
    """Registers the `fake` backend family (tests/fake_backends.py) for the duration of a test."""
    import fake_backends
    from vlmface import registry

    monkeypatch.setitem(registry.BACKEND_FAMILIES, "fake", ("fake_backends:FakeBackend", "dev"))
    fake_backends.FakeBackend.instances.clear()
    return fake_backends.FakeBackend


@pytest.fixture
def planted_task(tmp_path, monkeypatch):
    """The planted exposure task (tests/fake_backends.py) under tmp_path, its `planted` backend registered:
    (task spec, manifest, perturbation spec)."""
    import fake_backends
    from vlmface import registry

    monkeypatch.setitem(registry.BACKEND_FAMILIES, "planted", ("fake_backends:PlantedBackend", "dev"))
    return fake_backends.write_planted_task(tmp_path)


@pytest.fixture
def order_task(tmp_path, monkeypatch):
    """The planted option-order task (tests/fake_backends.py) under tmp_path, its `order` backend
    registered: (task spec, manifest)."""
    import fake_backends
    from vlmface import registry

    monkeypatch.setitem(registry.BACKEND_FAMILIES, "order", ("fake_backends:OrderBackend", "dev"))
    return fake_backends.write_order_task(tmp_path)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one torch thread, and do not fight other processes for the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_png_plot(path: Path, min_size: tuple[int, int] = (200, 150)) -> None:
    """A real plot: a PNG that opens, at least `min_size` pixels, and not one flat colour."""
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG", path
        assert image.width >= min_size[0] and image.height >= min_size[1], (path, image.size)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 10, f"{path}: a blank image"


def assert_unique_pairs(records: list[dict]) -> dict[tuple[str, str], dict]:
    """The records keyed by (sample_id, attribute), after checking no key occurs twice."""
    keyed = {(r["sample_id"], r["attribute"]): r for r in records}
    assert len(keyed) == len(records), "duplicate (sample_id, attribute) predictions"
    return keyed


def assert_interpretation_reproduces(records: list[dict], task: str) -> None:
    """Each saved label and status is what the interpretation step makes of the saved raw
    answer (so a status is not merely one of the valid ones but the right one); and each
    truth is the sample's label from the data source."""
    from vlmface.interpret import interpret, reinterpretable
    from vlmface.runner import question_for
    from vlmface.tasks import load_task

    spec = load_task(task)
    questions = {a: question_for(spec, a, None) for a in {r["attribute"] for r in records}}
    for record in records:
        answer = reinterpretable(record)
        assert answer is not None, record
        again = interpret(answer, questions[record["attribute"]])
        assert (again.status, again.label) == (record["status"], record["label"]), record
