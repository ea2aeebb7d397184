"""Colour maps for the heatmap overlay: Slicer's own table when the scene has it, else a built one."""

from __future__ import annotations

import slicer

from ..colormap import inferno_lut

COLORMAP_ATTRIBUTE = "MSIQA.Colormap"


# Colour maps offered for the heatmap, first = default. "Inferno" is Slicer's file-based
# table when present; otherwise an equivalent table is built (slicer-core has no colour files).
COLORMAPS = ("Inferno", "PET-Heat", "Iron")
OWN_INFERNO_NAME = "MSIQA Inferno"


def _find_by_name(scene, name: str, class_name: str = "vtkMRMLColorNode"):
    for index in range(scene.GetNumberOfNodesByClass(class_name)):
        node = scene.GetNthNodeByClass(index, class_name)
        if node.GetName() == name:
            return node
    return None


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
