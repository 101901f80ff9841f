"""Probes: what a dual encoder's embedding space says about faces, beyond accuracy.

    probe(probe, task, models, **options) -> ProbeResult     run a probe spec, write its folder
    load_probe(name_or_path)                                  a tasks/probes/*.yaml spec

Methods (a spec's `method`): social_perception (delta cosine of faces to trait prompts vs a
neutral prompt; Hausladen et al., FAccT 2025) and denigration (harmful zero-shot labels by
group; CLIP paper, section 7.1). The measures are pure functions in `measures`; `social`
and `denigration` compute tables from embeddings; `run` feeds them; `outputs` writes.
"""

from typing import Any

from vlmface.probes.spec import available_probes, load_probe

__all__ = ["ProbeResult", "available_probes", "load_probe", "probe"]


def __getattr__(name: str) -> Any:
    """The measures load on first use (pandas, scipy), so the CLI starts fast."""
    if name in ("probe", "ProbeResult"):
        from vlmface.probes import run

        return getattr(run, name)
    raise AttributeError(f"module 'vlmface.probes' has no attribute {name!r}")
