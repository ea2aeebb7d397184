"""What can go wrong with a slice, simulated where the scanner makes it.

An :class:`Acquisition` holds the settings one slice was acquired and stored with; its
defaults are a clean study. Each scanner reads the fields of its own physics: the CT
(``ct``) its photon count, the patient's motion during the rotation and metal in the beam;
the PET (``pet``) its counts, breathing during the frame and the breathing state it was
acquired in against the CT's. Lossy storage of the reconstructed CT (block-DCT compression,
impulse pixels) is done here. :data:`FAULTS` names each fault family, the cause the model
should give it and what its severity parameter means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..causes import CAUSES


@dataclass(frozen=True)
class Acquisition:
    ct_dose_reduction: float = 1.0  # incident CT photons divided by this
    ct_motion_mm: float = 0.0  # peak-to-peak in-plane displacement of the patient during the CT rotation
    ct_metal_mm: float = 0.0  # diameter of steel pedicle screws in the slice (0: no metal)
    pet_count_reduction: float = 1.0  # PET counts divided by this (shorter frame or lower dose)
    pet_breathing_mm: float = 0.0  # peak-to-peak diaphragm excursion while the PET frame is acquired
    pet_shift_mm: float = 0.0  # diaphragm of the PET frame this much lower than in the CT (+: caudal)
    jpeg_quality: int | None = None  # CT stored through 8x8 block-DCT quantisation at this quality
    impulse_fraction: float = 0.0  # fraction of CT pixels stored as salt-and-pepper

    @property
    def stored_lossy(self) -> bool:
        return self.jpeg_quality is not None or self.impulse_fraction > 0

    @property
    def pet_moves(self) -> bool:
        return self.pet_breathing_mm > 0 or self.pet_shift_mm != 0


CLEAN = Acquisition()


@dataclass(frozen=True)
class Fault:
    """One fault family: its severity parameter and the acquisition that has it."""

    cause: str  # the name msiqa.causes gives it
    parameter: str  # what the severity is
    unit: str
    field: str  # the Acquisition field the severity sets

    def acquisition(self, severity: float) -> Acquisition:
        value = int(severity) if self.field == "jpeg_quality" else float(severity)
        return replace(CLEAN, **{self.field: value})

    @property
    def worse_when_lower(self) -> bool:
        return self.field == "jpeg_quality"


FAULTS: dict[str, Fault] = {
    "pet_low_counts": Fault("pet_low_counts", "count reduction factor", "x fewer PET counts", "pet_count_reduction"),
    "ct_low_dose": Fault("ct_low_dose", "photon reduction factor", "x fewer CT photons", "ct_dose_reduction"),
    "pet_respiratory_motion": Fault(
        "motion", "peak-to-peak diaphragm excursion during the PET frame", "mm", "pet_breathing_mm"
    ),
    "misregistration": Fault("misregistration", "diaphragm offset of the PET against the CT, caudal", "mm", "pet_shift_mm"),
    "ct_motion": Fault(
        "motion", "peak-to-peak in-plane displacement of the patient during the CT rotation", "mm", "ct_motion_mm"
    ),
    "metal_streaks": Fault("streaks", "diameter of steel pedicle screws in the slice", "mm", "ct_metal_mm"),
    "compression": Fault("compression", "JPEG quality of the stored CT (lower is stronger)", "quality 1-100", "jpeg_quality"),
    "impulse": Fault("impulse", "share of CT pixels stored as impulses", "fraction", "impulse_fraction"),
}
assert all(f.cause in CAUSES for f in FAULTS.values())

_JPEG_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    float,
)
STORAGE_WINDOW_HU = (-1000.0, 1000.0)  # the CT is stored at 8 bits over this window when stored lossy


def _dct_matrix(n=8):
    k = np.arange(n)
    C = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2.0 / n)
    C[0] /= math.sqrt(2.0)
    return C


def _block_dct_quantise(img8, quality):
    """8x8 block DCT quantisation of an image of 0..255 values (sides multiple of 8)."""
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
    Q = np.clip(np.floor((_JPEG_LUMA * scale + 50.0) / 100.0), 1, 255)
    C = _dct_matrix()
    h, w = img8.shape
    blocks = (img8 - 128.0).reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)
    coef = np.einsum("ab,ijbc,dc->ijad", C, blocks, C)
    coef = np.round(coef / Q) * Q
    back = np.einsum("ba,ijbc,cd->ijad", C, coef, C)
    return np.clip(np.round(back.transpose(0, 2, 1, 3).reshape(h, w) + 128.0), 0, 255)


def store_lossy(hu: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
    """The CT slice after 8-bit storage with block-DCT quantisation and/or impulse pixels."""
    lo, hi = STORAGE_WINDOW_HU
    v = np.round(np.clip((hu - lo) / (hi - lo), 0, 1) * 255.0)
    if acq.jpeg_quality is not None:
        v = _block_dct_quantise(v, acq.jpeg_quality)
    if acq.impulse_fraction > 0:
        f = acq.impulse_fraction
        u = rng.random(v.shape)
        v[u < f / 2] = 0.0
        v[(u >= f / 2) & (u < f)] = 255.0
    return lo + v / 255.0 * (hi - lo)
