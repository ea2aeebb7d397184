"""What a fault measures on simulated slices, and whether a reader would accept it.

:func:`measure` simulates slices with a fault beside the same slices clean (same patient,
same noise seed) and measures the fault in the unit of its clinical criterion. Where the
label rule of the training code (``msiqa.training.labels.ANCHORS``) has an anchor for the
fault, the same measure and the same limit decide (:func:`verdict`): a fault is clinically
acceptable below the anchor's ``bad`` level, the point from which the label rule flags a
slice. Compression and impulse pixels have no anchor there (their labels are calibrated on
the development set's radiologist scores); their limits are stated below with their sources.
:func:`grade_ranges` does both for every degraded range of the sample study.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..training.labels import ANCHORS
from . import ct as ct_scanner
from . import measures as M
from . import pet as pet_scanner
from .anatomy import make_phantom
from .faults import CLEAN, FAULTS, STORAGE_WINDOW_HU
from .geometry import CT_PIXEL_MM, N_SLICES, PET_PIXEL_MM, SLICE_MM
from .study import DEGRADED_RANGES, simulate
from .tissues import TISSUES

# fault family -> (label-rule anchor, the criterion in words)
ANCHORED: dict[str, tuple[str, str]] = {
    "pet_low_counts": ("pet_low_counts", "the liver CoV limit of the EANM 2015 FDG PET/CT guideline (Boellaard "
                       "et al.) and EARL for acceptable PET noise"),
    "ct_low_dose": ("ct_low_dose", "the added soft-tissue noise at which 10-20 HU contrasts of liver, muscle and "
                    "nodes fall below a contrast-to-noise ratio of ~0.3"),
    "pet_respiratory_motion": ("pet_motion", "about twice the 5-6 mm resolution of clinical PET, where a 1 cm "
                               "lesion at the diaphragm loses half its contrast and gating is indicated"),
    "misregistration": ("misregistration", "the PET/CT registration tolerance (about one PET voxel, at most "
                        "~1 cm) beyond which uptake at the liver dome is assigned to the wrong organ"),
    "ct_motion": ("ct_motion", "the shift from which doubled edges of the heart, diaphragm and vessels "
                  "mimic or hide findings at mediastinal window"),
    "metal_streaks": ("streaks", "the streak amplitude that exceeds soft-tissue contrast over the region the "
                      "streaks cross"),
}
# CAR Standards for Irreversible Compression in Digital Diagnostic Imaging within Radiology
# (Canadian Association of Radiologists, 2008/2011; Koff et al., J Digit Imaging 2009): CT of
# the chest up to 15:1 (JPEG) is acceptable for primary reading.
MAX_CT_JPEG_RATIO = 15.0
# The development set's radiologists: otherwise clean quality-100 versions score 3.67 without
# added impulse pixels, 3.08 with ~0.2 % and 1.88 (below the flag threshold 2.0) with ~0.4 %
# (impulse density measured with training.handcrafted.impulse_density, 12 scenes).
MAX_IMPULSE_FRACTION = 0.003

_T = TISSUES
_SHIFT_SEARCH_SLICES = 10  # a misregistration is searched within +-30 mm in z ...
_SHIFT_SEARCH_PIXELS = 4  # ... and +-17 mm in-plane


def _liver(ks) -> np.ndarray:
    return M.inner(make_phantom().labels[ks] == _T["liver"].label, 10.0)


def _pair(family: str, ks, severity: float, seed: int, noisy: bool = True):
    """The slices with the fault and without it."""
    acq = FAULTS[family].acquisition(severity)
    return simulate(ks, noise_seed=seed, acquisition=acq, noisy=noisy), simulate(ks, noise_seed=seed, noisy=noisy)


def _figure(quantity: str, value: float, unit: str, clean: float | None, how: str, **details) -> dict:
    return {"quantity": quantity, "value": round(float(value), 4), "unit": unit,
            "clean_value": None if clean is None else round(float(clean), 4), "how": how, **details}


def _pet_low_counts(ks, severity, seed):
    voi = M.on_pet_grid(_liver(ks))
    faulty, clean = _pair("pet_low_counts", ks, severity, seed)
    return _figure("liver coefficient of variation", M.coefficient_of_variation(faulty.pet_bqml[voi]), "",
                   M.coefficient_of_variation(clean.pet_bqml[voi]),
                   f"SD / mean of the PET in {int(voi.sum())} voxels of liver at least 10 mm inside its edge")


def _ct_low_dose(ks, severity, seed):
    truth = make_phantom().hu[ks]
    voi = _liver(ks)
    faulty, clean = _pair("ct_low_dose", ks, severity, seed)
    sd, sd0 = M.noise_sd(faulty.ct_hu, truth, voi), M.noise_sd(clean.ct_hu, truth, voi)
    return _figure("added noise SD in soft tissue", M.added_sd(sd, sd0), "HU", 0.0,
                   f"SD of the CT's error in {int(voi.sum())} pixels of liver at least 10 mm inside its edge, "
                   "less the clean scan's in quadrature", noise_sd_hu=round(sd, 1), noise_sd_hu_clean=round(sd0, 1))


def _dome_mask(ks) -> np.ndarray:
    """PET voxels within 2 cm of both the abdominal organs and the lung: the liver dome and
    the lung bases, where breathing shows."""
    lab = make_phantom().labels[ks]
    it = int(round(20.0 / CT_PIXEL_MM))
    organs = np.isin(lab, [_T["liver"].label, _T["spleen"].label, _T["stomach_wall"].label])
    lung = lab == _T["lung"].label
    near = [ndimage.binary_dilation(o, iterations=it) & ndimage.binary_dilation(u, iterations=it)
            for o, u in zip(organs, lung)]
    return M.on_pet_grid(np.stack(near))


def _pet_motion(ks, severity, seed):
    moving, still = _pair("pet_respiratory_motion", ks, severity, seed, noisy=False)
    fwhm = M.equivalent_blur_fwhm_mm(moving.pet_bqml, still.pet_bqml, PET_PIXEL_MM, _dome_mask(ks))
    return _figure("added PET blur FWHM at the liver dome", fwhm, "mm", 0.0,
                   "FWHM of the in-plane Gaussian blur that best turns the noise-free still PET into the noise-free "
                   "breathing PET within 2 cm of the liver dome and lung bases")


def misregistration_shift_mm(ks: Sequence[int], shift_mm: float) -> np.ndarray:
    """(dz, dy, dx) in mm of the PET of slices ks acquired with the diaphragm ``shift_mm``
    lower, against the registered PET: normalised cross-correlation of the two noise-free PETs
    over the organs that follow the diaphragm.

    Both PETs are corrected with the patient's own attenuation during their frame, so they
    differ only in where the activity is: corrected with the CT's map, the misregistered PET
    also carries that correction's errors, and uncorrected (NAC) both carry a shading by the
    static body wall; either pulls the match back towards no shift.
    """
    m = _SHIFT_SEARCH_SLICES
    ks = np.asarray(sorted(ks))
    slab = np.arange(ks[0] - m, ks[-1] + m + 1)
    if slab[0] < 0 or slab[-1] >= N_SLICES:
        raise ValueError(f"slices {ks[0]}..{ks[-1]} are too close to the volume's edge to measure a shift")
    ph = make_phantom()
    acq = FAULTS["misregistration"].acquisition(shift_mm)
    moved, still = (pet_scanner.scan_pet(ph, slab, 0, [a] * len(slab), noisy=False, attenuation="matched")
                    for a in (acq, CLEAN))
    region = np.zeros(moved.shape, bool)
    region[m : len(slab) - m] = M.on_pet_grid(ph.breathing[ks] > 0.9)
    return M.shift_mm(moved, still, (SLICE_MM, PET_PIXEL_MM, PET_PIXEL_MM), region,
                      (_SHIFT_SEARCH_SLICES, _SHIFT_SEARCH_PIXELS, _SHIFT_SEARCH_PIXELS))


def _misregistration(ks, severity, seed):
    d = misregistration_shift_mm(ks, severity)
    return _figure("PET-to-CT shift", np.linalg.norm(d), "mm", 0.0,
                   "normalised cross-correlation peak of the noise-free misregistered and registered PET (each "
                   "corrected with its own attenuation) over the organs that follow the diaphragm",
                   shift_zyx_mm=[round(float(v), 1) for v in d])


def _ct_motion(ks, severity, seed):
    p2p = ct_scanner.peak_to_peak_mm(ct_scanner.motion_shifts_mm(severity))
    return _figure("CT ghost shift", p2p, "mm", 0.0,
                   "largest distance between two positions of the patient during the rotation")


def _metal_streaks(ks, severity, seed):
    ph = make_phantom()
    with_metal, clean = _pair("metal_streaks", ks, severity, seed)
    other = simulate(ks, noise_seed=seed + 7919)
    diffs, noise = [], []
    for c, k in enumerate(ks):
        ring = M.ring(ct_scanner.steel_screws(ph, k, severity) > 0.01, 15.0, 25.0) & (ph.labels[k] != _T["air"].label)
        diffs.append((with_metal.ct_hu[c].astype(float) - clean.ct_hu[c])[ring])
        noise.append((other.ct_hu[c].astype(float) - clean.ct_hu[c])[ring])

    def rms(parts):
        return float(np.sqrt(np.mean(np.concatenate(parts) ** 2)))

    return _figure("streak amplitude 2 cm from the metal", M.added_sd(rms(diffs), rms(noise)), "HU", 0.0,
                   "RMS difference from the same slices without metal 15-25 mm from the steel, less the RMS "
                   "difference two noise draws of the clean slices have there")


def _compression(ks, severity, seed):
    q = int(severity)
    lo, hi = STORAGE_WINDOW_HU
    faulty, clean = _pair("compression", ks, severity, seed)
    v8 = np.round(np.clip((clean.ct_hu.astype(float) - lo) / (hi - lo), 0, 1) * 255.0)

    def blocks(vol):
        return float(np.mean([M.blockiness(np.clip(a.astype(float), -160.0, 240.0)) for a in vol]))

    return _figure("JPEG compression ratio", np.mean([M.jpeg_ratio(v, q) for v in v8]), ":1", None,
                   "size of the 8-bit slices as baseline JPEG at that quality against 16-bit storage",
                   blockiness=round(blocks(faulty.ct_hu), 2), blockiness_clean=round(blocks(clean.ct_hu), 2))


def _impulse(ks, severity, seed):
    body = ~np.isin(make_phantom().labels[ks], [_T[n].label for n in ("air", "table_shell", "table_foam")])
    faulty, clean = _pair("impulse", ks, severity, seed)
    f0 = M.impulse_fraction(clean.ct_hu, body)
    return _figure("impulse pixels in the body", M.impulse_fraction(faulty.ct_hu, body) - f0, "fraction", 0.0,
                   "body pixels more than 400 HU from their 3x3 median, beyond those of the clean slices")


_MEASURE = {
    "pet_low_counts": _pet_low_counts,
    "ct_low_dose": _ct_low_dose,
    "pet_respiratory_motion": _pet_motion,
    "misregistration": _misregistration,
    "ct_motion": _ct_motion,
    "metal_streaks": _metal_streaks,
    "compression": _compression,
    "impulse": _impulse,
}


def measure(family: str, slices: Sequence[int], severity: float, seed: int = 0) -> dict:
    """The figure of fault ``family`` at ``severity`` on slices of the sample's patient:
    quantity, value, unit, the clean slices' value (None where it has none) and how."""
    return _MEASURE[family](list(slices), severity, seed)


