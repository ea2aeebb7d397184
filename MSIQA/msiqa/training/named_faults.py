"""One picture with one named fault, as the cause head is refitted and benchmarked on it.

The faults are the development grid's picture faults (one representative of each cause) and
every clinical layer fault the picture's layers allow; the name is the cause the label rule
gives it ("none" when the fault is too mild to be named, ``labels.NAMED_FROM``).
"""

from __future__ import annotations

import numpy as np

from .degrade import degrade
from .labels import NAMED_FROM
from .layer_faults import Layers, Region, applicable, apply_fault
from .phantom_bank import add_change, render_layers

PICTURE = {"compression": "jpeg8", "impulse": "impulse", "noise": "gaussian_noise", "blur": "blur"}


def causes_for(layers: Layers) -> list[str]:
    return sorted(set(PICTURE) | set(applicable(layers)))


def body_region(picture: np.ndarray, px: int, rng: np.random.Generator, tries: int = 50) -> Region:
    """A px-pixel square at least 80 % inside the body (pixels brighter than the air around it),
    drawn at random; None when ``tries`` draws find none."""
    h, w = picture.shape[:2]
    body = picture.max(-1) > 12
    for _ in range(tries):
        y, x = int(rng.integers(0, h - px + 1)), int(rng.integers(0, w - px + 1))
        if body[y : y + px, x : x + px].mean() > 0.8:
            return slice(y, y + px), slice(x, x + px)
    return None


def fault_picture(layers: Layers, cause: str, strength: float, rng: np.random.Generator, region: Region = None,
                  picture: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """The picture of ``layers`` with one fault of ``cause`` at ``strength`` in [0, 1], and its name.

    ``picture``: the picture the layers were recovered from (``Layers.of_picture``; None: the
    layers are exact). A layer fault then adds only the change it makes to the re-rendered
    layers, which re-render the picture only approximately."""
    clean = render_layers(layers) if picture is None else picture
    if cause in PICTURE:
        return degrade(clean, PICTURE[cause], strength, rng, region), cause
    out, applied = apply_fault(layers, cause, strength, rng, region)
    faulty = render_layers(out) if picture is None else add_change(picture, layers, out)
    return faulty, cause if applied.drop >= NAMED_FROM else "none"
