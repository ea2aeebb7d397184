"""The grids of the simulated study: CT and PET voxels in LPS millimetres.

x (column i) runs from the patient's right to left, y (row j) from anterior to posterior,
z (slice k) from inferior to superior; arrays are indexed [k, j, i] like
SimpleITK.GetArrayFromImage, and both grids have the identity direction.
"""

from __future__ import annotations

import numpy as np

N_SLICES = 110
CT_N = 160
CT_PIXEL_MM = 2.5
SLICE_MM = 3.0
TOP_SLICE_Z_MM = 156.0  # the thoracic inlet; the study reaches down into the upper abdomen
CT_SHAPE = (N_SLICES, CT_N, CT_N)  # (k, j, i)
CT_SPACING = (CT_PIXEL_MM, CT_PIXEL_MM, SLICE_MM)  # (x, y, z) as SimpleITK wants it
CT_ORIGIN = (
    -(CT_N - 1) / 2 * CT_PIXEL_MM,
    -(CT_N - 1) / 2 * CT_PIXEL_MM,
    TOP_SLICE_Z_MM - (N_SLICES - 1) * SLICE_MM,
)

PET_N = 96
PET_PIXEL_MM = 400.0 / PET_N  # 4.1667 mm
PET_CENTER_MM = (1.9, -2.6)  # the PET field of view is not centred exactly like the CT one
PET_SHAPE = (N_SLICES, PET_N, PET_N)
PET_SPACING = (PET_PIXEL_MM, PET_PIXEL_MM, SLICE_MM)
PET_ORIGIN = (
    PET_CENTER_MM[0] - (PET_N - 1) / 2 * PET_PIXEL_MM,
    PET_CENTER_MM[1] - (PET_N - 1) / 2 * PET_PIXEL_MM,
    CT_ORIGIN[2],
)

TABLE_TOP_MM = 97.0  # y of the patient table's top surface


def grid_mm():
    """X[j, i], Y[j, i] (mm) of the CT pixel centres and z (mm) of every slice."""
    c = (np.arange(CT_N) - (CT_N - 1) / 2) * CT_PIXEL_MM
    X, Y = np.meshgrid(c, c)
    z = CT_ORIGIN[2] + np.arange(N_SLICES) * SLICE_MM
    return X, Y, z


def slice_rng(seed: int, k: int, stream: int) -> np.random.Generator:
    """The noise of slice k depends on (seed, k, stream) only, so a subset of slices has the
    values those slices have in the whole study."""
    return np.random.default_rng([int(seed), int(k), int(stream)])
