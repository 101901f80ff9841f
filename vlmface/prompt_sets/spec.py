"""Prompt sets: prompt_sets/*.yaml (or a task spec's `prompt_sets:` block) validated with pydantic.

A set is data: the prompt its default variant uses (the task's default when omitted; that
variant IS the plain run `vlmface eval --prompt PROMPT`, shared), named variants, and
generated option orders:

    description: the default question with 3 seeded option orders
    prompt: aldahoul_emotion          # optional: the default variant's template
    seed: 0                           # seeds the generated permutations
    permutations: 3                   # K seeded orders (perm1..permK), or "all" (perm1..perm{n!-1})
    per_image_order: true             # one more variant, `per_image`: a fresh order per image
    variants:
      facial_expression: {template: aldahoul_emotion_facial_expression}
      lower: {casing: lower}                            # lower/upper/title/capitalize
      words: {display: {emotion: {happy: joyful}}}      # display names (task labels -> words)

Every variant is named (letters, digits, '_'; "default" is the default's) and becomes one run.
Errors name the file, the field and the fix.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vlmface.errors import SpecError
from vlmface.prompts import Presentation, load_template
from vlmface.specfiles import find_specs, read_yaml_mapping, search_dirs, spec_path, validation_message

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")
DEFAULT = "default"
MAX_VARIANTS = 120


class VariantSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    template: str | None = None  # a prompts/ template name or path; None: the set's prompt
    casing: Literal["lower", "upper", "title", "capitalize"] | None = None
    display: dict[str, dict[str, str]] = Field(default_factory=dict)  # attribute -> {label: printed name}
    description: str = ""


class PromptSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    prompt: str | None = None
    seed: int = 0
    permutations: int | Literal["all"] = 0
    per_image_order: bool = False
    variants: dict[str, VariantSpec] = Field(default_factory=dict)
    path: Path | None = Field(default=None, exclude=True)

    @field_validator("variants")
    @classmethod
    def _names(cls, variants: dict[str, VariantSpec]) -> dict[str, VariantSpec]:
        bad = [name for name in variants if not NAME.match(name) or name == DEFAULT]
        if bad:
            raise ValueError(f"names {bad}: use letters, digits and '_' (they become directory names); "
                             f"{DEFAULT!r} is the set's own prompt")
        return variants

    @field_validator("permutations")
    @classmethod
    def _count(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 0 <= value <= MAX_VARIANTS:
            raise ValueError(f"permutations must be 0..{MAX_VARIANTS} or 'all', got {value}")
        return value

    @property
    def where(self) -> str:
        return str(self.path) if self.path else f"prompt set {self.name!r}"


@dataclass(frozen=True)
class PromptVariant:
    """One named way of asking: a template (None: the set's prompt), how options are printed,
    and display-name overrides. `apply` turns the plain run's questions into this variant's."""

    set: str
    name: str
    template: str | None = None
    presentation: Presentation | None = None
    display: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT

    @property
    def suffix(self) -> str:
        """The run directory's variant suffix, e.g. ps-option-order-perm1."""
        return f"ps-{self.set}-{self.name}"

    def describe(self) -> dict[str, Any]:
        """What decides the text: part of the run identity and of run.json."""
        p = self.presentation
        return {"set": self.set, "name": self.name, "template": self.template,
                "order": p.order if p else None, "seed": p.seed if p else None, "index": p.index if p else None,
                "casing": p.casing if p else None, "display": self.display}

    def apply(self, question):
        """The question as this variant asks it (vlmface.backends.base.Question)."""
        changes: dict[str, Any] = {"presentation": self.presentation}
        if self.template is not None:
            changes["template"] = load_template(self.template)
        if question.attribute in self.display:
            changes["display"] = {**question.display, **self.display[question.attribute]}
        return replace(question, **changes)


def variant_from_record(record: dict[str, Any] | None) -> PromptVariant | None:
    """The variant a run.json's `prompt_variant` describes, its template left to the run's own
    `templates` record (so `apply` keeps the question's template)."""
    if not record:
        return None
    presentation = None
    if record.get("order") or record.get("casing"):
        presentation = Presentation(record.get("order"), record.get("seed") or 0, record.get("index") or 0,
                                    record.get("casing"))
    return PromptVariant(record["set"], record["name"], None, presentation, dict(record.get("display") or {}))


def check_display(variant: PromptVariant, task) -> None:
    for attribute, names in variant.display.items():
        if attribute not in task.attributes:
            raise SpecError(f"prompt set {variant.set!r}, variant {variant.name!r}: display names for "
                            f"{attribute!r}, which {task.name} does not have ({', '.join(task.attributes)})")
        unknown = [label for label in names if label not in task.attributes[attribute].labels]
        if unknown:
            raise SpecError(f"prompt set {variant.set!r}, variant {variant.name!r}: display.{attribute}: "
                            f"{unknown} are not labels of {task.name}'s {attribute} "
                            f"({', '.join(map(str, task.attributes[attribute].labels))})")


def variants_of(spec: PromptSet, task=None, attributes: list[str] | None = None,
                only: list[str] | None = None) -> list[PromptVariant]:
    """default, the named variants, perm1..permK, per_image: in that order; `only` selects names
    (the default is always kept: every comparison is against it)."""
    found = [PromptVariant(spec.name, DEFAULT)]
    for name, v in spec.variants.items():
        found.append(PromptVariant(spec.name, name, v.template,
                                   Presentation(casing=v.casing) if v.casing else None, dict(v.display)))
    count = spec.permutations
    if count == "all":
        count = _all_count(spec, task, attributes)
    for k in range(1, count + 1):
        order = "all" if spec.permutations == "all" else "seeded"
        found.append(PromptVariant(spec.name, f"perm{k}", presentation=Presentation(order, spec.seed + k, k)))
    if spec.per_image_order:
        found.append(PromptVariant(spec.name, "per_image", presentation=Presentation("per_image", spec.seed)))
    if only:
        unknown = [name for name in only if name not in {v.name for v in found}]
        if unknown:
            raise SpecError(f"--prompt-variants: {spec.where} has no {unknown}; it has "
                            f"{', '.join(v.name for v in found)}")
        found = [v for v in found if v.is_default or v.name in only]
    if len(found) > MAX_VARIANTS + 1:
        raise SpecError(f"{spec.where}: {len(found)} variants; at most {MAX_VARIANTS + 1} (use K seeded permutations)")
    if task is not None:
        for variant in found:
            check_display(variant, task)
    return found


def _all_count(spec: PromptSet, task, attributes: list[str] | None) -> int:
    if task is None:
        raise SpecError(f"{spec.where}: permutations 'all' needs the task to count the options")
    sizes = [len(task.attributes[a].labels) for a in (attributes or task.evaluated_attributes)]
    n = max(sizes, default=1)
    if math.factorial(n) - 1 > MAX_VARIANTS:
        raise SpecError(f"{spec.where}: all orders of {n} options are {math.factorial(n):,} runs; "
                        f"use `permutations: K` (K seeded orders, K <= {MAX_VARIANTS})")
    return max(math.factorial(n) - 1, 0)


def prompt_set(raw: dict, name: str, where: str, path: Path | None = None) -> PromptSet:
    """A validated set from a mapping (a spec file's content, or a block of a task spec)."""
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: a prompt set is a mapping (variants, permutations, prompt, seed)")
    try:
        return PromptSet(**{"name": name, **raw}, path=path)
    except ValidationError as exc:
        raise SpecError(validation_message(where, "prompt set", exc,
                                           "see the fields in vlmface/prompt_sets/spec.py")) from None


def prompt_set_dirs() -> list[Path]:
    """$VLMFACE_PROMPT_SETS (os.pathsep-separated), then ./prompt_sets, then this checkout's."""
    return search_dirs("VLMFACE_PROMPT_SETS", "prompt_sets")


def available_prompt_sets() -> dict[str, Path]:
    return find_specs(prompt_set_dirs())


def load_prompt_set(name_or_path: str | Path, task=None) -> PromptSet:
    """A task spec's own set `name` first, else prompt_sets/NAME.yaml, else a path to a YAML file."""
    if task is not None and str(name_or_path) in task.prompt_sets:
        name = str(name_or_path)
        return prompt_set(task.prompt_sets[name], name, f"{task.where}: prompt_sets.{name}", task.path)
    path = spec_path(name_or_path, available_prompt_sets(), "prompt set")
    raw = read_yaml_mapping(path, "prompt set (variants, permutations)")
    return prompt_set(raw, path.stem, str(path), path)
