"""The first GPU run: reidkit's CUDA and NCCL paths end to end, in one short device lease.

Run from the source tree on the device machine (no package index there; its own torch):

    PYTHONPATH=. python3 benchmarks/gpu_check.py --out gpu_check.json

and on any machine, every stage that can run without CUDA, small (the suite runs this):

    python benchmarks/gpu_check.py --dry-run --out gpu_check.json

Stages, in order of value: the environment (versions, a real skew is a failure) and device
detection; synthetic data; a short resnet50 training in fp32, bf16 + channels_last and fp16
with the grad scaler and clipping; a resume; the GPU checkpoint loaded on the CPU; a
``data.sample=all`` video step; two epochs of adaptation to the second camera network;
extraction throughput of resnet50 and osnet_x1_0 in fp32, bf16 and fp16 and the fp32
features against the CPU's; evaluation with re-ranking at Market-1501 scale on the GPU
against the CPU; a one-process NCCL group through torchrun.
One table, the same rows as JSON; exit 1 on any failure or mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench_evaluate's feature maker

# below these reidkit does not run (pyproject.toml); other versions than the pins are shown
MINIMUM = {"torch": (2, 4), "torchvision": (0, 19), "numpy": (1, 24), "h5py": (3, 9)}
FEATURE_TOLERANCE = 1e-3  # fp32 GPU (no TF32) against CPU features, on the features' scale
METRIC_TOLERANCE = 1e-6  # mAP and CMC, GPU against CPU ranking


def version_of(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"


def stage_environment(ctx: dict) -> dict:
    import torch

    from reidkit.device import resolve_device

    # scikit-learn: adaptation's DBSCAN and agreement scores
    names = ("torch", "torchvision", "timm", "numpy", "h5py", "scipy", "scikit-learn",
             "onnxruntime", "typer")  # fmt: skip
    versions = {name: version_of(name) for name in names}
    versions["python"] = platform.python_version()
    too_old = []
    for name, minimum in MINIMUM.items():
        found = versions[name]
        parts = tuple(int(p) for p in found.split("+")[0].split(".")[:2] if p.isdigit())
        if found == "missing" or parts < minimum:
            too_old.append(f"{name} {found} < {'.'.join(map(str, minimum))}")
    if too_old:
        raise RuntimeError(f"version skew: {', '.join(too_old)}")
    device = resolve_device("cpu" if ctx["dry_run"] else "auto")
    if not ctx["dry_run"] and device != "cuda":
        raise RuntimeError("no CUDA device found (resolve_device('auto') gave the CPU)")
    ctx["device"] = device
    figures = {**versions, "device": device}
    if device == "cuda":
        figures |= {
            "gpu": torch.cuda.get_device_name(0),
            "gpus": torch.cuda.device_count(),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "bf16": torch.cuda.is_bf16_supported(),
        }
    return figures


def stage_synth(ctx: dict) -> dict:
    from reidkit.data.synth import generate

    root = ctx["work"] / "data"
    generate(root, "tiny", seed=0, workers=2)
    generate(root, "tiny", seed=0, network="b", workers=2)  # adaptation's target
    generate(root, "video-tiny", seed=0, workers=2)
    ctx["root"] = ctx["extract_root"] = root
    if not ctx["dry_run"]:  # enough images for a throughput figure on a GPU
        ctx["extract_root"] = ctx["work"] / "data-small"
        generate(ctx["extract_root"], "small", seed=0, workers=os.cpu_count() or 2)
    return {"root": str(root), "extraction": str(ctx["extract_root"])}


def _train(ctx: dict, run: str, *overrides: str, epochs: int = 1) -> dict:
    from reidkit import load_config, train

    height, width = (32, 16) if ctx["dry_run"] else (256, 128)  # dry run: the suite's time
    config = load_config(None, [
        f"model.name={ctx['model']}", "model.pretrained=none", f"data.root={ctx['root']}",
        f"data.height={height}", f"data.width={width}", "data.batch_size=16",
        "data.num_instances=4", f"train.device={ctx['device']}", f"train.epochs={epochs}",
        "eval.every=1", "schedule.warmup_epochs=1", *overrides,
    ])  # fmt: skip
    start = time.perf_counter()
    result = train(config, ctx["work"] / run)
    return {"seconds": round(time.perf_counter() - start, 1), "mAP": result.get("best_mAP")}


def stage_train_fp32(ctx: dict) -> dict:
    return _train(ctx, "fp32")


def stage_train_bf16(ctx: dict) -> dict:
    return _train(ctx, "bf16", "train.amp=bf16", "train.channels_last=true")


def stage_train_fp16(ctx: dict) -> dict:
    if ctx["device"] == "cpu":
        return {"skipped": "fp16 autocast with a grad scaler is for CUDA"}
    return _train(ctx, "fp16", "train.amp=fp16", "optim.grad_clip=5")


def stage_resume(ctx: dict) -> dict:
    from reidkit import resume

    result = resume(ctx["work"] / "fp32", {"train.epochs": 2})
    if result["epochs"] != 2:
        raise RuntimeError(f"resumed to epoch {result['epochs']}, not 2")
    return {"epochs": result["epochs"]}


def stage_checkpoint_on_cpu(ctx: dict) -> dict:
    import torch

    from reidkit.features.source import load_model_source

    source = load_model_source(ctx["work"] / "fp32" / "weights" / "last.pt")
    x = torch.randn(2, 3, source.data["height"], source.data["width"])
    with torch.no_grad():
        features = source.model.cpu()(x)
    if not torch.isfinite(features).all():
        raise RuntimeError("the checkpoint gives non-finite features on the CPU")
    return {"feature_dim": int(features.shape[1])}


def stage_video_all_frames(ctx: dict) -> dict:
    """A budget below the batch's frames (video-tiny's tracklets have 4 to 10 frames): the caps
    cut them; on CUDA the peak memory over the budget bounds a frame's cost."""
    import torch

    budget = 24  # 8 clips
    cuda = ctx["device"].startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    video = ["data.dataset=synthreid-video", "data.sample=all", f"data.max_frames={budget}"]
    figures = _train(ctx, "video", *video, "data.batch_size=8", "data.num_instances=2")
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
        figures.update(peak_MiB=round(peak), MiB_per_frame_at_most=round(peak / budget, 1))
    return figures


