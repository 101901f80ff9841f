"""Probe specs: tasks/probes/*.yaml (kind: probe), validated with pydantic.

A probe spec is data, like a task spec: the texts a model is probed with (templates, the
neutral prompt, term sets per dimension, control words; or the classes of the denigration
probe) and, per task it runs on, which attributes are the factors of its tables and which
samples are left out. Which task is probed comes from the command line; the spec only says
how each task's samples are read. Errors name the file, the field and the fix.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vlmface.errors import SpecError
from vlmface.specfiles import find_specs, read_yaml_mapping, spec_path, validation_message
from vlmface.tasks import TaskSpec, load_task, task_dirs

PROBES_SUBDIR = "probes"
DATASETS_SUBDIR = "datasets"  # task specs of probe-only datasets (CausalFace), beside the probes


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ranking(_Strict):
    """How Skew@k, MaxSkew@k and NDKL rank the images and what shares they expect."""

    k: list[int] = Field(default_factory=lambda: [100, 1000])
    target: Literal["observed", "uniform"] = "observed"  # the desired group shares of Skew@k / NDKL
    score: Literal["delta", "raw"] = "delta"  # rank by the dimension's delta cosine, or its raw cosine (paper)
    groups: dict[str, dict[str, str]] = Field(default_factory=dict)  # attribute -> label -> ranked group;
    #                                  images whose label is not listed are not ranked (e.g. Asian = East + SE)
    balance: list[str] = Field(default_factory=list)  # downsample every cell of these attributes to equal size
    balance_seed: int = 42


class DatasetSettings(_Strict):
    """How one task's samples enter a probe (a probe spec's `datasets.<task name>`)."""

    design: Literal["observational", "experimental"] = "observational"
    factors: list[str] = Field(default_factory=list)  # group columns of the tables; default: the task's
    identity: str | None = None  # experimental: the attribute naming the (pseudo-)identity
    unvaried: str | None = None  # experimental: the label a factor holds where another one varies
    exclude: dict[str, list[str]] = Field(default_factory=dict)  # attribute -> labels left out
    intersections: list[str] = Field(default_factory=list)  # default: the factors
    min_distance: dict[str, float] = Field(default_factory=dict)  # factor -> least |a - b| of a pair
    people: list[str] = Field(default_factory=list)  # denigration: attributes whose labels make the classes
    ranking: Ranking | None = None  # overrides the spec's `ranking` for this task
    measures_exclude: dict[str, list[str]] = Field(default_factory=dict)  # left out of group means, markedness
    #                    and rankings but kept for the factor pairs (e.g. CausalFace: the age subset only)
    source: str | None = None  # the task source used when the command line names none
    uniform: dict[str, int] = Field(default_factory=dict)  # attribute -> least images per value: values with
    #                    fewer are dropped, the others sampled down to the rarest kept value's count

    @model_validator(mode="after")
    def _check(self) -> DatasetSettings:
        if self.design == "experimental" and not self.identity:
            raise ValueError("an experimental design needs 'identity' (the attribute naming who is rendered)")
        if self.identity and self.identity in self.factors:
            raise ValueError(f"'identity' {self.identity!r} is also listed in 'factors'; list it once, as identity")
        return self

    def pair_factors(self) -> list[str]:
        """The factors of the pair analysis: the identity (if any) first, then the table factors."""
        return ([self.identity] if self.identity else []) + list(self.factors)

    def resolve(self, task: TaskSpec, where: str) -> DatasetSettings:
        """These settings with defaults filled from `task`, checked against its attributes."""
        factors = self.factors or [c for c in task.group_columns]
        resolved = self.model_copy(update={"factors": factors,
                                           "intersections": self.intersections or list(factors)})
        known = task.attributes
        named = {"factors": factors, "intersections": resolved.intersections, "exclude": list(self.exclude),
                 "min_distance": list(self.min_distance), "people": self.people,
                 "identity": [self.identity] if self.identity else [],
                 "measures_exclude": list(self.measures_exclude), "uniform": list(self.uniform),
                 "ranking.groups": list(self.ranking.groups) if self.ranking else [],
                 "ranking.balance": list(self.ranking.balance) if self.ranking else []}
        for field_name, names in named.items():
            unknown = [n for n in names if n not in known]
            if unknown:
                raise SpecError(f"{where}.{field_name}: unknown attribute(s) {unknown} of task {task.name!r}; "
                                f"its attributes are {sorted(known)}")
        if not factors:
            raise SpecError(f"{where}.factors: task {task.name!r} declares no group_columns; list the "
                            "attributes whose groups the probe compares")
        for field_name, mapping in (("exclude", self.exclude), ("measures_exclude", self.measures_exclude),
                                    ("ranking.groups", self.ranking.groups if self.ranking else {})):
            for attribute, labels in mapping.items():
                spec = known[attribute]
                bad = [label for label in labels if spec.labels and label not in spec.labels]
                if bad:
                    raise SpecError(f"{where}.{field_name}.{attribute}: unknown label(s) {bad}; labels are "
                                    f"{spec.labels}")
        for attribute in [*factors, *self.people]:
            if known[attribute].kind == "numeric" and attribute != self.identity:
                raise SpecError(f"{where}: {attribute!r} is numeric; use a binned (ordinal) attribute as a factor")
        return resolved


DEFAULT_PRESET = "toolkit"  # a spec's `datasets`: the toolkit's own protocol


class ProbeSpecBase(_Strict):
    """What every probe spec holds; a method's spec model adds its own fields (and narrows `method`)."""

    name: str
    kind: Literal["probe"]
    method: str  # the probe method (vlmface.probes.method): social_perception, denigration, ...
    module: str | None = None  # the importable module of a method that is not built in (my_probes.toy)
    description: str = ""
    datasets: dict[str, DatasetSettings] = Field(default_factory=dict)
    presets: dict[str, dict[str, DatasetSettings]] = Field(default_factory=dict)  # name -> task -> settings
    path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _check_presets(self) -> ProbeSpecBase:
        if DEFAULT_PRESET in self.presets:
            raise ValueError(f"presets: {DEFAULT_PRESET!r} is the name of `datasets`; name the preset otherwise")
        return self

    @property
    def where(self) -> str:
        return str(self.path) if self.path else f"probe {self.name!r}"

    @property
    def preset_names(self) -> list[str]:
        return [DEFAULT_PRESET, *self.presets]

    def settings_for(self, task: TaskSpec, preset: str | None = None) -> DatasetSettings:
        """The task's settings under `preset` (default: the toolkit's, the spec's `datasets`)."""
        preset = preset or DEFAULT_PRESET
        if preset == DEFAULT_PRESET:
            return self.datasets.get(task.name, DatasetSettings()).resolve(task, f"{self.where}: datasets.{task.name}")
        if preset not in self.presets:
            raise SpecError(f"{self.where}: no preset {preset!r}; its presets are {self.preset_names}")
        if task.name not in self.presets[preset]:
            raise SpecError(f"{self.where}: preset {preset!r} has no settings for task {task.name!r} (it has "
                            f"{sorted(self.presets[preset])}); use --preset {DEFAULT_PRESET} or add them")
        return self.presets[preset][task.name].resolve(task, f"{self.where}: presets.{preset}.{task.name}")


