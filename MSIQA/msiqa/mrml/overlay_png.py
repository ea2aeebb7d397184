"""Headless rendering of one slice with the heatmap blended over it, as Slicer's slice view draws it."""

from __future__ import annotations

import os
from pathlib import Path

import slicer
import vtk

from .navigation import slice_center_ras
from .result_nodes import DEFAULT_OPACITY
from .scene import quiet_vtk

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
        with quiet_vtk():  # the empty label layer complains; the blend is still right
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
