"""Prompt templates: prompts/*.jinja, rendered in a sandboxed Jinja environment.

A template file is usable by its name (file name without .jinja) with no code change.
An optional leading Jinja comment holds YAML metadata:

    {# kind: class_texts
       description: CLIP class texts; one template per non-empty line #}
    a photo of a {{ label }} person.

kind "question" (default): the whole file is one prompt; it sees `attribute`, `choices`
(display names), `labels` (canonical), `task`, `meta` (the sample's metadata), `options` and
`attributes` (every attribute the request asks).

A published prompt declares its own option lists, so a task spec's order and display names never
leak into it (see OPTIONS_HELP):

    options:
      race6: {"Black": Black, "Latino or Hispanic": Latino_Hispanic, ...}   # printed word: task label

For an attribute the header declares, `choices` are the printed words in the declared order and
`labels` the task labels they stand for; `options` maps every declared attribute to its printed
words. Each word must name a label of the task's attribute and every label needs a word (else a
SpecError naming the template and the word). The answer parser accepts the printed words as
spellings of their labels. `attributes: [race6, gender, age5]` says one request answers all of
those the run asks (vlmface.asking.requests_for groups them; `vlmface render` shows the requests).
kind "class_texts": each non-empty line is one template; it sees `label` (display name),
`raw_label`, `attribute` and `task`. Undefined variables are errors (StrictUndefined).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from vlmface.errors import SpecError
from vlmface.specfiles import find_specs, search_dirs

TEMPLATE_KINDS = ("question", "class_texts")
#: rendering bounds: items one range() may have, loop steps over range()s per render, output chars
MAX_RANGE, MAX_LOOP_STEPS, MAX_OUTPUT = 10_000, 100_000, 100_000
_STEPS = threading.local()  # loop steps taken by the render running in this thread


class RenderLimit(Exception):
    """A template went past a rendering bound (a range, the loop steps, the output size)."""


class _CountedRange:
    """range() for templates: at most MAX_RANGE items, each step counted against MAX_LOOP_STEPS."""

    def __init__(self, *args: int):
        self.items = range(*args)
        if len(self.items) > MAX_RANGE:
            raise RenderLimit(f"range() of {len(self.items):,} items; templates may use at most {MAX_RANGE:,}")

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        for item in self.items:
            _STEPS.count = getattr(_STEPS, "count", 0) + 1
            if _STEPS.count > MAX_LOOP_STEPS:
                raise RenderLimit(f"more than {MAX_LOOP_STEPS:,} loop steps (nested range() loops?)")
            yield item


class _BoundedEnvironment(SandboxedEnvironment):
    """The sandbox, plus bounds so no template (nested loops, "x" * 10**9, 9**9**9) can hang a run."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, int) and right > 64 and left not in (0, 1, -1):
            raise RenderLimit(f"{left!r} ** {right}: exponent too large for a template")
        if operator == "*":
            sizes = [len(x) for x in (left, right) if isinstance(x, (str, list, tuple))]
            counts = [x for x in (left, right) if isinstance(x, int) and not isinstance(x, bool)]
            if sizes and counts and sizes[0] * counts[0] > MAX_OUTPUT:
                raise RenderLimit(f"a repeated string or list of {sizes[0] * counts[0]:,} items; "
                                  f"at most {MAX_OUTPUT:,}")
        return super().call_binop(context, operator, left, right)


_ENV = _BoundedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)
_ENV.globals["range"] = _CountedRange


