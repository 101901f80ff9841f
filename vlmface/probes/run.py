"""`probe(...)`: spec + task + models -> a probe folder (see `outputs` for its files).

Flow: load the probe spec and the task; load the samples, drop the spec's exclusions, take
the seeded stratified --limit; embed every image and text with each model in turn (images
through the embedding cache); keep the images every model could embed; let the spec's method
(vlmface.probes.method) analyse every model on the same images; write its tables, the model
comparison and its figures, and probe.json (which lists them under `outputs`).
"""

from __future__ import annotations

import hashlib
import platform
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vlmface.data import Sample, load_samples, stratified_limit
from vlmface.errors import DataError, VlmfaceError
from vlmface.probes import comparison as cmpw
from vlmface.probes import outputs as io
from vlmface.probes.embeddings import ModelEmbeddings, check_embedder, embed, open_embedder
from vlmface.probes.method import ModelVectors, ProbeData, method_for
from vlmface.probes.options import ProbeOptions
from vlmface.probes.social import group_order
from vlmface.probes.spec import DEFAULT_PRESET, DatasetSettings, load_probe, resolve_task
from vlmface.tasks import TaskSpec


@dataclass
class ProbeResult:
    out: Path
    tables: dict[str, pd.DataFrame]
    manifest: dict[str, Any]
    plots: list[Path] = field(default_factory=list)

    @property
    def deltas(self) -> pd.DataFrame | None:
        return self.tables.get("deltas")

    def summary(self) -> str:
        m = self.manifest
        p = m.get("perturbation")
        perturbed = f" (perturbed: {p['name']} {p['level']:g})" if p else ""
        lines = [f"probe {m['probe']['name']} on {m['task']}{perturbed}: {m['data']['used']} images -> {self.out}"]
        for model in m["models"]:
            stats = model["stats"]
            cache = stats.get("embedding_cache") or {}
            lines.append(f"  {model['name']}: {stats.get('images_encoded', 0)} images encoded, "
                         f"{cache.get('hits', 0)} read from the cache, {stats.get('texts_encoded', 0)} texts")
        comparison = self.tables.get("comparison")
        if comparison is not None and len(comparison):
            shown = list(dict.fromkeys(comparison["measure"]))[:2]
            lines.append(f"  highest / lowest group ({', '.join(shown)}; all measures: comparison.md):")
            for row in comparison[comparison["measure"].isin(shown)].itertuples():
                lines.append(f"    {row.model} {row.measure} by {row.group_col}: {row.highest} "
                             f"({row.highest_value:+.2f}) / {row.lowest} ({row.lowest_value:+.2f})")
        return "\n".join(lines)


def _model_list(models: str | list[str]) -> list[str]:
    found = [m.strip() for m in (models.split(",") if isinstance(models, str) else models) if m.strip()]
    if not found:
        raise VlmfaceError("--models: give at least one model (registry aliases or clip:WEIGHTS, comma-separated)")
    twice = [m for m, c in Counter(found).items() if c > 1]
    if twice:
        raise VlmfaceError(f"--models: {twice} listed twice; each model once")
    return found


def _select(samples: list[Sample], task: TaskSpec, settings: DatasetSettings, limit: int | None,
            seed: int) -> tuple[list[Sample], dict[str, int]]:
    """Samples after the spec's exclusions and the stratified limit; counts left out per attribute."""
    needed = [*settings.pair_factors(), *settings.intersections, *settings.exclude, *settings.uniform]
    for sample in samples[:1]:
        missing = [c for c in dict.fromkeys(needed) if c not in sample.labels]
        if missing:
            raise DataError(f"task {task.name!r}: samples carry no {missing} (is that attribute mapped in the "
                            "source's columns?)")
    excluded: Counter = Counter()
    kept = []
    for sample in samples:
        hit = next((a for a, labels in settings.exclude.items() if str(sample.labels.get(a)) in labels), None)
        if hit is None:
            kept.append(sample)
        else:
            excluded[hit] += 1
    if not kept:
        raise DataError(f"task {task.name!r}: every sample is excluded by the probe spec's exclude {settings.exclude}")
    for attribute, least in settings.uniform.items():
        kept = _uniform(kept, attribute, least, seed)
        if not kept:
            raise DataError(f"task {task.name!r}: no {attribute} value has {least} images (settings `uniform`)")
    return stratified_limit(kept, settings.factors, limit, seed), dict(excluded)


