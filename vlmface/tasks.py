"""Task specs: tasks/*.yaml validated with pydantic.

A spec is data: where the faces come from (sources), what is asked about them
(attributes, each with canonical labels, how raw values map to them and how derived
schemes are computed), which attributes form the groups of the bias tables, and the
default prompt templates. Errors name the file, the field and the fix.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vlmface.errors import SpecError
from vlmface.specfiles import find_specs, read_yaml_mapping, search_dirs, spec_path, validation_message

AttributeKind = Literal["categorical", "ordinal", "numeric"]
SourceKind = Literal["hub", "image_folder", "filename_regex", "manifest"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Derivation(_Strict):
    """How a derived attribute is computed from another one.

    `merge` maps source labels to this attribute's labels (unlisted labels keep their
    name); with no `merge`, a numeric source is binned with this attribute's `bins`.
    """

    from_: str = Field(alias="from")
    merge: dict[str, str] = Field(default_factory=dict)


class AttributeSpec(_Strict):
    kind: AttributeKind = "categorical"
    labels: list[str] = Field(default_factory=list)
    display: dict[str, str] = Field(default_factory=dict)
    synonyms: dict[str, list[str]] = Field(default_factory=dict)  # label -> other answers meaning it
    bins: dict[str, tuple[float, float | None]] = Field(default_factory=dict)
    derive: Derivation | None = None
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> AttributeSpec:
        if self.kind == "numeric":
            if self.labels:
                raise ValueError("a numeric attribute has no 'labels'; use kind: ordinal with 'bins'")
            return self
        if not self.labels:
            raise ValueError(f"a {self.kind} attribute needs 'labels' (its canonical label list)")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("'labels' has duplicates")
        for section in ("display", "synonyms", "bins"):
            unknown = sorted(set(getattr(self, section)) - set(self.labels))
            if unknown:
                raise ValueError(f"'{section}' names unknown label(s) {unknown}; labels are {self.labels}")
        for label, (lo, hi) in self.bins.items():
            if hi is not None and hi <= lo:
                raise ValueError(f"bins[{label!r}] = [{lo}, {hi}]: upper bound must exceed lower bound")
        return self

    def bin_table(self) -> tuple[tuple[str, float, float], ...]:
        return tuple((label, lo, float("inf") if hi is None else hi)
                     for label, (lo, hi) in self.bins.items())


class SourceSpec(_Strict):
    kind: SourceKind
    path: str | None = None  # hub repo id, or a local folder / manifest file
    config: str | None = None  # hub config name
    split: str | None = None
    glob: str = "**/*"
    pattern: str | None = None  # filename_regex: named groups -> attributes
    image_column: str = "image"
    id_column: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)  # attribute -> raw column/group name
    values: dict[str, dict[str, str]] = Field(default_factory=dict)  # attribute -> raw -> label
    label_attribute: str | None = None  # image_folder: attribute the folder name gives
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> SourceSpec:
        if self.kind == "hub" and not self.path:
            raise ValueError("a hub source needs 'path' (the dataset repo id)")
        if self.kind == "filename_regex" and not self.pattern:
            raise ValueError("a filename_regex source needs 'pattern' (a regex with named groups)")
        if self.kind == "image_folder" and not self.label_attribute:
            raise ValueError("an image_folder source needs 'label_attribute' (the attribute folder names give)")
        return self

    @property
    def is_local(self) -> bool:
        return self.kind != "hub"

    def column_for(self, attribute: str) -> str:
        return self.columns.get(attribute, attribute)


class PromptDefaults(_Strict):
    """Default templates per attribute ('*' for all others), one map per prompt style."""

    question: dict[str, str] = Field(default_factory=dict)
    class_texts: dict[str, str] = Field(default_factory=dict)

    def for_attribute(self, style: str, attribute: str) -> str | None:
        table = getattr(self, style, {}) or {}
        return table.get(attribute, table.get("*"))


class TaskSpec(_Strict):
    name: str
    description: str = ""
    sources: dict[str, SourceSpec]
    attributes: dict[str, AttributeSpec]
    group_columns: list[str] = Field(default_factory=list)
    evaluate: list[str] = Field(default_factory=list)  # default: every attribute
    prompts: PromptDefaults = Field(default_factory=PromptDefaults)
    #: named perturbation sets, each as in perturbations/*.yaml; `--perturb NAME` finds them first
    perturbations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    path: Path | None = Field(default=None, exclude=True)

    @field_validator("sources")
    @classmethod
    def _some_source(cls, sources: dict[str, SourceSpec]) -> dict[str, SourceSpec]:
        if not sources:
            raise ValueError("declare at least one source")
        return sources

    @model_validator(mode="after")
    def _cross_check(self) -> TaskSpec:
        names = set(self.attributes)
        for field_name in ("group_columns", "evaluate"):
            unknown = [a for a in getattr(self, field_name) if a not in names]
            if unknown:
                raise ValueError(f"{field_name}: unknown attribute(s) {unknown}; attributes are {sorted(names)}")
        for name, attr in self.attributes.items():
            if attr.derive:
                self._check_derivation(name, attr)
        for source_name, source in self.sources.items():
            self._check_source(source_name, source)
        for name in self.perturbations:
            self.perturbation_set(name)  # raises SpecError naming perturbations.NAME
        return self

    def perturbation_set(self, name: str):
        """The task's own perturbation set `name`, validated like a perturbations/*.yaml file."""
        from vlmface.perturb.spec import perturbation_set

        return perturbation_set(self.perturbations[name], name, f"{self.where}: perturbations.{name}", self.path)

    def _check_derivation(self, name: str, attr: AttributeSpec) -> None:
        parent = self.attributes.get(attr.derive.from_)
        if parent is None:
            raise ValueError(f"attributes.{name}.derive.from: unknown attribute {attr.derive.from_!r}")
        if parent.derive is not None:
            raise ValueError(f"attributes.{name}.derive.from: {attr.derive.from_!r} is itself derived; "
                             "derive from a source attribute")
        if attr.derive.merge:
            bad_keys = sorted(set(attr.derive.merge) - set(parent.labels))
            bad_values = sorted(set(attr.derive.merge.values()) - set(attr.labels))
            if bad_keys or bad_values:
                raise ValueError(f"attributes.{name}.derive.merge: unknown label(s) "
                                 f"{bad_keys + bad_values}; from-labels {parent.labels}, to-labels {attr.labels}")
            kept = sorted(set(parent.labels) - set(attr.derive.merge) - set(attr.labels))
            if kept:
                raise ValueError(f"attributes.{name}.derive.merge: labels {kept} of {attr.derive.from_!r} "
                                 "are neither merged nor labels of this attribute")
        elif parent.kind != "numeric" or not attr.bins:
            raise ValueError(f"attributes.{name}.derive: give 'merge' (label -> label), or derive from a "
                             "numeric attribute and declare 'bins' on this one")

    def _check_source(self, source_name: str, source: SourceSpec) -> None:
        where = f"sources.{source_name}"
        for section in ("columns", "values"):
            unknown = sorted(set(getattr(source, section)) - set(self.attributes))
            if unknown:
                raise ValueError(f"{where}.{section}: unknown attribute(s) {unknown}")
        for attribute, mapping in source.values.items():
            labels = self.attributes[attribute].labels
            bad = sorted({v for v in mapping.values() if v not in labels})
            if bad:
                raise ValueError(f"{where}.values.{attribute}: unknown label(s) {bad}; "
                                 f"canonical labels are {labels}")
        if source.label_attribute and source.label_attribute not in self.attributes:
            raise ValueError(f"{where}.label_attribute: unknown attribute {source.label_attribute!r}")

    @property
    def source_attributes(self) -> list[str]:
        return [name for name, attr in self.attributes.items() if attr.derive is None]

    @property
    def evaluated_attributes(self) -> list[str]:
        return list(self.evaluate) or list(self.attributes)

    @cached_property
    def default_source(self) -> str:
        return next(iter(self.sources))

    def source(self, name: str | None) -> tuple[str, SourceSpec]:
        name = name or self.default_source
        if name not in self.sources:
            raise SpecError(f"{self.where}: no source {name!r}; sources are {', '.join(self.sources)}")
        return name, self.sources[name]

    @property
    def where(self) -> str:
        return str(self.path) if self.path else f"task {self.name!r}"


def task_dirs() -> list[Path]:
    """$VLMFACE_TASKS (os.pathsep-separated; `--tasks-dir` prepends), then the shipped tasks/."""
    return search_dirs("VLMFACE_TASKS", "tasks")


def available_tasks() -> dict[str, Path]:
    return find_specs(task_dirs())


def load_task_file(path: str | Path) -> TaskSpec:
    path = Path(path)
    raw = read_yaml_mapping(path, "task spec (name, sources, attributes)")
    raw.setdefault("name", path.stem)
    try:
        return TaskSpec(**raw, path=path)
    except ValidationError as exc:
        raise SpecError(validation_message(path, "task spec", exc,
                                           "see the README's Tasks section for the fields a spec may have")) from None


def load_task(name_or_path: str | Path) -> TaskSpec:
    """A task by name (tasks/NAME.yaml) or by path to a YAML file."""
    return load_task_file(spec_path(name_or_path, available_tasks(), "task"))
