"""The nodes one assessment puts in the scene: table, chart, heatmap overlay; a re-run replaces them.

Nothing here modifies an input node: results go to new nodes that carry the attribute
``MSIQA.ResultFor`` = the input node's ID, so a second run for the same input replaces the
first run's nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import slicer
import vtk

from ..errors import InputError
from ..results import Assessment
from .chart import add_chart, show_chart
from .colors import COLORMAPS, colormap_node_id
from .table import fill_table, refresh_table
from .tags import ROLE_ATTRIBUTE, find_results, tag
from .volumes import image_data_from_array

DEFAULT_OPACITY = 0.5
DEFAULT_LOWER_THRESHOLD = 0.15  # heatmap values below this are transparent in slice views


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


def update_threshold(scene, results: ResultNodes, assessment: Assessment) -> None:
    """Re-flag the table (and so the chart's threshold line) after ``Assessment.with_threshold``."""
    refresh_table(scene.GetNodeByID(results.table), assessment)


def _heatmap_array(assessment: Assessment, reference_node) -> np.ndarray:
    dims = reference_node.GetImageData().GetDimensions()
    heat = np.asarray(assessment.heatmap, dtype=np.float32)
    if heat.shape != (dims[2], dims[1], dims[0]):
        raise InputError(
            f"The heatmap has shape {heat.shape} (K, J, I) but {reference_node.GetName()} has "
            f"{(dims[2], dims[1], dims[0])}: the assessment is not of this volume."
        )
    heat = np.clip(heat, 0.0, 1.0)  # a copy; NaN stays NaN (nan_to_num's inf masks cost seconds at 512x512x300)
    heat[np.isnan(heat)] = 0.0
    return heat


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
    tag(table_node, ref_id, "table")
    scene.AddNode(table_node)
    fill_table(table_node, assessment)
    series, threshold_series, chart = add_chart(scene, table_node, ref_id, base)

    heatmap = slicer.vtkMRMLScalarVolumeNode()
    heatmap.SetName(f"{base} MS-IQA heatmap")
    tag(heatmap, ref_id, "heatmap")
    scene.AddNode(heatmap)
    m = vtk.vtkMatrix4x4()
    reference_node.GetIJKToRASMatrix(m)  # the node's own grid; it follows the same transform
    heatmap.SetIJKToRASMatrix(m)
    if reference_node.GetTransformNodeID():
        heatmap.SetAndObserveTransformNodeID(reference_node.GetTransformNodeID())
    heatmap.SetAndObserveImageData(image_data_from_array(heat, 1))
    display = slicer.vtkMRMLScalarVolumeDisplayNode()
    # set up before it is attached: attached with automatic window/level, it would first scan
    # the whole heatmap for a window it is then told to drop
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.AutoThresholdOff()
    display.SetLowerThreshold(float(lower_threshold))
    display.SetUpperThreshold(2.0)
    display.ApplyThresholdOn()
    display.SetInterpolate(True)
    scene.AddNode(display)
    display.SetAndObserveColorNodeID(colormap_node_id(scene, colormap))
    heatmap.SetAndObserveDisplayNodeID(display.GetID())

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
