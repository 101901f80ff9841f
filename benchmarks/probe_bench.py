"""Cost of the social-perception probe on real UTKFace faces, and what the cache saves.

Three probe runs into one embedding cache, with a random-weight model saved like a real one:

  cold       every image encoded (and written to the cache)
  warm       the same probe again: every image read from the cache
  +100 terms the spec plus 100 extra terms: only texts are encoded, no image

For each: wall time, the probe's own phase timings (load, embed, analyse, write), images
encoded and cache hits. The analysis runs the default 1000 bootstrap resamples.

    python benchmarks/probe_bench.py                        # tiny model, all UTKFace faces >= 20 y
    python benchmarks/probe_bench.py --vit-b32 --limit 1000 # ViT-B/32-sized encoder (real cost)
    python benchmarks/probe_bench.py --device cuda --vit-b32 --batch-size 256
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "data" / "utkface" / "crop_part1"
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def build_vit_b32(directory: Path) -> Path:
    import open_clip
    from safetensors.torch import save_file

    cfg = {**open_clip.get_model_config("ViT-B-32"), "quick_gelu": True}
    model = open_clip.create_model("ViT-B-32", force_quick_gelu=True)
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {
        "mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD)}}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(directory / "open_clip_model.safetensors"))
    return directory


def extra_terms_spec(directory: Path) -> Path:
    import yaml

    from vlmface.probes import available_probes

    spec = yaml.safe_load(available_probes()["social-perception"].read_text())
    spec["dimensions"]["extra"] = [f"{a} {b}" for a, b in itertools.product(
        ["very", "rather", "not", "mildly", "truly", "oddly", "always", "rarely", "openly", "quietly"],
        ["calm", "loud", "shy", "bold", "kind", "cold", "lazy", "brave", "vain", "wise"])]
    path = directory / "more-terms.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, help="faces to probe (default: all after the age filter)")
    parser.add_argument("--vit-b32", action="store_true", help="a ViT-B/32-sized encoder instead of a tiny one")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()

    from tiny_models import build_tiny_open_clip
    from vlmface.probes import probe

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "model").mkdir()
        model_dir = build_vit_b32(root / "model") if args.vit_b32 else build_tiny_open_clip(root / "model")
        model = f"clip:local-dir:{model_dir}"
        common = dict(data_dir=FACES, limit=args.limit, n_boot=args.n_boot, device=args.device,
                      batch_size=args.batch_size, cache_dir=root / "cache")
        report = {"model": "ViT-B/32-sized (random)" if args.vit_b32 else "tiny open_clip", "device": args.device}
        for name, spec in (("cold", "social-perception"), ("warm", "social-perception"),
                           ("+100 terms", extra_terms_spec(root))):
            started = time.perf_counter()
            result = probe(spec, "utkface", model, out=root / name.replace(" ", "_"), **common)
            stats = result.manifest["models"][0]["stats"]
            report[name] = {"wall_s": round(time.perf_counter() - started, 2),
                            "images": result.manifest["data"]["used"],
                            "timings_s": result.manifest["timings"], "images_encoded": stats["images_encoded"],
                            "cache_hits": stats["embedding_cache"]["hits"], "texts_encoded": stats["texts_encoded"],
                            "deltas_rows": len(result.deltas)}
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
