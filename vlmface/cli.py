"""Command line: vlmface eval | score | compare | robustness | merge | probe | probe-compare | report | parse |
reparse | render | list | validate."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from vlmface.cli_args import add_cache_arguments, add_data_arguments, add_device_arguments
from vlmface.data.samples import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV
from vlmface.errors import VlmfaceError
from vlmface.extras import missing_extra_message
from vlmface.perturb.command import add_perturb_arguments, add_robustness
from vlmface.probes.command import add_probe, add_probe_compare
from vlmface.report.command import add_report


MAX_OPTION_CHARS = 2000  # an --option value longer than this is refused
MAX_OPTION_ITEMS = 64  # scalars in one value, all nesting levels together
MAX_OPTION_DEPTH = 3  # e.g. {a: {b: [1, 2]}}


def _option_value(key: str, text: str) -> Any:
    """YAML of a plain scalar, or a short list/mapping of them; no anchors or aliases (a few
    characters of aliases can expand to gigabytes)."""
    if len(text) > MAX_OPTION_CHARS:
        raise argparse.ArgumentTypeError(f"--option {key}: value of {len(text)} characters; at most {MAX_OPTION_CHARS}")
    try:
        events = list(yaml.parse(text, Loader=yaml.SafeLoader))
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"--option {key}: not a YAML value ({' '.join(str(exc).split())})") from None
    if any(isinstance(e, yaml.AliasEvent) or getattr(e, "anchor", None) for e in events):
        raise argparse.ArgumentTypeError(f"--option {key}: YAML anchors and aliases (&, *) are not allowed; "
                                         "write the value out")
    items, depth = _size(value)
    if items > MAX_OPTION_ITEMS or depth > MAX_OPTION_DEPTH:
        raise argparse.ArgumentTypeError(f"--option {key}: too large a value ({items} items, {depth} levels deep; "
                                         f"at most {MAX_OPTION_ITEMS} items, {MAX_OPTION_DEPTH} levels)")
    return value


def _size(value: Any) -> tuple[int, int]:
    """(scalars inside, nesting depth) of a parsed YAML value."""
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list):
        sizes = [_size(v) for v in value]
        return sum(n for n, _ in sizes), 1 + max((d for _, d in sizes), default=0)
    return 1, 0


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--option expects KEY=VALUE, got {text!r}")
    key = key.replace("-", "_")
    return key, _option_value(key, value)


def _shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"--shard expects K/N (e.g. 0/4), got {text!r}")
    return int(index), int(count)


def _pixels(text: str) -> int:
    if not text.replace("_", "").isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--max-pixels expects a positive whole number, got {text!r}")
    return int(text)


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
    p.add_argument("--max-pixels", type=_pixels, metavar="N",
                   help="an image of more pixels is that sample's error, never decoded (default: "
                        f"${MAX_PIXELS_ENV} or {DEFAULT_MAX_PIXELS:,}, Pillow's decompression-bomb limit)")
    add_device_arguments(p)
    p.add_argument("--mode", help="answer mode of generative backends: generate (default), choice (label "
                   "log-likelihood: hf, vllm, api) or constrained (decoding restricted to the labels: vllm)")
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
                   help="any other option the backend declares (repeatable); an unknown KEY is refused with the valid ones listed (default: none)")
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
        batch_size=args.batch_size, workers=args.workers, max_pixels=args.max_pixels, shard=args.shard,
        engine=args.engine,
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
    p.add_argument("--min-group-n", type=int, default=30,
                   help="smaller groups are flagged, not ranked (default 30)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--answered-only", action="store_true",
                   help="score only answered items (invalid, refused and answer errors left out of "
                        "accuracy; default: counted wrong)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level of the CIs (default 0.95)")
    p.add_argument("--min-cell-n", type=int, default=10,
                   help="truths per class x group below which per-class rates and gaps are null, "
                        "shown as 'n < N' (default 10)")
    p.add_argument("--max-group-values", type=int, default=1000,
                   help="a group column with more distinct values is refused (default 1000)")
    p.add_argument("--intersections", type=int, choices=(1, 2, 3), default=2,
                   help="cross up to this many group columns (default 2: pairs; 3 adds triples)")
    p.add_argument("--reference-group", type=_reference_group, default=None, metavar="COLUMN=GROUP",
                   help="compare every group of COLUMN to GROUP: difference and ratio with CI and a "
                        "test (default: none)")
    p.set_defaults(handler=_score)


def _reference_group(text: str) -> tuple[str, str]:
    column, sep, group = text.partition("=")
    if not sep or not column or not group:
        raise argparse.ArgumentTypeError(f"expected COLUMN=GROUP (e.g. race5=White), got {text!r}")
    return column, group


def _score(args: argparse.Namespace) -> int:
    from vlmface.run_lock import run_lock
    from vlmface.scoring import format_summary, score_run
    from vlmface.scoring.index import where_to_look

    with run_lock(args.run_dir, "score"):
        metrics = score_run(args.run_dir, min_group_n=args.min_group_n, n_boot=args.n_boot,
                            seed=args.seed, answered_only=args.answered_only,
                            confidence=args.confidence, min_cell_n=args.min_cell_n,
                            max_group_values=args.max_group_values, intersections=args.intersections,
                            reference_group=args.reference_group)
    print(format_summary(metrics))
    print(where_to_look(args.run_dir))
    return 0


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="paired comparison of 2 or more runs on the same samples "
                       "(agreement, flips by group, McNemar, accuracy difference, probability differences)")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="two or more run directories")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the paired CI (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level of the CIs (default 0.95)")
    p.add_argument("--shared-only", action="store_true",
                   help="compare the samples the runs share instead of refusing runs whose samples differ "
                        "(default: refuse)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON (default: Markdown tables)")
    p.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace) -> int:
    import json

    from vlmface.scoring.compare import compare_many
    from vlmface.scoring.compare_tables import format_many

    result = compare_many(args.runs, n_boot=args.n_boot, seed=args.seed, confidence=args.confidence,
                          shared_only=args.shared_only)
    print(json.dumps(result, indent=1) if args.json else format_many(result))
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
        from vlmface.run_lock import run_lock
        from vlmface.scoring import format_summary, score_run

        with run_lock(out, "score"):
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

    from vlmface.backends.base import Answer
    from vlmface.interpret import interpret
    from vlmface.runner import build_questions
    from vlmface.tasks import load_task

    task = load_task(args.task)
    if args.attribute not in task.attributes:
        raise VlmfaceError(f"--attribute: {task.name} has no {args.attribute!r}; it has {', '.join(task.attributes)}")
    [question] = build_questions(task, "none", None, [args.attribute])
    answer = interpret(Answer(label=None, raw=args.text), question)
    print(json.dumps({"label": answer.label, "status": answer.status}))
    return 0


def _add_reparse(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reparse", help="re-interpret a run's saved answers with the current parser (no model "
                                       "is asked) and re-score it")
    p.add_argument("run_dir", type=Path, help="the run directory whose saved answers are re-read")
    p.add_argument("--task-spec", type=Path, metavar="PATH",
                   help="read the answers with this task spec's labels, synonyms and vocabulary "
                        "(default: the spec named in the run's run.json)")
    p.add_argument("--no-score", action="store_true", help="only rewrite predictions (default: re-score)")
    p.set_defaults(handler=_reparse)


def _reparse(args: argparse.Namespace) -> int:
    from vlmface.reparse import PREVIOUS_FILE, reparse_run

    result = reparse_run(args.run_dir, args.task_spec, score=not args.no_score)
    moves = ", ".join(f"{k} {v}" for k, v in sorted(result.transitions.items())) or "none"
    print(f"reparsed {result.reinterpreted} of {result.records} predictions: {result.changed} label(s) changed "
          f"({moves}); the previous file is {result.run_dir / PREVIOUS_FILE}")
    if result.metrics is not None:
        from vlmface.scoring import format_summary

        print(format_summary(result.metrics))
    return 0


def _add_render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="print exactly what would be sent for one image, one block per request")
    p.add_argument("--task", required=True, help="task name (tasks/NAME.yaml) or path to a spec")
    p.add_argument("--prompt", help="prompt template name or path (default: the task's question prompt)")
    p.add_argument("--attribute", action="append", metavar="A",
                   help="an attribute to ask (repeatable; default: every attribute the task evaluates)")
    p.add_argument("--model", help="also show what this model wraps around the text: the chat messages of an "
                                   "api model, the full input of a local VLM (default: the text only)")
    p.add_argument("--option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="a backend option, as for eval (repeatable; default: none)")
    p.add_argument("--json", action="store_true",
                   help='print a JSON list of {"attributes": [...], "text": "..."} (default: plain text)')
    p.set_defaults(handler=_render)


def _render(args: argparse.Namespace) -> int:
    import json

    from vlmface.render import format_requests, render_requests

    requests = render_requests(args.task, args.prompt, args.attribute, args.model, dict(args.option))
    print(json.dumps(requests, indent=2, ensure_ascii=False) if args.json else format_requests(requests))
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
    for add in (_add_eval, _add_score, _add_compare, add_robustness, _add_merge, add_probe, add_probe_compare,
                add_report, _add_parse, _add_reparse, _add_render, _add_list, _add_validate):
        add(sub)
    for subparser in sub.choices.values():
        subparser.formatter_class = _HelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    from vlmface.run_record import OutputError, describe_os_error

    args = build_parser().parse_args(argv)
    try:
        _use_user_folders(args)
        return args.handler(args)
    except OutputError as exc:  # disk full, read-only output: the environment, not the input
        print(f"error: {exc}", file=sys.stderr)
        return 1
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
    except OSError as exc:
        print(f"error: {describe_os_error(exc, verb='cannot use')}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished predictions are saved; rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
