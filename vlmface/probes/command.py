"""`vlmface probe`: the subcommand, kept here so cli.py only registers it (argparse only at import)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vlmface.cli_args import add_cache_arguments, add_data_arguments, add_device_arguments


def add_probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="probe what models' embeddings say about faces (social perception, "
                       "denigration) and compare models")
    p.add_argument("--probe", required=True, help="probe spec: a name in tasks/probes/ (social-perception, "
                   "denigration) or a path to a .yaml spec")
    p.add_argument("--task", required=True, help="task name (tasks/NAME.yaml, tasks/probes/datasets/NAME.yaml) "
                   "or path to a task spec")
    p.add_argument("--models", required=True, help="comma-separated registry aliases or clip:WEIGHTS specs")
    add_data_arguments(p, "probe N images, stratified by the probe's factors")
    p.add_argument("--out", type=Path, required=True, help="output folder (deltas.csv, samples.csv, tables, plots)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level of the CIs (default 0.95)")
    p.add_argument("--convention", choices=["templates", "embedding"],
                   help="cosine averaged over templates (the paper's; default) or to the mean template embedding")
    p.add_argument("--names", help="comma-separated display names of the models, in --models order, used in every "
                   "table and plot (default: the registry alias, or the last path component of a local dir)")
    p.add_argument("--preset", help="the probe spec's dataset settings: 'toolkit' (default; the spec's `datasets`) "
                   "or a preset of the spec, e.g. 'paper' (Hausladen et al.'s protocol)")
    p.add_argument("--delta", choices=["absolute", "relative"],
                   help="social perception: cos - neutral (default: the spec's, absolute) or (cos - neutral) / neutral")
    _add_contrast(p)
    add_device_arguments(p)
    p.add_argument("--batch-size", type=int, help="images per forward pass (default: the backend's)")
    add_cache_arguments(p)
    p.add_argument("--no-plots", action="store_true", help="tables only")
    p.add_argument("--perturb", metavar="SPEC",
                   help="social perception: also probe the same images at every level of each perturbation in "
                   "SPEC (perturbations/NAME.yaml or a path) into OUT/perturb-NAME-LEVEL/, then write the "
                   "score shifts to OUT/robustness/ (default: no perturbation)")
    p.add_argument("--perturb-only", metavar="NAMES", help="with --perturb: comma-separated subset of its "
                   "perturbations (default: all)")
    p.set_defaults(handler=run_probe)


def run_probe(args: argparse.Namespace) -> int:
    from vlmface.probes import probe
    from vlmface.probes.compare import parse_contrasts
    from vlmface.probes.options import ProbeOptions

    options = ProbeOptions.of(
        data_dir=args.data_dir, source=args.source, limit=args.limit, seed=args.seed, out=args.out,
        n_boot=args.n_boot, confidence=args.confidence, convention=args.convention, device=args.device,
        dtype=args.dtype, batch_size=args.batch_size, cache_dir=False if args.no_cache else args.cache_dir,
        plots=not args.no_plots, names=args.names, preset=args.preset, delta=args.delta,
        contrasts=parse_contrasts(args.contrast))
    if args.perturb_only and not args.perturb:
        from vlmface.errors import VlmfaceError

        raise VlmfaceError("--perturb-only needs --perturb SPEC")
    if args.perturb:
        from vlmface.perturb import load_perturbations, perturbations_of
        from vlmface.probes.perturbed import probe_sweep

        perturbations = perturbations_of(load_perturbations(args.perturb),
                                         args.perturb_only.split(",") if args.perturb_only else None)
        for path in probe_sweep(args.probe, args.task, args.models, perturbations, options):
            print(f"shift table: {path}")
        return 0
    print(probe(args.probe, args.task, args.models, options).summary())
    return 0


def _add_contrast(p: argparse.ArgumentParser) -> None:
    p.add_argument("--contrast", action="append", metavar="C=G1,G2",
                   help="gap_differences.csv: take factor C's gap as mean(G1) - mean(G2) instead of model A's "
                   "highest minus lowest group (repeatable, one per factor; default: none)")


def add_probe_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe-compare", help="compare the models of probe folders made separately, from their "
                       "saved per-image scores (nothing is re-encoded)")
    p.add_argument("folders", nargs="+", type=Path, metavar="PROBE_DIR",
                   help="folders written by `vlmface probe` (same task, images and probe spec)")
    p.add_argument("--out", type=Path, required=True, help="output folder of the comparison")
    p.add_argument("--names", help="comma-separated display names of all the folders' models, in folder order "
                   "(default: the names the probes used)")
    _add_contrast(p)
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level of the CIs (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--no-plots", action="store_true", help="tables only (default: tables and plots)")
    p.set_defaults(handler=run_probe_compare)


def run_probe_compare(args: argparse.Namespace) -> int:
    from vlmface.probes.compare import parse_contrasts
    from vlmface.probes.comparison import probe_compare

    record = probe_compare(args.folders, args.out, names=args.names, contrasts=parse_contrasts(args.contrast),
                           n_boot=args.n_boot, confidence=args.confidence, seed=args.seed, plots=not args.no_plots)
    print(f"probe-compare: {', '.join(record['names'])} on {record['images']} images "
          f"({record['images_encoded']} encoded) -> {args.out}")
    return 0
