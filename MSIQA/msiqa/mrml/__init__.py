"""MRML side of MS-IQA: volumes in and out of MRML nodes, result nodes, chart, navigation, .mrb.

Shared by the Slicer module (MSIQA.py) and the command line (``msiqa assess ... --mrb``). It
imports ``slicer`` and ``vtk`` only, never qt, ctk or ``slicer.app``: it runs inside Slicer
and on the ``slicer-core`` wheel alike.

    volumes       SimpleITK image <-> volume node (exact geometry, copies both ways)
    modality      CT / PET / RGB of a node, preselection of the inputs
    result_nodes  table, chart, heatmap overlay of one run; re-runs replace them
    table         the results table's columns (one list)
    chart         the score chart, its layout, chart points -> slices
    navigation    slice views to a slice
    colors        heatmap colour maps
    bundle        .mrb scene bundles
    overlay_png   one slice with the overlay, rendered headless
    scene         scenes without the Slicer application
"""

from .bundle import SCENE_VERSION, read_mrb, write_mrb
from .chart import LAYOUT_ID, LAYOUT_XML, PLOT_VIEW_TAG, select_layout, show_chart, slice_from_plot_selection, \
    slice_index_from_plot_point
from .colors import COLORMAP_ATTRIBUTE, COLORMAPS, OWN_INFERNO_NAME, colormap_node_id, set_colormap
from .modality import MODALITY_ATTRIBUTE, ModalityCache, guess_modality, modality_of_node, node_modality, \
    preselect_inputs
from .navigation import jump_to_slice, slice_center_ras
from .overlay_png import render_overlay_png
from .result_nodes import DEFAULT_LOWER_THRESHOLD, DEFAULT_OPACITY, ResultNodes, remove_results, result_nodes_of, \
    set_overlay, show_results, update_threshold
from .scene import create_scene
from .table import COLUMNS
from .tags import RESULT_FOR_ATTRIBUTE, ROLE_ATTRIBUTE, find_results
from .volumes import ijk_to_ras, ijk_to_ras_of_image, image_from_volume_node, input_images, volume_node_from_image
from ..colormap import inferno_lut

__all__ = [
    "SCENE_VERSION", "read_mrb", "write_mrb", "LAYOUT_ID", "LAYOUT_XML", "PLOT_VIEW_TAG", "select_layout",
    "show_chart", "slice_from_plot_selection", "slice_index_from_plot_point", "COLORMAP_ATTRIBUTE",
    "COLORMAPS", "OWN_INFERNO_NAME", "colormap_node_id", "set_colormap", "MODALITY_ATTRIBUTE", "ModalityCache",
    "guess_modality", "modality_of_node", "node_modality", "preselect_inputs", "jump_to_slice",
    "slice_center_ras", "render_overlay_png", "DEFAULT_LOWER_THRESHOLD", "DEFAULT_OPACITY", "ResultNodes",
    "remove_results", "result_nodes_of", "set_overlay", "show_results", "update_threshold", "create_scene",
    "COLUMNS", "RESULT_FOR_ATTRIBUTE", "ROLE_ATTRIBUTE", "find_results", "ijk_to_ras", "ijk_to_ras_of_image",
    "image_from_volume_node", "input_images", "volume_node_from_image", "inferno_lut",
]
