"""Shared fixtures. Tests run offline on real faces from ../shared/data (never copied here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
UTKFACE_DIR = SHARED_DATA / "utkface" / "crop_part1"
FER_DIR = SHARED_DATA / "fer2013" / "PrivateTest"


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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one torch thread, and do not fight other processes for the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
