"""Controlled image perturbations: the same faces at graded levels of exposure, blur,
resolution, compression, colour, occlusion, rotation and flip, and how much each
group's accuracy drops (and whether some groups drop more) on those same images.

    load_perturbations(name_or_path) -> PerturbationSet    perturbations/*.yaml
    perturbations_of(spec) -> [Perturbation]               each (name, level) to render
    robustness(paths, out=None, ...) -> [Robustness]       tables + plots, from predictions alone

`vlmface eval --perturb SPEC` runs the sweep (one resumable run per level, the clean run
shared) and then the analysis; `vlmface robustness PATH...` redoes the analysis.
Modules: spec (YAML), transforms (pixels), apply (per-sample seeding, PerturbedSample),
runs (finding sweeps), paired (aligned outcomes), stats (drops, interactions, bootstrap),
shift (continuous per-image measures, e.g. probe delta cosines), analysis (outputs), plots.
"""

from typing import Any

from vlmface.perturb.apply import Perturbation, PerturbedSample, perturbations_of
from vlmface.perturb.spec import PerturbationSet, load_perturbations

__all__ = ["Perturbation", "PerturbationSet", "PerturbedSample", "Robustness", "load_perturbations",
           "perturbations_of", "robustness"]


def __getattr__(name: str) -> Any:
    """The analysis loads on first use (pandas, scipy), so `vlmface --help` stays fast."""
    if name in ("robustness", "Robustness"):
        from vlmface.perturb import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module 'vlmface.perturb' has no attribute {name!r}")
