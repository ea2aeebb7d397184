"""How noisy real studies look next to what the development radiologists scored.

    python benchmarks/picture_noise.py --data ../shared/petct-iqa-dev --ct CT [CT ...] [--pair CT PET ...] \\
        [--sample] [--rule]

The development set grades picture noise: within its quality-100 versions, Gaussian-like noise at
three strengths is crossed with impulse pixels at three densities. This puts a real study's
slices on that axis: the picture noise (``handcrafted.noise_sigma``, the grid's noise axis: grey
levels of a Laplacian residual inside the body) of the pictures the engine scores, next to the mean
radiologist score of the development pictures with about that noise and the fewest impulse
pixels. The CT's soft-tissue SD in HU per pixel says where the picture noise comes from (SD of
7 x 7-pixel windows of flat soft tissue, median over windows and slices). A PET shown alone is
not on this axis (its noise is the liver CoV: ``pet_noise.py``). ``--sample`` adds the bundled
sample study's clean slices and CT low-dose ranges, as PET/CT and as CT alone. ``--rule`` adds the
training recipe's CT low-dose fault on the best-rated development pictures: the label the rule gives
each strength next to the picture noise it makes, to be read against the radiologists' scores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MSIQA"))

from msiqa.render import SliceRenderer  # noqa: E402
from msiqa.sample_data import load_sample_study  # noqa: E402
from msiqa.training.datasets import Sample, load_labelled_folder  # noqa: E402
from msiqa.training.handcrafted import impulse_density, noise_sigma  # noqa: E402
from msiqa.training.labels import CLEAN_MOS  # noqa: E402
from msiqa.training.layer_faults import Layers, apply_fault  # noqa: E402
from msiqa.training.phantom_bank import render_layers  # noqa: E402
from msiqa.training.train import DEV_PX_MM  # noqa: E402
from msiqa.volumes import read_volume  # noqa: E402

WINDOW_PX = 7
FLAT_PX = 21
SOFT_TISSUE_HU = (0.0, 100.0)
FLAT_WITHIN_HU = 15.0
MIN_WINDOWS = 50  # a slice with fewer flat soft-tissue windows says nothing about the noise
SLICES_PER_VOLUME = 12


def soft_tissue_sd(hu: np.ndarray) -> float:
    """Median SD (HU per pixel) of flat soft-tissue windows over the slices of ``hu`` (k, j, i)."""
    per_slice = []
    for sl in np.asarray(hu, np.float64):
        mean = ndimage.uniform_filter(sl, WINDOW_PX)
        sd = np.sqrt(np.maximum(ndimage.uniform_filter(sl * sl, WINDOW_PX) - mean * mean, 0.0))
        flat = np.abs(ndimage.uniform_filter(sl, FLAT_PX) - mean) < FLAT_WITHIN_HU
        ok = (mean > SOFT_TISSUE_HU[0]) & (mean < SOFT_TISSUE_HU[1]) & flat
        if ok.sum() >= MIN_WINDOWS:
            per_slice.append(np.median(sd[ok]))
    if not per_slice:
        raise ValueError("no flat soft tissue (0-100 HU) on any slice: is this a CT in HU with a body in view?")
    return float(np.median(per_slice))


def development_noise_levels(samples: list[Sample]) -> list[tuple[float, float, int]]:
    """(picture noise, mean score, pictures) of the three noise strengths among the development set's
    quality-100 versions with the fewest impulse pixels (the lowest third of their densities)."""
    found = [(s.scene, noise_sigma(s.image), impulse_density(s.image), s.mos)
             for s in samples if s.jpeg_q == 1]  # the quality-100 group: first quantisation entry 1
    densities = np.array([f[2] for f in found])
    cleanest = [f for f in found if f[2] <= np.percentile(densities, 100 / 3)]
    levels = []
    for scene in sorted({f[0] for f in cleanest}):  # within a scene the three noise strengths sort by noise
        ranked = sorted((f for f in cleanest if f[0] == scene), key=lambda f: f[1])
        levels += [(i, f[1], f[3]) for i, f in enumerate(ranked)]
    out = []
    for i in sorted({lv[0] for lv in levels}):
        at = [lv for lv in levels if lv[0] == i]
        out.append((float(np.median([a[1] for a in at])), float(np.mean([a[2] for a in at])), len(at)))
    return out


def picture_noise(renderer: SliceRenderer) -> tuple[float, float, float]:
    """Median and 10th-90th percentiles of the picture noise over evenly spaced slices."""
    n = len(renderer)
    ks = np.unique(np.linspace(0, n - 1, min(n, SLICES_PER_VOLUME)).round().astype(int))
    sig = [noise_sigma(renderer.render(int(k), int(k) + 1)[0]) for k in ks]
    return float(np.median(sig)), float(np.percentile(sig, 10)), float(np.percentile(sig, 90))


def sample_study_noise() -> None:
    study = load_sample_study()
    print("\n| sample study slices | added CT noise (label rule's measure) | picture noise, PET/CT | picture noise, CT alone |")
    print("|---|---|---|---|")
    renderers = [SliceRenderer(ct=study.ct_path, pet=study.pet_path), SliceRenderer(ct=study.ct_path)]
    groups = [("clean (every 5th)", "-", list(study.clean_slices())[::5])]
    groups += [(r["name"], f"{r['measured']['value']:.0f} {r['measured']['unit']}", list(range(r["first"], r["last"] + 1)))
               for r in study.info["degraded_ranges"] if r["fault"] == "ct_low_dose"]
    for name, added, ks in groups:
        medians = [np.median([noise_sigma(rd.render(k, k + 1)[0]) for k in ks]) for rd in renderers]
        print(f"| {name} | {added} | {medians[0]:.2f} | {medians[1]:.2f} |")


def rule_on_development_pictures(samples: list[Sample], pictures: int = 8) -> None:
    best = [s for s in samples if s.mos >= CLEAN_MOS][:pictures]
    layers = [Layers.of_picture(s.image, DEV_PX_MM) for s in best]
    print(f"\nThe recipe's CT low dose on {len(layers)} best-rated development pictures:\n")
    print("| strength | added noise (label rule's measure) | label | picture noise |")
    print("|---|---|---|---|")
    for strength in (0.0, 0.05, 0.2, 0.33, 0.5, 1.0):
        faulted = [apply_fault(lay, "ct_low_dose", strength, np.random.default_rng(0)) for lay in layers]
        applied = faulted[0][1]
        sigma = np.median([noise_sigma(render_layers(out)) for out, _ in faulted])
        print(f"| {strength:g} | {applied.measure:.0f} | {CLEAN_MOS - applied.drop:.2f} | {sigma:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/petct-iqa-dev")
    ap.add_argument("--ct", nargs="*", default=[], help="CT volumes shown alone")
    ap.add_argument("--pair", nargs=2, action="append", default=[], metavar=("CT", "PET"), help="a PET/CT pair")
    ap.add_argument("--sample", action="store_true", help="also the bundled sample study's clean and CT low-dose slices")
    ap.add_argument("--rule", action="store_true", help="also the recipe's CT low-dose fault on development pictures")
    args = ap.parse_args()

    print("Development pictures, quality 100, fewest impulse pixels (radiologists' mean score by noise strength):\n")
    print("| noise strength | picture noise (median) | pictures | mean score |")
    print("|---|---|---|---|")
    samples = load_labelled_folder(args.data / "images", args.data / "labels.csv")
    for i, (sigma, mos, n) in enumerate(development_noise_levels(samples)):
        print(f"| {i + 1} | {sigma:.2f} | {n} | {mos:.2f} |")

    print("\n| study | shown as | picture noise, median (10th-90th pct) | CT soft-tissue SD per pixel (HU) | CT pixel (mm) |")
    print("|---|---|---|---|---|")
    studies = [("CT alone", {"ct": p}) for p in args.ct] + [("PET/CT", {"ct": c, "pet": p}) for c, p in args.pair]
    for shown, volumes in studies:
        med, lo, hi = picture_noise(SliceRenderer(**volumes))
        ct = read_volume(volumes["ct"], "ct")
        hu_sd = soft_tissue_sd(sitk.GetArrayFromImage(ct))
        print(f"| {' + '.join(volumes.values())} | {shown} | {med:.2f} ({lo:.2f}-{hi:.2f}) | {hu_sd:.1f} | "
              f"{ct.GetSpacing()[0]:.2f} |")
    if args.sample:
        sample_study_noise()
    if args.rule:
        rule_on_development_pictures(samples)


if __name__ == "__main__":
    main()
