"""Moving the slice views to an assessed slice."""

from __future__ import annotations

import numpy as np
import slicer

from .volumes import ijk_to_ras

def slice_center_ras(reference_node, k: int) -> tuple[float, float, float]:
    """RAS (world) position of the centre of slice k of the volume."""
    i, j, depth = reference_node.GetImageData().GetDimensions()
    if not 0 <= k < depth:
        raise IndexError(f"Slice {k} is outside {reference_node.GetName()} (0..{depth - 1}).")
    point = ijk_to_ras(reference_node) @ np.array([(i - 1) / 2.0, (j - 1) / 2.0, float(k), 1.0])
    return float(point[0]), float(point[1]), float(point[2])


def jump_to_slice(scene, reference_node, k: int) -> tuple[float, float, float]:
    """Move all slice views to slice k of the volume; returns the RAS point jumped to."""
    r, a, s = slice_center_ras(reference_node, k)
    slicer.vtkMRMLSliceNode.JumpAllSlices(scene, r, a, s)
    return r, a, s
