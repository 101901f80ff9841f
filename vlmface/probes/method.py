"""Probe methods: what a probe spec's `method` names, looked up in one registry.

A method is one class, registered with `@register_method`:

    name        the spec's `method` value
    spec_model  its pydantic spec model (a `ProbeSpecBase` subclass)
    options     the method-specific run options it reads (of `ProbeOptions`: convention, delta)
    tables      name -> what the table holds; each is written as NAME.csv, in this order
    shown       the tables the HTML report shows (`vlmface report`)
    compared    the tables `vlmface probe-compare` merges across folders (default: all of `tables`)
    texts(spec, task, settings)   every text the models embed
    analyse(data) -> Analysed     every table, from the used images' unit vectors and labels
    figures(tables)               the figures it draws from its tables (vlmface.report.probe_plots)
    side_by_side(tables)          its rates / ranking measures for side_by_side.csv (default: none)

The built-in methods are the modules of `vlmface.probes.methods`, imported once on first
lookup. A method elsewhere is one importable module, named by the spec's `module:` field
(e.g. `module: my_probes.mean_cosine`, found on sys.path / PYTHONPATH): `load_probe` imports
it before it looks the method up. See docs/extending.md, "A probe".
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import pandas as pd

from vlmface.errors import SpecError, VlmfaceError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from vlmface.probes.options import ProbeOptions
    from vlmface.probes.spec import DatasetSettings, ProbeSpecBase
    from vlmface.tasks import TaskSpec

LONG_COLUMNS = ["model", "measure", "group_col", "group", "n", "value"]


@dataclass
class ModelVectors:
    """One model's unit embeddings of the used images and of every text the method asked for."""

    name: str  # the display name used in every table
    images: Any  # (n, dim) unit rows, in the row order of ProbeData.table
    texts: dict[str, Any]  # text -> unit vector


@dataclass
class ProbeData:
    """What a method analyses: the same images and labels for every model."""

    spec: ProbeSpecBase
    task: TaskSpec
    settings: DatasetSettings  # the task's dataset settings (resolved: factors filled in)
    options: ProbeOptions  # the run's options (n_boot, confidence, seed, convention, delta...)
    table: pd.DataFrame  # sample_id + one string column per factor, one row per used image
    levels: dict[str, list[str]]  # factor -> its groups in label order
    models: list[ModelVectors]


@dataclass
class Analysed:
    """A method's result over every model."""

    tables: dict[str, pd.DataFrame]  # name -> table (all models), written as NAME.csv
    long: pd.DataFrame  # LONG_COLUMNS: the group values comparison.csv and models/*.csv are made of
    extras: dict[str, pd.DataFrame] = field(default_factory=dict)  # model -> extra columns of its wide table
    measured: pd.DataFrame | None = None  # the images of `tables["image_scores"]` (sample_id + factors), for
    #                          the paired model comparison; None: the method has no per-image scores


@dataclass(frozen=True)
class ProbeFigure:
    stem: str  # file name without extension (plots/STEM.png|svg)
    caption: str
    draw: Callable[[], Figure]


class ProbeMethod(ABC):
    name: ClassVar[str]
    spec_model: ClassVar[type[ProbeSpecBase]]
    title: ClassVar[str] = ""  # how the report names it (default: the name, underscores as spaces)
    options: ClassVar[frozenset[str]] = frozenset()
    tables: ClassVar[dict[str, str]] = {}
    shown: ClassVar[tuple[str, ...]] = ()
    compared: ClassVar[tuple[str, ...] | None] = None  # None: every table of `tables`

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.compared is None:
            cls.compared = tuple(cls.tables)

    @abstractmethod
    def texts(self, spec: Any, task: TaskSpec, settings: DatasetSettings) -> list[str]:
        """Every text the models embed (duplicates are embedded once)."""

    @abstractmethod
    def analyse(self, data: ProbeData) -> Analysed:
        """Every table of `tables`, for every model of `data`."""

    def figures(self, tables: dict[str, pd.DataFrame], name: str = "") -> list[ProbeFigure]:
        """The figures of a probe folder's tables (`name`, if given, heads their titles)."""
        return []

    def side_by_side(self, tables: dict[str, pd.DataFrame]) -> list[pd.DataFrame]:
        """Frames with the columns of vlmface.probes.comparison.SIDE_COLUMNS (model, measure,
        dimension, group_col, group, k, n, value, ci_lo, ci_hi): side_by_side.csv|.md."""
        return []

    def fingerprint(self, spec: Any, options: ProbeOptions) -> dict[str, Any]:
        """What decides the per-image scores (probe-compare refuses folders that differ in it):
        by default every field of the spec but its name, description, datasets and presets."""
        return spec.model_dump(mode="json", exclude={"name", "kind", "description", "datasets", "presets",
                                                     "path", "module", "method"})

    @property
    def label(self) -> str:
        return self.title or self.name.replace("_", " ")

    def check_options(self, spec: Any, options: ProbeOptions) -> None:
        """Refuse a method-specific option this method does not read (e.g. --delta on denigration)."""
        from vlmface.probes.options import METHOD_OPTIONS

        for option in METHOD_OPTIONS:
            if getattr(options, option) is not None and option not in self.options:
                takers = sorted(m.name for m in registered().values() if option in m.options)
                raise VlmfaceError(f"--{option}: probe {spec.name!r} is a {self.name} probe; {option} applies to "
                                   f"{', '.join(takers) or 'no method'}")


_METHODS: dict[str, ProbeMethod] = {}
_BUILTINS_LOADED = False


def register_method(cls: type[ProbeMethod]) -> type[ProbeMethod]:
    """Class decorator: make `cls` the method of specs whose `method` is `cls.name`."""
    known = _METHODS.get(cls.name)
    if known is not None and type(known).__qualname__ != cls.__qualname__:
        raise SpecError(f"probe method {cls.name!r} is registered twice ({type(known).__module__} and "
                        f"{cls.__module__}); rename one")
    _METHODS[cls.name] = cls()
    return cls


def registered() -> dict[str, ProbeMethod]:
    """Every method known now: the built-in ones and those of modules imported so far."""
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        from vlmface.probes import methods

        for info in pkgutil.iter_modules(methods.__path__):
            importlib.import_module(f"{methods.__name__}.{info.name}")
        _BUILTINS_LOADED = True
    return _METHODS


def import_module(module: str, where: str) -> None:
    """Import a third-party method module named by a spec's `module:` field."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise SpecError(f"{where}: module {module!r} cannot be imported ({type(exc).__name__}: {exc}); put the "
                        "folder that holds it on PYTHONPATH or install its package") from None


def method_for(name: Any, module: str | None = None, where: str = "probe spec") -> ProbeMethod:
    """The method called `name` (importing `module` first, if given)."""
    if module:
        import_module(module, where)
    methods = registered()
    if not isinstance(name, str) or name not in methods:
        hint = "" if module else "; a method of your own: name its module with `module: package.module`"
        raise SpecError(f"{where}: method {name!r} is no probe method; known methods: {sorted(methods)}{hint}")
    return methods[name]