def stage_adapt(ctx: dict) -> dict:
    """Adaptation from the fp32 run to synthreid-b: the target's features, its Jaccard
    distances (on the GPU), DBSCAN, the cluster memory and its updates on the device."""
    import csv

    source = ctx["work"] / "fp32" / "weights" / "last.pt"
    figures = _train(
        ctx, "adapt", "data.dataset=synthreid-b", f"model.pretrained={source}",
        "adapt.enabled=true", "adapt.k1=8", "adapt.camera_centre=true", "loss.triplet=0",
        "loss.label_smoothing=0", "data.sampler=pk_cameras", "train.iters_per_epoch=4",
        "data.batch_size=8", "data.num_instances=4", "schedule.warmup_epochs=0", epochs=2,
    )  # fmt: skip
    with open(ctx["work"] / "adapt" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    figures.update(clusters=[int(r["clusters"]) for r in rows], ari=float(rows[-1]["ari"]))
    return figures


def _extract(
    ctx: dict, model: str, amp: str, device: str, subset: str, channels_last: bool | None = None
) -> tuple[dict, Path]:
    """One subset extracted in ``extract``'s default form (BatchNorm folded; the memory
    format the device's default gives, unless ``channels_last`` says which)."""
    from reidkit import ExtractOptions, extract_dataset

    layout = {None: "", True: "-cl", False: "-contiguous"}[channels_last]
    out = ctx["work"] / f"feats-{model}-{amp}-{device}{layout}"
    size = {"height": 64, "width": 32} if ctx["dry_run"] else {}
    options = ExtractOptions(amp=amp, channels_last=channels_last, **size)
    result = extract_dataset(
        model_name=model, dataset="synthreid", root=ctx["extract_root"], subsets=(subset,),
        out_dir=out, options=options, device=device, force=True, batch_size=64, workers=-1,
    )  # fmt: skip
    return result["files"][0], out / f"synthreid-{subset}.h5"


def stage_extract(ctx: dict) -> dict:
    from reidkit import ExtractOptions, read_features
    from reidkit.features.jobs import inference_form

    figures = {}
    models = ("resnet18", "osnet_x0_25") if ctx["dry_run"] else ("resnet50", "osnet_x1_0")
    amps = ("off", "bf16") if ctx["device"] == "cpu" else ("off", "bf16", "fp16")
    for model in models:
        for amp in amps:
            row, _ = _extract(ctx, model, amp, ctx["device"], "gallery")
            figures[f"{model} {amp} img/s"] = row["images_per_second"]
            if ctx["dry_run"] and (amp, model) != ("off", models[-1]):
                continue  # the other memory format's plumbing: one form on the CPU
            # the other memory format than the default's, which decides the default on
            # CUDA (contiguous until measured; on the CPU each family's, docs/benchmarks.md)
            other = not inference_form(ExtractOptions(), ctx["device"], model)["channels_last"]
            row, _ = _extract(ctx, model, amp, ctx["device"], "gallery", channels_last=other)
            layout = "channels_last" if other else "contiguous"
            figures[f"{model} {amp} {layout} img/s"] = row["images_per_second"]
        _, here = _extract(ctx, model, "off", ctx["device"], "query")
        # on the CPU (--dry-run) the same file: the comparison then checks only the plumbing
        cpu = here if ctx["device"] == "cpu" else _extract(ctx, model, "off", "cpu", "query")[1]
        a, b = read_features(here).features, read_features(cpu).features
        diff = float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max())))
        figures[f"{model} fp32 vs cpu"] = diff
        if diff > FEATURE_TOLERANCE:
            raise RuntimeError(f"{model}: fp32 features differ from the CPU's by {diff:.2e}")
    return figures


