"""Task specs: tasks/*.yaml validated with pydantic.

A spec is data: where the faces come from (sources), what is asked about them
(attributes, each with canonical labels, how raw values map to them and how derived
schemes are computed), which attributes form the groups of the bias tables, and the
default prompt templates. Errors name the file, the field and the fix.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vlmface.errors import SpecError
from vlmface.specfiles import find_specs, read_yaml_mapping, search_dirs, spec_path, validation_message

AttributeKind = Literal["categorical", "ordinal", "numeric"]
SourceKind = Literal["hub", "image_folder", "filename_regex", "manifest"]


def normalise_label(text: str) -> str:
    """How answers and raw values are matched to labels: case, spaces, `_` and `-` do not count."""
    return re.sub(r"[\s_\-]+", " ", text.strip().lower())


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
    #: [lo, hi) ranges deliberately left out of `bins` (values there are skipped samples)
    bin_gaps: list[tuple[float, float]] = Field(default_factory=list)
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
        _check_distinct_labels(self.labels)
        for section in ("display", "synonyms", "bins"):
            unknown = sorted(set(getattr(self, section)) - set(self.labels))
            if unknown:
                raise ValueError(f"'{section}' names unknown label(s) {unknown}; labels are {self.labels}")
        for label, (lo, hi) in self.bins.items():
            if hi is not None and hi <= lo:
                raise ValueError(f"bins[{label!r}] = [{lo}, {hi}]: upper bound must exceed lower bound")
        _check_bins_tile(self.bin_table(), self.bin_gaps)
        return self

    def bin_table(self) -> tuple[tuple[str, float, float], ...]:
        return tuple((label, lo, float("inf") if hi is None else hi)
                     for label, (lo, hi) in self.bins.items())


def _check_distinct_labels(labels: list[str]) -> None:
    """Labels equal up to case and spacing ("Male", "male ") could not be told apart in answers."""
    by_form: dict[str, str] = {}
    for label in labels:
        other = by_form.setdefault(normalise_label(label), label)
        if other != label:
            raise ValueError(f"labels {other!r} and {label!r} differ only in case, spaces, '_' or '-', "
                             "so answers cannot tell them apart; merge them or rename one")


def _check_bins_tile(bins: tuple[tuple[str, float, float], ...], gaps: list[tuple[float, float]]) -> None:
    """Bins, in order of their lower bounds, must neither overlap nor leave a gap not in `bin_gaps`."""
    ordered = sorted(bins, key=lambda b: (b[1], b[2]))
    declared = {(float(lo), float(hi)) for lo, hi in gaps}
    found = set()
    for (label, lo, hi), (next_label, next_lo, next_hi) in zip(ordered, ordered[1:]):
        span = lambda a, b: f"[{a:g}, {'null' if b == float('inf') else f'{b:g}'})"  # noqa: E731
        if next_lo < hi:
            raise ValueError(f"bins {label!r} {span(lo, hi)} and {next_label!r} {span(next_lo, next_hi)} "
                             "overlap: a value would fall in both; make each upper bound the next lower bound")
        if next_lo > hi and (hi, next_lo) not in declared:
            raise ValueError(f"bins leave a gap [{hi:g}, {next_lo:g}) between {label!r} and {next_label!r}: "
                             f"those values would be skipped; close it, or declare it in "
                             f"bin_gaps: [[{hi:g}, {next_lo:g}]]")
        if next_lo > hi:
            found.add((hi, next_lo))
    unused = sorted(declared - found)
    if unused:
        raise ValueError(f"bin_gaps {[list(g) for g in unused]} is not a gap between two bins")


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
    allow_outside_data_dir: bool = False  # manifest: may image paths leave the manifest's folder?
    #: manifest: file-name patterns tried in order when --data-dir is a folder (the first that
    #: matches exactly one file wins); default: the folder's single .csv or .parquet
    manifest_glob: list[str] = Field(default_factory=list)
    #: manifest: a label column the table lacks is "error", or "unavailable" (that attribute, and
    #: those derived from it, are not evaluated; one note says so)
    missing_columns: Literal["error", "unavailable"] = "error"
    #: manifest: extra table columns (not attributes) kept as group columns when the table has them
    group_columns: list[str] = Field(default_factory=list)
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> SourceSpec:
        if self.kind == "hub" and not self.path:
            raise ValueError("a hub source needs 'path' (the dataset repo id)")
        if self.kind == "filename_regex" and not self.pattern:
            raise ValueError("a filename_regex source needs 'pattern' (a regex with named groups)")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a valid regex: {exc}") from None
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
    #: the answer vocabulary (vocabularies/NAME.yaml, or a path relative to this spec) the parser uses
    vocabulary: str | None = None
    #: named perturbation sets, each as in perturbations/*.yaml; `--perturb NAME` finds them first
    #: (validated by vlmface.perturb.spec.task_perturbation_set when used, and by `vlmface validate`)
    perturbations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: named prompt sets, each as in prompt_sets/*.yaml; `--prompt-set NAME` finds them first
    #: (validated by vlmface.prompt_sets.spec.task_prompt_set when used)
    prompt_sets: dict[str, dict[str, Any]] = Field(default_factory=dict)
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
        if self.vocabulary:
            self.answer_vocabulary()  # raises SpecError naming the vocabulary
        return self

    def answer_vocabulary(self):
        """The vocabulary the answers of this task are parsed with (None: the labels' own names)."""
        from vlmface.vocabulary import load_vocabulary

        return load_vocabulary(self.vocabulary, self.path) if self.vocabulary else None

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
        if source.kind == "filename_regex":
            self._check_pattern_groups(where, source)

    def _check_pattern_groups(self, where: str, source: SourceSpec) -> None:
        """Every attribute read from the file name needs its named group, or it would vanish."""
        groups = set(re.compile(source.pattern).groupindex)
        missing = {a: source.column_for(a) for a in self.source_attributes if source.column_for(a) not in groups}
        if missing:
            raise ValueError(f"{where}.pattern has no named group for attribute(s) "
                             f"{', '.join(f'{a!r} (group {g!r})' for a, g in missing.items())}; "
                             f"add (?P<NAME>...) to the pattern or map the attribute to a group in {where}.columns; groups are {sorted(groups)}")

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
