"""The model comparison of a probe folder: written by `vlmface probe` (several models, one
run) and by `vlmface probe-compare` (probe folders made separately), from the same tables.

    model_differences.csv   paired B - A of each group's mean score (see `compare`)
    gap_differences.csv     gap_B - gap_A per factor; gap_groups.csv: the two groups of each gap
    rank_agreement.csv      Kendall's tau (>= 3 groups) or order agreement (2 groups)
    side_by_side.csv|.md    markedness, Skew@k / MaxSkew@k / NDKL and denigration rates, per model, with CIs
    plots/                  per-model panels, forest plot of differences, models x groups heatmaps

Models are named by their display names (`--names`, default: the registry alias, or the
last path component of a local directory); probe.json keeps each one's full spec and identity.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from vlmface.errors import VlmfaceError
from vlmface.probes import compare as cmp
from vlmface.probes import outputs as io
from vlmface.probes.method import method_for

SIDE_COLUMNS = ["model", "measure", "dimension", "group_col", "group", "k", "n", "value", "ci_lo", "ci_hi"]


def default_name(model: str) -> str:
    """A registry alias as is; FAMILY:WEIGHTS -> the last path component of the weights."""
    if ":" not in model:
        return model
    weights = model.split(":", 1)[1]
    weights = weights.split(":", 1)[1] if weights.split(":", 1)[0] in ("local-dir", "hf-hub", "hf") else weights
    return Path(weights.rstrip("/")).name or model


def display_names(models: list[str], names: str | list[str] | None = None) -> list[str]:
    """One short, distinct name per model: `names` (comma-separated or a list) or the defaults."""
    given = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names or [])
    if given and len(given) != len(models):
        raise VlmfaceError(f"--names: {len(given)} name(s) for {len(models)} model(s); give one name per model, "
                           "in the order of --models")
    chosen = given or [default_name(m) for m in models]
    if any(not n for n in chosen):
        raise VlmfaceError("--names: an empty name; give every model a name")
    twice = sorted(n for n, c in Counter(chosen).items() if c > 1)
    if twice:
        raise VlmfaceError(f"model display names {twice} are used twice (models {models}); give distinct names "
                           "with --names a,b,...")
    return chosen


def spec_fingerprint(spec, method, preset: str, options) -> dict[str, Any]:
    """What decides a probe's per-image scores and groups (the method's fingerprint of the spec:
    for social perception its terms, templates, neutral prompts, convention, delta), the preset,
    with its sha256: probe-compare needs them equal."""
    body = {"method": spec.method, "preset": preset, **method.fingerprint(spec, options)}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return {**body, "sha256": hashlib.sha256(text.encode()).hexdigest()}


def side_by_side(method, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The method's rates and ranking measures of every model (e.g. markedness, Skew@k, denigration
    rates), one row per value (SIDE_COLUMNS)."""
    parts = [part[SIDE_COLUMNS] for part in method.side_by_side(tables) if len(part)]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SIDE_COLUMNS)
    return frame[SIDE_COLUMNS].astype({"k": "Int64"})


def side_by_side_markdown(frame: pd.DataFrame) -> str:
    """One row per measure x dimension x group (x k), one column per model: value [ci_lo, ci_hi]."""
    if frame.empty:
        return "(no markedness, ranking or denigration measures)\n"
    cell = frame.apply(lambda r: f"{r['value']:.2f} [{r['ci_lo']:.2f}, {r['ci_hi']:.2f}]", axis=1)
    keys = ["measure", "dimension", "group_col", "group", "k"]
    wide = frame.assign(cell=cell, k=frame["k"].astype("string").fillna("")).pivot_table(
        index=keys, columns="model", values="cell", aggfunc="first", sort=False)
    wide = wide[list(dict.fromkeys(frame["model"]))].reset_index()
    return wide.to_markdown(index=False) + "\n"


