"""The CT scanner: parallel-beam line integrals of the 70 keV attenuation, Poisson photon
counts, log transform and filtered back-projection (ramp filter with a Hann window)."""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
from scipy import ndimage

from .anatomy import Phantom
from .faults import Acquisition, store_lossy
from .geometry import CT_N, CT_PIXEL_MM, slice_rng
from .projector import build_projector
from .tissues import MU_WATER_70KEV

CT_ANGLES = 240  # views over 180 degrees (parallel beam)
CT_BINS = 231  # detector bins of CT_PIXEL_MM, covering the grid diagonal
CT_I0 = 5.0e4  # incident photons per ray and view
MOTION_GROUPS = 16  # the views are acquired in this many groups, each at its own patient position
_MOTION_PATTERN_PEAK_MM = 4.5  # peak of the displacement pattern below, before scaling


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


def motion_shifts_mm(peak_mm: float) -> np.ndarray:
    """In-plane displacement (dx, dy) of the patient for each group of views; |dy| peaks at
    ``peak_mm`` (breathing is mostly antero-posterior in an axial slice)."""
    v = (np.arange(MOTION_GROUPS) + 0.5) / MOTION_GROUPS
    dx = 2.0 * np.sin(2 * np.pi * 1.3 * v)
    dy = 4.5 * np.sin(2 * np.pi * 2.0 * v + 0.5)
    return np.stack([dx, dy], 1) * (peak_mm / _MOTION_PATTERN_PEAK_MM)


def _moving_patient_projection(ph: Phantom, k: int, peak_mm: float) -> np.ndarray:
    """Line integrals of slice k when each group of views sees the patient displaced."""
    A, _ = _ct_projector()
    # the patient moves, the table does not
    table = ndimage.binary_dilation(np.isin(ph.labels[k], (1, 2)), iterations=1)
    mu_table = np.where(table, ph.mu70[k], 0.0)
    mu_body = ph.mu70[k] - mu_table
    rows_per_group = CT_ANGLES // MOTION_GROUPS * CT_BINS
    p = np.empty(A.shape[0], np.float32)
    for g, (dx, dy) in enumerate(motion_shifts_mm(peak_mm)):
        moved = mu_table + ndimage.shift(mu_body, (dy / CT_PIXEL_MM, dx / CT_PIXEL_MM), order=1, mode="constant")
        rows = slice(g * rows_per_group, (g + 1) * rows_per_group)
        p[rows] = A[rows] @ moved.ravel()
    return p


def scan_ct(ph: Phantom, ks: np.ndarray, seed: int, acqs: Sequence[Acquisition]) -> np.ndarray:
    """CT slices ks (int16 HU), each acquired and stored as its Acquisition says."""
    A, _ = _ct_projector()
    mu = ph.mu70[ks].reshape(len(ks), -1).T.astype(np.float32)  # (pixels, ns)
    p = np.asarray(A @ mu)  # (rows, ns)
    for c, (k, acq) in enumerate(zip(ks, acqs)):
        if acq.ct_motion_mm > 0:
            p[:, c] = _moving_patient_projection(ph, k, acq.ct_motion_mm)
    p_hat = np.empty_like(p, dtype=np.float64)
    for c, (k, acq) in enumerate(zip(ks, acqs)):
        i0 = CT_I0 / acq.ct_dose_reduction
        counts = slice_rng(seed, k, 1).poisson(i0 * np.exp(-p[:, c].astype(np.float64)))
        p_hat[:, c] = -np.log(np.maximum(counts, 0.5) / i0)
    mu_rec = _fbp(p_hat)
    hu = 1000.0 * (mu_rec - MU_WATER_70KEV) / MU_WATER_70KEV
    for c, (k, acq) in enumerate(zip(ks, acqs)):
        if acq.stored_lossy:
            hu[c] = store_lossy(hu[c], acq, slice_rng(seed, k, 3))
    return np.clip(np.round(hu), -1024, 3071).astype(np.int16)
