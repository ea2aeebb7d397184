"""Hand-made quality measures: the baselines of the accuracy benchmark and the calibration of
synthetic labels.

All work on the grey level of a uint8 RGB picture, inside the body (pixels brighter than
the air), at native resolution.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def grey(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32).mean(axis=-1)


def body_mask(g: np.ndarray) -> np.ndarray:
    m = g > 12
    return ndimage.binary_erosion(m, iterations=2) if m.mean() < 0.98 else m


def impulse_density(img: np.ndarray, jump: float = 40.0) -> float:
    """Fraction of body pixels that differ from their 3x3 median by more than ``jump``."""
    g = grey(img)
    resid = np.abs(g - ndimage.median_filter(g, size=3))
    m = body_mask(g)
    return float((resid[m] > jump).mean()) if m.any() else 0.0


def noise_sigma(img: np.ndarray) -> float:
    """Robust noise level: MAD of a Laplacian residual inside the body, impulses excluded."""
    g = ndimage.median_filter(grey(img), size=(1, 1))
    lap = ndimage.convolve(g, np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32) / 6.0)
    m = body_mask(g)
    v = lap[m] if m.any() else lap.ravel()
    v = v[np.abs(v) < 30]
    return float(1.4826 * np.median(np.abs(v - np.median(v)))) if v.size else 0.0


def blockiness(img: np.ndarray) -> float:
    """8x8 blocking: gradient energy on block boundaries over energy elsewhere (1 = none)."""
    g = grey(img)
    dx = np.abs(np.diff(g, axis=1))
    dy = np.abs(np.diff(g, axis=0))
    on_x = dx[:, 7::8].mean()
    off_x = np.delete(dx, np.s_[7::8], axis=1).mean()
    on_y = dy[7::8, :].mean()
    off_y = np.delete(dy, np.s_[7::8], axis=0).mean()
    return float((on_x + on_y) / max(off_x + off_y, 1e-6))


def features(img: np.ndarray) -> np.ndarray:
    """[log impulse density, noise sigma, blockiness]: the axes of the development grid."""
    return np.array([np.log10(impulse_density(img) + 1e-4), noise_sigma(img), blockiness(img)], np.float64)


class Calibration:
    """Linear map from hand-made features to the radiologists' scale, fitted on real images.

    Used (a) as the 'hand-made regression' baseline and (b) to put synthetic images on the
    MOS scale: a synthetic image made from a real one with score m gets
    m + f(features(synthetic)) - f(features(source)), the change the fitted map predicts.
    """

    def __init__(self, coef: np.ndarray, intercept: float):
        self.coef, self.intercept = coef, intercept

    @classmethod
    def fit(cls, feats: np.ndarray, mos: np.ndarray, ridge: float = 1e-3) -> "Calibration":
        x = np.c_[feats, np.ones(len(feats))]
        reg = ridge * np.eye(x.shape[1])
        reg[-1, -1] = 0
        w = np.linalg.solve(x.T @ x + reg, x.T @ mos)
        return cls(w[:-1], float(w[-1]))

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        return np.asarray(feats) @ self.coef + self.intercept

    def to_dict(self) -> dict:
        return {"coef": self.coef.tolist(), "intercept": self.intercept, "features": ["log10_impulse", "noise_sigma", "blockiness"]}
