"""Argument groups shared by the subcommands that read a task's faces (eval, probe)."""

from __future__ import annotations

import argparse


def add_data_arguments(p: argparse.ArgumentParser, limit_help: str) -> None:
    p.add_argument("--data-dir", help="local copy of the dataset for the chosen source, e.g. "
                   ".../utkface/crop_part1 or .../fer2013/PrivateTest (default: the source's own location, "
                   "e.g. the Hugging Face hub)")
    p.add_argument("--source", help="which of the task's sources to read (default: its first)")
    p.add_argument("--limit", type=int, help=limit_help + " (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit sample (default 0)")


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, mps")
    p.add_argument("--dtype", help="fp32, fp16 or bf16 (GPU); default: the model's")


def add_cache_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", help="backend caches (image embeddings, API responses; default OUT/.cache); "
                   "share it between evals and probes so no image is encoded twice")
    p.add_argument("--no-cache", action="store_true", help="use and write no backend cache")
