"""Slicer scene bundles (.mrb): inputs, heatmap overlay, table and chart in one file."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Mapping

import numpy as np
import SimpleITK as sitk
import slicer

from ..colormap import display_steps
from ..errors import InputError, MSIQAError
from ..results import Assessment
from .chart import PLOT_VIEW_TAG
from .colors import COLORMAPS
from .navigation import jump_to_slice
from .result_nodes import DEFAULT_OPACITY, show_results
from .scene import create_scene
from .volumes import volume_node_from_image

# A scene header Slicer 5 reads as current (the slicer-core default "slicer-core 4.0.0 0"
# is taken for a legacy scene).
SCENE_VERSION = "Slicer 5.8.1 33241"


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
    Every volume is stored as gzip NRRD; the heatmap is first rounded to the colour table's
    steps (:func:`~msiqa.colormap.display_steps`), which gzip packs about 5x tighter than
    full float noise and which shows exactly the same colours.
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

    assessment = replace(assessment, heatmap=display_steps(assessment.heatmap))
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
