"""The wheel carries the shipped specs: built with `pip wheel --no-deps .`, installed into a fresh
virtualenv with [baseline], run from a folder outside any checkout (issue 17, "Must show")."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import REPO_ROOT

# What a build reads (setup.py maps the top-level spec folders into the package); copied so that
# no build/ or *.egg-info is left in the checkout and no stale build/lib file reaches the wheel.
def _shipped_folders() -> list[str]:
    """The folders setup.py ships (its SHIPPED mapping), read without running setup()."""
    for node in ast.parse((REPO_ROOT / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["SHIPPED"]:
            return list(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no SHIPPED mapping")


BUILD_INPUTS = ["setup.py", "pyproject.toml", "README.md", "vlmface", *_shipped_folders()]


def _run(args: list, cwd: Path, timeout: int = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("VLMFACE_")}
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env=env)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _isolation() -> list[str]:
    """pip's isolated build env downloads setuptools (about 25 s here); when the backend that
    pyproject.toml declares is already installed, the build uses it instead."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    requires = [Requirement(r) for r in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
                ["build-system"]["requires"]]
    try:
        present = all(r.specifier.contains(version(r.name), prereleases=True) for r in requires)
    except PackageNotFoundError:
        present = False
    return ["--no-build-isolation"] if present else []


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the venv's vlmface script, a working folder outside any checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    for name in BUILD_INPUTS:
        copy = shutil.copytree if (REPO_ROOT / name).is_dir() else shutil.copy2
        copy(REPO_ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                                 if (REPO_ROOT / name).is_dir() else {}))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *_isolation(), ".", "-w", root / "dist"],
         cwd=source)
    [wheel] = (root / "dist").glob("vlmface-*.whl")
    venv = root / "venv"
    # --system-site-packages: the dependencies come from this environment (fast, offline); the
    # venv's own site-packages, holding the wheel, comes first on sys.path.
    # Without a pip of its own (ensurepip takes ~15 s): this pip installs into it (`pip --python`).
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], cwd=root)
    _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-index",
          f"{wheel}[baseline]"], cwd=root)
    shutil.rmtree(source)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return venv / "bin" / "vlmface", elsewhere


def test_installed_package_is_the_wheel(installed):
    script, elsewhere = installed
    result = _run([script.with_name("python"), "-c", "import vlmface; print(vlmface.__file__)"], cwd=elsewhere)
    assert str(script.parent.parent) in result.stdout


def test_list_from_outside_a_checkout(installed):
    script, elsewhere = installed
    tasks = _run([script, "list", "tasks"], cwd=elsewhere)
    names = {line.split()[0] for line in tasks.stdout.splitlines()}
    assert {"fairface", "utkface", "fer2013", "affectnet", "causalface"} <= names
    assert "(shipped)" in tasks.stderr and "_shipped" in tasks.stderr and "site-packages" in tasks.stderr
    prompts = _run([script, "list", "prompts"], cwd=elsewhere)
    assert {p.stem for p in (REPO_ROOT / "prompts").glob("*.jinja")} == \
        {line.split()[0] for line in prompts.stdout.splitlines()}
    perturbations = _run([script, "list", "perturbations"], cwd=elsewhere)
    assert {p.stem for p in (REPO_ROOT / "perturbations").glob("*.yaml")} == \
        {line.split()[0] for line in perturbations.stdout.splitlines()}
    probes = _run([script, "list", "probes"], cwd=elsewhere)
    assert {"social-perception", "denigration"} <= {line.split()[0] for line in probes.stdout.splitlines()}


def test_validate_from_outside_a_checkout(installed):
    script, elsewhere = installed
    result = _run([script, "validate"], cwd=elsewhere)
    assert "are valid" in result.stdout
    assert "tasks/probes/datasets" in result.stderr.replace("_shipped/", "")


def test_baseline_eval_of_40_faces_scores(installed, utkface_dir):
    script, elsewhere = installed
    _run([script, "eval", "--task", "utkface", "--model", "baseline", "--data-dir", utkface_dir,
          "--limit", "40", "--out", "results", "--no-progress"], cwd=elsewhere, timeout=240)
    [metrics_file] = (elsewhere / "results").rglob("metrics.json")
    gender = json.loads(metrics_file.read_text())["attributes"]["gender"]["overall"]
    assert gender["n"] + gender["n_error"] == 40
    assert gender["accuracy"] > 0.6  # a real model on real faces, not chance
    assert (metrics_file.parent / "tables" / "index.md").is_file()
