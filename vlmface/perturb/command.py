"""`vlmface eval --perturb SPEC` (a sweep) and `vlmface robustness PATH...` (its analysis).

Importing this module is cheap (argparse only); the rest loads when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_perturb_arguments(p: argparse.ArgumentParser) -> None:
    """The eval flags of a perturbation sweep."""
    p.add_argument("--perturb", metavar="SPEC",
                   help="evaluate the same samples clean and at every level of each perturbation in SPEC "
                   "(a set the task spec declares under `perturbations:`, perturbations/NAME.yaml, or a "
                   "path), then write CLEAN_RUN/robustness/ (default: no perturbation)")
    p.add_argument("--perturb-only", metavar="NAMES",
                   help="with --perturb: comma-separated subset of its perturbations (default: all)")
    p.add_argument("--perturb-examples", type=int, default=0, metavar="N",
                   help="with --perturb: also save contact sheets of N faces at every level "
                   "(the only way perturbed images reach the disk)")


def run_sweep(config: Any, spec_name: str, only: str | None = None, examples: int = 0) -> int:
    from vlmface.perturb.apply import perturbations_of
    from vlmface.perturb.analysis import OUT_DIR, analyze_sweep, format_robustness
    from vlmface.perturb.runs import find_sweeps
    from vlmface.perturb.spec import load_perturbations, task_perturbation_set
    from vlmface.runner import evaluate_perturbed
    from vlmface.scoring.settings import ScoreSettings
    from vlmface.tasks import load_task

    task = load_task(config.task)
    spec = task_perturbation_set(task, spec_name) if spec_name in task.perturbations else load_perturbations(spec_name)
    perturbations = perturbations_of(spec, only.split(",") if only else None)
    results = evaluate_perturbed(config, [None, *perturbations])
    clean = results[0].run_dir
    print(f"clean run: {clean}\n" + "\n".join(f"{p.suffix}: {r.run_dir}"
                                              for p, r in zip(perturbations, results[1:])))
    if examples > 0:
        _examples(config, clean, perturbations, examples, clean / OUT_DIR / "examples")
    if config.score:
        [sweep] = find_sweeps([r.run_dir for r in results])
        print(format_robustness(analyze_sweep(sweep, None, ScoreSettings())))
    return 0


def _examples(config: Any, clean: Path, perturbations: list, count: int, out: Path) -> None:
    from vlmface.data import load_samples
    from vlmface.perturb.examples import write_examples
    from vlmface.predictions import iter_records
    from vlmface.run_record import PREDICTIONS_FILE
    from vlmface.tasks import load_task

    ids = list(dict.fromkeys(r["sample_id"] for r in iter_records(clean / PREDICTIONS_FILE)))[:count]
    by_id = {s.id: s for s in load_samples(load_task(config.task), config.source, config.data_dir).samples}
    for path in write_examples([by_id[i] for i in ids if i in by_id], perturbations, out):
        print(f"examples: {path}")


def add_robustness(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("robustness", help="robustness tables and plots of perturbed runs, from their "
                       "predictions alone (no model)")
    p.add_argument("paths", nargs="+", type=Path,
                   help="run directories (a clean run and its perturbed runs) or folders holding them")
    p.add_argument("--out", type=Path, help="output folder (default CLEAN_RUN/robustness)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level of the CIs")
    p.add_argument("--min-group-n", type=int, default=30, help="smaller groups are flagged, left out of interactions")
    p.add_argument("--no-plots", action="store_true", help="tables and robustness.json only")
    p.set_defaults(handler=_robustness)


def _robustness(args: argparse.Namespace) -> int:
    from vlmface.perturb.analysis import format_robustness, robustness

    for result in robustness(args.paths, args.out, n_boot=args.n_boot, seed=args.seed,
                             confidence=args.confidence, min_group_n=args.min_group_n, plots=not args.no_plots):
        print(format_robustness(result))
    return 0
