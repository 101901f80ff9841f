"""Mutation testing of the modules whose mistakes change published numbers (`make mutants`, not CI).

A small AST mutator (no extra dependency): each mutant changes ONE operator or constant in a
function body (< <= > >= == != swapped, + - * / swapped, and/or swapped, `not` dropped,
True/False swapped, an integer constant +1, a numeric 0/1 swapped), is written into a scratch copy
of the repository, and that module's tests run there (`pytest -x`, timeout). A mutant is killed
when the tests fail (or time out). Prints, per module, killed / run and the share killed, and lists
the surviving mutants (file:line, the change) so a test can be written for the ones that matter.

    python benchmarks/mutation.py [--per-module 20] [--seed 0] [--module vlmface/parse.py] [--timeout 180]

--per-module samples that many mutants per module (0: all of them; a full run takes hours on
2 cores). Why not mutmut / cosmic-ray: see docs/mutation-testing.md.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
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
    "test_an_interaction_ci_that_touches_zero_does_not_exclude_it")]

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
    "vlmface/scoring/score.py": ["tests/test_scoring_reference.py", "tests/test_scoring_outputs.py", *_METRICS],
    "vlmface/scoring/settings.py": ["tests/test_scoring_settings.py", "tests/test_scoring_inputs.py", *_METRICS],
    "vlmface/scoring/summary.py": ["tests/test_scoring_summary.py", "tests/test_scoring_outputs.py",
                                   "tests/test_error_policy.py", *_FAIRNESS],
    "vlmface/scoring/tables.py": ["tests/test_scoring_tables.py", "tests/test_scoring_outputs.py",
                                  "tests/test_scoring_index.py"],
    "vlmface/scoring/metrics/accuracy.py": [*_METRICS, "tests/test_error_policy.py"],
    "vlmface/scoring/metrics/base.py": ["tests/test_scoring_metric_base.py", *_METRICS, *_FAIRNESS],
    "vlmface/scoring/metrics/calibration.py": ["tests/test_scoring_calibration.py", "tests/test_calibration.py"],
    "vlmface/scoring/metrics/directional.py": ["tests/test_scoring_numeric.py", *_FAIRNESS],
    "vlmface/scoring/metrics/rates.py": _FAIRNESS,
    "vlmface/scoring/metrics/reference.py": ["tests/test_scoring_reference.py", *_FAIRNESS],
    "vlmface/scoring/metrics/shrinkage.py": ["tests/test_scoring_shrinkage.py", *_FAIRNESS],
    "vlmface/scoring/metrics/signed_error.py": ["tests/test_scoring_numeric.py"],
    "vlmface/scoring/metrics/significance.py": ["tests/test_scoring_edges.py", *_FAIRNESS],
    "vlmface/predictions.py": ["tests/test_predictions_lines.py", "tests/test_predictions_durability.py",
                               "tests/test_scoring_inputs.py", "tests/test_scoring_errors.py"],
    "vlmface/parse.py": ["tests/test_parse.py", "tests/test_vocabulary_coverage.py"],
    "vlmface/perturb/stats.py": _FLIP_TESTS,
}

SWAPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
         ast.NotEq: ast.Eq, ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
         ast.And: ast.Or, ast.Or: ast.And, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn,
         ast.NotIn: ast.In, ast.FloorDiv: ast.Mult, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd}


@dataclass(frozen=True)
class Mutant:
    module: str
    index: int  # the index-th mutation site of the module
    line: int
    change: str


class _Sites(ast.NodeTransformer):
    """Walks function bodies; numbers every mutation site and applies the `target`-th one."""

    def __init__(self, target: int | None = None):
        self.target, self.count, self.found = target, 0, []
        self.depth = 0

    def _site(self, node: ast.AST, change: str) -> bool:
        index = self.count
        self.count += 1
        self.found.append((index, getattr(node, "lineno", 0), change))
        return index == self.target

    def visit_FunctionDef(self, node):
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        self.depth += 1
        node.body = [self.visit(stmt) for stmt in node.body]
        self.depth -= 1
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Expr(self, node):  # docstrings and bare strings: nothing to mutate
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return node
        return self.generic_visit(node)

    def visit_AnnAssign(self, node):
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def _swap(self, node, attr: str):
        self.generic_visit(node)
        if self.depth == 0:
            return node
        ops = getattr(node, attr)
        items = ops if isinstance(ops, list) else [ops]
        for i, op in enumerate(items):
            new = SWAPS.get(type(op))
            if new and self._site(node, f"{type(op).__name__} -> {new.__name__}"):
                if isinstance(ops, list):
                    ops[i] = new()
                else:
                    setattr(node, attr, new())
        return node

    def visit_Compare(self, node):
        return self._swap(node, "ops")

    def visit_BinOp(self, node):
        return self._swap(node, "op")

    def visit_BoolOp(self, node):
        return self._swap(node, "op")

    def visit_AugAssign(self, node):
        return self._swap(node, "op")

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if self.depth and isinstance(node.op, ast.Not) and self._site(node, "not x -> x"):
            return node.operand
        return node

    def visit_Constant(self, node):
        if not self.depth or isinstance(node.value, str) or node.value is None:
            return node
        if isinstance(node.value, bool):
            if self._site(node, f"{node.value} -> {not node.value}"):
                return ast.copy_location(ast.Constant(not node.value), node)
        elif isinstance(node.value, int):
            if self._site(node, f"{node.value} -> {node.value + 1}"):
                return ast.copy_location(ast.Constant(node.value + 1), node)
        elif isinstance(node.value, float) and node.value in (0.0, 1.0):
            if self._site(node, f"{node.value} -> {1.0 - node.value}"):
                return ast.copy_location(ast.Constant(1.0 - node.value), node)
        return node


def mutants_of(module: str, root: Path = ROOT) -> list[Mutant]:
    sites = _Sites()
    sites.visit(ast.parse((root / module).read_text(encoding="utf-8")))
    return [Mutant(module, index, line, change) for index, line, change in sites.found]


def mutated_source(mutant: Mutant, original: str) -> str:
    tree = _Sites(mutant.index).visit(ast.parse(original))
    return ast.unparse(ast.fix_missing_locations(tree))


def _run_tests(copy: Path, tests: list[str], timeout: float) -> bool:
    """True when the tests pass in `copy`."""
    env = {**os.environ, "PYTHONPATH": str(copy), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                              cwd=copy, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


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


def run(modules: list[str], per_module: int, seed: int, timeout: float) -> dict[str, tuple[int, int]]:
    copy = scratch_copy()
    scores: dict[str, tuple[int, int]] = {}
    try:
        for module in modules:
            tests = TARGETS[module]
            original = (copy / module).read_text(encoding="utf-8")  # the snapshot: edits to the tree meanwhile do not leak in
            if not _run_tests(copy, tests, timeout):
                print(f"{module}: its tests fail without a mutant; fix them first", flush=True)
                continue
            every = mutants_of(module, copy)
            chosen = sorted(random.Random(seed).sample(every, per_module), key=lambda m: m.index) \
                if 0 < per_module < len(every) else every
            killed, survivors = 0, []
            for mutant in chosen:
                (copy / module).write_text(mutated_source(mutant, original), encoding="utf-8")
                started = time.perf_counter()
                dead = not _run_tests(copy, tests, timeout)
                killed += dead
                print(f"  {module}:{mutant.line} {mutant.change}: {'killed' if dead else 'SURVIVED'} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
                if not dead:
                    survivors.append(mutant)
                (copy / module).write_text(original, encoding="utf-8")
            scores[module] = (killed, len(chosen))
            print(f"{module}: {killed}/{len(chosen)} killed ({100 * killed / max(len(chosen), 1):.0f}%) "
                  f"of {len(every)} mutation sites", flush=True)
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description="Mutation testing of scoring/, predictions, parse, perturb stats")
    parser.add_argument("--per-module", type=int, default=20,
                        help="mutants sampled per module, 0 for all (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    parser.add_argument("--module", action="append", choices=sorted(TARGETS),
                        help="only this module (repeatable; default: all of them)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per test run (default 300)")
    args = parser.parse_args()
    scores = run(args.module or list(TARGETS), args.per_module, args.seed, args.timeout)
    print("\nmodule                                 killed   share")
    for module, (killed, total) in scores.items():
        print(f"{module:<38} {killed:>3}/{total:<3}  {100 * killed / max(total, 1):5.0f}%")


if __name__ == "__main__":
    main()
