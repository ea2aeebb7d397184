"""Held-out synthetic trials shared by the cause and heatmap benchmarks.

Pictures come from simulated studies whose noise seeds (and, where the simulator varies
them, anatomies) the bundled model never saw, in the three display modes (PET/CT, CT alone,
PET alone), and from the development pictures; faults are the training families, applied
with the training code, so a trial's true cause and region are known exactly.

A development picture is used as it is. Its layers are only recovered from the fused colours
(``Layers.of_picture``), and re-rendered they differ from it by up to ~100 grey levels on 0.3-8 %
of the pixels, mostly along the body outline: the bundled model scores those re-renderings 1.0
lower on average (2.3 against 3.2), and the heatmap peaked on that outline. A clinical fault
therefore adds to the picture only the change it makes to the re-rendered layers, as the
training's pointing crops do.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MSIQA"))

from msiqa.training.layer_faults import Layers  # noqa: E402
from msiqa.training.named_faults import body_region, fault_picture  # noqa: E402
from msiqa.training.phantom_bank import render_layers, simulate_slices  # noqa: E402

# Faults that are global by nature have no region to point at.
GLOBAL_ONLY = {"misregistration"}


@dataclass
class Trial:
    clean: np.ndarray
    faulty: np.ndarray
    cause: str  # "none" when the fault is too mild to be named (drop < NAMED_FROM)
    family: str  # the cause it was drawn as
    region: tuple[slice, slice] | None
    source: str


def held_out_slices(noise_seeds, anatomies) -> list:
    out = []
    for anatomy in anatomies:
        for noise in noise_seeds:
            out.extend(simulate_slices(noise, anatomy))
    return out


def make_trial(picture_layers: Layers, cause: str, rng: np.random.Generator, *, local: bool,
               region_px: int, source: str, picture: np.ndarray | None = None) -> Trial | None:
    """``picture``: the picture the layers were recovered from (None: the layers are exact)."""
    clean = render_layers(picture_layers) if picture is None else picture
    region = None
    if local:
        region = body_region(clean, region_px, rng)
        if region is None:
            return None
    faulty, named = fault_picture(picture_layers, cause, float(rng.uniform(0.5, 1.0)), rng, region, picture)
    return Trial(clean, faulty, named, cause, region, source)


