"""Throughput and peak memory of MS-IQA on 512x512 slices.

    python benchmarks/speed.py            # full run (~10 min on 2 CPU cores)
    python benchmarks/speed.py --quick    # short run (~2 min)

1. Throughput: assess() end to end (rendering PET over CT, network, heatmap) on a synthetic
   512x512 PET/CT pair, for both presets: "compact" with the bundled weights and "paper"
   (ResNet-50 + Swin-T, the published configuration) with randomly initialised weights
   (no trained paper-size weights ship; speed and memory do not depend on the values).
   On the CPU, and on CUDA when PyTorch sees a GPU.
2. Memory: a synthetic 512x512xK CT (int16) + PET (float32, same grid) written slab by slab
   into .nrrd files, then assessed, for K = 150 and K = 600: once through assess() alone and
   once through ``msiqa assess`` (all four outputs written). The input volumes and the
   heatmap necessarily grow with K, so the table also shows the peak minus the baseline
   (interpreter, torch, model) minus the input and output arrays: that part should be flat.

Every configuration runs in its own subprocess, so each peak (ru_maxrss) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 1024.0 * 1024.0
SIZE = 512
SPACING = (0.8, 0.8, 2.5)
LIMIT_MB = 4096


def _ensure_importable() -> None:
    try:
        import msiqa  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "MSIQA"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return peak_rss_mb()


# ---------------------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------------------


def phantom_slab(k0: int, k1: int, n: int, size: int = SIZE, seed: int = 0):
    """CT (HU, int16) and PET (Bq/ml, float32) slices k0..k1 of an n-slice torso phantom."""
    import numpy as np

    rng = np.random.default_rng(seed + k0)
    k = np.arange(k0, k1, dtype=np.float32)[:, None, None]
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    c = size / 2.0
    a = size * (0.40 + 0.03 * np.sin(k / max(n, 1) * 6.0))
    b = size * 0.28
    body = ((x - c) / a) ** 2 + ((y - c) / b) ** 2 < 1
    lungs = (((np.abs(x - c) - size * 0.17) / (size * 0.11)) ** 2 + ((y - c + size * 0.02) / (size * 0.15)) ** 2) < 1
    spine = ((x - c) ** 2 + (y - c - size * 0.18) ** 2) < (size * 0.04) ** 2
    hu = np.where(body, 40.0, -1000.0)
    hu = np.where(body & lungs, -820.0, hu)
    hu = np.where(spine, 700.0, hu)
    hu = hu + rng.normal(0, 12, hu.shape)
    bq = np.where(body, 4500.0, 0.0) * (1 + 0.1 * rng.standard_normal(hu.shape))
    bq = np.where(body & lungs, 1500.0, bq)
    hot = ((x - c - size * 0.1) ** 2 + (y - c + size * 0.05) ** 2) < (size * 0.02) ** 2
    bq = np.where(hot & (np.sin(k / 7.0) > 0.3), 26000.0, bq)
    return np.round(hu).astype(np.int16), np.clip(bq, 0, None).astype(np.float32)


def write_nrrd_slabwise(folder: Path, n: int, size: int = SIZE, slab: int = 16) -> tuple[Path, Path]:
    """Write ct.nrrd and pet.nrrd (raw encoding) slab by slab: memory stays at one slab."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "ct.nrrd", folder / "pet.nrrd"
    extra = {paths[1]: "msiqa_patient_weight_kg:=75\nmsiqa_injected_dose_bq:=3.5e8\n", paths[0]: ""}
    origin = (-size * SPACING[0] / 2, -size * SPACING[1] / 2, 0.0)
    files = []
    for path, kind in zip(paths, ("short", "float")):
        f = open(path, "wb")
        header = (
            "NRRD0004\n"
            f"type: {kind}\ndimension: 3\nspace: left-posterior-superior\n"
            f"sizes: {size} {size} {n}\n"
            f"space directions: ({SPACING[0]},0,0) (0,{SPACING[1]},0) (0,0,{SPACING[2]})\n"
            "kinds: domain domain domain\nendian: little\nencoding: raw\n"
            f"space origin: ({origin[0]},{origin[1]},{origin[2]})\n" + extra[path] + "\n"
        )
        f.write(header.encode("ascii"))
        files.append(f)
    try:
        for k0 in range(0, n, slab):
            hu, bq = phantom_slab(k0, min(n, k0 + slab), n, size)
            files[0].write(hu.astype("<i2").tobytes())
            files[1].write(bq.astype("<f4").tobytes())
    finally:
        for f in files:
            f.close()
    return paths


# ---------------------------------------------------------------------------------------
# Workers (run in a subprocess each)
# ---------------------------------------------------------------------------------------


