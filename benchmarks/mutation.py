"""Mutation testing of the modules whose mistakes change published numbers (`make mutants`, not CI).

A driver around cosmic-ray (`pip install -e ".[mutation]"`, pinned to 8.7.0). Per module of
`TARGETS`, inside a scratch copy of the repository (the faces linked as ../shared, where the tests
look for them): write a cosmic-ray config (that module, its tests as the test command, a timeout,
the local distributor), run the unmutated tests once (a module whose tests fail is refused),
`cosmic-ray init` (every mutant of cosmic-ray's core operators), keep a seeded sample of N work
items and mark the others skipped in the session database, `cosmic-ray exec`, then read the
results back: each mutant (file:line, operator, killed / SURVIVED, the diff of each survivor) and
the share killed. A timeout is a kill (cosmic-ray's rule); an incompetent or exception result is
counted apart, never as a kill. Nothing is written into the working tree.

    python benchmarks/mutation.py [--per-module 20] [--seed 0] [--module vlmface/parse.py] [--timeout 300]

--per-module 0 runs every mutant (hours on 2 cores). Why cosmic-ray: docs/mutation-testing.md.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("vlmface", "tests", "tasks", "vocabularies", "prompts", "perturbations", "pyproject.toml")

_METRICS = ["tests/test_scoring_metrics.py"]
_FAIRNESS = ["tests/test_fairness_metrics.py"]  # the real baseline on 300 faces (module fixture)
_INPUTS = ["tests/test_scoring_inputs.py", "tests/test_scoring_errors.py", "tests/test_scoring_statuses.py"]
_FLIP_TESTS = [f"tests/test_perturb_analysis.py::{name}" for name in (
    "test_flip_rate_ci_comes_from_the_flip_draws_not_the_drop_draws",
    "test_an_interaction_whose_ci_spans_zero_is_not_flagged",
    "test_mae_per_level_is_the_mean_absolute_error_of_the_answered_images",
    "test_paired_bootstrap_cis_cover_planted_drops_at_about_the_nominal_rate",
    "test_answered_accuracy_and_non_answer_rates_per_level_and_group",
    "test_an_interaction_ci_that_touches_zero_does_not_exclude_it",
    "test_a_group_without_images_is_small_and_in_no_interaction")]

#: module -> the tests that exercise it (pytest arguments, relative to the repo root), fastest first
TARGETS: dict[str, list[str]] = {
    "vlmface/scoring/attributes.py": ["tests/test_scoring_attributes.py", *_INPUTS, "tests/test_scoring_outputs.py",
                                      *_METRICS],
    "vlmface/scoring/bootstrap.py": ["tests/test_scoring_bootstrap.py"],
    "vlmface/scoring/classification.py": [*_METRICS, *_FAIRNESS],
    "vlmface/scoring/compare.py": ["tests/test_scoring_compare.py"],
    "vlmface/scoring/compare_tables.py": ["tests/test_scoring_compare.py"],
    "vlmface/scoring/groups.py": [*_METRICS, "tests/test_scoring_edges.py", "tests/test_scoring_numeric.py",
                                  "tests/test_scoring_bootstrap.py"],
    "vlmface/scoring/index.py": ["tests/test_scoring_index.py"],
    "vlmface/scoring/load.py": ["tests/test_scoring_load.py", *_INPUTS, "tests/test_error_policy.py"],
    "vlmface/scoring/numeric.py": [*_METRICS, "tests/test_scoring_numeric.py"],
    "vlmface/scoring/outcomes.py": [*_METRICS, "tests/test_scoring_edges.py", "tests/test_error_policy.py",
                                    "tests/test_scoring_statuses.py"],
    "vlmface/scoring/score.py": ["tests/test_scoring_score.py", "tests/test_scoring_reference.py",
                                 "tests/test_scoring_outputs.py", *_METRICS],
    "vlmface/scoring/settings.py": ["tests/test_scoring_settings.py", "tests/test_scoring_inputs.py", *_METRICS],
    "vlmface/scoring/summary.py": ["tests/test_scoring_summary.py", "tests/test_scoring_outputs.py",
                                   "tests/test_error_policy.py", *_FAIRNESS],
    "vlmface/scoring/tables.py": ["tests/test_scoring_tables.py", "tests/test_scoring_outputs.py",
                                  "tests/test_scoring_index.py"],
    "vlmface/scoring/metrics/accuracy.py": [*_METRICS, "tests/test_error_policy.py"],
    "vlmface/scoring/metrics/base.py": ["tests/test_scoring_metric_base.py", *_METRICS, *_FAIRNESS],
    "vlmface/scoring/metrics/calibration.py": ["tests/test_scoring_calibration.py", "tests/test_calibration.py"],
    "vlmface/scoring/metrics/directional.py": ["tests/test_scoring_numeric.py", *_FAIRNESS],
    "vlmface/scoring/metrics/rates.py": ["tests/test_scoring_rates.py", *_FAIRNESS],
    "vlmface/scoring/metrics/reference.py": ["tests/test_scoring_reference.py", *_FAIRNESS],
    "vlmface/scoring/metrics/shrinkage.py": ["tests/test_scoring_shrinkage.py", *_FAIRNESS],
    "vlmface/scoring/metrics/signed_error.py": ["tests/test_scoring_numeric.py"],
    "vlmface/scoring/metrics/significance.py": ["tests/test_scoring_edges.py", *_FAIRNESS],
    "vlmface/predictions.py": ["tests/test_predictions_lines.py", "tests/test_predictions_durability.py",
                               "tests/test_scoring_inputs.py", "tests/test_scoring_errors.py"],
    "vlmface/parse.py": ["tests/test_parse.py", "tests/test_vocabulary_coverage.py"],
    "vlmface/multitest.py": ["tests/test_multitest.py", "tests/test_scoring_score.py"],
    "vlmface/perturb/stats.py": _FLIP_TESTS,
}

#: cosmic-ray runs the tests with this environment (and PYTHONPATH = the scratch copy)
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
_NOT_SAMPLED = "not in the sample"


@dataclass(frozen=True)
class Mutant:
    """One sampled mutant and its verdict: killed, timeout (a kill), SURVIVED or incompetent."""

    where: str  # file:line
    operator: str
    verdict: str
    diff: str


def _test_command(tests: list[str]) -> str:
    return shlex.join([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests])


def _env(copy: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1", **OFFLINE}


def write_config(path: Path, module: str, tests: list[str], timeout: float) -> None:
    """The cosmic-ray session config of one module (TOML; JSON strings are valid TOML strings)."""
    path.write_text("\n".join([
        "[cosmic-ray]", f"module-path = {json.dumps(module)}", f"timeout = {float(timeout)}",
        "excluded-modules = []", f"test-command = {json.dumps(_test_command(tests))}", "",
        "[cosmic-ray.distributor]", 'name = "local"', ""]), encoding="utf-8")


def _unmutated_failure(copy: Path, tests: list[str], timeout: float) -> str | None:
    """None when the module's tests pass on the unmutated copy; else why not (the output's tail)."""
    try:
        done = subprocess.run(shlex.split(_test_command(tests)), cwd=copy, env=_env(copy), capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"they ran past --timeout {timeout:.0f} s"
    return None if done.returncode == 0 else "\n".join((done.stdout + done.stderr).splitlines()[-15:])


def _cosmic_ray(copy: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cosmic_ray.cli", *args], cwd=copy, env=_env(copy))


def _site(item) -> tuple:
    mutation = item.mutations[0]
    return (mutation.start_pos, mutation.end_pos, mutation.operator_name, mutation.occurrence)


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) of every annotation, when the module never evaluates them (PEP 563).

    Under `from __future__ import annotations` an annotation is a string nobody reads here (no
    pydantic or get_type_hints in these modules), so a mutant inside one (`float | None` ->
    `float ^ None`, 11 of them per `|`) is equivalent by construction; it is left out before sampling."""
    tree = ast.parse(source)
    if not any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
               and any(alias.name == "annotations" for alias in node.names) for node in tree.body):
        return []
    annotations = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            annotations += [arg.annotation for arg in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                                                       arguments.vararg, arguments.kwarg) if arg and arg.annotation]
            annotations += [node.returns] if node.returns else []
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
    return [((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)) for a in annotations]