def write_comparison(out: Path, method, tables: dict[str, pd.DataFrame], table: pd.DataFrame | None, columns: list[str],
                     levels: dict[str, list[str]], models: list[str], *, n_boot: int, confidence: float, seed: int,
                     cluster: str | None = None, contrasts: dict[str, tuple[str, str]] | None = None
                     ) -> dict[str, pd.DataFrame]:
    """Write the comparison tables of `models` into OUT; returns them. `table`: the measured
    images' sample_id and factor labels (None: a probe without per-image scores, e.g.
    denigration: side by side only)."""
    found = {"side_by_side": side_by_side(method, tables)}
    if table is not None and len(models) >= 2 and "image_scores" in tables:
        result = cmp.compare_models(tables["image_scores"], table, columns, levels, models, n_boot=n_boot,
                                    confidence=confidence, seed=seed, cluster=cluster, contrasts=contrasts)
        found.update({"model_differences": result.differences, "gap_differences": result.gaps,
                      "gap_groups": result.gap_groups, "rank_agreement": result.agreement})
    for name, frame in found.items():
        io.write_table(frame, out / f"{name}.csv")
    (out / "side_by_side.md").write_text(side_by_side_markdown(found["side_by_side"]), encoding="utf-8")
    return found


# ----- probe-compare: the comparison of probe folders made separately --------------------------
def _read_probe(folder: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    path = folder / "probe.json"
    if not path.is_file():
        raise VlmfaceError(f"{folder}: no probe.json; give folders written by `vlmface probe`")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if "spec" not in manifest:
        raise VlmfaceError(f"{path}: written by an older vlmface (no 'spec' fingerprint); run the probe again")
    samples = pd.read_csv(folder / "samples.csv", dtype=str, keep_default_na=False)
    if "pixel_sha256" not in samples:
        raise VlmfaceError(f"{folder / 'samples.csv'}: no pixel_sha256 column; run the probe again")
    return manifest, samples


def _read_tables(folder: Path, method) -> dict[str, pd.DataFrame]:
    """The tables of a probe folder that probe-compare merges (the method's `compared`)."""
    return {name: io.read_table(folder / f"{name}.csv") for name in method.compared
            if (folder / f"{name}.csv").is_file()}


def _image_keys(samples: pd.DataFrame) -> pd.Series:
    """Per image: its pixel digest, numbered among identical images (ordered by sample_id)."""
    ordered = samples.sort_values("sample_id", kind="stable")
    nth = ordered.groupby("pixel_sha256").cumcount().astype(str)
    return (ordered["pixel_sha256"] + "#" + nth).reindex(samples.index)


def _check_same_probe(folders: list[Path], manifests: list[dict[str, Any]]) -> None:
    first = manifests[0]
    for folder, m in zip(folders[1:], manifests[1:]):
        if m["task"] != first["task"]:
            raise VlmfaceError(f"probe-compare: {folder} probed task {m['task']!r}, {folders[0]} task "
                               f"{first['task']!r}; compare probes of the same task")
        if m["spec"]["sha256"] != first["spec"]["sha256"]:
            differs = sorted(k for k in set(m["spec"]) | set(first["spec"])
                             if k != "sha256" and m["spec"].get(k) != first["spec"].get(k))
            raise VlmfaceError(f"probe-compare: {folder} and {folders[0]} ran different probe specs (they differ in "
                               f"{differs}); rerun one with the other's spec and preset")


def _aligned_ids(folders: list[Path], samples: list[pd.DataFrame]) -> list[dict[str, str]]:
    """Per folder: its sample_id -> the first folder's sample_id of the same pixels."""
    keys = [_image_keys(s) for s in samples]
    reference = dict(zip(keys[0], samples[0]["sample_id"]))
    factor_cols = [c for c in samples[0].columns if c not in ("sample_id", "pixel_sha256")]
    found = []
    for folder, frame, key in zip(folders, samples, keys):
        missing, extra = set(reference) - set(key), set(key) - set(reference)
        if missing or extra:
            raise VlmfaceError(f"probe-compare: {folder} probed other images than {folders[0]} ({len(extra)} not in "
                               f"the first, {len(missing)} of the first missing, by pixel sha256); models are "
                               "compared on the same images only: probe with the same task, data, --limit and --seed")
        mapping = dict(zip(frame["sample_id"], key.map(reference)))
        ref = samples[0].set_index("sample_id")
        mine = frame.assign(sample_id=frame["sample_id"].map(mapping)).set_index("sample_id")
        common = [c for c in factor_cols if c in mine.columns]
        if not mine.loc[ref.index, common].equals(ref[common]):
            raise VlmfaceError(f"probe-compare: {folder} labels the same images differently from {folders[0]}")
        found.append(mapping)
    return found


def probe_compare(folders: list[str | Path], out: str | Path, *, names: str | list[str] | None = None,
                  contrasts: dict[str, tuple[str, str]] | None = None, n_boot: int = 1000,
                  confidence: float = 0.95, seed: int = 0, plots: bool = True) -> dict[str, Any]:
    """Compare the models of probe folders made separately, from their saved per-image scores
    (nothing is encoded). Refused unless every folder probed the same images (pixel sha256)
    with the same probe spec (terms, templates, neutral prompts, convention, delta, preset)."""
    folders = [Path(f) for f in folders]
    read = [_read_probe(f) for f in folders]
    manifests, samples = [r[0] for r in read], [r[1] for r in read]
    method = method_for(manifests[0]["probe"]["method"], manifests[0]["probe"].get("module"), str(folders[0]))
    if sum(len(m["models"]) for m in manifests) < 2:
        raise VlmfaceError("probe-compare: the folders hold one model in all; give folders with two or more")
    _check_same_probe(folders, manifests)
    mappings = _aligned_ids(folders, samples)
    old_names = [m["name"] for manifest in manifests for m in manifest["models"]]
    shown = display_names(old_names, names) if names else old_names
    if not names:
        display_names(old_names, old_names)  # refuses a name used twice, asking for --names
    renames = iter(shown)
    tables: dict[str, list[pd.DataFrame]] = {}
    for folder, manifest, mapping in zip(folders, manifests, mappings):
        found = _read_tables(folder, method)
        rename = {m["name"]: next(renames) for m in manifest["models"]}
        for name, frame in found.items():
            frame = frame.assign(model=frame["model"].map(rename))
            if "sample_id" in frame:
                frame = frame.assign(sample_id=frame["sample_id"].map(mapping))
            tables.setdefault(name, []).append(frame)
    merged = {name: pd.concat(parts, ignore_index=True) for name, parts in tables.items()}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in merged.items():
        io.write_table(frame, out / f"{name}.csv")
    reference = samples[0]
    io.write_table(reference, out / "samples.csv")
    settings = manifests[0]["settings"]
    table, levels = None, {}
    if "image_scores" in merged and "deltas" in merged:
        measured = set(merged["image_scores"]["sample_id"])
        table = reference[reference["sample_id"].isin(measured)].reset_index(drop=True)
        deltas = merged["deltas"]
        levels = {c: list(dict.fromkeys(deltas.loc[deltas["group_col"] == c, "group"])) for c in settings["factors"]}
    found = write_comparison(out, method, merged, table, list(settings["factors"]), levels, shown, n_boot=n_boot,
                             confidence=confidence, seed=seed, cluster=settings.get("identity"), contrasts=contrasts)
    written = io.draw_figures(out, method, {**merged, **found}) if plots else []
    record = {"command": "probe-compare", "task": manifests[0]["task"], "spec": manifests[0]["spec"],
              "preset": manifests[0].get("preset"), "images": len(reference), "images_encoded": 0,
              "texts_encoded": 0, "names": shown,
              "inputs": [{"folder": str(f), "models": [{**m, "name": n} for m, n in zip(
                  manifest["models"], shown[sum(len(x["models"]) for x in manifests[:i]):])]}
                  for i, (f, manifest) in enumerate(zip(folders, manifests))],
              "bootstrap": {"unit": f"cluster ({settings['identity']})" if settings.get("identity") else "image",
                            "n_boot": n_boot, "confidence": confidence, "seed": seed},
              "contrasts": {c: list(g) for c, g in (contrasts or {}).items()},
              "plots": [str(p) for p in written],
              "outputs": io.outputs_record(method, {**merged, **found}, written, out)}
    io.write_json(record, out / "probe-compare.json")
    return record
