"""Simulated studies: any patient, clean or with faults, and the sample study's layout.

The sample study puts every fault family of :data:`faults.FAULTS` at two or three severities
into ranges of three slices, separated by clean slices, where the fault shows in a real
study: PET counts and CT dose over the liver (where their noise is judged), breathing and
misregistration at the liver dome and lung bases, metal, CT motion and impulse pixels in the
chest, compression in the upper abdomen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import SimpleITK as sitk

from . import ct as ct_scanner
from . import pet as pet_scanner
from .anatomy import Phantom, make_phantom
from .faults import CLEAN, FAULTS, STORAGE_WINDOW_HU, Acquisition
from .geometry import CT_ORIGIN, CT_SHAPE, CT_SPACING, N_SLICES, PET_ORIGIN, PET_SHAPE, PET_SPACING
from .suv import DECAY_CORRECTED_DOSE_BQ, F18_HALF_LIFE_S, INJECTED_DOSE_BQ, UPTAKE_TIME_S
from .tissues import TISSUE_LIST

SLICES_PER_RANGE = 3

# (fault family, severity, first slice): the sample study's degraded ranges, bottom to top.
_LAYOUT: tuple[tuple[str, float, int], ...] = (
    ("compression", 90, 4),
    ("compression", 8, 9),
    ("pet_low_counts", 2, 15),
    ("ct_low_dose", 3, 20),
    ("pet_low_counts", 6, 25),
    ("ct_low_dose", 15, 30),
    ("pet_low_counts", 20, 35),
    ("ct_low_dose", 50, 40),
    ("misregistration", 4, 46),
    ("pet_respiratory_motion", 8, 51),
    ("misregistration", 15, 56),
    ("pet_respiratory_motion", 30, 61),
    ("ct_motion", 2, 67),
    ("metal_streaks", 1.5, 72),
    ("impulse", 0.001, 77),
    ("ct_motion", 8, 82),
    ("metal_streaks", 4.5, 87),
    ("impulse", 0.005, 92),
    ("metal_streaks", 6.5, 97),
    ("ct_motion", 15, 102),
)


def _name(family: str, s: float) -> str:
    if family == "compression":
        return f"compression_q{int(s)}"
    if family == "impulse":
        return f"impulse_{100 * s:g}pct"
    if family in ("pet_low_counts", "ct_low_dose"):
        return f"{family}_x{s:g}"
    return f"{family}_{s:g}mm"


def _description(family: str, s: float) -> str:
    return {
        "pet_low_counts": f"PET frame with {s:g}x fewer counts (shorter frame or lower injected activity): "
        "Poisson noise of the PET; CT unaffected",
        "ct_low_dose": f"CT with {s:g}x fewer incident photons (lower tube current): quantum noise and, along "
        "the longest paths, photon-starvation streaks; PET unaffected",
        "pet_respiratory_motion": f"free breathing during the PET frame, diaphragm excursion {s:g} mm peak to "
        "peak (liver, stomach, spleen and lung bases move with it, a fifth of that antero-posteriorly): PET "
        "blurred at the liver dome and lung bases; the CT, at mid-breath, is sharp",
        "misregistration": f"PET frame acquired with the diaphragm {s:g} mm lower than in the CT (the patient "
        "breathed differently): activity and its true attenuation shifted against the CT-based attenuation "
        "map, so liver uptake reaches into the lung bases and attenuation correction is wrong at the dome",
        "ct_motion": f"patient moved in-plane during the CT rotation ({s:g} mm peak to peak): views from "
        "displaced positions give blur, doubled edges and streaks; PET unaffected",
        "metal_streaks": f"bilateral stainless-steel pedicle screws of {s:g} mm with connecting rods in the "
        "CT beam: beam hardening and photon starvation give dark and bright streaks after FBP; PET unaffected",
        "compression": f"CT stored at 8 bits over {STORAGE_WINDOW_HU[0]:g}..{STORAGE_WINDOW_HU[1]:g} HU "
        f"through 8x8 block-DCT quantisation at JPEG quality {int(s)}",
        "impulse": f"{100 * s:g} % of the CT pixels stored as salt-and-pepper impulses (8-bit storage over "
        f"{STORAGE_WINDOW_HU[0]:g}..{STORAGE_WINDOW_HU[1]:g} HU)",
    }[family]


DEGRADED_RANGES: tuple[dict, ...] = tuple(
    {
        "name": _name(family, s),
        "first": first,
        "last": first + SLICES_PER_RANGE - 1,
        "fault": family,
        "cause": FAULTS[family].cause,
        "severity": {"value": s, "unit": FAULTS[family].unit, "parameter": FAULTS[family].parameter},
        "description": _description(family, s),
    }
    for family, s, first in _LAYOUT
)
_BY_NAME = {r["name"]: r for r in DEGRADED_RANGES}


def range_of(k: int) -> str | None:
    """The name of the sample study's degraded range slice k lies in (None for a clean slice)."""
    for r in DEGRADED_RANGES:
        if r["first"] <= k <= r["last"]:
            return r["name"]
    return None