def _template_line(exc: BaseException) -> int | None:
    """The template line an exception was raised on (Jinja maps its frames to "<template>")."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _bounded_render(template, context: dict[str, Any]) -> str:
    _STEPS.count = 0
    pieces, size = [], 0
    for piece in template.generate(**context):
        size += len(piece)
        if size > MAX_OUTPUT:
            raise RenderLimit(f"output longer than {MAX_OUTPUT:,} characters")
        pieces.append(piece)
    return "".join(pieces)


@lru_cache(maxsize=256)
def _compiled(body: str):
    """Compiling a template costs milliseconds; rendering one per query must not."""
    return _ENV.from_string(body)


def prompt_dirs() -> list[Path]:
    """Where templates are looked up: $VLMFACE_PROMPTS (os.pathsep-separated; `--prompts-dir`
    prepends), then the shipped prompts/."""
    return search_dirs("VLMFACE_PROMPTS", "prompts")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    path: Path
    source: str
    kind: str = "question"
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()

    @property
    def options(self) -> dict[str, dict[str, str]]:
        """attribute -> {printed word: task label}, in the template's (the paper's) order."""
        return {attr: dict(words) for attr, words in (self.metadata.get("options") or {}).items()}

    @property
    def attributes(self) -> tuple[str, ...]:
        """The attributes one request of this template answers together (header `attributes`)."""
        return tuple(self.metadata.get("attributes") or ())

    def spellings(self, attribute: str) -> dict[str, tuple[str, ...]]:
        """task label -> the printed words that stand for it (extra answer spellings)."""
        found: dict[str, list[str]] = {}
        for word, label in self.options.get(attribute, {}).items():
            found.setdefault(label, []).append(word)
        return {label: tuple(words) for label, words in found.items()}

    def checked_options(self, attribute: str, labels: list[str], task: str) -> dict[str, str] | None:
        """The declared {word: label} of `attribute`, checked against the task's labels; None when
        the template declares no option list for it (the task's own choices are used then)."""
        declared = self.options.get(attribute)
        if declared is None:
            return None
        for word, label in declared.items():
            if label not in labels:
                raise SpecError(f"{self.path}: options.{attribute}: printed word {word!r} stands for "
                                f"{label!r}, which is not a label of {task}'s {attribute} "
                                f"(labels: {', '.join(map(str, labels))}); map it to one of those")
        missing = [label for label in labels if label not in declared.values()]
        if missing:
            raise SpecError(f"{self.path}: options.{attribute}: no printed word for {task}'s "
                            f"label(s) {', '.join(map(repr, missing))}; a model could never answer them")
        return declared

    @property
    def bodies(self) -> list[str]:
        """The template texts: one for a question, one per line for class texts."""
        body = _strip_header(self.source)
        if self.kind == "class_texts":
            return [line for line in body.splitlines() if line.strip()]
        return [body]

    def _render(self, body: str, context: dict[str, Any]) -> str:
        first_line = self.source[: max(0, self.source.find(body))].count("\n")  # body line 1 in the file
        try:
            return _bounded_render(_compiled(body), context)
        except TemplateSyntaxError as exc:
            raise SpecError(f"{self.path}:{first_line + exc.lineno}: template syntax error: {exc.message}") from None
        except Exception as exc:  # noqa: BLE001 - any failure while rendering is the template's
            line = _template_line(exc)
            where = f"{self.path}:{first_line + line}" if line else str(self.path)
            if isinstance(exc, UndefinedError):
                names = ", ".join(sorted(context))
                raise SpecError(f"{where}: {exc.message}; this template can use: {names}") from None
            if isinstance(exc, RenderLimit):
                raise SpecError(f"{where}: rendering stopped: {exc}") from None
            if isinstance(exc, SecurityError):
                raise SpecError(f"{where}: the template tried something the sandbox forbids ({exc})") from None
            raise SpecError(f"{where}: template {self.name!r} failed while rendering: "
                            f"{type(exc).__name__}: {exc}") from None

    def render_question(self, *, attribute: str, choices: list[str], labels: list[str],
                        task: str, meta: dict[str, Any], attributes: list[str] | None = None) -> str:
        if self.kind != "question":
            raise SpecError(f"{self.path}: a {self.kind} template cannot be used as a question prompt; "
                            "pick a question template with --prompt")
        declared = self.checked_options(attribute, list(labels), task)
        if declared is not None:
            choices, labels = list(declared), list(declared.values())
        context = {"attribute": attribute, "choices": choices, "labels": labels, "task": task,
                   "meta": meta, "options": {attr: list(words) for attr, words in self.options.items()},
                   "attributes": attributes or [attribute]}
        return self._render(self.bodies[0], context)

    def render_class_texts(self, *, label: str, raw_label: str, attribute: str, task: str) -> list[str]:
        if self.kind != "class_texts":
            raise SpecError(f"{self.path}: a {self.kind} template cannot give class texts; "
                            "pick a class_texts template with --prompt")
        context = {"label": label, "raw_label": raw_label, "attribute": attribute, "task": task}
        return [self._render(body, context).strip() for body in self.bodies]


def _split_header(source: str) -> tuple[dict[str, Any], str]:
    stripped = source.lstrip()
    if not stripped.startswith("{#"):
        return {}, source
    end = stripped.find("#}")
    if end < 0:
        return {}, source
    header = stripped[2:end].strip().lstrip("-").rstrip("-")
    try:
        meta = yaml.safe_load(header)
    except yaml.YAMLError:
        return {}, source
    if not isinstance(meta, dict):
        return {}, source
    rest = stripped[end + 2:]
    return meta, rest[1:] if rest.startswith("\n") else rest


def _strip_header(source: str) -> str:
    return _split_header(source)[1]


def load_template_file(path: str | Path) -> PromptTemplate:
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read template ({exc.strerror})") from None
    meta, body = _split_header(source)
    kind = meta.get("kind", "question")
    if kind not in TEMPLATE_KINDS:
        raise SpecError(f"{path}: header field 'kind' is {kind!r}; use one of {', '.join(TEMPLATE_KINDS)}")
    asked = meta.get("attributes")
    if asked is not None and (not isinstance(asked, list) or not all(isinstance(a, str) for a in asked)):
        raise SpecError(f"{path}: header field 'attributes' must be a list of attribute names "
                        f"(e.g. [race6, gender, age5]), got {asked!r}")
    try:
        _ENV.parse(body)
    except TemplateSyntaxError as exc:
        raise SpecError(f"{path}:{exc.lineno}: template syntax error: {exc.message}") from None
    _check_option_header(path, meta)
    return PromptTemplate(name=path.stem, path=path, source=source, kind=kind,
                          description=str(meta.get("description", "")), metadata=meta)


OPTIONS_HELP = ('write `options: {ATTRIBUTE: {"printed word": task label, ...}}` and '
                '`attributes: [ATTRIBUTE, ...]`')


def _check_option_header(path: Path, meta: dict[str, Any]) -> None:
    """The shape of the `options` and `attributes` header fields (labels are checked at render time)."""
    options = meta.get("options")
    if options is not None:
        if not isinstance(options, dict):
            raise SpecError(f"{path}: header field 'options' must be a mapping; {OPTIONS_HELP}")
        for attribute, words in options.items():
            if not isinstance(words, dict) or not words:
                raise SpecError(f"{path}: options.{attribute} must be a non-empty mapping of printed word "
                                f"to task label; {OPTIONS_HELP}")
            bad = [w for w, label in words.items() if not isinstance(w, str) or not isinstance(label, str)]
            if bad:
                raise SpecError(f"{path}: options.{attribute}: printed word {bad[0]!r} and its label must "
                                "both be strings (quote numbers like \"0-9\")")
    attributes = meta.get("attributes")
    if attributes is not None and (not isinstance(attributes, list)
                                   or not all(isinstance(a, str) for a in attributes)):
        raise SpecError(f"{path}: header field 'attributes' must be a list of attribute names; {OPTIONS_HELP}")


def available_templates() -> dict[str, Path]:
    return find_specs(prompt_dirs(), "*.jinja")


def load_template(name_or_path: str) -> PromptTemplate:
    """A template by name (prompts/NAME.jinja) or by path to a .jinja file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".jinja" and candidate.exists():
        return load_template_file(candidate)
    templates = available_templates()
    if name_or_path not in templates:
        raise SpecError(f"unknown prompt template {name_or_path!r}: add prompts/{name_or_path}.jinja "
                        f"or use one of: {', '.join(templates) or '(none found)'}")
    return load_template_file(templates[name_or_path])