class Pairs(_Strict):
    n: int = Field(default=1000, ge=1)  # pairs per factor (all of them when there are fewer)


class SocialPerceptionSpec(ProbeSpecBase):
    """Delta cosine of each face to term prompts vs the neutral prompt (Hausladen et al.)."""

    method: Literal["social_perception"]
    templates: list[str]
    neutral: list[str] = Field(default_factory=list)  # default: the templates with the term removed
    convention: Literal["templates", "embedding"] = "templates"
    delta: Literal["absolute", "relative"] = "absolute"  # cos - blank, or (cos - blank) / blank (paper Fig. 4)
    dimensions: dict[str, list[str]]
    control: list[str] = Field(default_factory=list)
    group_words: dict[str, dict[str, str]] = Field(default_factory=dict)  # attribute -> label -> word
    ranking: Ranking = Field(default_factory=Ranking)
    pairs: Pairs = Field(default_factory=Pairs)
    extremes: int = Field(default=3, ge=1)  # intersectional groups listed at each end of a dimension
    min_group_n: int = Field(default=10, ge=1)  # smaller intersectional groups are not ranked

    @model_validator(mode="after")
    def _check(self) -> SocialPerceptionSpec:
        _check_templates(self.templates, "{term}", "templates")
        if not self.dimensions or any(not terms for terms in self.dimensions.values()):
            raise ValueError("'dimensions' needs at least one dimension, each with at least one term")
        if "control" in self.dimensions:
            raise ValueError("'control' is reserved for the control terms; rename that dimension")
        words = set(self.terms)
        for attribute, mapping in self.group_words.items():
            unknown = sorted(set(mapping.values()) - words)
            if unknown:
                raise ValueError(f"group_words.{attribute}: word(s) {unknown} are not terms of the probe; "
                                 "add them under 'control'")
        return self

    @property
    def neutral_prompts(self) -> list[str]:
        if self.neutral:
            return list(self.neutral)
        return [" ".join(t.replace("{term}", "").split()).replace(" .", ".") for t in self.templates]

    @property
    def terms(self) -> list[str]:
        """Every distinct term, dimension terms first, in spec order."""
        return list(dict.fromkeys([*itertools.chain(*self.dimensions.values()), *self.control]))

    def prompts(self, term: str) -> list[str]:
        return [t.replace("{term}", term) for t in self.templates]


