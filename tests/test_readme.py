"""The README's examples run as written, in order, on a copy of the checkout that sits beside
../shared/data like a fresh clone (issue 17). Every ```bash and ```python block is run; ```text
blocks are synopses. Not run: `git clone`/`cd` (the copy stands for the clone) and `make test`
(this test is part of it). A command after a comment `# needs the Hugging Face hub; offline it
stops with: MESSAGE` is run offline and must fail with MESSAGE."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO_ROOT, SHARED_DATA

HUB_MARK = re.compile(r"#\s*needs the Hugging Face hub.*; offline it stops with: (.+)$")
NOT_RUN = ("git clone", "cd ", "make test")
pytestmark = pytest.mark.slow  # every example in one module fixture: about a minute or more


@dataclass(frozen=True)
class Example:
    language: str
    code: str
    hub_error: str | None  # the documented offline error of a hub-dependent command

    def __str__(self) -> str:
        return self.code.splitlines()[0][:60]


def readme_examples(text: str) -> list[Example]:
    examples: list[Example] = []
    for language, body in re.findall(r"^```(bash|python)\n(.*?)^```", text, re.S | re.M):
        if language == "python":
            examples.append(Example(language, body, None))
            continue
        hub_error = None
        for command in re.sub(r"\\\n\s*", "", body).splitlines():
            mark = HUB_MARK.match(command.strip())
            if mark:
                hub_error = mark.group(1).strip()
            elif command.strip() and not command.lstrip().startswith("#"):
                if not command.startswith(NOT_RUN):
                    examples.append(Example(language, command, hub_error))
                hub_error = None
    return examples


EXAMPLES = readme_examples((REPO_ROOT / "README.md").read_text(encoding="utf-8"))


def _checkout_files() -> list[str]:
    """What a clone holds: tracked files plus new ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    return [name for name in listed if (REPO_ROOT / name).is_file()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fresh")
    repo = root / "vlmface"
    for name in _checkout_files():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, repo / name)
    (root / "shared").mkdir()
    (root / "shared" / "data").symlink_to(SHARED_DATA)
    # This environment is installed already (make test depends on the same stamp): no reinstall.
    (repo / ".make").mkdir()
    (repo / ".make" / "installed").touch()
    return repo


@pytest.fixture(scope="module")
def ran(clone, tmp_path_factory) -> list[subprocess.CompletedProcess]:
    """Every example, in README order; `vlmface` and `python` are this environment's, on the copy."""
    shims = tmp_path_factory.mktemp("bin")
    (shims / "vlmface").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m vlmface.cli "$@"\n')
    (shims / "vlmface").chmod(0o755)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("VLMFACE_")},
           "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(clone),
           "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "SLURM_ARRAY_TASK_ID": "0"}
    results = []
    for example in EXAMPLES:
        command = [sys.executable, "-c", example.code] if example.language == "python" else \
            ["bash", "-c", example.code]
        results.append(subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True, timeout=400))
    return results


def test_the_readme_has_the_examples_this_test_expects():
    commands = [e.code for e in EXAMPLES]
    assert commands[0].startswith("make eval MODEL=baseline TASK=utkface")
    assert sum(e.hub_error is not None for e in EXAMPLES) == 3
    assert any("--perturb" in c and "--out results/perturb" in c for c in commands)
    assert any(c.startswith("vlmface robustness results/perturb/") for c in commands)


@pytest.mark.parametrize("index", range(len(EXAMPLES)), ids=[str(e) for e in EXAMPLES])
def test_readme_example_runs_as_written(ran, index):
    example, result = EXAMPLES[index], ran[index]
    output = result.stdout + result.stderr
    if example.hub_error is None:
        assert result.returncode == 0, f"{example.code}\n{output[-3000:]}"
    else:
        assert result.returncode != 0 and example.hub_error in output, f"{example.code}\n{output[-3000:]}"
        assert "Traceback" not in output


def test_readme_examples_leave_what_the_readme_says(ran, clone):
    quickstart = clone / "results" / "utkface" / "baseline" / "none"
    assert (quickstart / "metrics.json").is_file() and (quickstart / "tables" / "index.md").is_file()
    assert "tables/index.md" in ran[0].stdout and "vlmface report" in ran[0].stdout
    assert (clone / "results" / "perturb" / "robustness" / "levels.csv").is_file()
    assert (clone / "results" / "shards" / "utkface" / "baseline" / "merged" / "metrics.json").is_file()
    assert (clone / "results" / "report" / "report.html").is_file()
