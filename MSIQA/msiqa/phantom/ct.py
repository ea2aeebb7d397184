"""The CT scanner: parallel-beam line integrals of the 70 keV attenuation, Poisson photon
counts, log transform and filtered back-projection (ramp filter with a Hann window).

Its faults happen in that chain: fewer photons (noise, and photon starvation along the
longest paths), a patient who moves during the rotation (each group of views sees another
position: blur, doubled edges, streaks), and metal in the beam (the spectrum hardens through
it and almost no photons get through: dark and bright streaks after FBP).
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
from scipy import ndimage

from .anatomy import Phantom
from .faults import Acquisition, store_lossy
from .geometry import CT_N, CT_PIXEL_MM, grid_mm, slice_rng
from .projector import build_projector
from .shapes import sd_capsule, sd_circle
from .tissues import MU_WATER_70KEV

CT_ANGLES = 240  # views over 180 degrees (parallel beam)
CT_BINS = 231  # detector bins of CT_PIXEL_MM, covering the grid diagonal
CT_I0 = 5.0e4  # incident photons per ray and view
MOTION_GROUPS = 16  # the views are acquired in this many groups, each at its own patient position

# Stainless steel at the 70 keV effective energy (iron ~0.83 cm2/g x 7.9 g/cm3), and how its
# attenuation falls across the beam's spectrum: three energy bins (50, 70, 100 keV) with
# their share of the photons and iron's attenuation relative to 70 keV (NIST XCOM, rounded).
# Soft tissue and bone are taken as water-corrected by the scanner; metal is not.
MU_STEEL_70KEV = 0.65  # 1/mm
_SPECTRUM_WEIGHTS = np.array([0.15, 0.45, 0.40])
_STEEL_MU_RATIO = np.array([2.37, 1.0, 0.45])
_STEEL_MU_RATIO = _STEEL_MU_RATIO / (_SPECTRUM_WEIGHTS @ _STEEL_MU_RATIO)  # thin metal: as at 70 keV


@functools.lru_cache(maxsize=1)
def _ct_projector():
    A = build_projector(CT_N, CT_PIXEL_MM, (0.0, 0.0), CT_ANGLES, CT_BINS, CT_PIXEL_MM, sub=2)
    return A, A.T.tocsr()


def _ramp_hann(n_bins, d):
    n = 1
    while n < 2 * n_bins:
        n *= 2
    k = np.arange(n)
    k = np.where(k < n // 2, k, k - n)  # FFT order
    h = np.zeros(n)
    h[k == 0] = 1.0 / (4.0 * d * d)
    odd = (k % 2) != 0
    h[odd] = -1.0 / (np.pi * k[odd] * d) ** 2
    H = np.real(np.fft.fft(h)) * d  # ~|nu| in cycles/mm, exact at DC (Ram-Lak)
    H *= 0.5 * (1.0 + np.cos(2.0 * np.pi * np.fft.fftfreq(n)))  # Hann, zero at Nyquist
    return H, n


def _fbp(sino):
    """sino: (CT_ANGLES*CT_BINS, ns) line integrals -> (ns, CT_N, CT_N) mu in 1/mm."""
    ns = sino.shape[1]
    H, n = _ramp_hann(CT_BINS, CT_PIXEL_MM)
    s = sino.reshape(CT_ANGLES, CT_BINS, ns)
    q = np.real(np.fft.ifft(np.fft.fft(s, n=n, axis=1) * H[None, :, None], axis=1))[:, :CT_BINS]
    _, AT = _ct_projector()
    # A's entries are px^2/bin_w; back-projection must interpolate (weights summing to 1)
    img = AT @ q.reshape(-1, ns).astype(np.float32)
    img *= (np.pi / CT_ANGLES) * (CT_PIXEL_MM / CT_PIXEL_MM**2)
    return np.moveaxis(img.reshape(CT_N, CT_N, ns), 2, 0)


def _motion_pattern() -> np.ndarray:
    v = (np.arange(MOTION_GROUPS) + 0.5) / MOTION_GROUPS
    dx = 2.0 * np.sin(2 * np.pi * 1.3 * v)
    dy = 4.5 * np.sin(2 * np.pi * 2.0 * v + 0.5)  # breathing: mostly antero-posterior in an axial slice
    return np.stack([dx, dy], 1)


def peak_to_peak_mm(shifts: np.ndarray) -> float:
    """The largest distance between two positions of the patient."""
    return float(np.max(np.hypot(*(shifts[:, None, :] - shifts[None, :, :]).transpose(2, 0, 1))))


def motion_shifts_mm(p2p_mm: float) -> np.ndarray:
    """In-plane displacement (dx, dy) of the patient for each group of views, scaled so that
    the two furthest positions are ``p2p_mm`` apart."""
    pattern = _motion_pattern()
    return pattern * (p2p_mm / peak_to_peak_mm(pattern))


def _moving_patient_projection(ph: Phantom, k: int, p2p_mm: float) -> np.ndarray:
    """Line integrals of slice k when each group of views sees the patient displaced."""
    A, _ = _ct_projector()
    # the patient moves, the table does not
    table = ndimage.binary_dilation(np.isin(ph.labels[k], (1, 2)), iterations=1)
    mu_table = np.where(table, ph.mu70[k], 0.0)
    mu_body = ph.mu70[k] - mu_table
    rows_per_group = CT_ANGLES // MOTION_GROUPS * CT_BINS
    p = np.empty(A.shape[0], np.float32)
    for g, (dx, dy) in enumerate(motion_shifts_mm(p2p_mm)):
        moved = mu_table + ndimage.shift(mu_body, (dy / CT_PIXEL_MM, dx / CT_PIXEL_MM), order=1, mode="constant")
        rows = slice(g * rows_per_group, (g + 1) * rows_per_group)
        p[rows] = A[rows] @ moved.ravel()
    return p


def steel_screws(ph: Phantom, k: int, diameter_mm: float) -> np.ndarray:
    """Fraction of each pixel of slice k filled with steel: bilateral pedicle screws through the
    pedicles into the vertebral body, and the rods joining their heads."""
    X, Y, _ = grid_mm()
    y_vb = float(ph.spine_y[k])
    r = diameter_mm / 2.0
    sd = np.full(X.shape, np.inf)
    for side in (-1.0, 1.0):
        sd = np.minimum(sd, sd_capsule(X, Y, side * 25.0, y_vb + 30.0, side * 6.0, y_vb - 6.0, r))
        sd = np.minimum(sd, sd_circle(X, Y, side * 27.0, y_vb + 34.0, 0.8 * r))
    return np.clip(0.5 - sd / CT_PIXEL_MM, 0.0, 1.0)


def _hardened(p_metal: np.ndarray) -> np.ndarray:
    """Measured line integral of steel: -ln of the transmitted share of the spectrum."""
    t = np.exp(-np.multiply.outer(p_metal.astype(np.float64), _STEEL_MU_RATIO)) @ _SPECTRUM_WEIGHTS
    return -np.log(np.maximum(t, 1e-300))


def _projection_with_metal(ph: Phantom, k: int, diameter_mm: float) -> np.ndarray:
    A, _ = _ct_projector()
    steel = steel_screws(ph, k, diameter_mm)
    body = ph.mu70[k] * (1.0 - steel)  # the screws replace bone
    return A @ body.ravel().astype(np.float32) + _hardened(A @ (steel * MU_STEEL_70KEV).ravel().astype(np.float32))


def scan_ct(ph: Phantom, ks: np.ndarray, seed: int, acqs: Sequence[Acquisition], noisy: bool = True) -> np.ndarray:
    """CT slices ks (int16 HU), each acquired and stored as its Acquisition says.

    ``noisy=False`` reconstructs the expected photon counts instead of a Poisson draw of them.
    """
    A, _ = _ct_projector()
    mu = ph.mu70[ks].reshape(len(ks), -1).T.astype(np.float32)  # (pixels, ns)
    p = np.asarray(A @ mu)  # (rows, ns)
    for c, (k, acq) in enumerate(zip(ks, acqs)):
        if acq.ct_motion_mm > 0 and acq.ct_metal_mm > 0:
            raise ValueError("motion and metal in one CT slice are not simulated together")
        if acq.ct_motion_mm > 0:
            p[:, c] = _moving_patient_projection(ph, k, acq.ct_motion_mm)
        if acq.ct_metal_mm > 0:
            p[:, c] = _projection_with_metal(ph, k, acq.ct_metal_mm)
    p_hat = np.empty_like(p, dtype=np.float64)
    for c, (k, acq) in enumerate(zip(ks, acqs)):
        i0 = CT_I0 / acq.ct_dose_reduction
        counts = i0 * np.exp(-p[:, c].astype(np.float64))
        if noisy:
            counts = slice_rng(seed, k, 1).poisson(counts)
        p_hat[:, c] = -np.log(np.maximum(counts, 0.5) / i0)
    mu_rec = _fbp(p_hat)
    hu = 1000.0 * (mu_rec - MU_WATER_70KEV) / MU_WATER_70KEV
    for c, (k, acq) in enumerate(zip(ks, acqs)):
        if acq.stored_lossy:
            hu[c] = store_lossy(hu[c], acq, slice_rng(seed, k, 3))
    return np.clip(np.round(hu), -1024, 3071).astype(np.int16)
