"""The heatmap colour map (an inferno-like perceptual map), numpy only: the report and the
Slicer overlay show the same colours."""

from __future__ import annotations

import numpy as np

# Anchor points of an inferno-like perceptual map (dark purple -> orange -> pale yellow);
# colours in between are interpolated linearly.
INFERNO_ANCHORS = np.array(
    [
        (0.001, 0.000, 0.014),
        (0.087, 0.045, 0.225),
        (0.258, 0.039, 0.406),
        (0.416, 0.090, 0.433),
        (0.578, 0.148, 0.404),
        (0.736, 0.216, 0.330),
        (0.865, 0.317, 0.226),
        (0.955, 0.469, 0.100),
        (0.988, 0.645, 0.040),
        (0.964, 0.844, 0.273),
        (0.988, 0.998, 0.645),
    ]
)


def inferno(values) -> np.ndarray:
    """Values in [0, 1] (any shape; NaN reads as 0, the rest is clipped) -> float RGB (..., 3) in [0, 1]."""
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0), 0.0, 1.0)
    x = np.linspace(0.0, 1.0, len(INFERNO_ANCHORS))
    return np.stack([np.interp(v, x, INFERNO_ANCHORS[:, c]) for c in range(3)], axis=-1)


def inferno_lut(n: int = 256) -> np.ndarray:
    """(n, 3) RGB values in [0, 1]: the map sampled at n equally spaced values."""
    return inferno(np.linspace(0.0, 1.0, n))


def display_steps(values: np.ndarray, levels: int = 256) -> np.ndarray:
    """Values in [0, 1] rounded to multiples of 1 / ``levels`` (float32; a power of two, so the
    steps are exact binary fractions). A colour table of ``levels`` entries shows the rounded
    and the original values alike; gzip packs the rounded ones about 5x tighter."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)  # a copy; NaN stays NaN
    v[np.isnan(v)] = 0.0
    v *= levels
    np.round(v, out=v)
    v /= levels
    return v
