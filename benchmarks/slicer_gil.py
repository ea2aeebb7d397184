"""Slicer's main loop, emulated, with the engine in a child process (the module's design).

    python benchmarks/slicer_gil.py                       # sample study + synthetic 512x512x300 CT+PET
    python benchmarks/slicer_gil.py --quick               # the sample study only
    python benchmarks/slicer_gil.py --thread-seconds 60   # also the old in-process thread design, for 60 s

Emulation (../shared/tools/slicer-gil-emulation, see its README): inside Slicer the main
thread holds Python's GIL while it idles in Qt's event loop. ``ctypes.PyDLL`` calls keep the
GIL, so ``usleep`` through PyDLL stands in for the idle loop; between sleeps a Python "slot"
runs, as the module's 100 ms QTimer does.

For each study:
  free    the run polled with time.sleep (the parent's GIL free): the engine's own speed
  slicer  the module's flow under the emulated loop: volume nodes (slicer-core) -> input
          copies -> run.start() (inputs written: main thread), a slot every 100 ms calling
          run.poll() (the last one reads the results back), msiqa.mrml.show_results (main thread)
  cli     ``msiqa assess`` run directly, wall time
Printed: wall and CPU seconds of the child (CPU time does not depend on what else the machine
is doing, so it shows whether the emulated main loop slows the engine), the child's phases
(from its events), how long the main thread was busy (the longest slot = the longest the GUI
would not answer) and how late the ticks came, and the model load a warm (already started)
child would save per run. The modes run interleaved, ``--repeat`` times.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "MSIQA"))

import SimpleITK as sitk  # noqa: E402

from msiqa import runner  # noqa: E402

LIBC = ctypes.PyDLL(ctypes.util.find_library("c"))  # PyDLL: the GIL stays held during the call
TICK_S = 0.1


def synthetic_study(folder: Path, size: int = 512, slices: int = 300) -> tuple[Path, Path]:
    """A 512x512xK CT (int16 HU) and PET (float32 Bq/ml) on one grid, written as raw NRRD."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size]
    body = ((x - size / 2) / (0.42 * size)) ** 2 + ((y - size / 2) / (0.3 * size)) ** 2 < 1
    ct = np.empty((slices, size, size), np.int16)
    pet = np.empty((slices, size, size), np.float32)
    for k in range(slices):
        ct[k] = np.where(body, 40, -1000) + rng.normal(0, 20, (size, size))
        pet[k] = np.where(body, 5000.0, 0.0) * (1 + 0.2 * rng.standard_normal((size, size))).clip(0)
    paths = []
    for name, array in (("ct", ct), ("pet", pet)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.8, 0.8, 2.5))
        image.SetOrigin((-204.8, -204.8, 0.0))
        path = folder / f"{name}.nrrd"
        sitk.WriteImage(image, str(path), False)
        paths.append(path)
    return paths[0], paths[1]


def child_cpu_s() -> float:
    """CPU seconds of all reaped child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def phases(run: runner.AssessmentRun) -> dict[str, float]:
    t = run.times
    total = next(e["total"] for e in run.events if e["event"] == "start")
    return {
        "to first event": t["first"] - t["launched"],
        "model loading": t["start"] - t["loading"],
        "assessing": t["rendering"] - t["start"],
        "slices/s": total / max(t["rendering"] - t["start"], 1e-9),
        "report+writing": t["done"] - t["rendering"],
    }


def free_run(ct: Path, pet: Path, device: str) -> dict:
    start, cpu = time.perf_counter(), child_cpu_s()
    run = runner.AssessmentRun({"ct": str(ct), "pet": str(pet)}, device=device)
    run.start()
    run.wait(3600, interval=TICK_S)
    return {"wall": time.perf_counter() - start, "cpu": child_cpu_s() - cpu, "phases": phases(run)}


def slicer_run(ct: Path, pet: Path, device: str) -> dict:
    """The module's flow, every main-thread step timed, the polling under the emulated loop."""
    from msiqa import mrml

    scene, app = mrml.create_scene()
    nodes = {"ct": mrml.volume_node_from_image(scene, sitk.ReadImage(str(ct)), "CT"),
             "pet": mrml.volume_node_from_image(scene, sitk.ReadImage(str(pet)), "PET")}
    t0, cpu = time.perf_counter(), child_cpu_s()
    images, reference = mrml.input_images(nodes["ct"], nodes["pet"])
    run = runner.AssessmentRun(images, device=device)
    del images
    run.start()
    handoff = time.perf_counter() - t0
    slots, gaps = [], []
    last = time.perf_counter()
    while not run.finished:
        LIBC.usleep(int(TICK_S * 1e6))  # Qt idling, GIL held
        s = time.perf_counter()
        gaps.append(s - last)
        run.poll()
        last = time.perf_counter()
        slots.append(last - s)
    if run.error is not None:
        raise run.error
    s = time.perf_counter()
    mrml.show_results(scene, run.result, reference, app_logic=app)
    show = time.perf_counter() - s
    wall = time.perf_counter() - t0
    final_slot = slots[-1]  # the one that read the results back
    return {"wall": wall, "cpu": child_cpu_s() - cpu, "handoff": handoff, "slots": len(slots), "worst slot": max(slots[:-1] or [0.0]),
            "median slot": statistics.median(slots), "read-back slot": final_slot, "show_results": show,
            "worst tick gap": max(gaps), "phases": phases(run)}


