"""MRML side of MS-IQA: volumes in and out of MRML nodes, result nodes, .mrb and overlay PNGs.

The one module of MRML code, shared by the Slicer module (MSIQA.py) and the command line
(``msiqa assess ... --mrb``). It imports ``slicer`` and ``vtk`` only, never qt, ctk or
``slicer.app``: it runs inside Slicer and on the ``slicer-core`` wheel alike.

Coordinates: ITK images are LPS, MRML volumes RAS. A volume node's IJKToRAS matrix is
``diag(-1, -1, 1) @ [[D @ diag(spacing), origin], [0, 0, 0, 1]]`` with ITK's direction D
and origin. Voxel arrays are (K, J, I) in both (numpy order of SimpleITK and of vtkImageData).

Nothing here modifies an input node: arrays are copied both ways and results go to new
nodes that carry the attribute ``MSIQA.ResultFor`` = the input node's ID, so a second run
for the same input replaces the first run's nodes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

from .errors import InputError, MSIQAError
from .results import Assessment

RESULT_FOR_ATTRIBUTE = "MSIQA.ResultFor"
ROLE_ATTRIBUTE = "MSIQA.Role"
COLORMAP_ATTRIBUTE = "MSIQA.Colormap"
MODALITY_ATTRIBUTE = "DICOM.Modality"

# Colour maps offered for the heatmap, first = default. "Inferno" is Slicer's file-based
# table when present; otherwise an equivalent table is built (slicer-core has no colour files).
COLORMAPS = ("Inferno", "PET-Heat", "Iron")
OWN_INFERNO_NAME = "MSIQA Inferno"
DEFAULT_OPACITY = 0.5
DEFAULT_LOWER_THRESHOLD = 0.15  # heatmap values below this are transparent in slice views

# A scene header Slicer 5 reads as current (the slicer-core default "slicer-core 4.0.0 0"
# is taken for a legacy scene).
SCENE_VERSION = "Slicer 5.8.1 33241"

# Slice views left, the score chart right. Built-in layout IDs are below 1000.
LAYOUT_ID = 47301
PLOT_VIEW_TAG = "PlotView1"
LAYOUT_XML = """
<layout type="horizontal" split="true">
  <item splitSize="600">
    <layout type="vertical" split="true">
      <item splitSize="500">
        <view class="vtkMRMLSliceNode" singletontag="Red">
          <property name="orientation" action="default">Axial</property>
          <property name="viewlabel" action="default">R</property>
          <property name="viewcolor" action="default">#F34A33</property>
        </view>
      </item>
      <item splitSize="300">
        <layout type="horizontal">
          <item>
            <view class="vtkMRMLSliceNode" singletontag="Yellow">
              <property name="orientation" action="default">Sagittal</property>
              <property name="viewlabel" action="default">Y</property>
              <property name="viewcolor" action="default">#EDD54C</property>
            </view>
          </item>
          <item>
            <view class="vtkMRMLSliceNode" singletontag="Green">
              <property name="orientation" action="default">Coronal</property>
              <property name="viewlabel" action="default">G</property>
              <property name="viewcolor" action="default">#6EB04B</property>
            </view>
          </item>
        </layout>
      </item>
    </layout>
  </item>
  <item splitSize="400">
    <view class="vtkMRMLPlotViewNode" singletontag="PlotView1">
      <property name="viewlabel" action="default">P</property>
    </view>
  </item>
