"""`vlmface eval --prompt-set NAME` (a prompt sweep) and `vlmface prompt-sensitivity PATH...` (its analysis).

Importing this module is cheap (argparse only); the rest loads when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_prompt_set_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt-set", metavar="NAME",
                   help="evaluate the same samples under every variant of prompt set NAME (a set the task "
                   "spec declares under `prompt_sets:`, prompt_sets/NAME.yaml, or a path), one run per "
                   "variant, the default variant being the plain run; then write "
                   "DEFAULT_RUN/prompt_sensitivity/ (default: no prompt set)")
    p.add_argument("--prompt-variants", metavar="NAMES",
                   help="with --prompt-set: comma-separated subset of its variants (default: all; the "
                   "default variant is always run)")


def prompt_variants_for(config: Any, set_name: str, only: str | None = None) -> tuple[Any, list]:
    """(the prompt set, its variants) for the task and attributes of `config`."""
    from vlmface.prompt_sets.spec import variants_of, load_prompt_set
    from vlmface.tasks import load_task

    task = load_task(config.task)
    spec = load_prompt_set(set_name, task)
    return spec, variants_of(spec, task, config.attributes, only.split(",") if only else None)


def run_prompt_sweep(config: Any, set_name: str, only: str | None = None) -> int:
    from dataclasses import replace

    from vlmface.errors import SpecError
    from vlmface.prompt_sets.analysis import analyze_prompt_sweep, format_sensitivity
    from vlmface.prompt_sets.runs import find_prompt_sweeps
    from vlmface.runner import evaluate_prompt_variants
    from vlmface.scoring.settings import ScoreSettings

    spec, variants = prompt_variants_for(config, set_name, only)
    if spec.prompt and config.prompt and config.prompt != spec.prompt:
        raise SpecError(f"--prompt {config.prompt} and prompt set {spec.name!r} (prompt: {spec.prompt}) disagree "
                        "on the default prompt; drop --prompt")
    config = replace(config, prompt=config.prompt or spec.prompt)
    results = evaluate_prompt_variants(config, variants)
    print("\n".join(f"{v.name}: {r.run_dir}" for v, r in zip(variants, results)))
    if config.score and len(results) > 1:
        [sweep] = find_prompt_sweeps([r.run_dir for r in results])
        print(format_sensitivity(analyze_prompt_sweep(sweep, None, ScoreSettings())))
    return 0


def add_prompt_sensitivity(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prompt-sensitivity", help="prompt-sensitivity tables and plots of a prompt set's runs, "
                       "from their predictions alone (no model)")
    p.add_argument("paths", nargs="+", type=Path,
                   help="run directories (the default run and its variant runs) or folders holding them")
    p.add_argument("--out", type=Path, help="output folder (default DEFAULT_RUN/prompt_sensitivity)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level of the CIs (default 0.95)")
    p.add_argument("--min-group-n", type=int, default=30,
                   help="smaller groups are flagged and left out of gaps and interactions (default 30)")
    p.add_argument("--no-plots", action="store_true", help="tables and prompt_sensitivity.json only (default: plots too)")
    p.set_defaults(handler=_prompt_sensitivity)


def _prompt_sensitivity(args: argparse.Namespace) -> int:
    from vlmface.prompt_sets.analysis import format_sensitivity, prompt_sensitivity

    for result in prompt_sensitivity(args.paths, args.out, n_boot=args.n_boot, seed=args.seed,
                                     confidence=args.confidence, min_group_n=args.min_group_n,
                                     plots=not args.no_plots):
        print(format_sensitivity(result))
    return 0