def acquisition_of(k: int) -> Acquisition:
    """How slice k of the sample study was acquired and stored."""
    name = range_of(k)
    if name is None:
        return CLEAN
    r = _BY_NAME[name]
    return FAULTS[r["fault"]].acquisition(r["severity"]["value"])


def clean_ranges(n: int = N_SLICES) -> list[dict]:
    out, start = [], None
    for k in range(n):
        if range_of(k) is None:
            if start is None:
                start = k
        elif start is not None:
            out.append({"first": start, "last": k - 1})
            start = None
    if start is not None:
        out.append({"first": start, "last": n - 1})
    return out


@dataclass(frozen=True)
class SimulatedVolumes:
    """Simulated slices (a subset or all) with the phantom they came from."""

    slices: np.ndarray  # CT/PET slice indices k
    ct_hu: np.ndarray  # int16 (n, 160, 160)
    pet_bqml: np.ndarray  # float32 (n, 96, 96)
    phantom: Phantom = field(repr=False)


def _slices(slices: Sequence[int] | None) -> np.ndarray:
    ks = np.arange(N_SLICES) if slices is None else np.asarray(sorted(set(int(k) for k in slices)), dtype=int)
    if ks.size == 0 or ks.min() < 0 or ks.max() >= N_SLICES:
        raise ValueError(f"slices must be non-empty indices in 0..{N_SLICES - 1}")
    return ks


def simulate(
    slices: Sequence[int] | None = None,
    *,
    anatomy_seed: int | None = None,
    noise_seed: int = 0,
    acquisition: Acquisition | Callable[[int], Acquisition] = CLEAN,
    noisy: bool = True,
) -> SimulatedVolumes:
    """CT (HU) and PET (Bq/ml) slices of one patient (None: the sample's), every slice acquired
    with ``acquisition`` (or ``acquisition(k)``).

    The noise of slice k depends on (noise_seed, k) only: a subset of slices has the values
    those slices have in the whole volume. ``noisy=False`` gives the scanners' expected values.
    """
    ks = _slices(slices)
    ph = make_phantom(anatomy_seed)
    acqs = [acquisition(int(k)) if callable(acquisition) else acquisition for k in ks]
    ct = ct_scanner.scan_ct(ph, ks, noise_seed, acqs, noisy=noisy)
    pet = pet_scanner.scan_pet(ph, ks, noise_seed, acqs, noisy=noisy)
    return SimulatedVolumes(slices=ks, ct_hu=ct, pet_bqml=pet, phantom=ph)


def simulate_clean(anatomy_seed: int | None = None, noise_seed: int = 0,
                   slices: Sequence[int] | None = None) -> SimulatedVolumes:
    """Clean slices (every slice, by default) of one patient: what training takes as clean."""
    return simulate(slices, anatomy_seed=anatomy_seed, noise_seed=noise_seed)


def simulate_volumes(seed: int = 0, slices: Sequence[int] | None = None,
                     anatomy_seed: int | None = None) -> SimulatedVolumes:
    """Slices of the sample study's layout, with its faults, on a patient (None: the sample's)."""
    return simulate(slices, anatomy_seed=anatomy_seed, noise_seed=seed, acquisition=acquisition_of)