def keep_sample(session: Path, source: str, per_module: int, seed: int) -> tuple[int, int]:
    """Marks skipped every work item in an annotation or outside a seeded sample of `per_module`.

    The items are ordered by what they mutate (position, operator), not by their random job ids,
    so the same seed picks the same mutants of the same source. Returns (items, in annotations)."""
    from cosmic_ray.work_db import use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = annotation_spans(source)

    def in_annotation(item) -> bool:
        mutation = item.mutations[0]
        return any(start <= mutation.start_pos and mutation.end_pos <= end for start, end in spans)

    with use_db(str(session)) as db:
        items = sorted(db.work_items, key=_site)
        typed = [item for item in items if in_annotation(item)]
        candidates = [item for item in items if not in_annotation(item)]
        chosen = random.Random(seed).sample(candidates, per_module) if 0 < per_module < len(candidates) \
            else candidates
        keep = {item.job_id for item in chosen}
        for reason, group in (("in an annotation", typed), (_NOT_SAMPLED, candidates)):
            db.set_multiple_results([item.job_id for item in group if item.job_id not in keep],
                                    WorkResult(output=reason, worker_outcome=WorkerOutcome.SKIPPED))
    return len(items), len(typed)


def _verdict(result) -> str:
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    if result.worker_outcome != WorkerOutcome.NORMAL or result.test_outcome == TestOutcome.INCOMPETENT:
        return f"incompetent ({result.worker_outcome.value})"
    if result.test_outcome == TestOutcome.KILLED:
        return "killed (timeout)" if result.output == "timeout" else "killed"
    return "SURVIVED"


