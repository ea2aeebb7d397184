"""The sample study: which slices carry which fault, the simulation of any subset of its
slices, and its JSON description."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from . import ct as ct_scanner
from . import pet as pet_scanner
from .anatomy import Phantom, make_phantom
from .faults import CLEAN, STORAGE_WINDOW_HU, Acquisition
from .geometry import CT_ORIGIN, CT_SHAPE, CT_SPACING, N_SLICES, PET_ORIGIN, PET_SHAPE, PET_SPACING
from .suv import (
    DECAY_CORRECTED_DOSE_BQ,
    F18_HALF_LIFE_S,
    INJECTED_DOSE_BQ,
    PATIENT_WEIGHT_KG,
    UPTAKE_TIME_S,
    suv_factor,
)
from .tissues import TISSUE_LIST

PET_LOW_COUNT_FACTOR = 20.0
CT_LOW_DOSE_FACTOR = 30.0
COMPRESSION_QUALITY = 8
IMPULSE_FRACTION = 0.004
CT_MOTION_PEAK_MM = 4.5

DEGRADED_RANGES: tuple[dict, ...] = (
    {
        "name": "low_counts",
        "first": 6,
        "last": 10,
        "description": f"PET acquired with {PET_LOW_COUNT_FACTOR:g}x fewer counts (short frame): "
        "noisy PET; CT unaffected",
    },
    {
        "name": "heavy_compression",
        "first": 22,
        "last": 26,
        "description": "CT slices passed through strong 8x8 block-DCT quantisation (JPEG-like, "
        "quality 8, window -1000..1000 HU at 8 bits) plus 0.4% salt-and-pepper pixels",
    },
    {
        "name": "motion",
        "first": 34,
        "last": 38,
        "description": "patient moved in-plane (up to ~5 mm) during the CT rotation: views "
        "from displaced positions give blur, doubled edges and streaks",
    },
    {
        "name": "ct_low_dose",
        "first": 46,
        "last": 50,
        "description": f"CT with {CT_LOW_DOSE_FACTOR:g}x fewer incident photons: strong noise "
        "and photon-starvation streaks",
    },
)

_ACQUISITIONS = {
    "low_counts": Acquisition(pet_count_reduction=PET_LOW_COUNT_FACTOR),
    "heavy_compression": Acquisition(jpeg_quality=COMPRESSION_QUALITY, impulse_fraction=IMPULSE_FRACTION),
    "motion": Acquisition(ct_motion_mm=CT_MOTION_PEAK_MM),
    "ct_low_dose": Acquisition(ct_dose_reduction=CT_LOW_DOSE_FACTOR),
}


def range_of(k: int) -> str | None:
    """The name of the degraded range slice k lies in (None for a clean slice)."""
    for r in DEGRADED_RANGES:
        if r["first"] <= k <= r["last"]:
            return r["name"]
    return None


def acquisition_of(k: int) -> Acquisition:
    name = range_of(k)
    return CLEAN if name is None else _ACQUISITIONS[name]


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


def simulate_volumes(seed: int = 0, slices: Sequence[int] | None = None) -> SimulatedVolumes:
    """Simulate the CT (HU) and PET (Bq/ml) slices `slices` (default: all) of the study.

    A subset gives exactly the values those slices have in the full study.
    """
    ks = np.arange(N_SLICES) if slices is None else np.asarray(sorted(set(int(k) for k in slices)))
    if ks.size == 0 or ks.min() < 0 or ks.max() >= N_SLICES:
        raise ValueError(f"slices must be non-empty indices in 0..{N_SLICES - 1}")
    ph = make_phantom()
    acqs = [acquisition_of(k) for k in ks]
    ct = ct_scanner.scan_ct(ph, ks, seed, acqs)
    pet = pet_scanner.scan_pet(ph, ks, seed, acqs)
    return SimulatedVolumes(slices=ks, ct_hu=ct, pet_bqml=pet, phantom=ph)


def study_info(seed: int = 0) -> dict:
    """The description of the study (JSON-serialisable)."""
    return {
        "description": "MS-IQA sample study: simulated thoracic FDG PET/CT of an "
        "anthropomorphic analytic phantom (msiqa.phantom)",
        "seed": int(seed),
        "n_slices": N_SLICES,
        "orientation": "LPS, identity direction; i: right->left, j: anterior->posterior, k: inferior->superior",
        "degraded_ranges": [dict(r) for r in DEGRADED_RANGES],
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
            "low_dose_factor": CT_LOW_DOSE_FACTOR,
            "effective_energy_kev": 70,
            "mu_water_per_mm": ct_scanner.MU_WATER_70KEV,
            "compression_quality": COMPRESSION_QUALITY,
            "compression_window_hu": list(STORAGE_WINDOW_HU),
            "impulse_fraction": IMPULSE_FRACTION,
            "motion_shifts_mm": ct_scanner.motion_shifts_mm(CT_MOTION_PEAK_MM).round(3).tolist(),
        },
        "pet": {
            "shape_kji": list(PET_SHAPE),
            "spacing_mm": list(PET_SPACING),
            "origin_mm": list(PET_ORIGIN),
            "units": "Bq/ml",
            "views": pet_scanner.PET_ANGLES,
            "detector_bins": pet_scanner.PET_BINS,
            "trues_per_slice": pet_scanner.PET_TRUES_PER_SLICE,
            "low_count_factor": PET_LOW_COUNT_FACTOR,
            "randoms_scatter_fraction": pet_scanner.PET_RANDOMS_SCATTER_FRACTION,
            "detector_fwhm_mm": pet_scanner.PET_DETECTOR_FWHM_MM,
            "osem_iterations": pet_scanner.OSEM_ITERATIONS,
            "osem_subsets": pet_scanner.OSEM_SUBSETS,
            "postfilter_fwhm_mm": pet_scanner.PET_POSTFILTER_FWHM_MM,
            "attenuation": "511 keV mu map of the phantom, in the system model",
        },
        "pet_suv_factor": {
            "patient_weight_kg": PATIENT_WEIGHT_KG,
            "injected_dose_bq": INJECTED_DOSE_BQ,
            "uptake_time_s": UPTAKE_TIME_S,
            "half_life_s": F18_HALF_LIFE_S,
            "decay_corrected_dose_bq": DECAY_CORRECTED_DOSE_BQ,
            "suv_per_bqml": suv_factor(),
            "formula": "SUV = Bq/ml * patient_weight_kg * 1000 / decay_corrected_dose_bq",
        },
        "tissues": {
            t.name: {"label": t.label, "hu": t.hu, "mu70_per_mm": t.mu70, "mu511_per_mm": t.mu511, "suv": t.suv}
            for t in TISSUE_LIST
        },
        "lesions": [dict(les) for les in make_phantom().lesions],
    }


def simulate_study(seed: int = 0) -> tuple[sitk.Image, sitk.Image, dict]:
    """The whole study: CT (int16 HU), PET (float32 Bq/ml, own grid) and its description."""
    t0 = time.perf_counter()
    vol = simulate_volumes(seed)
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
        "msiqa_patient_weight_kg": PATIENT_WEIGHT_KG,
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