def stage_evaluate(ctx: dict) -> dict:
    from bench_evaluate import SCALES, make_features

    from reidkit import Ranking, Rerank, evaluate_files

    if ctx["dry_run"]:  # a small scale: the suite's time
        SCALES["gpu-check"] = {"query": 200, "gallery": 1000, "ids": 100, "cameras": 6}
    scale = "gpu-check" if ctx["dry_run"] else "market"
    query, gallery = make_features(ctx["work"], scale, "poor" if ctx["dry_run"] else "good")
    results = {}
    for device in dict.fromkeys((ctx["device"], "cpu")):
        start = time.perf_counter()
        ranking = Ranking(rerank=Rerank(), device=device)
        results[device] = evaluate_files(query, gallery, ranking)
        results[device]["wall"] = round(time.perf_counter() - start, 2)
    mine, cpu = results[ctx["device"]], results["cpu"]
    gap = max([abs(mine["mAP"] - cpu["mAP"])]
              + [abs(mine["cmc"][k] - cpu["cmc"][k]) for k in cpu["cmc"]])  # fmt: skip
    if gap > METRIC_TOLERANCE:
        raise RuntimeError(f"re-ranked metrics on {ctx['device']} differ from the CPU's by {gap}")
    return {"mAP": cpu["mAP"], "gap": gap, **{f"{d} s": r["wall"] for d, r in results.items()}}


def stage_process_group(ctx: dict) -> dict:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1",
                str(Path(__file__).resolve()), "--group-child", ctx["device"]]  # fmt: skip
    done = subprocess.run(launcher, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def group_child(device: str) -> None:
    """One torchrun process: join a group (NCCL on CUDA) and all-reduce a tensor."""
    import datetime

    import torch
    import torch.distributed as dist

    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=120))
    value = torch.ones(4, device=device)
    dist.all_reduce(value)
    dist.destroy_process_group()
    print(json.dumps({"backend": backend, "sum": float(value.sum())}))


STAGES = [
    ("environment", stage_environment),
    ("synthetic data", stage_synth),
    ("train fp32", stage_train_fp32),
    ("train bf16 + channels_last", stage_train_bf16),
    ("train fp16 + scaler + clip", stage_train_fp16),
    ("resume", stage_resume),
    ("GPU checkpoint on the CPU", stage_checkpoint_on_cpu),
    ("video, sample=all", stage_video_all_frames),
    ("adaptation", stage_adapt),
    ("extraction", stage_extract),
    ("evaluate + re-rank", stage_evaluate),
    ("process group", stage_process_group),
]
NEEDS = {"train bf16 + channels_last": "train fp32", "resume": "train fp32",
         "GPU checkpoint on the CPU": "train fp32", "adaptation": "train fp32"}  # fmt: skip


def run_stages(ctx: dict) -> list[dict]:
    rows: list[dict] = []
    failed: set[str] = set()
    for name, stage in STAGES:
        if name != "environment" and ("environment" in failed or "synthetic data" in failed):
            rows.append({"stage": name, "status": "skipped", "seconds": 0, "figures": {}})
            continue
        if NEEDS.get(name) in failed:
            rows.append({"stage": name, "status": "skipped", "seconds": 0,
                         "figures": {"reason": f"{NEEDS[name]} failed"}})  # fmt: skip
            continue
        start = time.perf_counter()
        try:
            figures, status = stage(ctx), "ok"
        except Exception as exc:  # every failure is a row: the lease is too short to rerun
            figures, status = {"error": f"{type(exc).__name__}: {exc}"[:500]}, "FAIL"
            figures["where"] = traceback.format_exc().strip().splitlines()[-3:][0][:200]
            failed.add(name)
        rows.append(
            {
                "stage": name,
                "status": status,
                "seconds": round(time.perf_counter() - start, 1),
                "figures": figures,
            }
        )
        print(f"{name:28s} {status:7s} {rows[-1]['seconds']:7.1f} s  {figures}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="the CPU, small sizes")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--group-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.group_child:
        group_child(args.group_child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ctx = {"dry_run": args.dry_run, "work": work, "device": "cpu",
               "model": "resnet18" if args.dry_run else "resnet50"}  # fmt: skip
        start = time.perf_counter()
        rows = run_stages(ctx)
    total = round(time.perf_counter() - start, 1)
    failures = [r["stage"] for r in rows if r["status"] == "FAIL"]
    report = {"dry_run": args.dry_run, "seconds": total, "failures": failures, "stages": rows}
    args.out.write_text(json.dumps(report, indent=2))
    passed = sum(r["status"] == "ok" for r in rows)
    print(
        f"{passed} of {len(rows)} stages passed, {len(failures)} failed, in {total} s; {args.out}"
    )
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
