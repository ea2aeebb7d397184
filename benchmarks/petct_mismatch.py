"""Can the PET/CT pair itself show misregistration and PET breathing? Three geometric checks
on the bundled sample study, range by range.

    python benchmarks/petct_mismatch.py

The network, shown one fused axial slice at a time, has never seen the sample study's 15 mm
misregistration or 30 mm PET breathing (RESULTS.md). A check that compares the PET with the CT
directly was the untried design; this benchmark measures three of them on the PET resampled
onto the CT's grid, as the engine renders it:

- lung-mask match: the z offset (within +-30 mm) at which the CT's lung mask best explains the
  PET slice (most negative correlation inside the body: lung is cold in FDG PET);
- mutual information: the z offset at which CT slice k + d shares most information with PET
  slice k, inside the body less its outer 25 mm (ribs, spine and body wall do not breathe);
- lung-base spill: mean PET in the CT's lung 5-15 mm from its edge, over the median PET of soft
  tissue more than 20 mm from the lung (activity carried into the lung by a shift or a blur).

A check that sees these faults would give an offset away from 0 (or a spill above the clean
slices') in the faulted ranges and not in the clean ones. The last column says how much the
fault changed the noise-free PET there (mean |change| over mean activity), from the simulator.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MSIQA"))

from msiqa.phantom import FAULTS, simulate  # noqa: E402
from msiqa.phantom.measures import inner as inner_region  # noqa: E402
from msiqa.render import SliceRenderer  # noqa: E402
from msiqa.sample_data import load_sample_study  # noqa: E402

SEARCH = 10  # slices each way: +-30 mm at the sample study's 3 mm


def masks(ct: np.ndarray):
    body = np.stack([ndimage.binary_fill_holes(s) for s in ct > -500])
    lung = np.stack([ndimage.binary_opening(s) for s in (ct < -500) & body])
    inner = inner_region(body, 25.0)  # the sample study's CT pixels are the phantom's
    soft = body & (ct > -50) & (ct < 150)
    return body, lung, inner, soft


def mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 24) -> float:
    h, _, _ = np.histogram2d(a, b, bins=bins)
    p = h / h.sum()
    outer = p.sum(1, keepdims=True) @ p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / outer[nz])).sum())


def best_offset(k: int, n: int, similarity) -> int:
    """The offset d (slices) of the most similar CT slice k + d to PET slice k."""
    ds = [d for d in range(-SEARCH, SEARCH + 1) if 0 <= k + d < n]
    return ds[int(np.argmax([similarity(k + d) for d in ds]))]


def slice_checks(k: int, ct, pet, body, lung, inner, soft, px_mm: float) -> tuple[int, int, float]:
    m = body[k]
    p = (pet[k][m] - pet[k][m].mean()) / (pet[k][m].std() + 1e-6)

    def lung_match(kk):
        lm = lung[kk][m].astype(np.float32)
        lm -= lm.mean()
        return -float(p @ lm) / (np.linalg.norm(lm) * np.sqrt(p.size) + 1e-6)

    i = inner[k]
    mi = best_offset(k, len(ct), lambda kk: mutual_information(np.clip(pet[k][i], 0, 8), np.clip(ct[kk][i], -1000, 300)))
    inside = ndimage.distance_transform_edt(lung[k]) * px_mm
    outside = ndimage.distance_transform_edt(~lung[k]) * px_mm
    band, far = lung[k] & (inside >= 5) & (inside < 15), soft[k] & (outside > 20)
    spill = float(pet[k][band].mean() / np.median(pet[k][far])) if band.any() and far.any() else float("nan")
    return best_offset(k, len(ct), lung_match), mi, spill


def main() -> None:
    study = load_sample_study()
    renderer = SliceRenderer(ct=study.ct_path, pet=study.pet_path)
    ct, pet = renderer.layers(0, len(renderer))
    px_mm = renderer.reference.GetSpacing()[0]
    mm = renderer.reference.GetSpacing()[2]
    body, lung, inner, soft = masks(ct)
    ranges = [r for r in study.info["degraded_ranges"] if r["fault"] in ("misregistration", "pet_respiratory_motion")]
    ranges += [{"name": "clean", **c} for c in study.info["clean_ranges"] if c["first"] >= 40 and c["last"] <= 75]
    print("| range | slices | lung-mask match offset (mm) | mutual-information offset (mm) | lung-base spill | noise-free PET changed |")
    print("|---|---|---|---|---|---|")
    for r in sorted(ranges, key=lambda r: r["first"]):
        ks = list(range(r["first"], r["last"] + 1))
        checks = [slice_checks(k, ct, pet, body, lung, inner, soft, px_mm) for k in ks]
        changed = ""
        if r["name"] != "clean":
            fault = FAULTS[r["fault"]].acquisition(r["severity"]["value"])
            a, c = simulate(ks, noisy=False, acquisition=fault).pet_bqml, simulate(ks, noisy=False).pet_bqml
            changed = f"{100 * float(np.mean(np.abs(a - c).mean((1, 2)) / c.mean((1, 2)))):.0f} %"
        print(f"| {r['name']} | {ks[0]}-{ks[-1]} | {' '.join(f'{c[0] * mm:+.0f}' for c in checks)} | "
              f"{' '.join(f'{c[1] * mm:+.0f}' for c in checks)} | {' '.join(f'{c[2]:.2f}' for c in checks)} | {changed} |")


if __name__ == "__main__":
    main()
