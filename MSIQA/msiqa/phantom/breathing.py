"""The patient's breathing: where organs are at another depth of breath.

Breathing in moves the diaphragm caudally and, with it, the liver, stomach, spleen and lung
bases, a little anteriorly too; the chest wall, spine and table stay. ``Phantom.breathing``
says how far each voxel follows the diaphragm (1 around and below it, fading to 0 at the
lung apices). A breathing state is the diaphragm's excursion from the CT's state, in mm.

The breathing cycle follows Lujan et al. (Med Phys 1999): z(t) = z0 - b cos^4(pi t / T), so
a patient spends most of the cycle near end-expiration.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .anatomy import Phantom
from .geometry import CT_N, CT_PIXEL_MM, SLICE_MM

AP_PER_CC = 0.2  # anterior movement per mm of caudal movement of the abdominal organs
CYCLE_SAMPLES = 10


def cycle_excursions_mm(p2p_mm: float, samples: int = CYCLE_SAMPLES) -> np.ndarray:
    """Diaphragm excursions at equally spaced times of one breathing cycle, relative to their
    time average (the CT is taken as at the mid-position of free breathing)."""
    t = (np.arange(samples) + 0.5) / samples
    b = p2p_mm * np.cos(np.pi * t) ** 4
    return b - b.mean()


def at_excursion(volume: np.ndarray, ph: Phantom, ks: np.ndarray, excursion_mm: float) -> np.ndarray:
    """Slices ks of ``volume`` (on the CT grid) with the diaphragm ``excursion_mm`` lower
    (negative: higher) than in the phantom."""
    if excursion_mm == 0:
        return np.asarray(volume[ks], np.float64)
    d = excursion_mm * ph.breathing[ks].astype(np.float64)  # caudal movement of each voxel, mm
    jj, ii = np.meshgrid(np.arange(CT_N), np.arange(CT_N), indexing="ij")
    # what sits at a voxel now came from further up (and further back)
    kk = np.asarray(ks, np.float64)[:, None, None] + d / SLICE_MM
    src_j = jj[None] + AP_PER_CC * d / CT_PIXEL_MM
    src_i = np.broadcast_to(ii, d.shape)
    return ndimage.map_coordinates(np.asarray(volume, np.float64), [kk, src_j, src_i], order=1, mode="nearest")