</layout>
"""

_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# Anchor points of an inferno-like perceptual map (dark purple -> orange -> pale yellow);
# 256 entries are interpolated between them.
_INFERNO_ANCHORS = np.array(
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


# ---------------------------------------------------------------------------------------
# Scenes without the Slicer application
# ---------------------------------------------------------------------------------------


@contextmanager
def _quiet_vtk():
    """Silence VTK error/warning output for a known-noisy call, then restore it."""
    previous = vtk.vtkObject.GetGlobalWarningDisplay()
    vtk.vtkObject.GlobalWarningDisplayOff()
    try:
        yield
    finally:
        vtk.vtkObject.SetGlobalWarningDisplay(previous)


def create_scene() -> tuple["slicer.vtkMRMLScene", "slicer.vtkSlicerApplicationLogic"]:
    """A fresh scene with the application and colour logic that volumes and colours need.

    Keep the returned application logic referenced as long as the scene is used.
    """
    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = slicer.vtkSlicerColorLogic()
    colors.SetMRMLApplicationLogic(app)
    with _quiet_vtk():  # "no default colour files" is expected without the Slicer install
        colors.SetMRMLScene(scene)
    app.SetModuleLogic("Colors", colors)
    app.SetSliceLogics(vtk.vtkCollection())
    app.SetViewLogics(vtk.vtkCollection())
    # SetModuleLogic keeps no reference: a collected colour logic takes its colour nodes with it
    app.msiqa_color_logic = colors
    return scene, app


# ---------------------------------------------------------------------------------------
# Volumes: SimpleITK image <-> MRML volume node
# ---------------------------------------------------------------------------------------


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


def _image_data_from_array(array: np.ndarray, components: int) -> "vtk.vtkImageData":
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
    node.SetAndObserveImageData(_image_data_from_array(array, components))
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is not None and components == 1:
        display.AutoWindowLevelOn()
        if display.GetColorNodeID() is None:
            display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    return node


# ---------------------------------------------------------------------------------------
# Modality
# ---------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------
# Colour maps
# ---------------------------------------------------------------------------------------


def _find_by_name(scene, name: str, class_name: str = "vtkMRMLColorNode"):
    for index in range(scene.GetNumberOfNodesByClass(class_name)):
        node = scene.GetNthNodeByClass(index, class_name)
        if node.GetName() == name:
            return node
    return None


def inferno_lut(n: int = 256) -> np.ndarray:
    """(n, 3) RGB values in [0, 1] of the inferno-like perceptual map."""
    x = np.linspace(0.0, 1.0, len(_INFERNO_ANCHORS))
    t = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(t, x, _INFERNO_ANCHORS[:, c]) for c in range(3)], axis=1)


def colormap_node_id(scene, name: str = COLORMAPS[0]) -> str:
    """ID of the colour node for ``name``: Slicer's own if the scene has it, else a built one."""
    node = _find_by_name(scene, name)
    if node is not None:
        return node.GetID()
    if name not in ("Inferno", OWN_INFERNO_NAME) and name not in COLORMAPS:
        raise ValueError(f"Unknown colour map {name!r}; choose one of {', '.join(COLORMAPS)}.")
    node = _find_by_name(scene, OWN_INFERNO_NAME)
    if node is not None:
        return node.GetID()
    table = slicer.vtkMRMLColorTableNode()
    table.SetName(OWN_INFERNO_NAME)
    table.SetTypeToUser()
    lut = inferno_lut(256)
    table.SetNumberOfColors(len(lut))
    for index, (r, g, b) in enumerate(lut):
        table.SetColor(index, f"{index / (len(lut) - 1):.3f}", float(r), float(g), float(b), 1.0)
    table.SetAttribute(COLORMAP_ATTRIBUTE, "inferno")
    table.SetAttribute("Category", "MS-IQA")
    scene.AddNode(table)
    return table.GetID()


def set_colormap(scene, heatmap_node, name: str) -> str:
    """Show the heatmap with colour map ``name``; returns the colour node ID."""
    color_id = colormap_node_id(scene, name)
    display = heatmap_node.GetDisplayNode()
    if display is not None:
        display.SetAndObserveColorNodeID(color_id)
    return color_id


# ---------------------------------------------------------------------------------------
# Result nodes
# ---------------------------------------------------------------------------------------


@dataclass
class ResultNodes:
    """IDs of the nodes one assessment put in the scene."""

    reference: str
    table: str
    series: str
    chart: str
    heatmap: str
    threshold_series: str

    def ids(self) -> list[str]:
        return [self.table, self.series, self.threshold_series, self.chart, self.heatmap]


def find_results(scene, reference_node) -> list:
    """All result nodes (tables, plots, heatmaps) made for ``reference_node``."""
    ref_id = reference_node.GetID() if not isinstance(reference_node, str) else reference_node
    found = []
    collection = scene.GetNodes()
    for index in range(collection.GetNumberOfItems()):
        node = collection.GetItemAsObject(index)
        if node is not None and node.GetAttribute(RESULT_FOR_ATTRIBUTE) == ref_id:
            found.append(node)
    return found