def study_info(seed: int = 0) -> dict:
    """The description of the sample study (JSON-serialisable), with what each degraded range
    measures and whether it is clinically acceptable (``grading``)."""
    from .grading import grade_ranges

    ph = make_phantom()
    return {
        "description": "MS-IQA sample study: simulated FDG PET/CT of the thorax and upper abdomen of an "
        "anthropomorphic analytic phantom (msiqa.phantom), with graded acquisition faults",
        "seed": int(seed),
        "n_slices": N_SLICES,
        "orientation": "LPS, identity direction; i: right->left, j: anterior->posterior, k: inferior->superior",
        "degraded_ranges": grade_ranges(seed),
        "clean_ranges": clean_ranges(),
        "ct": {
            "shape_kji": list(CT_SHAPE),
            "spacing_mm": list(CT_SPACING),
            "origin_mm": list(CT_ORIGIN),
            "geometry": "parallel beam, pixel-driven projector, FBP with ramp x Hann filter",
            "views": ct_scanner.CT_ANGLES,
            "detector_bins": ct_scanner.CT_BINS,
            "bin_mm": ct_scanner.CT_PIXEL_MM,
            "i0_photons_per_ray": ct_scanner.CT_I0,
            "effective_energy_kev": 70,
            "mu_water_per_mm": ct_scanner.MU_WATER_70KEV,
            "mu_steel_per_mm": ct_scanner.MU_STEEL_70KEV,
            "lossy_storage_window_hu": list(STORAGE_WINDOW_HU),
            "motion_view_groups": ct_scanner.MOTION_GROUPS,
        },
        "pet": {
            "shape_kji": list(PET_SHAPE),
            "spacing_mm": list(PET_SPACING),
            "origin_mm": list(PET_ORIGIN),
            "units": "Bq/ml",
            "views": pet_scanner.PET_ANGLES,
            "detector_bins": pet_scanner.PET_BINS,
            "trues_per_slice": pet_scanner.PET_TRUES_PER_SLICE,
            "randoms_scatter_fraction": pet_scanner.PET_RANDOMS_SCATTER_FRACTION,
            "detector_fwhm_mm": pet_scanner.PET_DETECTOR_FWHM_MM,
            "osem_iterations": pet_scanner.OSEM_ITERATIONS,
            "osem_subsets": pet_scanner.OSEM_SUBSETS,
            "postfilter_fwhm_mm": pet_scanner.PET_POSTFILTER_FWHM_MM,
            "attenuation": "511 keV mu map of the phantom in the CT's breathing state, in the system model",
        },
        "pet_suv_factor": {
            "patient_weight_kg": ph.anatomy.weight_kg,
            "injected_dose_bq": INJECTED_DOSE_BQ,
            "uptake_time_s": UPTAKE_TIME_S,
            "half_life_s": F18_HALF_LIFE_S,
            "decay_corrected_dose_bq": DECAY_CORRECTED_DOSE_BQ,
            "suv_per_bqml": ph.suv_per_bqml,
            "formula": "SUV = Bq/ml * patient_weight_kg * 1000 / decay_corrected_dose_bq",
        },
        "tissues": {
            t.name: {"label": t.label, "hu": t.hu, "mu70_per_mm": t.mu70, "mu511_per_mm": t.mu511, "suv": t.suv}
            for t in TISSUE_LIST
        },
        "lesions": [dict(les) for les in ph.lesions],
    }


def simulate_study(seed: int = 0) -> tuple[sitk.Image, sitk.Image, dict]:
    """The whole sample study: CT (int16 HU), PET (float32 Bq/ml, own grid) and its description."""
    t0 = time.perf_counter()
    vol = simulate_volumes(seed)
    weight = vol.phantom.anatomy.weight_kg
    ct = sitk.GetImageFromArray(vol.ct_hu)
    ct.SetSpacing(CT_SPACING)
    ct.SetOrigin(CT_ORIGIN)
    ct.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    ct.SetMetaData("msiqa_modality", "CT")
    ct.SetMetaData("msiqa_units", "HU")
    pet = sitk.GetImageFromArray(vol.pet_bqml)
    pet.SetSpacing(PET_SPACING)
    pet.SetOrigin(PET_ORIGIN)
    pet.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    for key, value in {
        "msiqa_modality": "PT",
        "msiqa_units": "BQML",
        "msiqa_patient_weight_kg": weight,
        "msiqa_injected_dose_bq": INJECTED_DOSE_BQ,
        "msiqa_decay_corrected_dose_bq": DECAY_CORRECTED_DOSE_BQ,
        "msiqa_half_life_s": F18_HALF_LIFE_S,
        "msiqa_uptake_time_s": UPTAKE_TIME_S,
        "msiqa_radionuclide": "F-18",
    }.items():
        pet.SetMetaData(key, value if isinstance(value, str) else repr(float(value)))
    info = study_info(seed)
    info["generation_time_s"] = round(time.perf_counter() - t0, 1)
    return ct, pet, info