def read_results(session: Path) -> dict[str, Mutant]:
    """job id -> Mutant, for every sampled item cosmic-ray has finished so far."""
    from sqlalchemy.exc import OperationalError

    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome

    try:
        with use_db(str(session), WorkDB.Mode.open) as db:
            done = db.completed_work_items
    except OperationalError:  # cosmic-ray is writing a result this instant: read again at the next poll
        return {}
    return {item.job_id: Mutant(f"{item.mutations[0].module_path}:{item.mutations[0].start_pos[0]}",
                                item.mutations[0].operator_name, _verdict(result), result.diff or "")
            for item, result in done if result.worker_outcome != WorkerOutcome.SKIPPED}


def _print_mutant(mutant: Mutant) -> None:
    print(f"  {mutant.where} {mutant.operator}: {mutant.verdict}", flush=True)
    if mutant.verdict == "SURVIVED":
        print("\n".join("      " + line for line in mutant.diff.splitlines()), flush=True)


def _execute(copy: Path, config: Path, session: Path) -> dict[str, Mutant]:
    """`cosmic-ray exec`, printing each mutant as its result lands in the session database."""
    process, seen = _cosmic_ray(copy, "exec", str(config), str(session)), {}
    try:
        while True:
            finished = process.poll() is not None
            for job, mutant in read_results(session).items():
                if job not in seen:
                    seen[job] = mutant
                    _print_mutant(mutant)
            if finished:
                break
            time.sleep(3)
    finally:  # interrupted: stop cosmic-ray before the scratch copy it mutates is deleted
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode:
        print(f"  cosmic-ray exec exited with {process.returncode}", flush=True)
    return seen


@dataclass(frozen=True)
class Score:
    killed: int  # timeouts included
    run: int  # killed + survived; incompetent mutants are not in it
    incompetent: int
    mutants: int  # every mutant cosmic-ray made of the module, outside annotations
    minutes: float


def mutate_module(copy: Path, module: str, per_module: int, seed: int, timeout: float) -> Score | None:
    """One module's session in the scratch copy; None when its unmutated tests fail."""
    started, tests = time.perf_counter(), TARGETS[module]
    failure = _unmutated_failure(copy, tests, timeout)
    if failure is not None:
        print(f"{module}: refused, its tests fail without a mutant; fix them first:\n{failure}", flush=True)
        return None
    sessions = copy.parent / "sessions"  # beside the copy, never inside the working tree
    sessions.mkdir(exist_ok=True)
    stem = module.replace("/", "__")
    config, session = sessions / f"{stem}.toml", sessions / f"{stem}.sqlite"
    write_config(config, module, tests, timeout)
    if _cosmic_ray(copy, "init", str(config), str(session)).wait():
        print(f"{module}: cosmic-ray init failed", flush=True)
        return None
    total, typed = keep_sample(session, (copy / module).read_text(encoding="utf-8"), per_module, seed)
    verdicts = [mutant.verdict for mutant in _execute(copy, config, session).values()]
    killed = sum(verdict.startswith("killed") for verdict in verdicts)
    incompetent = sum(verdict.startswith("incompetent") for verdict in verdicts)
    score = Score(killed, len(verdicts) - incompetent, incompetent, total - typed,
                  (time.perf_counter() - started) / 60)
    print(f"{module}: {killed}/{score.run} killed ({100 * killed / max(score.run, 1):.0f}%) of {score.mutants} "
          f"mutants ({typed} more in annotations left out), {incompetent} incompetent (not counted), "
          f"{score.minutes:.1f} min", flush=True)
    return score


def scratch_copy() -> Path:
    copy = Path(tempfile.mkdtemp(prefix="vlmface-mutants-")) / "repo"
    copy.mkdir()
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, copy / name)
    (copy.parent / "shared").symlink_to(ROOT.parent / "shared")  # tests read REPO_ROOT.parent / "shared"
    return copy


def run(modules: list[str], per_module: int, seed: int, timeout: float) -> dict[str, Score | None]:
    copy = scratch_copy()  # a snapshot: edits to the working tree meanwhile do not leak in
    try:
        return {module: mutate_module(copy, module, per_module, seed, timeout) for module in modules}
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Mutation testing (cosmic-ray) of scoring/, predictions, parse, "
                                                 "perturb stats")
    parser.add_argument("--per-module", type=int, default=20,
                        help="mutants sampled per module, 0 for all (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    parser.add_argument("--module", action="append", choices=sorted(TARGETS),
                        help="only this module (repeatable; default: all of them)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per test run (default 300)")
    args = parser.parse_args()
    if importlib.util.find_spec("cosmic_ray") is None:
        sys.exit('cosmic-ray is not installed: pip install -e ".[mutation]" (or make mutants)')
    scores = run(args.module or list(TARGETS), args.per_module, args.seed, args.timeout)
    print(f"\n{'module':<40} {'killed':>7}  share  incompetent  mutants  minutes")
    for module, score in scores.items():
        if score is None:
            print(f"{module:<40} refused (its tests fail unmutated) or init failed")
        else:
            print(f"{module:<40} {score.killed:>3}/{score.run:<3} {100 * score.killed / max(score.run, 1):5.0f}%"
                  f"  {score.incompetent:>11}  {score.mutants:>7}  {score.minutes:7.1f}")


if __name__ == "__main__":
    main()