def _uniform(samples: list[Sample], attribute: str, least: int, seed: int) -> list[Sample]:
    """Values of `attribute` with >= `least` samples, each sampled down to the rarest kept
    value's count (the authors' analysis/fig_5.py, utkface_prep); sample order kept."""
    values = [str(s.labels.get(attribute)) for s in samples]
    counts = Counter(values)
    kept = {v for v, c in counts.items() if c >= least}
    if not kept:
        return []
    size = min(counts[v] for v in kept)
    rng = np.random.default_rng([seed, least])
    chosen = set()
    for value in sorted(kept):
        members = [i for i, v in enumerate(values) if v == value]
        chosen.update(int(i) for i in rng.choice(members, size, replace=False))
    return [s for i, s in enumerate(samples) if i in chosen]


def _factor_table(samples: list[Sample], settings: DatasetSettings) -> pd.DataFrame:
    columns = list(dict.fromkeys([*settings.pair_factors(), *settings.intersections, *settings.measures_exclude]))
    table = pd.DataFrame({c: [str(s.labels[c]) for s in samples] for c in columns})
    table.insert(0, "sample_id", [s.id for s in samples])
    return table


def _digests(embedded: list[ModelEmbeddings], used: list[int]) -> list[str]:
    """Each used image's pixel sha256 (every model decoded the same pixels)."""
    digests = [embedded[0].digests[i] for i in used]
    for e in embedded[1:]:
        if [e.digests[i] for i in used] != digests:
            raise DataError(f"model {e.model!r} decoded other pixels than {embedded[0].model!r} for the same samples")
    return digests


def _levels(task: TaskSpec, table: pd.DataFrame, settings: DatasetSettings) -> dict[str, list[str]]:
    """Per factor column, its groups in label order (without an experimental design's unvaried word)."""
    columns = [c for c in table.columns if c in task.attributes]
    labels = {c: [str(v) for v in task.attributes[c].labels] for c in columns}
    return group_order(table, columns, labels, settings.unvaried)


def _sha256(path: Path | None) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path and path.is_file() else None


