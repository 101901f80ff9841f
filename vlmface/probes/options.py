"""`ProbeOptions`: how one `vlmface probe` run goes (data, models, bootstrap, outputs), in one object.

The probe spec says what is measured; these options say on what and how: the CLI fills them
from its flags, `probe(...)` from its keywords (unknown names are refused with the list of
valid ones). `convention` and `delta` are method options: a method that does not read one
refuses it when it is set (ProbeMethod.options).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from vlmface.errors import VlmfaceError
from vlmface.perturb.apply import Perturbation

METHOD_OPTIONS = ("convention", "delta")  # read by some methods only (ProbeMethod.options)


class ProbeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    data_dir: str | Path | None = None
    source: str | None = None  # default: the settings' source, else the task's default source
    limit: int | None = None  # seeded stratified sample of N images (by the probe's factors)
    seed: int = 0
    out: str | Path = "results/probe"
    n_boot: int = 1000
    confidence: float = 0.95
    convention: Literal["templates", "embedding"] | None = None  # social perception: 'templates' or 'embedding' (default: the spec's)
    delta: Literal["absolute", "relative"] | None = None  # social perception: 'absolute' or 'relative' (default: the spec's)
    device: str = "auto"
    dtype: str | None = None
    batch_size: int | None = None
    cache_dir: str | Path | bool | None = None  # image-embedding cache root (None: OUT/.cache; False: none)
    plots: bool = True
    perturbation: Perturbation | None = None  # applied to the selected images as they are decoded
    names: str | list[str] | None = None  # display names of the models (default: alias or last path part)
    preset: str | None = None  # the spec's dataset settings (default 'toolkit'; e.g. 'paper')
    contrasts: dict[str, tuple[str, str]] | None = None  # factor -> (g1, g2): the gap taken between them

    @classmethod
    def of(cls, options: ProbeOptions | None = None, **given: Any) -> ProbeOptions:
        """`options` (default: all defaults) with `given` fields replaced; unknown names refused."""
        base = options.model_dump() if options is not None else {}
        unknown = sorted(set(given) - set(cls.model_fields))
        if unknown:
            raise VlmfaceError(f"probe(): no option {', '.join(map(repr, unknown))}; its options are "
                               f"{', '.join(cls.model_fields)}")
        try:
            return cls(**{**base, **given})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}={e.get('input')!r}: {e['msg']}"
                                 for e in exc.errors())
            raise VlmfaceError(f"probe(): bad option value ({problems})") from None

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    def cache_root(self) -> Path | None:
        """The image-embedding cache folder: --cache-dir, else OUT/.cache; None with --no-cache."""
        return None if self.cache_dir is False else Path(self.cache_dir or self.out_dir / ".cache")

    def backend_options(self) -> dict[str, Any]:
        return {"device": self.device, "dtype": self.dtype, "batch_size": self.batch_size,
                "cache_dir": self.cache_root()}
