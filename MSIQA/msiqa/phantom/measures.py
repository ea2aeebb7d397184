"""Figures measured on simulated slices."""

from __future__ import annotations

import numpy as np


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
