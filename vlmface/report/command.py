"""`vlmface report [RESULTS_DIR]`: the subcommand, kept here so cli.py only registers it.

Importing this module is cheap (argparse only); pandas and matplotlib load when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="leaderboard (CSV, Markdown), plots and one HTML file "
                       "over every scored run")
    p.add_argument("results_dir", nargs="?", type=Path, default=Path("results"),
                   help="folder holding run directories (default results/)")
    p.add_argument("--out", type=Path, help="output folder (default RESULTS_DIR/report)")
    p.add_argument("--group-col", help="group column of the worst-group and gap columns "
                   "(default: each task's first group column)")
    p.add_argument("--references", type=Path, help="published numbers YAML "
                   "(default vlmface/reference_numbers.yaml)")
    p.add_argument("--no-plots", action="store_true", help="leaderboard, references and manifests only")
    p.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    from vlmface.report import build_report

    result = build_report(args.results_dir, args.out, group_col=args.group_col,
                          references=args.references, plots=not args.no_plots)
    print(result.summary())
    return 0
