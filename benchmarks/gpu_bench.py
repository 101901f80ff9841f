"""The GPU benchmark, prepared: real-size architectures with random weights, on real faces.

    python benchmarks/gpu_bench.py --out gpu_bench.json            # on a CUDA machine, ~8 minutes
    python benchmarks/gpu_bench.py --smoke --out smoke.json        # the same code path on CPU, tiny models,
                                                                   # as many hf batch sizes, each small

Models (built offline from their published configurations, see gpu_models.py; bf16 on CUDA):
open_clip ViT-B-32 and ViT-L-14, PaliGemma-3B (224) and LLaVA-1.5-7B through transformers, and the
same PaliGemma through vLLM (load_format="dummy") when vLLM is importable. For each, in images/s:

  bare      the model alone: forward passes (clip: encode_image; hf choice: one prefill, the
            label scores from its last logits; hf generate / vllm: generate) on a preprocessed
            batch of real faces, repeated for a few seconds
  harness   `vlmface.evaluate` (the code behind `vlmface eval`) with `clip:local-dir:DIR`,
            `hf:DIR` or `vllm:DIR`, task utkface, attribute gender, loader workers on; the rate
            between the first and the last prediction written (model load excluded), plus the
            rate with load included and the time to first result
  ratio     harness / bare;  peak_gpu_mib  torch's peak allocated memory in that step

Each model runs in its own subprocess with a time box (a model that runs over is killed; what
it measured so far is kept). Writes one JSON file (--out) and a Markdown table next to it (.md),
and prints what was skipped and why. No network: HF_HUB_OFFLINE is set.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "utkface" / "crop_part1"
TASK, ATTRIBUTE, LABELS = "utkface", "gender", ("Male", "Female")

#: step -> (kind, model, share of the total time budget)
STEPS = {"clip-ViT-B-32": ("clip", "ViT-B-32", 0.09), "clip-ViT-L-14": ("clip", "ViT-L-14", 0.11),
         "hf-paligemma-3b-224": ("hf", "paligemma-3b-224", 0.36), "hf-llava-1.5-7b": ("hf", "llava-1.5-7b", 0.24),
         "vllm-paligemma-3b-224": ("vllm", "paligemma-3b-224", 0.20)}
HF_BATCHES = {"paligemma-3b-224": (1, 8, 32, 64), "llava-1.5-7b": (1, 32)}
#: the smoke run: as many batch sizes, each small (tiny models on CPU check the path, not the speed)
SMOKE_HF_BATCHES = {"paligemma-3b-224": (1, 2, 3, 4), "llava-1.5-7b": (1, 2)}
PROMPTS = {"paligemma-3b-224": "<image>answer en What is the gender of the person in this image? Answer Male or Female.",
           "llava-1.5-7b": "USER: <image>\nWhat is the gender of the person in this image? Answer Male or Female. ASSISTANT:"}


class Settings:
    """What differs between a GPU run and the CPU smoke run (the code path does not)."""

    def __init__(self, smoke: bool, data_dir: Path, max_new_tokens: int):
        self.smoke, self.data_dir, self.max_new_tokens = smoke, data_dir, max_new_tokens
        self.device = "cpu" if smoke else "cuda"
        self.dtype = "fp32" if smoke else "bf16"
        self.clip_batch = 16 if smoke else 256
        self.workers = 1 if smoke else min(8, max(1, (os.cpu_count() or 2) // 2))
        self.bare_seconds = 0.0 if smoke else 4.0  # repeat the bare forward at least this long
        self.harness_seconds = 0.0 if smoke else 12.0  # aim each harness run at this long (after load)
        self.max_images = len(list(data_dir.glob("*.jpg")))
        self.hf_batches = SMOKE_HF_BATCHES if smoke else HF_BATCHES

    def torch_dtype(self):
        import torch

        return {"fp32": torch.float32, "bf16": torch.bfloat16}[self.dtype]


# ----- measuring helpers -----------------------------------------------------------------------
def faces(settings: Settings, n: int):
    from PIL import Image

    files = sorted(settings.data_dir.glob("*.jpg"))[:n]
    if not files:
        raise SystemExit(f"no *.jpg faces under {settings.data_dir}: pass --data-dir")
    return [Image.open(f).convert("RGB") for f in (files * (n // len(files) + 1))[:n]]


def sync(settings: Settings) -> None:
    if settings.device == "cuda":
        import torch

        torch.cuda.synchronize()


def reset_peak(settings: Settings) -> None:
    if settings.device == "cuda":
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_mib(settings: Settings) -> float | None:
    if settings.device != "cuda":
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def repeat_timed(settings: Settings, fn, images_per_call: int) -> dict:
    """images/s of fn() repeated for settings.bare_seconds (at least twice), after one warm-up."""
    fn()
    sync(settings)
    calls, started = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - started < settings.bare_seconds:
        fn()
        calls += 1
    sync(settings)
    seconds = time.perf_counter() - started
    return {"images_per_s": round(calls * images_per_call / seconds, 2), "batch_size": images_per_call,
            "calls": calls, "seconds": round(seconds, 3)}


class PredictionWatch:
    """Polls the run's predictions.jsonl while evaluate() runs: when the first and the last
    prediction were written, and how many there were then."""

    def __init__(self, out: Path):
        self.out, self.first, self.last, self.stop = out, None, None, threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _count(self) -> int:
        return sum(path.read_bytes().count(b"\n") for path in self.out.rglob("predictions.jsonl"))

    def _poll(self) -> None:
        seen = 0
        while not self.stop.is_set():
            count = self._count()
            if count != seen:
                now = time.perf_counter()
                self.first = self.first or (now, count)
                self.last, seen = (now, count), count
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def harness(settings: Settings, work: Path, model: str, n: int, batch_size: int | None,
            options: dict, workers: int | None) -> dict:
    """images/s of `vlmface.evaluate` on n faces: the real harness path, from a saved model dir."""
    from vlmface.runner import EvalConfig, evaluate

    out = Path(tempfile.mkdtemp(dir=work, prefix="run-"))
    reset_peak(settings)
    started = time.perf_counter()
    with PredictionWatch(out) as watch:
        result = evaluate(EvalConfig(task=TASK, model=model, data_dir=settings.data_dir, limit=n,
                                     attributes=[ATTRIBUTE], batch_size=batch_size, workers=workers,
                                     out=out, score=False, progress=False, cache_dir=False,
                                     options={"device": settings.device, "dtype": settings.dtype, **options}))
    ended = time.perf_counter()
    watch_last = watch.last or (ended, n)
    errors = sum(1 for line in result.predictions_path.read_text().splitlines() if '"status": "error"' in line)
    (t_first, first), (t_last, last) = watch.first or (ended, n), watch_last
    steady = (last - first) / (t_last - t_first) if last > first and t_last > t_first else n / (ended - started)
    return {"images_per_s": round(steady, 2), "images_per_s_with_load": round(n / (ended - started), 2),
            "time_to_first_result_s": round(t_first - started, 2), "wall_s": round(ended - started, 2),
            "n": n, "batch_size": batch_size, "workers": workers, "errors": errors,
            "peak_gpu_mib": peak_mib(settings)}


def harness_size(settings: Settings, expected_rate: float, batch_size: int) -> int:
    """Faces for one harness run: about settings.harness_seconds of work, at least two batches
    (the rate is taken between the first batch written and the last)."""
    n = int(expected_rate * settings.harness_seconds)
    return max(batch_size + 1, min(n, settings.max_images))


def with_ratio(bare: dict, harnessed: dict) -> dict:
    return {"bare": bare, "harness": harnessed,
            "ratio": round(harnessed["images_per_s"] / bare["images_per_s"], 3) if bare["images_per_s"] else None}


# ----- steps (each runs in its own subprocess) -------------------------------------------------
def clip_step(settings: Settings, work: Path, name: str, record) -> None:
    import open_clip
    import torch

    from gpu_models import build_open_clip

    directory = build_open_clip(name, work / f"clip-{name}", tiny=settings.smoke, device=settings.device)
    spec = f"local-dir:{directory}"
    model, _, preprocess = open_clip.create_model_and_transforms(spec, device=settings.device,
                                                                 precision=settings.dtype)
    model.eval()
    record(params=sum(p.numel() for p in model.parameters()))
    batch = torch.stack([preprocess(im) for im in faces(settings, settings.clip_batch)])
    batch = batch.to(settings.device, settings.torch_dtype())
    reset_peak(settings)
    with torch.inference_mode():
        bare = repeat_timed(settings, lambda: model.encode_image(batch), settings.clip_batch)
    bare["peak_gpu_mib"] = peak_mib(settings)
    del model, batch
    record(bare=bare)
    n = harness_size(settings, bare["images_per_s"] / 2, settings.clip_batch)
    found = harness(settings, work, f"clip:{spec}", n, settings.clip_batch, {}, settings.workers)
    record(**with_ratio(bare, found))


def hf_bare(settings: Settings, model, processor, name: str, mode: str, batch_size: int) -> dict:
    import torch

    images = faces(settings, batch_size)
    inputs = processor(text=[PROMPTS[name]] * batch_size, images=images, return_tensors="pt", padding=True)
    inputs = {k: v.to(settings.device) for k, v in inputs.items() if k != "labels"}
    inputs = {k: v.to(settings.torch_dtype()) if v.is_floating_point() else v for k, v in inputs.items()}
    first_ids = [processor.tokenizer(label, add_special_tokens=False)["input_ids"][0] for label in LABELS]
    if mode == "choice":
        def call():
            logits = model(**inputs).logits[:, -1].float()
            return logits.log_softmax(-1)[:, first_ids].cpu()
    else:
        def call():
            return model.generate(**inputs, max_new_tokens=settings.max_new_tokens, do_sample=False).cpu()
    reset_peak(settings)
    with torch.inference_mode():
        found = repeat_timed(settings, call, batch_size)
    found["peak_gpu_mib"] = peak_mib(settings)
    return found


def hf_step(settings: Settings, work: Path, name: str, record) -> None:
    import transformers

    from gpu_models import HF_FAMILIES, build_hf_vlm

    directory = work / f"hf-{name}"
    started = time.perf_counter()
    build_hf_vlm(name, directory, tiny=settings.smoke, device=settings.device,
                 dtype=str(settings.torch_dtype()).removeprefix("torch."))
    record(build_and_save_s=round(time.perf_counter() - started, 1))
    processor = transformers.AutoProcessor.from_pretrained(directory)
    model = getattr(transformers, HF_FAMILIES[name][2]).from_pretrained(
        directory, dtype=settings.torch_dtype()).to(settings.device).eval()
    record(params=sum(p.numel() for p in model.parameters()))
    batches = settings.hf_batches[name]
    bare = {mode: {b: hf_bare(settings, model, processor, name, mode, b) for b in batches}
            for mode in ("choice", "generate")}
    record(bare_only=bare)
    del model
    for mode in ("choice", "generate"):
        expected = bare[mode][batches[0]]["images_per_s"] / 2
        for previous, b in zip((None, *batches), batches):
            if previous is not None:  # scale the last harness rate by the bare speed-up
                expected = last * bare[mode][b]["images_per_s"] / bare[mode][previous]["images_per_s"]
            found = harness(settings, work, f"hf:{directory}", harness_size(settings, expected, b), b,
                            {"mode": mode, "max_new_tokens": settings.max_new_tokens}, None)
            last = found["images_per_s"]
            record(path=[mode, str(b)], value=with_ratio(bare[mode][b], found))


def vllm_step(settings: Settings, work: Path, name: str, record) -> None:
    from gpu_models import build_hf_vlm

    import vllm

    directory = build_hf_vlm(name, work / f"vllm-{name}", tiny=settings.smoke, weights=False)
    engine = {"load_format": "dummy", "enforce_eager": True, "max_model_len": 1024}  # eager: starts in seconds
    llm = vllm.LLM(model=str(directory), dtype="bfloat16", seed=0, limit_mm_per_prompt={"image": 1},
                   gpu_memory_utilization=0.45, **engine)
    params = vllm.SamplingParams(max_tokens=settings.max_new_tokens, temperature=0.0)
    n = 256 if not settings.smoke else 8
    requests = [{"prompt": PROMPTS[name], "multi_modal_data": {"image": im}} for im in faces(settings, n)]
    bare = repeat_timed(settings, lambda: llm.generate(requests, params, use_tqdm=False), n)
    record(bare=bare)
    del llm
    import gc

    gc.collect()
    found = harness(settings, work, f"vllm:{directory}", harness_size(settings, bare["images_per_s"] / 2, n), None,
                    {"mode": "generate", "max_new_tokens": settings.max_new_tokens, "gpu_memory_utilization": 0.45,
                     "max_model_len": 1024, "engine_args": {"load_format": "dummy", "enforce_eager": True}}, None)
    record(**with_ratio(bare, found))


STEP_FUNCTIONS = {"clip": clip_step, "hf": hf_step, "vllm": vllm_step}


def run_step(step: str, settings: Settings, work: Path, part: Path) -> None:
    """Child process: one model; writes its figures to `part` after every measurement."""
    import torch

    torch.set_num_threads(1 if settings.smoke else min(8, os.cpu_count() or 1))  # smoke: beside other tests
    kind, model, _ = STEPS[step]
    section: dict = {"kind": kind, "model": model}

    def record(path: list[str] | None = None, value=None, **fields) -> None:
        if path:
            node = section
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value
        section.update(fields)
        tmp = part.with_suffix(".tmp")
        tmp.write_text(json.dumps(section, indent=2))
        tmp.replace(part)

    record()
    STEP_FUNCTIONS[kind](settings, work, model, record)
    record(complete=True)


# ----- the parent: time boxes, JSON, Markdown -------------------------------------------------
def skip_reason(kind: str, smoke: bool) -> str | None:
    if kind == "vllm" and importlib.util.find_spec("vllm") is None:
        return "vllm is not importable (pip install vllm on a CUDA machine)"
    if kind == "vllm" and smoke:
        return "vllm has no CPU smoke configuration"
    return None


def run_all(args) -> dict:
    results = {"meta": meta(args), "sections": {}, "skipped": {}}
    deadline = time.monotonic() + args.budget
    with tempfile.TemporaryDirectory(prefix="gpu-bench-", dir=args.work_dir) as tmp:
        for step in args.steps:
            kind, _, share = STEPS[step]
            reason = skip_reason(kind, args.smoke)
            left = deadline - time.monotonic()
            if reason is None and left < 10:
                reason = f"out of time ({args.budget:.0f} s budget spent)"
            if reason:
                results["skipped"][step] = reason
                results["sections"][step] = {"kind": kind, "skipped": reason}
                continue
            box = left if args.smoke else min(left, max(share * args.budget, 20))  # smoke: checks, not speed
            results["sections"][step] = child(step, args, Path(tmp), box)
            write(results, args.out)
    return results


def child(step: str, args, work: Path, timeout: float) -> dict:
    part = work / f"{step}.json"
    command = [sys.executable, __file__, "--step", step, "--work-dir", str(work), "--part", str(part),
               "--data-dir", str(args.data_dir), "--max-new-tokens", str(args.max_new_tokens)]
    command += ["--smoke"] if args.smoke else []
    print(f"[{step}] running (time box {timeout:.0f} s)", flush=True)
    started = time.monotonic()
    try:
        finished = subprocess.run(command, timeout=timeout, capture_output=True, text=True)
        status = "ok" if finished.returncode == 0 else f"failed (exit {finished.returncode})"
        tail = finished.stderr.strip().splitlines()[-3:] if finished.returncode else []
    except subprocess.TimeoutExpired:
        status, tail = f"timed out after {timeout:.0f} s (figures so far kept)", []
    section = json.loads(part.read_text()) if part.exists() else {"kind": STEPS[step][0]}
    section.update(status=status, step_s=round(time.monotonic() - started, 1))
    if tail:
        section["error"] = " | ".join(tail)
    print(f"[{step}] {status} in {section['step_s']} s" + (f": {section['error']}" if tail else ""), flush=True)
    return section


def meta(args) -> dict:
    """Where and with what the figures were taken (package versions read without importing)."""
    import platform
    from importlib import metadata

    info = {"smoke": args.smoke, "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": platform.node(), "budget_s": args.budget, "data_dir": str(args.data_dir), "task": TASK,
            "attribute": ATTRIBUTE, "max_new_tokens": args.max_new_tokens, "cpu_count": os.cpu_count(),
            "load_avg_at_start": os.getloadavg()[0]}
    for package in ("torch", "transformers", "open_clip_torch", "vllm"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = None
    if not args.smoke:
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def rows(results: dict):
    """(model, mode, batch, bare, harness, ratio, first result s, peak MiB) per measured figure."""
    for step, section in results["sections"].items():
        if "skipped" in section:
            yield (step, "-", "-", "skipped", section["skipped"], "", "", "")
            continue
        entries = [("-", section)] if "bare" in section else []
        entries += [(f"{mode} b{b}", section[mode][b]) for mode in ("choice", "generate") if mode in section
                    for b in section[mode]]
        for label, entry in entries:
            if "harness" not in entry:
                continue
            h = entry["harness"]
            peak = max((x for x in (entry["bare"].get("peak_gpu_mib"), h.get("peak_gpu_mib")) if x), default=None)
            yield (step, label, entry["bare"]["batch_size"], entry["bare"]["images_per_s"], h["images_per_s"],
                   entry["ratio"], h["time_to_first_result_s"], peak if peak is not None else "n/a")
        if section.get("status", "ok") != "ok":
            yield (step, "-", "-", "", section["status"], "", "", "")


def markdown(results: dict) -> str:
    head = ["step", "mode", "batch", "bare img/s", "harness img/s", "ratio", "first result s", "peak GPU MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows(results)]
    where = results["meta"].get("gpu", "CPU (smoke, tiny models)")
    return f"GPU benchmark on {where}, started {results['meta']['started_utc']}\n\n" + "\n".join(lines) + "\n"


def write(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(markdown(results))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny configurations (default: off)")
    parser.add_argument("--out", type=Path, default=Path("gpu_bench.json"),
                        help="JSON results; the Markdown table goes next to it as .md (default: gpu_bench.json)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA,
                        help=f"UTKFace-named face images (default: {DEFAULT_DATA})")
    parser.add_argument("--budget", type=float, default=None,
                        help="total seconds for all steps (default: 450 on a GPU, 170 with --smoke)")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated (default: {','.join(STEPS)})")
    parser.add_argument("--max-new-tokens", type=int, default=8, help="generate mode (default: 8)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where models are saved while running (default: the system temp dir)")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--part", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.budget = args.budget or (170.0 if args.smoke else 450.0)
    args.steps = [s for s in args.steps.split(",") if s]
    unknown = [s for s in args.steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {unknown}: choose from {', '.join(STEPS)}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.step:
        run_step(args.step, Settings(args.smoke, args.data_dir, args.max_new_tokens), args.work_dir, args.part)
        return
    if not args.smoke:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run on a GPU machine, or pass --smoke for the CPU check")
    results = run_all(args)
    write(results, args.out)
    print(markdown(results))
    for step, reason in results["skipped"].items():
        print(f"skipped {step}: {reason}")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
