"""The PET scanner: 511 keV attenuation, detector blur, a uniform randoms + scatter
background, Poisson counts and OSEM with an attenuation-corrected system model on the
scanner's own coarser grid, then a light Gaussian post-filter; images are in Bq/ml.

Its faults happen in that chain: fewer counts (a shorter frame or a lower dose: Poisson
noise), breathing during the frame (the emission is the average over the breathing cycle:
blur at the diaphragm), and a breathing state that differs from the CT's (the emission and
the true attenuation come from organs that sit elsewhere than in the CT-based attenuation
map the reconstruction uses: the PET is shifted against the CT, with attenuation-correction
errors at the liver dome and lung bases).
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
from scipy import ndimage

from .anatomy import Phantom, make_phantom
from .breathing import at_excursion, cycle_excursions_mm
from .faults import Acquisition
from .geometry import CT_N, CT_PIXEL_MM, N_SLICES, PET_CENTER_MM, PET_N, PET_PIXEL_MM, SLICE_MM, slice_rng
from .projector import build_projector

PET_ANGLES = 96
PET_BINS = 137  # bins of PET_PIXEL_MM
PET_TRUES_PER_SLICE = 6.0e5  # mean true coincidences per 3 mm slice
PET_RANDOMS_SCATTER_FRACTION = 0.35  # of the prompts
PET_DETECTOR_FWHM_MM = 4.5
PET_POSTFILTER_FWHM_MM = 5.0
OSEM_ITERATIONS = 3
OSEM_SUBSETS = 8


@functools.lru_cache(maxsize=1)
def _pet_projectors():
    fine = build_projector(CT_N, CT_PIXEL_MM, (0.0, 0.0), PET_ANGLES, PET_BINS, PET_PIXEL_MM, sub=1)
    coarse = build_projector(PET_N, PET_PIXEL_MM, PET_CENTER_MM, PET_ANGLES, PET_BINS, PET_PIXEL_MM, sub=2)
    subsets = []
    for s in range(OSEM_SUBSETS):
        rows = (np.arange(s, PET_ANGLES, OSEM_SUBSETS)[:, None] * PET_BINS + np.arange(PET_BINS)[None]).ravel()
        As = coarse[rows]
        subsets.append((rows, As, As.T.tocsr()))
    return fine, subsets


@functools.lru_cache(maxsize=2)
def _pet_noise_free(anatomy_seed: int | None):
    """Noise-free attenuated trues (per unit sensitivity), attenuation factors, sensitivity,
    and the activity seen through the detector blur.

    The sensitivity (counts per unit of attenuated line integral of Bq/ml x mm) is fixed
    for the study, chosen so that an average slice gives PET_TRUES_PER_SLICE trues.
    """
    ph = make_phantom(anatomy_seed)
    fine, _ = _pet_projectors()
    sig_px = PET_DETECTOR_FWHM_MM / 2.3548 / np.array([SLICE_MM, CT_PIXEL_MM, CT_PIXEL_MM])
    act = ndimage.gaussian_filter(ph.activity_bqml.astype(np.float64), sig_px, mode="nearest")
    n = N_SLICES
    lines = np.asarray(fine @ act.reshape(n, -1).T.astype(np.float32), dtype=np.float64)
    atten = np.exp(-np.asarray(fine @ ph.mu511.reshape(n, -1).T, dtype=np.float64))
    trues = atten * lines
    sens = PET_TRUES_PER_SLICE / trues.sum(axis=0).mean()
    return trues, atten, sens, act


def _moving_trues(ph: Phantom, k: int, act: np.ndarray, excursions_mm) -> tuple[np.ndarray, np.ndarray]:
    """Trues of slice k averaged over breathing states (the patient's true attenuation moves
    with the organs), and the attenuation factors averaged over the same states."""
    fine, _ = _pet_projectors()
    trues, atten = 0.0, 0.0
    for e in excursions_mm:
        a = at_excursion(act, ph, np.array([k]), e).reshape(-1).astype(np.float32)
        mu = at_excursion(ph.mu511, ph, np.array([k]), e).reshape(-1)
        att = np.exp(-np.asarray(fine @ mu, np.float64))
        trues, atten = trues + att * np.asarray(fine @ a, np.float64), atten + att
    return trues / len(excursions_mm), atten / len(excursions_mm)


# What the reconstruction corrects attenuation with: the CT-based map (the CT's state of the
# patient, as a scanner does), the patient's own map during the frame (what a perfectly
# registered CT would give), or nothing (the NAC image, not in Bq/ml).
ATTENUATION_MAPS = ("ct", "matched", "none")


def scan_pet(ph: Phantom, ks: np.ndarray, seed: int, acqs: Sequence[Acquisition], noisy: bool = True,
             attenuation: str = "ct") -> np.ndarray:
    """PET slices ks (float32 Bq/ml on the PET grid), each acquired as its Acquisition says.

    ``noisy=False`` reconstructs the expected counts instead of a Poisson draw of them;
    ``attenuation`` is one of ATTENUATION_MAPS.
    """
    if attenuation not in ATTENUATION_MAPS:
        raise ValueError(f"attenuation must be one of {ATTENUATION_MAPS}, not {attenuation!r}")
    trues_all, atten_all, sens, act = _pet_noise_free(ph.anatomy_seed)
    _, subsets = _pet_projectors()
    trues = trues_all[:, ks].copy()
    atten = atten_all[:, ks].copy() if attenuation != "none" else np.ones((trues.shape[0], len(ks)))
    for c, (k, acq) in enumerate(zip(ks, acqs)):
        if acq.pet_moves:
            cycle = cycle_excursions_mm(acq.pet_breathing_mm) if acq.pet_breathing_mm > 0 else np.zeros(1)
            trues[:, c], own = _moving_trues(ph, k, act, cycle + acq.pet_shift_mm)
            if attenuation == "matched":
                atten[:, c] = own
    scale = np.array([sens / acq.pet_count_reduction for acq in acqs])
    expected = trues * scale[None, :]
    f = PET_RANDOMS_SCATTER_FRACTION
    background = (f / (1 - f)) * expected.sum(axis=0) / expected.shape[0]  # per bin, per slice
    y = expected + background[None, :]
    if noisy:
        for c, k in enumerate(ks):
            y[:, c] = slice_rng(seed, k, 2).poisson(y[:, c])
    # OSEM with the attenuation-corrected model: ybar = scale*atten*(A lam) + background
    w = atten * scale[None, :]
    lam = np.full((PET_N * PET_N, len(ks)), 5000.0)
    sens_img = [np.asarray(AsT @ w[rows]) for rows, _, AsT in subsets]
    for _ in range(OSEM_ITERATIONS):
        for (rows, As, AsT), sen in zip(subsets, sens_img):
            ybar = w[rows] * np.asarray(As @ lam) + background[None, :]
            ratio = y[rows] / np.maximum(ybar, 1e-12)
            lam *= np.asarray(AsT @ (w[rows] * ratio)) / np.maximum(sen, 1e-12)
    img = np.moveaxis(lam.reshape(PET_N, PET_N, len(ks)), 2, 0)
    sig = PET_POSTFILTER_FWHM_MM / 2.3548 / PET_PIXEL_MM
    img = ndimage.gaussian_filter(img, (0, sig, sig), mode="nearest")
    return np.maximum(img, 0).astype(np.float32)
