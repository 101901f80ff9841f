"""Prompt templates: prompts/*.jinja, rendered in a sandboxed Jinja environment.

A template file is usable by its name (file name without .jinja) with no code change.
An optional leading Jinja comment holds YAML metadata:

    {# kind: class_texts
       description: CLIP class texts; one template per non-empty line #}
    a photo of a {{ label }} person.

kind "question" (default): the whole file is one prompt; it sees `attribute`, `choices`
(display names), `labels` (canonical), `task` and `meta` (the sample's metadata).
kind "class_texts": each non-empty line is one template; it sees `label` (display name),
`raw_label`, `attribute` and `task`. Undefined variables are errors (StrictUndefined).
"""

from __future__ import annotations

import hashlib
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
_ENV = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)


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
    def bodies(self) -> list[str]:
        """The template texts: one for a question, one per line for class texts."""
        body = _strip_header(self.source)
        if self.kind == "class_texts":
            return [line for line in body.splitlines() if line.strip()]
        return [body]

    def _render(self, body: str, context: dict[str, Any]) -> str:
        try:
            return _compiled(body).render(**context)
        except UndefinedError as exc:
            names = ", ".join(sorted(context))
            raise SpecError(f"{self.path}: {exc.message}; this template can use: {names}") from None
        except TemplateSyntaxError as exc:
            raise SpecError(f"{self.path}:{exc.lineno}: template syntax error: {exc.message}") from None
        except SecurityError as exc:
            raise SpecError(f"{self.path}: the template tried something the sandbox forbids ({exc})") from None

    def render_question(self, *, attribute: str, choices: list[str], labels: list[str],
                        task: str, meta: dict[str, Any]) -> str:
        if self.kind != "question":
            raise SpecError(f"{self.path}: a {self.kind} template cannot be used as a question prompt; "
                            "pick a question template with --prompt")
        context = {"attribute": attribute, "choices": choices, "labels": labels,
                   "task": task, "meta": meta}
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
    try:
        _ENV.parse(body)
    except TemplateSyntaxError as exc:
        raise SpecError(f"{path}:{exc.lineno}: template syntax error: {exc.message}") from None
    return PromptTemplate(name=path.stem, path=path, source=source, kind=kind,
                          description=str(meta.get("description", "")), metadata=meta)


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