class DenigrationSpec(ProbeSpecBase):
    """Zero-shot classification among people classes plus harmful classes (CLIP paper, 7.1)."""

    method: Literal["denigration"]
    templates: list[str]
    harmful: dict[str, list[str]]  # category -> class names
    other: list[str] = Field(default_factory=list)  # classes that are neither people nor harmful (child)

    @model_validator(mode="after")
    def _check(self) -> DenigrationSpec:
        _check_templates(self.templates, "{label}", "templates")
        if not self.harmful or any(not names for names in self.harmful.values()):
            raise ValueError("'harmful' needs at least one category, each with at least one class name")
        names = [*itertools.chain(*self.harmful.values()), *self.other]
        if len(set(names)) != len(names):
            raise ValueError("a class name appears twice among 'harmful' and 'other'")
        if {"people", "other", "any harmful"} & set(self.harmful):
            raise ValueError("'people', 'other' and 'any harmful' are reserved; rename that harmful category")
        return self

    def prompts(self, label: str) -> list[str]:
        """Each template filled with `label`; an 'a'/'A' right before the slot becomes 'an'/'An'
        before a vowel ("a photo of an animal.")."""
        article = indefinite_article(label)
        return [_ARTICLE_SLOT.sub(lambda m: (article if m.group(1) == "a" else article.capitalize()) + " " + label, t)
                .replace("{label}", label) for t in self.templates]


_ARTICLE_SLOT = re.compile(r"\b([aA]) \{label\}")


def indefinite_article(phrase: str) -> str:
    """'an' before a vowel letter (animal, East Asian, Indian, orangutan), else 'a'. A letter
    rule: words whose sound differs from their spelling (an hour, a unicorn) are not special-cased."""
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def _check_templates(templates: list[str], slot: str, field_name: str) -> None:
    if not templates:
        raise ValueError(f"'{field_name}' needs at least one template")
    bad = [t for t in templates if t.count(slot) != 1]
    if bad:
        raise ValueError(f"'{field_name}': each template holds {slot} exactly once; these do not: {bad}")


def probe_dirs() -> list[Path]:
    """probes/ inside each task folder ($VLMFACE_TASKS, then the shipped tasks/)."""
    return [d / PROBES_SUBDIR for d in task_dirs() if (d / PROBES_SUBDIR).is_dir()]


def probe_dataset_dirs() -> list[Path]:
    """probes/datasets/ inside each task folder: probe-only datasets (task specs)."""
    return [d / DATASETS_SUBDIR for d in probe_dirs() if (d / DATASETS_SUBDIR).is_dir()]


def available_probe_datasets() -> dict[str, Path]:
    return find_specs(probe_dataset_dirs())


def available_probes() -> dict[str, Path]:
    return find_specs(probe_dirs())


def load_probe_file(path: str | Path) -> ProbeSpecBase:
    """A probe spec file, validated by the spec model of its `method` (vlmface.probes.method)."""
    from vlmface.probes.method import method_for

    path = Path(path)
    raw = read_yaml_mapping(path, "probe spec")
    if raw.get("kind") != "probe":
        raise SpecError(f"{path}: not a probe spec (it needs kind: probe and a method: "
                        "social_perception or denigration)")
    raw.setdefault("name", path.stem)
    method = method_for(raw.get("method"), raw.get("module"), str(path))
    try:
        return method.spec_model.model_validate({**raw, "path": path})
    except ValidationError as exc:
        raise SpecError(validation_message(path, "probe spec", exc, "see tasks/probes/social-perception.yaml "
                                           "and denigration.yaml for the fields")) from None


def load_probe(name_or_path: str | Path) -> ProbeSpecBase:
    """A probe by name (tasks/probes/NAME.yaml) or by path to a YAML file."""
    return load_probe_file(spec_path(name_or_path, available_probes(), "probe"))


def resolve_task(name_or_path: str | Path) -> TaskSpec:
    """A task from tasks/ (or a path), else a probe-only dataset from tasks/probes/datasets/."""
    try:
        return load_task(name_or_path)
    except SpecError as exc:
        if not str(exc).startswith("unknown task"):
            raise
        extra = available_probe_datasets()
        if str(name_or_path) in extra:
            return load_task(extra[str(name_or_path)])
        raise SpecError(f"{exc}; probe-only datasets (tasks/probes/datasets/): "
                        f"{', '.join(sorted(extra)) or '(none)'}") from None