def result_nodes_of(scene, reference_node) -> ResultNodes | None:
    """The ResultNodes of the last run for ``reference_node``, or None."""
    roles = {n.GetAttribute(ROLE_ATTRIBUTE): n.GetID() for n in find_results(scene, reference_node)}
    try:
        return ResultNodes(
            reference_node.GetID(), roles["table"], roles["series"], roles["chart"], roles["heatmap"], roles["threshold"]
        )
    except KeyError:
        return None


def remove_results(scene, reference_node) -> int:
    """Remove the earlier result nodes for ``reference_node`` (with their display and
    storage nodes and subject hierarchy items); returns how many result nodes went."""
    nodes = find_results(scene, reference_node)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    for node in nodes:
        companions = []
        if node.IsA("vtkMRMLDisplayableNode"):
            companions += [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
        if node.IsA("vtkMRMLStorableNode"):
            companions += [node.GetNthStorageNode(i) for i in range(node.GetNumberOfStorageNodes())]
        if sh is not None:
            item = sh.GetItemByDataNode(node)
            if item:
                sh.RemoveItem(item, False, False)
        scene.RemoveNode(node)
        for companion in companions:
            if companion is not None and companion.GetScene() is scene:
                scene.RemoveNode(companion)
    return len(nodes)


def _tag(node, reference_id: str, role: str) -> None:
    node.SetAttribute(RESULT_FOR_ATTRIBUTE, reference_id)
    node.SetAttribute(ROLE_ATTRIBUTE, role)


def _fill_table(table_node, assessment: Assessment) -> None:
    scores = np.asarray(assessment.scores, dtype=np.float64)
    flagged = np.asarray(assessment.flagged, dtype=bool)
    columns = {
        "slice": (vtk.vtkIntArray(), np.arange(scores.size)),
        "score": (vtk.vtkDoubleArray(), scores),
        "flagged": (vtk.vtkIntArray(), flagged.astype(int)),
        "threshold": (vtk.vtkDoubleArray(), np.full(scores.size, float(assessment.threshold))),
    }
    table = vtk.vtkTable()
    for name, (array, values) in columns.items():
        array.SetName(name)
        array.SetNumberOfTuples(values.size)
        for row, value in enumerate(values.tolist()):
            array.SetValue(row, value)
        table.AddColumn(array)
    table_node.SetAndObserveTable(table)
    table_node.SetColumnDescription("slice", "Axial slice index k of the assessed volume")
    table_node.SetColumnDescription("score", "Predicted quality, 0 = unusable ... 4 = excellent")
    table_node.SetColumnDescription("flagged", "1 if the score is below the threshold")
    table_node.SetColumnDescription("threshold", "Flagging threshold")


def update_threshold(scene, results: ResultNodes, assessment: Assessment) -> None:
    """Re-flag the table (and the chart's threshold line) after ``Assessment.with_threshold``."""
    table_node = scene.GetNodeByID(results.table)
    table = table_node.GetTable()
    flagged = table.GetColumnByName("flagged")
    threshold = table.GetColumnByName("threshold")
    for row, value in enumerate(np.asarray(assessment.flagged, dtype=int).tolist()):
        flagged.SetValue(row, value)
        threshold.SetValue(row, float(assessment.threshold))
    flagged.Modified()
    threshold.Modified()
    table.Modified()
    table_node.Modified()


def _heatmap_array(assessment: Assessment, reference_node) -> np.ndarray:
    dims = reference_node.GetImageData().GetDimensions()
    heat = np.asarray(assessment.heatmap, dtype=np.float32)
    if heat.shape != (dims[2], dims[1], dims[0]):
        raise InputError(
            f"The heatmap has shape {heat.shape} (K, J, I) but {reference_node.GetName()} has "
            f"{(dims[2], dims[1], dims[0])}: the assessment is not of this volume."
        )
    return np.clip(np.nan_to_num(heat, nan=0.0), 0.0, 1.0)


def _place_in_hierarchy(scene, reference_node, nodes: Iterable) -> None:
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if sh is None:
        return
    parent = sh.GetItemByDataNode(reference_node)
    if not parent:
        parent = sh.CreateItem(sh.GetSceneItemID(), reference_node)
    for node in nodes:
        item = sh.GetItemByDataNode(node)
        if item:
            sh.SetItemParent(item, parent)
        else:
            sh.CreateItem(parent, node)


def set_overlay(scene, heatmap_node, *, visible: bool = True, opacity: float = DEFAULT_OPACITY, background_node=None) -> int:
    """Show (or hide) the heatmap as the foreground layer of every slice view.

    An empty background is filled with ``background_node``. Returns the number of slice
    composite nodes changed (0 outside Slicer unless the scene has slice views).
    """
    count = 0
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        composite = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        if background_node is not None and not composite.GetBackgroundVolumeID():
            composite.SetBackgroundVolumeID(background_node.GetID())
        if visible:
            composite.SetForegroundVolumeID(heatmap_node.GetID())
            composite.SetForegroundOpacity(float(opacity))
        elif composite.GetForegroundVolumeID() == heatmap_node.GetID():
            composite.SetForegroundVolumeID(None)
        count += 1
    return count


def _add_series(scene, table_node, ref_id: str, role: str, name: str, y_column: str,
                marker: int, line: int, color: tuple[float, float, float]):
    """A plot series of ``y_column`` against slice, from the results table."""
    series = slicer.vtkMRMLPlotSeriesNode()
    series.SetName(name)
    _tag(series, ref_id, role)
    scene.AddNode(series)
    series.SetAndObserveTableNodeID(table_node.GetID())
    series.SetXColumnName("slice")
    series.SetYColumnName(y_column)
    series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
    series.SetMarkerStyle(marker)
    series.SetLineStyle(line)
    series.SetColor(*color)
    return series


def show_results(
    scene,
    assessment: Assessment,
    reference_node,
    *,
    app_logic=None,
    colormap: str = COLORMAPS[0],
    opacity: float = DEFAULT_OPACITY,
    lower_threshold: float = DEFAULT_LOWER_THRESHOLD,
    name: str | None = None,
) -> ResultNodes:
    """Put an assessment of ``reference_node`` in the scene, replacing an earlier one.

    Adds a table (slice, score, flagged, threshold), a score-vs-slice plot series, a
    threshold line series, a chart, and a heatmap volume on the reference's exact grid,
    shown as the slice views' foreground; all under the reference in the subject hierarchy.
    The reference node is read, never modified.
    """
    if reference_node is None or reference_node.GetScene() is not scene:
        raise InputError("The reference volume is not in this scene.")
    heat = _heatmap_array(assessment, reference_node)
    remove_results(scene, reference_node)
    ref_id = reference_node.GetID()
    base = name or reference_node.GetName() or "volume"

    table_node = slicer.vtkMRMLTableNode()
    table_node.SetName(f"{base} MS-IQA scores")
    _tag(table_node, ref_id, "table")
    scene.AddNode(table_node)
    _fill_table(table_node, assessment)

    P = slicer.vtkMRMLPlotSeriesNode
    series = _add_series(scene, table_node, ref_id, "series", f"{base} quality", "score",
                         P.MarkerStyleCircle, P.LineStyleSolid, (0.16, 0.38, 0.71))
    series.SetMarkerSize(6)
    threshold_series = _add_series(scene, table_node, ref_id, "threshold", "threshold", "threshold",
                                   P.MarkerStyleNone, P.LineStyleDash, (0.85, 0.15, 0.15))

    chart = slicer.vtkMRMLPlotChartNode()
    chart.SetName(f"{base} MS-IQA chart")
    _tag(chart, ref_id, "chart")
    scene.AddNode(chart)
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.AddAndObservePlotSeriesNodeID(threshold_series.GetID())
    chart.SetTitle(f"Slice quality: {base}")
    chart.SetXAxisTitle("Slice k")
    chart.SetYAxisTitle("Quality score (0 unusable - 4 excellent)")
    chart.SetYAxisRangeAuto(False)
    chart.SetYAxisRange(-0.2, 4.2)
    chart.SetLegendVisibility(True)

    heatmap = slicer.vtkMRMLScalarVolumeNode()
    heatmap.SetName(f"{base} MS-IQA heatmap")
    _tag(heatmap, ref_id, "heatmap")
    scene.AddNode(heatmap)
    m = vtk.vtkMatrix4x4()
    reference_node.GetIJKToRASMatrix(m)  # the node's own grid; it follows the same transform
    heatmap.SetIJKToRASMatrix(m)
    if reference_node.GetTransformNodeID():
        heatmap.SetAndObserveTransformNodeID(reference_node.GetTransformNodeID())
    heatmap.SetAndObserveImageData(_image_data_from_array(heat, 1))
    display = slicer.vtkMRMLScalarVolumeDisplayNode()
    scene.AddNode(display)
    heatmap.SetAndObserveDisplayNodeID(display.GetID())
    display.SetAndObserveColorNodeID(colormap_node_id(scene, colormap))
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.AutoThresholdOff()
    display.SetLowerThreshold(float(lower_threshold))
    display.SetUpperThreshold(2.0)
    display.ApplyThresholdOn()
    display.SetInterpolate(True)

    nodes = [table_node, chart, series, threshold_series, heatmap]
    _place_in_hierarchy(scene, reference_node, nodes)
    set_overlay(scene, heatmap, visible=True, opacity=opacity, background_node=reference_node)
    show_chart(scene, chart.GetID())
    if app_logic is not None:
        selection = app_logic.GetSelectionNode()
        if selection is not None:
            selection.SetActiveTableID(table_node.GetID())
            selection.SetActivePlotChartID(chart.GetID())
    return ResultNodes(ref_id, table_node.GetID(), series.GetID(), chart.GetID(), heatmap.GetID(), threshold_series.GetID())


# ---------------------------------------------------------------------------------------
# Layout, chart and navigation
# ---------------------------------------------------------------------------------------


def select_layout(scene) -> bool:
    """Register the MS-IQA layout (slice views + plot) and switch to it; False without a layout node."""
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    if layout is None:
        return False
    if layout.IsLayoutDescription(LAYOUT_ID):
        layout.SetLayoutDescription(LAYOUT_ID, LAYOUT_XML)
    else:
        layout.AddLayoutDescription(LAYOUT_ID, LAYOUT_XML)
    layout.SetViewArrangement(LAYOUT_ID)
    return True


def show_chart(scene, chart_id: str) -> int:
    """Show the chart in every plot view of the scene, clicks selecting points (which the
    module maps to slices); returns how many plot views there are."""
    count = scene.GetNumberOfNodesByClass("vtkMRMLPlotViewNode")
    for index in range(count):
        view = scene.GetNthNodeByClass(index, "vtkMRMLPlotViewNode")
        view.SetPlotChartNodeID(chart_id)
        view.SetInteractionMode(slicer.vtkMRMLPlotViewNode.InteractionModeSelectPoints)
    return count


def slice_index_from_plot_point(series_or_table, point_index: int) -> int:
    """The slice k of a chart point (a row of the series' table)."""
    if series_or_table.IsA("vtkMRMLPlotSeriesNode"):
        table_node = series_or_table.GetTableNode()
        column = series_or_table.GetXColumnName() or "slice"
    else:
        table_node, column = series_or_table, "slice"
    if table_node is None:
        raise ValueError("The plot series has no table.")
    table = table_node.GetTable()
    values = table.GetColumnByName(column)
    if values is None:
        raise ValueError(f"The table has no column {column!r}.")
    if not 0 <= point_index < table.GetNumberOfRows():
        raise IndexError(f"Point {point_index} is outside the table's {table.GetNumberOfRows()} rows.")
    return int(round(float(values.GetValue(point_index))))


def slice_from_plot_selection(series_id: str, data_node_ids, selections, scene) -> int | None:
    """The slice k of the first point selected on series ``series_id``, from the plot view's
    ``dataSelected(vtkStringArray*, vtkCollection*)`` arguments (plot series IDs and, per
    series, a vtkIdTypeArray of selected point indices); None when none was."""
    for index in range(data_node_ids.GetNumberOfValues()):
        points = selections.GetItemAsObject(index)
        if data_node_ids.GetValue(index) == series_id and points is not None and points.GetNumberOfValues():
            return slice_index_from_plot_point(scene.GetNodeByID(series_id), int(points.GetValue(0)))
    return None


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


# ---------------------------------------------------------------------------------------
# Scene files
# ---------------------------------------------------------------------------------------


def _pick_reference(assessment: Assessment, names: list[str], images: list[sitk.Image]) -> int:
    size = tuple(assessment.geometry.size)
    for index, image in enumerate(images):
        if tuple(image.GetSize()) == size and np.allclose(image.GetOrigin(), assessment.geometry.origin, atol=1e-3):
            return index
    for index, image in enumerate(images):
        if tuple(image.GetSize()) == size:
            return index
    raise InputError(f"None of the inputs ({', '.join(names)}) has the assessed grid {size}.")


def _safe_file_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return keep or "node"


def write_mrb(
    path: str | os.PathLike,
    assessment: Assessment,
    inputs: Mapping[str, sitk.Image],
    name: str = "MS-IQA",
    *,
    colormap: str = COLORMAPS[0],
    opacity: float = DEFAULT_OPACITY,
) -> Path:
    """Write a Slicer scene bundle with the input volumes, the heatmap overlay, table and chart.

    ``inputs`` maps node names to images (e.g. {"CT": ct, "PET": pet}); the heatmap goes on
    the input whose grid was assessed. The file appears only once completely written.
    """
    if not assessment.complete:
        raise MSIQAError("The assessment was cut short; an incomplete result is not written as a scene.")
    if not inputs:
        raise InputError("write_mrb needs at least one input volume.")
    path = Path(path).resolve()  # VTK writes bundles only to absolute paths
    if path.suffix.lower() != ".mrb":
        raise ValueError(f"{path}: a scene bundle file name must end in .mrb.")
    path.parent.mkdir(parents=True, exist_ok=True)

    scene, app = create_scene()
    names, images = list(inputs), list(inputs.values())
    nodes = [volume_node_from_image(scene, image, node_name) for node_name, image in inputs.items()]
    reference = nodes[_pick_reference(assessment, names, images)]

    slice_logics = []
    for tag, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(scene)
        slice_node = logic.AddSliceNode(tag)
        slice_node.SetOrientation(orientation)
        slice_logics.append(logic)
    plot_view = slicer.vtkMRMLPlotViewNode()
    plot_view.SetSingletonTag(PLOT_VIEW_TAG)
    plot_view.SetLayoutName(PLOT_VIEW_TAG)
    scene.AddNode(plot_view)

    show_results(scene, assessment, reference, app_logic=app, colormap=colormap, opacity=opacity)
    for logic in slice_logics:
        logic.FitSliceToBackground()
    jump_to_slice(scene, reference, int(np.argmin(assessment.scores)))

    with tempfile.TemporaryDirectory(prefix="msiqa-mrb-") as work:
        scene.SetRootDirectory(work)
        scene.SetURL(str(Path(work) / f"{_safe_file_name(name)}.mrml"))
        collection = scene.GetNodes()
        for index in range(collection.GetNumberOfItems()):
            node = collection.GetItemAsObject(index)
            if (
                node is not None
                and node.IsA("vtkMRMLStorableNode")
                and node.GetSaveWithScene()
                and node.GetStorageNode() is None
                and not node.IsA("vtkMRMLSubjectHierarchyNode")
            ):
                node.AddDefaultStorageNode()
                storage = node.GetStorageNode()
                if storage is not None:
                    extension = storage.GetDefaultWriteFileExtension()
                    storage.SetFileName(str(Path(work) / f"{_safe_file_name(node.GetName())}.{extension}"))
        scene.SetVersion(SCENE_VERSION)
        # Written in a hidden folder beside the target, then renamed into place: a failed or
        # interrupted write never leaves a half-written .mrb under the final name.
        staging = Path(tempfile.mkdtemp(prefix=f".{path.stem}-partial-", dir=path.parent))
        try:
            partial = staging / f"{_safe_file_name(name)}.mrb"
            messages = slicer.vtkMRMLMessageCollection()
            if not scene.WriteToMRB(str(partial), None, messages) or not partial.is_file() or partial.stat().st_size == 0:
                raise MSIQAError(f"Writing {path} failed: {messages.GetAllMessagesAsString().strip()}")
            os.replace(partial, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    for logic in slice_logics:
        logic.SetMRMLScene(None)
    scene.Clear(True)
    app.SetMRMLScene(None)
    return path


def read_mrb(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None):
    """Read a scene bundle into a fresh scene (with colour logic and remote IO set up)."""
    scene, app = create_scene()
    own_cache = cache_dir is None
    cache = tempfile.mkdtemp(prefix="msiqa-cache-") if own_cache else str(cache_dir)
    rio = slicer.vtkMRMLRemoteIOLogic()
    rio.SetMRMLScene(scene)
    rio.GetCacheManager().SetRemoteCacheDirectory(cache)
    rio.AddDataIOToScene()
    try:
        messages = slicer.vtkMRMLMessageCollection()
        if not scene.ReadFromMRB(str(path), False, messages):
            raise MSIQAError(f"Reading {path} failed: {messages.GetAllMessagesAsString().strip()}")
    finally:
        if own_cache:
            shutil.rmtree(cache, ignore_errors=True)
    scene.msiqa_logics = (app, rio)  # keep the logics alive as long as the scene
    return scene


# ---------------------------------------------------------------------------------------
# Headless rendering
# ---------------------------------------------------------------------------------------


def render_overlay_png(
    scene,
    background_node,
    heatmap_node,
    k: int,
    path: str | os.PathLike,
    *,
    app_logic=None,
    width: int = 512,
    opacity: float = DEFAULT_OPACITY,
) -> Path:
    """Render slice k of ``background_node`` with the heatmap blended over it, as a PNG.

    Uses a temporary slice view ("MSIQARender") that is removed afterwards, so the scene's
    own views are left as they were.
    """
    existing = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    if app_logic is None:
        app_logic = slicer.vtkSlicerApplicationLogic()
        app_logic.SetMRMLScene(scene)
        app_logic.SetSliceLogics(vtk.vtkCollection())
        app_logic.SetViewLogics(vtk.vtkCollection())
    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLApplicationLogic(app_logic)
    logic.SetMRMLScene(scene)
    slice_node = logic.AddSliceNode("MSIQARender")
    composite = logic.GetSliceCompositeNode()
    try:
        composite.SetBackgroundVolumeID(background_node.GetID())
        composite.SetForegroundVolumeID(heatmap_node.GetID() if heatmap_node is not None else None)
        composite.SetForegroundOpacity(float(opacity))
        slice_node.SetOrientation("Axial")
        logic.RotateSliceToLowestVolumeAxes()
        bounds = [0.0] * 6
        background_node.GetRASBounds(bounds)
        extent_x, extent_y = abs(bounds[1] - bounds[0]), abs(bounds[3] - bounds[2])
        height = max(16, int(round(width * extent_y / max(extent_x, 1e-6))))
        slice_node.SetDimensions(width, height, 1)
        logic.FitSliceToBackground(width, height)
        slice_node.JumpSliceByOffsetting(*slice_center_ras(background_node, k))
        with _quiet_vtk():  # the empty label layer complains; the blend is still right
            producer = logic.GetImageDataConnection().GetProducer()
            producer.Update()
        rgb = vtk.vtkImageExtractComponents()  # the blend's alpha is the overlay's, not the picture's
        rgb.SetInputData(producer.GetOutputDataObject(0))
        rgb.SetComponents(0, 1, 2)
        rgb.Update()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = vtk.vtkPNGWriter()
        writer.SetFileName(str(path))
        writer.SetInputData(rgb.GetOutput())
        writer.Write()
    finally:
        logic.SetMRMLScene(None)
        # the view's slice, composite, model and transform nodes go again
        added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        for node in added:
            if node is not None and node.GetID() not in existing:
                scene.RemoveNode(node)
    return path
