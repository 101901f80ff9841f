"""Command line: vlmface eval | score | compare | robustness | merge | probe | report | parse | list | validate."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from vlmface.cli_args import add_cache_arguments, add_data_arguments, add_device_arguments
from vlmface.errors import VlmfaceError
from vlmface.extras import missing_extra_message
from vlmface.perturb.command import add_perturb_arguments, add_robustness
from vlmface.probes.command import add_probe
from vlmface.report.command import add_report


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--option expects KEY=VALUE, got {text!r}")
    return key.replace("-", "_"), yaml.safe_load(value)


def _shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"--shard expects K/N (e.g. 0/4), got {text!r}")
    return int(index), int(count)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="run a model on a task and score it")
    p.add_argument("--task", required=True, help="task name (tasks/NAME.yaml) or path to a spec")
    p.add_argument("--model", required=True, help="registry alias or FAMILY:WEIGHTS (e.g. hf:/path/dir)")
    p.add_argument("--prompt", help="prompt template name (prompts/NAME.jinja) or path; default: the task's")
    add_data_arguments(p, "evaluate N samples, stratified by the group columns")
    p.add_argument("--out", default="results", help="results root (default results/)")
    p.add_argument("--attributes",
                   help="comma-separated subset of the task's attributes (default: those the task evaluates)")
    p.add_argument("--batch-size", type=int, help="samples per batch (default: the backend's)")
    p.add_argument("--workers", type=int, help="image decoding/preprocessing processes "
                   "(default: the backend's; 0 = in the main process)")
    add_device_arguments(p)
    p.add_argument("--mode", help="answer mode of generative backends: generate (default) or choice")
    p.add_argument("--max-new-tokens", type=int,
                   help="generation budget of generative backends (default: the backend's)")
    p.add_argument("--base-url", help="api models: OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 "
                   "(default: the registry entry's)")
    p.add_argument("--api-key-env", metavar="NAME",
                   help="api models: environment variable holding the key, never written anywhere "
                   "(default: OPENAI_API_KEY or the registry entry's)")
    p.add_argument("--concurrency", type=int, help="api models: requests in flight (default 8)")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="api models: seconds per request before a retry (default 60)")
    p.add_argument("--max-retries", type=int,
                   help="api models: retries on 429/5xx/timeouts/connection errors (default 6)")
    p.add_argument("--max-cost", type=float, metavar="USD",
                   help="api models: stop before this command spends more than USD on requests "
                   "(default: no limit)")
    p.add_argument("--option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="any other backend option, repeatable (default: none)")
    p.add_argument("--shard", type=_shard, metavar="K/N",
                   help="run only shard K of N of the selected samples, combined with `vlmface merge` "
                   "(default: all of them)")
    add_cache_arguments(p)
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="where the model runs: this process, or an actor pool on Ray")
    p.add_argument("--ray-address", help="with --engine ray: an existing cluster (default: start a local one)")
    p.add_argument("--overwrite", action="store_true", help="delete an existing run directory first")
    p.add_argument("--retry-errors", action="store_true", help="redo samples that ended in an error")
    p.add_argument("--no-score", action="store_true", help="only write predictions")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_perturb_arguments(p)
    p.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from vlmface.runner import EvalConfig, evaluate
    from vlmface.scoring.index import where_to_look

    options = {"device": args.device, "dtype": args.dtype, "mode": args.mode,
               "max_new_tokens": args.max_new_tokens, "base_url": args.base_url,
               "api_key_env": args.api_key_env, "concurrency": args.concurrency, "timeout": args.timeout,
               "max_retries": args.max_retries, "max_cost": args.max_cost, **dict(args.option)}
    config = EvalConfig(
        task=args.task, model=args.model, prompt=args.prompt, limit=args.limit, seed=args.seed,
        data_dir=args.data_dir, source=args.source, out=args.out,
        attributes=args.attributes.split(",") if args.attributes else None,
        batch_size=args.batch_size, workers=args.workers, shard=args.shard, engine=args.engine,
        ray_address=args.ray_address, cache_dir=False if args.no_cache else args.cache_dir,
        options={k: v for k, v in options.items() if v is not None},
        overwrite=args.overwrite, retry_errors=args.retry_errors, score=not args.no_score,
        progress=not args.no_progress)
    if args.perturb:
        from vlmface.perturb.command import run_sweep

        return run_sweep(config, args.perturb, args.perturb_only, args.perturb_examples)
    result = evaluate(config)
    print(f"run directory: {result.run_dir}")
    print(where_to_look(result.run_dir, Path(config.out)))
    return 0


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="(re)score a run directory from its predictions.jsonl")
    p.add_argument("run_dir", type=Path, help="a run directory (holding run.json and predictions.jsonl)")
    p.add_argument("--min-group-n", type=int, default=30, help="smaller groups are flagged, not ranked")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples")
    p.add_argument("--answered-only", action="store_true",
                   help="score only answered items (invalid and refused left out of accuracy)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level of the CIs")
    p.set_defaults(handler=_score)


def _score(args: argparse.Namespace) -> int:
    from vlmface.scoring import format_summary, score_run
    from vlmface.scoring.index import where_to_look

    metrics = score_run(args.run_dir, min_group_n=args.min_group_n, n_boot=args.n_boot,
                        seed=args.seed, answered_only=args.answered_only,
                        confidence=args.confidence)
    print(format_summary(metrics))
    print(where_to_look(args.run_dir))
    return 0


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="paired comparison of two runs on the same samples")
    p.add_argument("run_a", type=Path, help="the first run directory (A)")
    p.add_argument("run_b", type=Path, help="the second run directory (B); the difference is B - A")
    p.add_argument("--n-boot", type=int, default=1000, help="paired bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level of the CI")
    p.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace) -> int:
    from vlmface.scoring import compare_runs, format_comparison

    print(format_comparison(compare_runs(args.run_a, args.run_b, n_boot=args.n_boot, seed=args.seed,
                                                confidence=args.confidence)))
    return 0


def _add_merge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="merge shard runs (eval --shard K/N) into one run and score it")
    p.add_argument("run_dirs", nargs="+", type=Path, help="the shard run directories (together: every shard once)")
    p.add_argument("--out", type=Path, required=True, help="the merged run directory (must be new)")
    p.add_argument("--no-score", action="store_true", help="only merge; do not score the merged run")
    p.set_defaults(handler=_merge)


def _merge(args: argparse.Namespace) -> int:
    from vlmface.merge import merge_runs

    out = merge_runs(args.run_dirs, args.out)
    print(f"merged {len(args.run_dirs)} shards into {out}")
    if not args.no_score:
        from vlmface.scoring import format_summary, score_run

        print(format_summary(score_run(out)))
    return 0


def _add_parse(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("parse", help="show how a free-text answer parses: label, invalid or refused")
    p.add_argument("--task", required=True, help="task name or path to a spec")
    p.add_argument("--attribute", required=True, help="the attribute the answer is about")
    p.add_argument("text", help="the model's answer")
    p.set_defaults(handler=_parse)


def _parse(args: argparse.Namespace) -> int:
    import json

    from vlmface.parse import parse_answer
    from vlmface.runner import build_questions
    from vlmface.tasks import load_task

    task = load_task(args.task)
    if args.attribute not in task.attributes:
        raise VlmfaceError(f"--attribute: {task.name} has no {args.attribute!r}; it has {', '.join(task.attributes)}")
    [question] = build_questions(task, "none", None, [args.attribute])
    answer = parse_answer(args.text, question)
    print(json.dumps({"label": answer.label, "status": answer.status}))
    return 0


def _add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list tasks, models, prompt templates or perturbation specs, and where "
                       "each comes from (shipped or a user folder)")
    p.add_argument("what", nargs="?", choices=["tasks", "probes", "models", "prompts", "perturbations"],
                   default="tasks",
                   help="what to list")
    p.set_defaults(handler=_list)


def _list(args: argparse.Namespace) -> int:
    from vlmface.listing import list_specs

    return list_specs(args.what)


def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check task, probe and perturbation specs, prompt templates and the "
                       "model registry (user folders and the shipped ones)")
    p.add_argument("tasks", nargs="*", help="task names or spec paths (default: all)")
    p.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    from vlmface.validation import folders_read, validate_all

    for line in folders_read():
        print(line, file=sys.stderr)
    problems = validate_all(args.tasks)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("all task, probe and perturbation specs, prompt templates and registry entries are valid")
    return 1 if problems else 0


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows '(default: X)' after every option's help, except where there is no default to show
    (None, a store_true flag) or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        no_default = action.default is None or action.default is False or action.default in ([], argparse.SUPPRESS)
        if no_default or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


USER_FOLDERS = {"--tasks-dir": ("VLMFACE_TASKS", "task specs (with probes/ and probes/datasets/ inside)"),
                "--prompts-dir": ("VLMFACE_PROMPTS", "prompt templates (*.jinja)"),
                "--perturbations-dir": ("VLMFACE_PERTURBATIONS", "perturbation specs")}


def _add_user_folders(parser: argparse.ArgumentParser) -> None:
    for flag, (env_var, what) in USER_FOLDERS.items():
        parser.add_argument(flag, action="append", default=[], metavar="DIR", type=Path,
                            help=f"a folder of your own {what}, read before the shipped ones (a file "
                            f"there overrides a shipped one of the same name); repeatable; also ${env_var} "
                            "(os.pathsep-separated) (default: none)")


def _use_user_folders(args: argparse.Namespace) -> None:
    """--tasks-dir and the like go first in their environment variable, the one place the spec
    lookup reads (and which Ray workers and subprocesses inherit)."""
    for flag, (env_var, _) in USER_FOLDERS.items():
        given = [str(Path(d).resolve()) for d in getattr(args, flag[2:].replace("-", "_"))]
        if given:
            os.environ[env_var] = os.pathsep.join(given + [p for p in [os.environ.get(env_var)] if p])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlmface", description=__doc__, formatter_class=_HelpFormatter)
    _add_user_folders(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="one of the commands below; `vlmface COMMAND --help` lists its options")
    for add in (_add_eval, _add_score, _add_compare, add_robustness, _add_merge, add_probe, add_report,
                _add_parse, _add_list, _add_validate):
        add(sub)
    for subparser in sub.choices.values():
        subparser.formatter_class = _HelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _use_user_folders(args)
        return args.handler(args)
    except VlmfaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        message = missing_extra_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted: finished predictions are saved; rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
