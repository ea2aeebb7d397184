"""PET image noise as the label rule measures it: the liver coefficient of variation.

    python benchmarks/pet_noise.py --pet PET_DIR [PET_DIR ...] [--phantoms 0 1]

The label rule (``msiqa.training.labels``) scores PET low counts by the liver CoV (SD / mean of the
PET in a liver VOI). This measures it the same way on real PETs and on the simulator's clean PET, so
the two can be compared: a 3 cm sphere (the usual liver VOI of the SNR/CoV literature) at the
deepest point of the largest region of liver-like uptake (SUV 1.4-4 after an 8 mm smoothing), CoV of
the PET's own voxels in it. For each it prints the score drop the rule gives that noise and the
score a clean picture (CLEAN_MOS) would then get. ``--phantoms``: anatomy seeds of clean simulated
studies (-1: the sample study's patient).

    python benchmarks/pet_noise.py --soft-tissue --studies IBSI_VALIDATION [--exclude ID ...] [--flags CLINICAL_JSON]

A PET cropped around a limb tumour has no liver in view. ``--soft-tissue`` measures instead the
voxel noise of its soft tissue (muscle-like uptake, SUV 0.5-2 after the same smoothing): the SD within
3 x 3 in-plane windows, pooled, over their mean. It is not the liver CoV (reconstruction smooths
noise over more than a window), but it ranks PETs of one scanner by how noisy their voxels are.
``--studies`` takes the PETs of a studies folder as ``clinical.py`` does; ``--flags`` puts beside
each PET the share of its slices that ``clinical.py --json`` found flagged when it was shown alone,
and closes with their rank correlation. From a DICOM PET's tags it also gives what a voxel's counts
scale with (injected MBq per kg x frame minutes x voxel mL), against which the noise should fall.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MSIQA"))

from msiqa.phantom.anatomy import make_phantom  # noqa: E402
from msiqa.phantom.faults import Acquisition  # noqa: E402
from msiqa.phantom.geometry import N_SLICES, PET_PIXEL_MM, SLICE_MM  # noqa: E402
from msiqa.phantom.measures import coefficient_of_variation  # noqa: E402
from msiqa.phantom.pet import scan_pet  # noqa: E402
from msiqa.training.labels import ANCHORS, CLEAN_MOS, FLAG_AT  # noqa: E402
from msiqa.volumes import read_volume, suv_info  # noqa: E402

LIVER_SUV = (1.4, 4.0)
SMOOTH_FWHM_MM = 8.0
VOI_RADIUS_MM = 15.0
SOFT_TISSUE_SUV = (0.5, 2.0)
WINDOW = 3  # in-plane voxels


def liver_voi_cov(suv: np.ndarray, spacing_kji) -> tuple[float, float, float]:
    """(CoV, mean SUV, depth in mm of the VOI's centre inside the region) of ``suv`` (k, j, i)."""
    sp = np.asarray(spacing_kji, float)
    smooth = ndimage.gaussian_filter(suv.astype(np.float64), SMOOTH_FWHM_MM / 2.3548 / sp)
    labels, n = ndimage.label((smooth > LIVER_SUV[0]) & (smooth < LIVER_SUV[1]))
    if n == 0:
        raise ValueError("no region of liver-like uptake (SUV 1.4-4): is this a PET in SUV with the liver in view?")
    largest = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    depth = ndimage.distance_transform_edt(labels == largest, sampling=sp)
    centre = np.array(np.unravel_index(np.argmax(depth), depth.shape))
    r = np.ceil(VOI_RADIUS_MM / sp).astype(int)
    lo, hi = np.maximum(centre - r, 0), np.minimum(centre + r + 1, suv.shape)
    box = suv[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float64)
    grid = np.meshgrid(*[(np.arange(a, b) - c) * s for a, b, c, s in zip(lo, hi, centre, sp)], indexing="ij")
    voxels = box[sum(g * g for g in grid) <= VOI_RADIUS_MM**2]
    # The same SD / mean the sample study's grading takes of its liver VOI.
    return coefficient_of_variation(voxels), float(voxels.mean()), float(depth.max())


def soft_tissue_cov(suv: np.ndarray, spacing_kji) -> tuple[float, int]:
    """(pooled in-plane window SD / mean, voxels measured) of ``suv`` (k, j, i) in its soft tissue."""
    sp = np.asarray(spacing_kji, float)
    suv = suv.astype(np.float64)
    smooth = ndimage.gaussian_filter(suv, SMOOTH_FWHM_MM / 2.3548 / sp)
    tissue = (smooth > SOFT_TISSUE_SUV[0]) & (smooth < SOFT_TISSUE_SUV[1])
    # Windows that lie wholly in the tissue, so that an organ's edge does not count as noise.
    inside = ndimage.binary_erosion(tissue, np.ones((1, WINDOW + 2, WINDOW + 2), bool))
    if inside.sum() < 100:
        raise ValueError(f"fewer than 100 voxels of soft tissue (SUV {SOFT_TISSUE_SUV[0]:g}-{SOFT_TISSUE_SUV[1]:g}) "
                         "away from its edges: is this a PET in SUV?")
    size = (1, WINDOW, WINDOW)
    mean = ndimage.uniform_filter(suv, size)
    n = WINDOW * WINDOW
    variance = (ndimage.uniform_filter(suv * suv, size) - mean * mean) * n / (n - 1)  # unbiased per window
    # Pooled: the mean of the windows' variances, which white noise of one SD gives without bias.
    return float(np.sqrt(np.mean(variance[inside])) / np.mean(mean[inside])), int(inside.sum())


def real_pet(path: str) -> tuple[np.ndarray, tuple, str, float | None]:
    image = read_volume(path, "pet")
    factor = suv_info(image).factor
    if factor is None:
        raise SystemExit(f"{path}: no SUV scaling in its metadata; the liver and soft-tissue windows are in SUV")
    sx, sy, sz = image.GetSpacing()
    return (sitk.GetArrayFromImage(image) * factor, (sz, sy, sx), f"{sx:.2f} x {sy:.2f} x {sz:.2f} mm",
            acquired_counts(image))


def acquired_counts(image: sitk.Image) -> float | None:
    """Injected MBq per kg x frame minutes x voxel mL, from a DICOM PET's first file: what a voxel's
    counts scale with (the uptake time aside), so what its noise should fall with. None if not DICOM
    or a tag is missing."""
    if "msiqa_first_file" not in image.GetMetaDataKeys():
        return None
    import pydicom

    ds = pydicom.dcmread(image.GetMetaData("msiqa_first_file"), stop_before_pixels=True)
    try:
        dose = float(ds.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose)
        weight, frame_ms = float(ds.PatientWeight), float(ds.ActualFrameDuration)
        voxel_ml = float(ds.PixelSpacing[0]) * float(ds.PixelSpacing[1]) * float(ds.SliceThickness) / 1000.0
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return dose / 1e6 / weight * frame_ms / 60000.0 * voxel_ml if weight > 0 else None


def simulated_pet(anatomy_seed: int | None) -> tuple[np.ndarray, tuple, str, None]:
    ph = make_phantom(anatomy_seed)
    ks = np.arange(N_SLICES)
    suv = scan_pet(ph, ks, seed=0, acqs=[Acquisition()] * N_SLICES) * ph.suv_per_bqml
    return suv, (SLICE_MM, PET_PIXEL_MM, PET_PIXEL_MM), f"{PET_PIXEL_MM:.2f} x {PET_PIXEL_MM:.2f} x {SLICE_MM:.2f} mm", None


def flagged_share(path: str) -> dict[str, float]:
    """PET-alone runs of a ``clinical.py --json`` file: the share of slices flagged, by input."""
    runs = json.loads(Path(path).read_text())["runs"]
    return {str(Path(r["input"])): r["flagged_pct"] for r in runs if r["kind"] == "PET alone"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pet", nargs="*", default=[], help="real PET volumes (file or DICOM folder) with SUV metadata")
    ap.add_argument("--phantoms", type=int, nargs="*", default=[], help="anatomy seeds of clean simulated PETs (-1: sample patient)")
    ap.add_argument("--studies", type=Path, help="the PETs of a studies folder (see clinical.py --studies)")
    ap.add_argument("--exclude", nargs="*", default=[], metavar="ID", help="patients of --studies left out")
    ap.add_argument("--soft-tissue", action="store_true", help="voxel noise of the soft tissue instead of the liver CoV")
    ap.add_argument("--flags", help="a clinical.py --json file: each PET's share of slices flagged when shown alone")
    args = ap.parse_args()

    if args.studies:
        from clinical import studies_in  # a sibling benchmark

        args.pet += [str(pet) for _, pet in studies_in(args.studies, exclude=tuple(args.exclude))]
    sources = [(p, lambda p=p: real_pet(p)) for p in args.pet]
    sources += [(f"simulated clean, anatomy {'sample' if s < 0 else s}", lambda s=s: simulated_pet(None if s < 0 else s))
                for s in args.phantoms]
    if args.soft_tissue:
        soft_tissue_table(sources, flagged_share(args.flags) if args.flags else {})
    else:
        liver_table(sources)


def liver_table(sources) -> None:
    anchor = ANCHORS["pet_low_counts"]
    print(f"label rule: liver CoV ok {anchor.ok:g}, bad {anchor.bad:g} (flagged from here), worst {anchor.worst:g}\n")
    print("| PET | voxels | VOI mean SUV | VOI depth (mm) | liver CoV | rule's drop | clean picture scored |")
    print("|---|---|---|---|---|---|---|")
    for name, load in sources:
        suv, spacing, voxels, _ = load()
        cov, mean, depth = liver_voi_cov(suv, spacing)
        drop = anchor.drop(cov)
        score = CLEAN_MOS - drop
        print(f"| {name} | {voxels} | {mean:.2f} | {depth:.0f} | {cov:.3f} | {drop:.2f} | "
              f"{score:.2f}{' (flagged)' if score < FLAG_AT else ''} |")


def soft_tissue_table(sources, flagged: dict[str, float]) -> None:
    print("| PET | voxels | soft-tissue voxels measured | soft-tissue noise (window SD / mean) "
          "| acquired MBq min mL / kg per voxel | flagged alone |")
    print("|---|---|---|---|---|---|")
    rows = []
    for name, load in sources:
        suv, spacing, voxels, counts = load()
        cov, n = soft_tissue_cov(suv, spacing)
        share = flagged.get(str(Path(name)))
        rows.append((cov, counts, share))
        print(f"| {name} | {voxels} | {n} | {cov:.3f} | {'-' if counts is None else f'{counts:.3f}'} "
              f"| {'-' if share is None else f'{share:.1f} %'} |", flush=True)
    for what, k in (("acquired counts per voxel", 1), ("share flagged", 2)):
        pairs = [(r[0], r[k]) for r in rows if r[k] is not None]
        if len(pairs) > 2:
            print(f"Spearman rank correlation of noise and {what}, {len(pairs)} PETs: "
                  f"{stats.spearmanr(*zip(*pairs)).statistic:.2f}")


if __name__ == "__main__":
    main()
