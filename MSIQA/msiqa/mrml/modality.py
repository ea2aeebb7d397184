"""Which input a volume node is: CT, PET or RGB, from DICOM attributes or its voxel values."""

from __future__ import annotations

import numpy as np
import slicer
from vtk.util import numpy_support

from ..errors import InputError
from .tags import RESULT_FOR_ATTRIBUTE

MODALITY_ATTRIBUTE = "DICOM.Modality"


def guess_modality(array: np.ndarray) -> str:
    """"CT", "PET" or "RGB" from the voxel values alone.

    RGB: a trailing axis of 3 or 4 components. CT: Hounsfield units reach well below zero
    (air is -1000), or, stored without the rescale, unsigned values with most of the body in
    the 900-1200 band (water at 1024). Anything else non-negative is taken for PET.
    """
    a = np.asarray(array)
    if a.ndim == 4 and a.shape[-1] in (3, 4):
        return "RGB"
    if a.size == 0:
        raise InputError("An empty volume: no modality to guess.")
    values = a.ravel()
    if values.size > 200_000:
        values = values[:: values.size // 200_000 + 1]
    values = values[np.isfinite(values)].astype(np.float64)
    if values.size == 0:
        raise InputError("A volume of NaNs: no modality to guess.")
    low = np.percentile(values, 1)
    if low < -100:
        return "CT"
    if np.issubdtype(a.dtype, np.integer) and values.max() <= 4095:
        inside = values[values > 100]
        if inside.size and np.mean((inside >= 900) & (inside <= 1200)) > 0.4:
            return "CT"
    return "PET"


def modality_of_node(node) -> str | None:
    """The node's DICOM modality ("CT", "PT", ...) from its attribute or its subject hierarchy item."""
    if node is None:
        return None
    value = node.GetAttribute(MODALITY_ATTRIBUTE)
    if value:
        return value.strip().upper()
    scene = node.GetScene()
    if scene is None:
        return None
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = sh.GetItemByDataNode(node) if sh is not None else 0
    if item:
        value = sh.GetItemAttribute(item, MODALITY_ATTRIBUTE)
        if value:
            return value.strip().upper()
    return None


def node_modality(node, dicom_modality: str | None = None) -> str:
    """"CT", "PET" or "RGB" for a volume node: its DICOM modality if known (``dicom_modality``,
    else the node's attribute or subject hierarchy item), else its voxel values."""
    if node is None:
        raise InputError("No volume selected.")
    if node.IsA("vtkMRMLVectorVolumeNode"):
        return "RGB"
    dicom = (dicom_modality or modality_of_node(node) or "").strip().upper()
    if dicom == "CT":
        return "CT"
    if dicom in ("PT", "PET", "NM"):
        return "PET"
    scalars = node.GetImageData().GetPointData().GetScalars() if node.GetImageData() else None
    if scalars is None:
        raise InputError(f"{node.GetName()}: the volume has no voxels.")
    if scalars.GetNumberOfComponents() > 1:
        return "RGB"
    return guess_modality(numpy_support.vtk_to_numpy(scalars))


def preselect_inputs(scene, dicom_modality=None) -> dict:
    """The first CT, PET and RGB volume of the scene: {"ct": node, "pet": node, "rgb": node}.

    ``dicom_modality(node) -> str | None`` may add a lookup (the DICOM database in Slicer).
    Label maps and MS-IQA's own heatmaps are skipped; an RGB volume is only proposed when
    there is no CT or PET (the engine takes one or the other).
    """
    found: dict = {}
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLVolumeNode")
        if node.GetAttribute(RESULT_FOR_ATTRIBUTE) or node.IsA("vtkMRMLLabelMapVolumeNode"):
            continue
        if not node.IsA("vtkMRMLScalarVolumeNode") or node.GetImageData() is None:
            continue
        try:
            role = node_modality(node, dicom_modality(node) if dicom_modality else None).lower()
        except (InputError, ValueError):
            continue
        found.setdefault(role, node)
    if "rgb" in found and ("ct" in found or "pet" in found):
        del found["rgb"]
    return found


class ModalityCache:
    """``node_modality`` once per node: reading voxel percentiles (or the DICOM database) again
    on every parameter change, every slider step, would stall the GUI.

    Keyed by the node's ID, its modality attribute and the modification time of its voxels,
    so a node whose voxels or DICOM modality change is looked at again.
    """

    def __init__(self, dicom_modality=None):
        self.dicom_modality = dicom_modality
        self._known: dict[tuple, str] = {}
        self.lookups = 0  # how many times a node was actually examined

    def _key(self, node) -> tuple:
        image = node.GetImageData()
        return node.GetID(), node.GetAttribute(MODALITY_ATTRIBUTE), image.GetMTime() if image is not None else 0

    def __call__(self, node) -> str:
        """The node's modality ("CT", "PET", "RGB"), or a short reason it has none."""
        key = self._key(node)
        if key not in self._known:
            self.lookups += 1
            try:
                self._known[key] = node_modality(node, self.dicom_modality(node) if self.dicom_modality else None)
            except (InputError, ValueError) as e:
                self._known[key] = f"unknown ({e})"
        return self._known[key]

    def clear(self) -> None:
        self._known.clear()
