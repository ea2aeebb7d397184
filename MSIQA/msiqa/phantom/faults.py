"""What can go wrong with a slice, and the faults that happen after reconstruction.

An :class:`Acquisition` holds the settings one slice was acquired and stored with; its
defaults are a clean study. The scanners (``ct``, ``pet``) read the fields that belong to
their own physics; lossy storage of the reconstructed CT (block-DCT compression, impulse
pixels) is done here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Acquisition:
    ct_dose_reduction: float = 1.0  # incident CT photons divided by this
    ct_motion_mm: float = 0.0  # peak in-plane displacement of the patient during the CT rotation
    pet_count_reduction: float = 1.0  # PET counts divided by this (shorter frame or lower dose)
    jpeg_quality: int | None = None  # CT stored through 8x8 block-DCT quantisation at this quality
    impulse_fraction: float = 0.0  # fraction of CT pixels stored as salt-and-pepper

    @property
    def stored_lossy(self) -> bool:
        return self.jpeg_quality is not None or self.impulse_fraction > 0


CLEAN = Acquisition()

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