def cli_run(ct: Path, pet: Path, device: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        start, cpu = time.perf_counter(), child_cpu_s()
        subprocess.run([sys.executable, "-m", "msiqa", "assess", "--ct", str(ct), "--pet", str(pet), "--out", out,
                        "--device", device, "-q"], env=runner.engine_env(), check=True, stdout=subprocess.DEVNULL)
        return {"wall": time.perf_counter() - start, "cpu": child_cpu_s() - cpu}


def thread_run(ct: Path, pet: Path, device: str, seconds: float) -> str:
    """The old design: assess() in a Python thread of the emulated main process, for ``seconds``."""
    import queue

    from msiqa.assess import Scorer, assess

    scorer = Scorer(device=device)  # model loaded beforehand: only the per-batch work is measured
    images = (sitk.ReadImage(str(ct)), sitk.ReadImage(str(pet)))
    messages, stop = queue.Queue(), threading.Event()

    def work():
        try:
            assess(ct=images[0], pet=images[1], scorer=scorer, progress=lambda d, n: messages.put((d, n)),
                   cancel=stop.is_set)
            messages.put("done")
        except Exception as e:  # Cancelled at the end of the window
            messages.put(repr(e))

    thread = threading.Thread(target=work, daemon=True)
    start = time.perf_counter()
    thread.start()
    done, total, finished = 0, None, False
    while time.perf_counter() - start < seconds and not finished:
        LIBC.usleep(int(TICK_S * 1e6))
        while not messages.empty():
            m = messages.get()
            if m == "done":
                finished = True
            elif isinstance(m, tuple):
                done, total = m
    elapsed = time.perf_counter() - start
    stop.set()
    c = time.perf_counter()
    while thread.is_alive():
        LIBC.usleep(int(TICK_S * 1e6))
        thread.join(0.001)
    return (f"{done} of {total or '?'} slices in {elapsed:.1f} s"
            f"{' (finished)' if finished else ''}; cancel honoured after {time.perf_counter() - c:.1f} s")


def warm_child_cost() -> tuple[float, float]:
    """What keeping a child warm would hold while idle: seconds to import torch and build the
    bundled model in a fresh interpreter, and that interpreter's resident memory (MB)."""
    # VmRSS, the memory held now: ru_maxrss would carry the parent's peak across fork + exec on Linux
    code = ("import time; t = time.perf_counter(); from msiqa.assess import Scorer; Scorer(device='cpu'); "
            "rss = next(l for l in open('/proc/self/status') if l.startswith('VmRSS:')).split()[1]; "
            "print(time.perf_counter() - t, int(rss) / 1024)")
    out = subprocess.run([sys.executable, "-c", code], env=runner.engine_env(), check=True, capture_output=True,
                         text=True).stdout.split()
    return float(out[0]), float(out[1])


def report(name: str, runs: list[dict], thread: str | None) -> None:
    """``runs``: one {"cli", "free", "slicer", "load"} dict per repeat."""
    print(f"\n== {name}")
    for i, r in enumerate(runs, 1):
        cli, free, slicer = r["cli"], r["free"], r["slicer"]
        print(f"  repeat {i} (load average {r['load']:.1f} on {os.cpu_count()} CPUs)")
        print(f"    cli     msiqa assess: wall {cli['wall']:.1f} s, child CPU {cli['cpu']:.1f} s")
        for label, m in (("free", free), ("slicer", slicer)):
            ph = m["phases"]
            print(f"    {label:<7} child run: wall {m['wall']:.1f} s, child CPU {m['cpu']:.1f} s; "
                  + ", ".join(f"{k} {v:.2f}" for k, v in ph.items()))
        print(f"    slicer  main thread: hand-off (node copies + inputs written) {slicer['handoff']:.2f} s; "
              f"{slicer['slots']} timer slots, median {slicer['median slot'] * 1e3:.2f} ms, worst "
              f"{slicer['worst slot'] * 1e3:.1f} ms before the last; worst tick gap {slicer['worst tick gap'] * 1e3:.0f} ms; "
              f"last slot (results read back) {slicer['read-back slot']:.2f} s; show_results {slicer['show_results']:.2f} s")
    loads = [r["free"]["phases"]["model loading"] for r in runs]
    walls = [r["free"]["wall"] for r in runs]
    print(f"  a warm child would save the model load per run: {min(loads):.2f}-{max(loads):.2f} s "
          f"of a {min(walls):.1f}-{max(walls):.1f} s run")
    if thread:
        print(f"  thread  old design (engine in a thread of the emulated main process): {thread}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the sample study only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved repeats of cli, free, slicer")
    parser.add_argument("--thread-seconds", type=float, default=0.0,
                        help="also run the old thread design for this long (0: skip)")
    args = parser.parse_args(argv)
    from msiqa.sample_data import load_sample_study

    study = load_sample_study()
    studies = [("sample study (60 slices, 160x160 CT + PET)", study.ct_path, study.pet_path)]
    with tempfile.TemporaryDirectory(prefix="msiqa-gil-") as tmp:
        if not args.quick:
            ct, pet = synthetic_study(Path(tmp))
            studies.append(("synthetic 512x512x300 CT + PET", ct, pet))
        for name, ct, pet in studies:
            runs = []
            for _ in range(args.repeat):
                load = os.getloadavg()[0]
                runs.append({"load": load, "cli": cli_run(ct, pet, args.device), "free": free_run(ct, pet, args.device),
                             "slicer": slicer_run(ct, pet, args.device)})
            thread = thread_run(ct, pet, args.device, args.thread_seconds) if args.thread_seconds > 0 else None
            report(name, runs, thread)
    load_s, rss_mb = warm_child_cost()
    print(f"\nwarm child: import torch + build the model {load_s:.2f} s in a fresh interpreter; "
          f"it would hold {rss_mb:.0f} MB of memory while idle (CPU; on a GPU also its CUDA context)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