def probe(probe: str | Path, task: str | Path, models: str | list[str], options: ProbeOptions | None = None,
          **given: Any) -> ProbeResult:
    """Run a probe spec (name in tasks/probes/ or path) on a task with each model; write OUT.
    `options` (or its fields as keywords, e.g. limit=60, out=...): see `ProbeOptions`."""
    started = datetime.now(timezone.utc)
    clock = _Clock()
    o = ProbeOptions.of(options, **given)
    spec = load_probe(probe)
    method = method_for(spec.method, spec.module, spec.where)
    task_spec = resolve_task(task)
    preset = o.preset or DEFAULT_PRESET
    settings = spec.settings_for(task_spec, preset)
    model_names = _model_list(models)
    shown = cmpw.display_names(model_names, o.names)
    method.check_options(spec, o)
    for name in model_names:  # every model known and a dual encoder before anything loads
        check_embedder(name)
    source = o.source or settings.source
    out = o.out_dir
    first = open_embedder(model_names[0], o.backend_options())  # missing weights fail before the data is read
    clock.lap("first model")
    try:
        loaded = load_samples(task_spec, source, o.data_dir)
        samples, excluded = _select(loaded.samples, task_spec, settings, o.limit, o.seed)
        if o.perturbation is not None:
            samples = o.perturbation.wrap(samples)
        texts = method.texts(spec, task_spec, settings)
    except BaseException:
        first.close()
        raise
    clock.lap("load")
    embedded = [embed(m, samples, texts, o.backend_options(), first if i == 0 else None)
                for i, m in enumerate(model_names)]
    used, failed = _usable(samples, embedded)
    if not used:
        raise DataError(f"no image could be embedded by every model; first error: {failed[0]}")
    clock.lap("embed")
    table = _factor_table([samples[i] for i in used], settings)
    levels = _levels(task_spec, table, settings)
    vectors = [ModelVectors(name, e.images[used], e.vectors) for e, name in zip(embedded, shown)]
    analysed = method.analyse(ProbeData(spec, task_spec, settings, o, table, levels, vectors))
    tables = {**analysed.tables, "comparison": io.comparison(analysed.long)}
    clock.lap("analyse")
    out.mkdir(parents=True, exist_ok=True)
    io.write_table(table.assign(pixel_sha256=_digests(embedded, used)), out / "samples.csv")
    for name, frame in analysed.tables.items():
        io.write_table(frame, out / f"{name}.csv")
    io.write_model_tables(out, analysed.long, analysed.extras, tables["comparison"])
    compared = cmpw.write_comparison(out, method, tables, analysed.measured, list(settings.factors), levels, shown,
                                     n_boot=o.n_boot, confidence=o.confidence, seed=o.seed,
                                     cluster=settings.identity, contrasts=o.contrasts)
    tables.update(compared)
    written = io.draw_figures(out, method, tables) if o.plots else []
    clock.lap("write")
    manifest = _manifest(spec, task_spec, settings, loaded, excluded, samples, used, failed, embedded, started,
                         o, source)
    manifest["models"] = [{"name": name, **entry} for name, entry in zip(shown, manifest["models"])]
    manifest["preset"] = preset
    manifest["spec"] = cmpw.spec_fingerprint(spec, method, preset, o)
    manifest["bootstrap"] = {"unit": f"cluster ({settings.identity})" if settings.identity else "image",
                             "n_boot": o.n_boot, "confidence": o.confidence, "seed": o.seed}
    manifest["contrasts"] = {c: list(g) for c, g in (o.contrasts or {}).items()}
    if o.perturbation is not None:
        manifest["perturbation"] = o.perturbation.describe()
    manifest["outputs"] = io.outputs_record(method, tables, written, out)
    manifest["timings"] = clock.laps
    io.write_json(manifest, out / "probe.json")
    return ProbeResult(out, tables, manifest, written)


class _Clock:
    def __init__(self):
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 3)
        self._last = now


def _usable(samples: list[Sample], embedded: list[ModelEmbeddings]) -> tuple[list[int], list[str]]:
    """Indices of the samples every model embedded; one line per sample that some model could not."""
    used, failed = [], []
    for i, sample in enumerate(samples):
        errors = [f"{e.model}: {e.errors[i]}" for e in embedded if e.errors[i] is not None]
        (failed.append(f"{sample.id}: {'; '.join(errors)}") if errors else used.append(i))
    return used, failed


def _manifest(spec, task_spec, settings, loaded, excluded, samples, used, failed, embedded, started,
              o: ProbeOptions, source: str | None) -> dict[str, Any]:
    import scipy

    return {
        "probe": {"name": spec.name, "method": spec.method, "path": str(spec.path) if spec.path else None,
                  "sha256": _sha256(spec.path), **({"module": spec.module} if spec.module else {})},
        "task": task_spec.name, "task_path": str(task_spec.path) if task_spec.path else None,
        "task_sha256": _sha256(task_spec.path),
        "data": {"source": source or task_spec.default_source, "data_dir": str(o.data_dir) if o.data_dir else None,
                 "location": loaded.location, "fingerprint": loaded.fingerprint, "loaded": len(loaded.samples),
                 "skipped_by_loader": len(loaded.skipped), "skipped_examples": loaded.skipped[:20],
                 "excluded": excluded, "selected": len(samples), "not_embedded": failed[:50],
                 "n_not_embedded": len(failed), "used": len(used)},
        "settings": settings.model_dump(), "limit": o.limit, "seed": o.seed, "n_boot": o.n_boot,
        "confidence": o.confidence, "convention": o.convention or getattr(spec, "convention", None),
        "embedding_cache": str(o.cache_root()) if o.cache_root() else None,
        "models": [{"model": e.model, "identity": e.identity, "stats": e.stats} for e in embedded],
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__,
                     "scipy": scipy.__version__, "vlmface": _version()},
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started.timestamp(), 3),
    }


def _version() -> str:
    from vlmface import __version__

    return __version__