def _model(preset: str):
    from msiqa.models import create_model
    from msiqa.weights import LoadedModel, load_model

    if preset == "compact":
        return load_model()
    net = create_model(preset).eval()
    card = {"name": f"{preset} (random init)", "version": "-", "preset": preset, "sha256": None}
    return LoadedModel(net, card, Path("<random init>"))


def worker_speed(args) -> dict:
    import numpy as np
    import SimpleITK as sitk
    import torch

    from msiqa.assess import Scorer, assess

    scorer = Scorer(_model(args.preset), args.device)
    hu, bq = phantom_slab(0, args.slices, args.slices)
    ct, pet = sitk.GetImageFromArray(hu), sitk.GetImageFromArray(bq)
    for im in (ct, pet):
        im.SetSpacing(SPACING)
    pet.SetMetaData("msiqa_patient_weight_kg", "75")
    pet.SetMetaData("msiqa_injected_dose_bq", "3.5e8")
    warm_ct, warm_pet = ct[:, :, : args.batch_size], pet[:, :, : args.batch_size]
    assess(warm_ct, warm_pet, scorer=scorer, batch_size=args.batch_size)  # warm-up (allocator, kernels)
    if scorer.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = assess(ct, pet, scorer=scorer, batch_size=args.batch_size)
    if scorer.device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    out = {
        "preset": args.preset,
        "weights": "bundled" if args.preset == "compact" else "random init",
        "device": str(scorer.device),
        "batch": args.batch_size,
        "slices": args.slices,
        "seconds": dt,
        "slices_per_s": args.slices / dt,
        "peak_rss_mb": peak_rss_mb(),
        "threads": torch.get_num_threads(),
        "params_m": sum(p.numel() for p in scorer.model.net.parameters()) / 1e6,
        "finite": bool(np.isfinite(result.scores).all()),
    }
    if scorer.device.type == "cuda":
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / MB
        out["gpu"] = torch.cuda.get_device_name()
    return out