def verdict(family: str, value: float) -> tuple[bool, str]:
    """Whether a fault of that measured size is clinically acceptable, and why (one sentence)."""
    if family in ANCHORED:
        name, criterion = ANCHORED[family]
        anchor = ANCHORS[name]
        ok = value < anchor.bad
        return ok, (f"{anchor.unit} {value:.3g} is {'below' if ok else 'at or above'} {anchor.bad:g}, "
                    f"{criterion} (label rule anchor '{name}').")
    if family == "compression":
        ok = value <= MAX_CT_JPEG_RATIO
        return ok, (f"JPEG ratio {value:.1f}:1 is {'within' if ok else 'beyond'} the {MAX_CT_JPEG_RATIO:g}:1 that "
                    "the CAR standard for irreversible compression accepts for chest CT.")
    ok = value < MAX_IMPULSE_FRACTION
    return ok, (f"{100 * value:.2g} % impulse pixels is {'below' if ok else 'above'} {100 * MAX_IMPULSE_FRACTION:g} %, "
                "between the densities the development set's radiologists scored 3.1 (~0.2 %) and 1.9 (~0.4 %).")


@functools.lru_cache(maxsize=2)
def _graded(seed: int) -> tuple[dict, ...]:
    out = []
    for r in DEGRADED_RANGES:
        figure = measure(r["fault"], range(r["first"], r["last"] + 1), r["severity"]["value"], seed)
        ok, reason = verdict(r["fault"], figure["value"])
        anchor = ANCHORED.get(r["fault"], (None,))[0]
        out.append({**r, "measured": figure, "label_rule_anchor": anchor, "clinically_acceptable": ok, "reason": reason})
    return tuple(out)


def grade_ranges(seed: int = 0) -> list[dict]:
    """DEGRADED_RANGES with ``measured``, ``label_rule_anchor``, ``clinically_acceptable`` and
    ``reason`` for each."""
    return [dict(r) for r in _graded(int(seed))]
