"""How result nodes are marked: which input they belong to and what part of the result they are."""

from __future__ import annotations

RESULT_FOR_ATTRIBUTE = "MSIQA.ResultFor"  # the ID of the input node the result was computed for
ROLE_ATTRIBUTE = "MSIQA.Role"  # "table", "series", "threshold", "chart" or "heatmap"


def tag(node, reference_id: str, role: str) -> None:
    node.SetAttribute(RESULT_FOR_ATTRIBUTE, reference_id)
    node.SetAttribute(ROLE_ATTRIBUTE, role)


def find_results(scene, reference_node) -> list:
    """All result nodes (tables, plots, heatmaps) made for ``reference_node`` (a node or its ID)."""
    ref_id = reference_node.GetID() if not isinstance(reference_node, str) else reference_node
    found = []
    collection = scene.GetNodes()
    for index in range(collection.GetNumberOfItems()):
        node = collection.GetItemAsObject(index)
        if node is not None and node.GetAttribute(RESULT_FOR_ATTRIBUTE) == ref_id:
            found.append(node)
    return found