def worker_memory(args) -> dict:
    import numpy as np
    import torch

    ct, pet = Path(args.ct), Path(args.pet)
    n = args.slices
    inputs_mb = n * SIZE * SIZE * (2 + 4) / MB
    outputs_mb = n * SIZE * SIZE * 4 / MB  # the float32 heatmap
    if args.mode == "engine":
        from msiqa.assess import Scorer, assess

        scorer = Scorer(_model("compact"), args.device)
        scorer(np.zeros((1, 64, 64, 3), np.uint8))  # initialise the runtime before the baseline
        base = current_rss_mb()
        t0 = time.perf_counter()
        result = assess(ct, pet, scorer=scorer, batch_size=args.batch_size)
        dt = time.perf_counter() - t0
        assert result.heatmap.shape[0] == n
    else:
        from msiqa import cli
        import msiqa.assess  # noqa: F401  (torch and the engine, as the command imports them)

        base = current_rss_mb()
        out = Path(args.out)
        t0 = time.perf_counter()
        rc = cli.main(["assess", "--ct", str(ct), "--pet", str(pet), "--out", str(out), "--device", args.device,
                       "--batch-size", str(args.batch_size), "-q"])
        dt = time.perf_counter() - t0
        if rc != 0:
            raise SystemExit(f"msiqa assess failed with {rc}")
    peak = peak_rss_mb()
    return {
        "mode": args.mode,
        "slices": n,
        "seconds": dt,
        "slices_per_s": n / dt,
        "peak_rss_mb": peak,
        "baseline_mb": base,
        "inputs_mb": inputs_mb,
        "outputs_mb": outputs_mb,
        "working_mb": peak - base - inputs_mb - outputs_mb,
        "threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------


def run_worker(*argv: str, timeout: float = 3600) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"worker {' '.join(argv)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """columns: (header, key, format)."""
    cells = [[h for h, _, _ in columns]]
    for r in rows:
        cells.append([("-" if r.get(k) is None else format(r[k], f)) for _, k, f in columns])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer slices: a short run")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: the CPU, plus CUDA when present (default)")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--slices", type=int, nargs=2, metavar=("SMALL", "LARGE"), default=None,
                   help="slice counts of the memory check (default: 150 600; --quick: 40 160)")
    p.add_argument("--json", metavar="FILE", help="also write all figures to this JSON file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--kind", default="speed", help=argparse.SUPPRESS)
    p.add_argument("--preset", default="compact", help=argparse.SUPPRESS)
    p.add_argument("--batch-size", type=int, default=8, help=argparse.SUPPRESS)
    p.add_argument("--mode", default="engine", help=argparse.SUPPRESS)
    p.add_argument("--ct", help=argparse.SUPPRESS)
    p.add_argument("--pet", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--n", dest="n", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    _ensure_importable()

    if args.worker:
        args.slices = args.n
        result = worker_speed(args) if args.kind == "speed" else worker_memory(args)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    import torch

    devices = ["cpu"]
    if args.device in ("auto", "cuda") and torch.cuda.is_available():
        devices.append("cuda")
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("CUDA requested but not available", file=sys.stderr)
            return 2
        devices = ["cuda"]
    print(f"msiqa benchmark: python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}"
          + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"), flush=True)
    report: dict = {"speed": [], "memory": []}

    if not args.skip_speed:
        configs = []
        for dev in devices:
            cpu = dev == "cpu"
            configs.append(("compact", dev, 8 if cpu else 32, (16 if args.quick else 48) if cpu else 256))
            configs.append(("paper", dev, 4 if cpu else 32, (4 if args.quick else 12) if cpu else 128))
        for preset, dev, batch, n in configs:
            print(f"  speed: {preset} on {dev}, {n} slices ...", flush=True)
            report["speed"].append(run_worker("--kind", "speed", "--preset", preset, "--device", dev,
                                              "--batch-size", str(batch), "--n", str(n)))
        print("\nThroughput: assess() end to end on 512x512 slices (PET over CT)")
        print(table(report["speed"], [
            ("preset", "preset", "s"), ("weights", "weights", "s"), ("device", "device", "s"),
            ("params (M)", "params_m", ".1f"), ("batch", "batch", "d"), ("slices", "slices", "d"),
            ("slices/s", "slices_per_s", ".2f"), ("peak RSS (MB)", "peak_rss_mb", ".0f"),
            ("GPU peak (MB)", "gpu_peak_mb", ".0f"),
        ]))
        print("'paper' runs with randomly initialised weights (no trained paper-size model is bundled).", flush=True)

    if not args.skip_memory:
        small, large = args.slices or ((40, 160) if args.quick else (150, 600))
        dev = devices[-1]
        with tempfile.TemporaryDirectory(prefix="msiqa-bench-") as tmp:
            for n in (small, large):
                folder = Path(tmp) / f"k{n}"
                t0 = time.perf_counter()
                ct, pet = write_nrrd_slabwise(folder, n)
                size_mb = (ct.stat().st_size + pet.stat().st_size) / MB
                print(f"  memory: wrote {n}-slice CT + PET ({size_mb:.0f} MB on disk) in {time.perf_counter() - t0:.0f} s",
                      flush=True)
                for mode in ("engine", "cli"):
                    print(f"  memory: {mode}, {n} slices on {dev} ...", flush=True)
                    r = run_worker("--kind", "memory", "--mode", mode, "--device", dev, "--batch-size", "8",
                                   "--n", str(n), "--ct", str(ct), "--pet", str(pet), "--out", str(folder / "out"))
                    r["device"] = dev
                    report["memory"].append(r)
                    shutil.rmtree(folder / "out", ignore_errors=True)
        rows = sorted(report["memory"], key=lambda r: (r["mode"], r["slices"]))
        for r in rows:
            r["what"] = "assess()" if r["mode"] == "engine" else "msiqa assess"
            r["ok"] = "yes" if r["peak_rss_mb"] < LIMIT_MB else "NO"
        print(f"\nMemory: 512x512xK CT (int16) + PET (float32, same grid) on {dev}; "
              "inputs = both volumes in memory, outputs = the float32 heatmap")
        print(table(rows, [
            ("run", "what", "s"), ("slices", "slices", "d"), ("time (s)", "seconds", ".0f"),
            ("slices/s", "slices_per_s", ".2f"), ("peak RSS (MB)", "peak_rss_mb", ".0f"),
            ("baseline (MB)", "baseline_mb", ".0f"), ("inputs (MB)", "inputs_mb", ".0f"),
            ("outputs (MB)", "outputs_mb", ".0f"), ("peak-base-in-out (MB)", "working_mb", ".0f"),
            (f"< {LIMIT_MB} MB", "ok", "s"),
        ]))
        by = {(r["mode"], r["slices"]): r for r in rows}
        for mode in ("engine", "cli"):
            a, b = by.get((mode, small)), by.get((mode, large))
            if a and b:
                grow = (b["working_mb"] - a["working_mb"]) / (large - small)
                print(f"  {'assess()' if mode == 'engine' else 'msiqa assess'}: working memory grows "
                      f"{grow:+.2f} MB per extra slice ({small} -> {large} slices: "
                      f"{a['working_mb']:.0f} -> {b['working_mb']:.0f} MB)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
