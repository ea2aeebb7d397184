"""SimpleITK image <-> MRML volume node, on the node's exact geometry.

ITK images are LPS, MRML volumes RAS. A volume node's IJKToRAS matrix is
``diag(-1, -1, 1) @ [[D @ diag(spacing), origin], [0, 0, 0, 1]]`` with ITK's direction D
and origin. Voxel arrays are (K, J, I) in both (numpy order of SimpleITK and of vtkImageData).
Arrays are copied both ways, so an input node is never modified.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

from ..errors import InputError

_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _vtk_to_np(matrix: "vtk.vtkMatrix4x4") -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _np_to_vtk(array: np.ndarray) -> "vtk.vtkMatrix4x4":
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def ijk_to_ras(node, *, world: bool = True) -> np.ndarray:
    """The node's 4x4 IJKToRAS matrix; with ``world`` its linear parent transforms included."""
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    out = _vtk_to_np(m)
    parent = node.GetParentTransformNode() if world else None
    if parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise InputError(
                f"{node.GetName()}: its parent transform is not linear. Harden the transform "
                "(Data module, right-click, Harden transform) and try again."
            )
        to_world = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(to_world)
        out = _vtk_to_np(to_world) @ out
    return out


def image_from_volume_node(node) -> sitk.Image:
    """A SimpleITK image (LPS) with a copy of the node's voxels and its world geometry."""
    image_data = node.GetImageData() if node is not None else None
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        name = node.GetName() if node is not None else "(none)"
        raise InputError(f"{name}: the volume has no voxels. Load or select another volume.")
    i, j, k = image_data.GetDimensions()
    scalars = image_data.GetPointData().GetScalars()
    components = scalars.GetNumberOfComponents()
    array = numpy_support.vtk_to_numpy(scalars)
    shape = (k, j, i, components) if components > 1 else (k, j, i)
    array = np.array(array.reshape(shape), copy=True)
    image = sitk.GetImageFromArray(array, isVector=components > 1)

    lps = _LPS_RAS @ ijk_to_ras(node)
    linear = lps[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    if np.any(spacing <= 0):
        raise InputError(f"{node.GetName()}: degenerate voxel spacing {tuple(spacing)}.")
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(v) for v in (linear / spacing).ravel()))
    image.SetOrigin(tuple(float(v) for v in lps[:3, 3]))
    return image


def ijk_to_ras_of_image(image: sitk.Image) -> np.ndarray:
    """The IJKToRAS matrix of an ITK image's grid."""
    d = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = d @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    return _LPS_RAS @ lps


def image_data_from_array(array: np.ndarray, components: int) -> "vtk.vtkImageData":
    k, j, i = array.shape[:3]
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(i, j, k)
    flat = np.ascontiguousarray(array).reshape(-1, components) if components > 1 else np.ascontiguousarray(array).ravel()
    scalars = numpy_support.numpy_to_vtk(flat, deep=True)
    scalars.SetName("ImageScalars")
    image_data.GetPointData().SetScalars(scalars)
    return image_data


def volume_node_from_image(scene, image: sitk.Image, name: str):
    """Add a volume node holding a copy of ``image``: scalar, or vector (RGB) if multi-component."""
    if image.GetDimension() != 3:
        raise InputError(f"{name}: a {image.GetDimension()}D image; a 3D volume is needed.")
    components = image.GetNumberOfComponentsPerPixel()
    array = sitk.GetArrayFromImage(image)  # a copy, (K, J, I[, C])
    if components > 1:
        node = slicer.vtkMRMLVectorVolumeNode()
    else:
        node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName(name)
    scene.AddNode(node)
    node.SetIJKToRASMatrix(_np_to_vtk(ijk_to_ras_of_image(image)))
    node.SetAndObserveImageData(image_data_from_array(array, components))
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is not None and components == 1:
        display.AutoWindowLevelOn()
        if display.GetColorNodeID() is None:
            display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    return node


def input_images(ct=None, pet=None, rgb=None) -> tuple[dict, object]:
    """SimpleITK copies of the input nodes, keyed as ``assess`` takes them, and the node whose
    grid the engine assesses (CT, else RGB, else PET)."""
    if rgb is not None and (ct is not None or pet is not None):
        raise InputError("Choose either an RGB fused volume or CT/PET, not both.")
    nodes = {"ct": ct, "pet": pet, "rgb": rgb}
    images = {role: image_from_volume_node(node) for role, node in nodes.items() if node is not None}
    if not images:
        raise InputError("Select a CT, a PET or an RGB fused volume.")
    return images, next(node for node in (ct, rgb, pet) if node is not None)
