"""Figures measured on simulated slices: what each fault did, in the units the label rule
(``msiqa.training.labels.ANCHORS``) and the clinical criteria use."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage, optimize

from .geometry import CT_N, CT_ORIGIN, CT_PIXEL_MM, PET_CENTER_MM, PET_N, PET_PIXEL_MM


def blockiness(img: np.ndarray, block: int = 8) -> float:
    """Mean absolute step across block boundaries over the mean step inside blocks.

    About 1 for an image without a block grid, clearly above 1 after block coding.
    """
    img = np.asarray(img, np.float64)
    ratios = []
    for d in (np.abs(np.diff(img, axis=1)), np.abs(np.diff(img, axis=0).T)):
        at = (np.arange(d.shape[1]) % block) == block - 1
        ratios.append(d[:, at].mean() / max(d[:, ~at].mean(), 1e-9))
    return float(np.mean(ratios))


def on_pet_grid(mask_ct: np.ndarray) -> np.ndarray:
    """A CT-grid mask (k, j, i) sampled (nearest) at the PET pixel centres."""
    c = (np.arange(PET_N) - (PET_N - 1) / 2) * PET_PIXEL_MM
    ii = np.round((c + PET_CENTER_MM[0] - CT_ORIGIN[0]) / CT_PIXEL_MM).astype(int).clip(0, CT_N - 1)
    jj = np.round((c + PET_CENTER_MM[1] - CT_ORIGIN[1]) / CT_PIXEL_MM).astype(int).clip(0, CT_N - 1)
    return mask_ct[:, jj][:, :, ii]


def inner(mask: np.ndarray, margin_mm: float) -> np.ndarray:
    """The voxels of a (k, j, i) mask at least ``margin_mm`` from its edge, slice by slice."""
    it = max(1, int(round(margin_mm / CT_PIXEL_MM)))
    return np.stack([ndimage.binary_erosion(m, iterations=it) for m in mask])


def coefficient_of_variation(values: np.ndarray) -> float:
    return float(np.std(values) / np.mean(values))


def noise_sd(image: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """SD of the reconstruction's error in a region (HU for a CT)."""
    return float(np.std((np.asarray(image, np.float64) - truth)[mask]))


def added_sd(sd: float, sd_clean: float) -> float:
    """The noise a fault added on top of the clean scan's own (independent noise adds in
    quadrature)."""
    return float(np.sqrt(max(sd * sd - sd_clean * sd_clean, 0.0)))


def equivalent_blur_fwhm_mm(blurred: np.ndarray, sharp: np.ndarray, px_mm: float, mask: np.ndarray) -> float:
    """FWHM (mm) of the in-plane Gaussian that, applied to ``sharp``, best matches ``blurred``
    inside ``mask`` (least squares over 0..40 mm in 0.5 mm steps)."""
    best, best_err = 0.0, np.inf
    for fwhm in np.arange(0.0, 40.01, 0.5):
        sig = fwhm / 2.3548 / px_mm
        g = ndimage.gaussian_filter(sharp, (0, sig, sig), mode="nearest") if sig > 0 else sharp
        err = float(np.sum((g - blurred)[mask] ** 2))
        if err < best_err:
            best, best_err = float(fwhm), err
    return best


def shift_mm(moved: np.ndarray, still: np.ndarray, spacing_kji, mask: np.ndarray,
             max_shift_vox=(10, 4, 3)) -> np.ndarray:
    """Displacement (dz, dy, dx) in mm of ``moved`` against ``still`` (volumes indexed [k, j, i])
    inside ``mask``: the peak of their normalised cross-correlation, first over whole-voxel
    shifts of ``still``, then refined (Nelder-Mead) with ``still`` shifted by cubic splines.

    ``mask`` must stay further than ``max_shift_vox`` from the volume's edges (shifts wrap).
    """
    a = np.asarray(moved, np.float64)[mask]
    a = (a - a.mean()) / (a.std() + 1e-12)
    still = np.asarray(still, np.float64)

    def ncc(b):
        b = b[mask]
        return float(np.mean(a * (b - b.mean()))) / (b.std() + 1e-12)

    lim = [int(m) for m in max_shift_vox]
    best, best_d = -np.inf, np.zeros(3)
    for dz in range(-lim[0], lim[0] + 1):
        for dy in range(-lim[1], lim[1] + 1):
            for dx in range(-lim[2], lim[2] + 1):
                c = ncc(np.roll(still, (dz, dy, dx), axis=(0, 1, 2)))
                if c > best:
                    best, best_d = c, np.array([dz, dy, dx], float)
    # the peak often lies on a ridge across axes (a curved organ edge): refine all axes at once
    res = optimize.minimize(
        lambda d: -ncc(ndimage.shift(still, d, order=3, mode="grid-wrap")),
        best_d,
        method="Nelder-Mead",
        options={"initial_simplex": best_d + np.vstack([np.zeros(3), 0.6 * np.eye(3)]), "xatol": 0.02, "fatol": 1e-9},
    )
    return res.x * np.asarray(spacing_kji, float)


def ring(mask: np.ndarray, inner_mm: float, outer_mm: float, px_mm: float = CT_PIXEL_MM) -> np.ndarray:
    """Pixels between ``inner_mm`` and ``outer_mm`` from a 2D mask."""
    d = ndimage.distance_transform_edt(~mask) * px_mm
    return (d >= inner_mm) & (d <= outer_mm)


def impulse_fraction(ct_hu: np.ndarray, mask: np.ndarray, jump_hu: float = 400.0) -> float:
    """Fraction of the pixels in ``mask`` that differ from their in-plane 3x3 median by more
    than ``jump_hu`` (an impulse darker or brighter than what surrounds it is seen; one in the
    air or the lung that matches it is not)."""
    a = np.asarray(ct_hu, np.float64)
    med = ndimage.median_filter(a, size=(1, 3, 3) if a.ndim == 3 else 3)
    return float((np.abs(a - med) > jump_hu)[mask].mean())


def jpeg_ratio(v8: np.ndarray, quality: int, bits_stored: int = 16) -> float:
    """Compression ratio of a baseline JPEG of an 8-bit slice at ``quality`` against the slice
    stored uncompressed at ``bits_stored`` bits per pixel (DICOM CT: 16)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(v8, np.uint8)).save(buf, format="JPEG", quality=int(quality))
    return float(v8.size * bits_stored / 8 / buf.tell())

