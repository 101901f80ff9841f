"""Probes: what a dual encoder's embedding space says about faces, beyond accuracy.

    probe(probe, task, models, options=None, **fields) -> ProbeResult   run a probe spec, write its folder
    load_probe(name_or_path)                                  a tasks/probes/*.yaml spec
    ProbeOptions                                              the run's options (`options`)

Methods (a spec's `method`, registered in `method`; the built-in ones in `methods/`):
social_perception (delta cosine of faces to trait prompts vs a neutral prompt; Hausladen et
al., FAccT 2025) and denigration (harmful zero-shot labels by group; CLIP paper, section 7.1).
The measures are pure functions in `measures`; `social` and `denigration` compute tables from
embeddings; `run` feeds the spec's method; `outputs` writes.
"""

from typing import Any

from vlmface.probes.spec import available_probes, load_probe

__all__ = ["ProbeOptions", "ProbeResult", "available_probes", "load_probe", "probe"]


def __getattr__(name: str) -> Any:
    """The measures load on first use (pandas, scipy), so the CLI starts fast."""
    if name == "ProbeOptions":
        from vlmface.probes.options import ProbeOptions

        return ProbeOptions
    if name in ("probe", "ProbeResult"):
        from vlmface.probes import run

        return getattr(run, name)
    raise AttributeError(f"module 'vlmface.probes' has no attribute {name!r}")
