"""msiqa.mrml on real MRML classes (slicer-core): volumes, result nodes, navigation, .mrb, PNG."""

from __future__ import annotations

import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

try:
    import msiqa  # noqa: F401
except ImportError:  # run without the pyproject's pythonpath
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MSIQA"))

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")
from vtk.util import numpy_support  # noqa: E402

from msiqa import mrml  # noqa: E402
from msiqa.errors import InputError, MSIQAError  # noqa: E402
from msiqa.results import Assessment, Geometry  # noqa: E402

SIZE = (48, 40, 12)  # I, J, K


def rotation(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    x, y, z = axis
    c, s = math.cos(angle), math.sin(angle)
    return np.array(
        [
            [c + x * x * (1 - c), x * y * (1 - c) - z * s, x * z * (1 - c) + y * s],
            [y * x * (1 - c) + z * s, c + y * y * (1 - c), y * z * (1 - c) - x * s],
            [z * x * (1 - c) - y * s, z * y * (1 - c) + x * s, c + z * z * (1 - c)],
        ]
    )


def make_ct(direction=None) -> sitk.Image:
    i, j, k = SIZE
    z, y, x = np.mgrid[0:k, 0:j, 0:i]
    body = (x - i / 2) ** 2 / (0.4 * i) ** 2 + (y - j / 2) ** 2 / (0.35 * j) ** 2 < 1
    array = np.where(body, 40 + 3 * z + (x % 7), -1000).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.9, 1.1, 2.5))
    image.SetOrigin((-21.5, 13.25, -40.0))
    d = rotation((0.2, -0.3, 1.0), 0.35) if direction is None else direction
    image.SetDirection(tuple(d.ravel()))
    return image


def make_assessment(image: sitk.Image, seed: int = 1, threshold: float = 2.0) -> Assessment:
    rng = np.random.default_rng(seed)
    k = image.GetSize()[2]
    scores = rng.uniform(0.3, 3.9, k).astype(np.float32)
    heat = rng.random((k, image.GetSize()[1], image.GetSize()[0])).astype(np.float32)
    return Assessment(scores=scores, heatmap=heat, geometry=Geometry.of(image), threshold=threshold)


@pytest.fixture()
def scene_app():
    scene, app = mrml.create_scene()
    logics = []
    for tag, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(scene)
        logic.AddSliceNode(tag).SetOrientation(orientation)
        logics.append(logic)
    yield scene, app
    for logic in logics:
        logic.SetMRMLScene(None)


def matrix(node) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def voxels(node) -> np.ndarray:
    return numpy_support.vtk_to_numpy(node.GetImageData().GetPointData().GetScalars()).copy()


def node_ids(scene) -> set[str]:
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def class_counts(scene) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in range(scene.GetNumberOfNodes()):
        name = scene.GetNthNode(i).GetClassName()
        counts[name] = counts.get(name, 0) + 1
    return counts


# ---------------------------------------------------------------------------- volumes


def test_round_trip_oblique_direction():
    scene, _app = mrml.create_scene()
    image = make_ct()
    node = mrml.volume_node_from_image(scene, image, "CT")
    assert node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLVectorVolumeNode")
    assert node.GetImageData().GetDimensions() == SIZE
    back = mrml.image_from_volume_node(node)
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    assert back.GetPixelID() == image.GetPixelID()
    assert np.allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-12)
    assert np.allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-12)
    assert np.allclose(back.GetDirection(), image.GetDirection(), atol=1e-12)
    # RAS = diag(-1, -1, 1) LPS, checked on one voxel by ITK's own index->point mapping
    ijk = (5, 7, 3)
    lps = np.array(image.TransformIndexToPhysicalPoint(ijk))
    ras = matrix(node) @ np.array([*ijk, 1.0])
    assert np.allclose(ras[:3], lps * [-1, -1, 1], atol=1e-9)


def test_geometry_agrees_with_slicers_own_nrrd_reader(tmp_path):
    """The node made from an image has the IJKToRAS Slicer's reader gives the same file."""
    scene, _app = mrml.create_scene()
    image = make_ct()
    path = tmp_path / "ct.nrrd"
    sitk.WriteImage(image, str(path))
    read = slicer.vtkMRMLScalarVolumeNode()
    scene.AddNode(read)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(read)
    mine = mrml.volume_node_from_image(scene, image, "CT")
    assert np.allclose(matrix(mine), matrix(read), atol=1e-6)
    assert np.array_equal(voxels(mine), voxels(read))
    back = mrml.image_from_volume_node(read)
    assert np.allclose(back.GetDirection(), image.GetDirection(), atol=1e-6)
    assert np.allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-5)


def test_rgb_volume_round_trip():
    scene, _app = mrml.create_scene()
    rng = np.random.default_rng(3)
    array = rng.integers(0, 256, (SIZE[2], SIZE[1], SIZE[0], 3), dtype=np.uint8)
    image = sitk.GetImageFromArray(array, isVector=True)
    image.SetSpacing((0.7, 0.7, 3.0))
    image.SetDirection(tuple(rotation((1, 1, 0), 0.2).ravel()))
    node = mrml.volume_node_from_image(scene, image, "Fused")
    assert node.IsA("vtkMRMLVectorVolumeNode")
    assert node.GetImageData().GetNumberOfScalarComponents() == 3
    back = mrml.image_from_volume_node(node)
    assert back.GetNumberOfComponentsPerPixel() == 3
    assert np.array_equal(sitk.GetArrayFromImage(back), array)
    assert np.allclose(back.GetDirection(), image.GetDirection(), atol=1e-12)
    assert mrml.node_modality(node) == "RGB"


def test_image_from_node_applies_linear_parent_transform():
    scene, _app = mrml.create_scene()
    image = make_ct(np.eye(3))
    node = mrml.volume_node_from_image(scene, image, "CT")
    transform = slicer.vtkMRMLLinearTransformNode()
    scene.AddNode(transform)
    shift = vtk.vtkMatrix4x4()
    shift.SetElement(0, 3, 10.0)  # 10 mm towards R = -10 in LPS x
    transform.SetMatrixTransformToParent(shift)
    node.SetAndObserveTransformNodeID(transform.GetID())
    back = mrml.image_from_volume_node(node)
    assert np.allclose(np.array(back.GetOrigin()) - image.GetOrigin(), (-10, 0, 0))


def test_image_from_node_copies_voxels():
    scene, _app = mrml.create_scene()
    node = mrml.volume_node_from_image(scene, make_ct(), "CT")
    before = voxels(node)
    image = mrml.image_from_volume_node(node)
    array = sitk.GetArrayViewFromImage(image)
    assert not np.shares_memory(array, numpy_support.vtk_to_numpy(node.GetImageData().GetPointData().GetScalars()))
    assert np.array_equal(voxels(node), before)


def test_empty_node_is_an_input_error():
    scene, _app = mrml.create_scene()
    node = slicer.vtkMRMLScalarVolumeNode()
    scene.AddNode(node)
    with pytest.raises(InputError):
        mrml.image_from_volume_node(node)


# ---------------------------------------------------------------------------- modality


def test_guess_modality():
    rng = np.random.default_rng(0)
    ct = np.full((6, 32, 32), -1000, np.int16)
    ct[:, 8:24, 8:24] = rng.normal(40, 30, (6, 16, 16)).astype(np.int16)
    assert mrml.guess_modality(ct) == "CT"
    raw_ct = (ct.astype(np.int32) + 1024).clip(0).astype(np.uint16)  # stored without rescale
    assert mrml.guess_modality(raw_ct) == "CT"
    pet = rng.exponential(0.8, (6, 32, 32)).astype(np.float32) * 5000  # Bq/ml
    assert mrml.guess_modality(pet) == "PET"
    suv = rng.gamma(1.5, 0.8, (6, 32, 32)).astype(np.float32)
    assert mrml.guess_modality(suv) == "PET"
    assert mrml.guess_modality(np.zeros((6, 32, 32, 3), np.uint8)) == "RGB"
    with pytest.raises(InputError):
        mrml.guess_modality(np.zeros((0,)))


def test_modality_from_dicom_attributes():
    scene, _app = mrml.create_scene()
    rng = np.random.default_rng(0)
    pet_like = sitk.GetImageFromArray(rng.gamma(1.5, 0.8, (4, 16, 16)).astype(np.float32))
    node = mrml.volume_node_from_image(scene, pet_like, "series")
    assert mrml.modality_of_node(node) is None and mrml.node_modality(node) == "PET"
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = sh.GetItemByDataNode(node) or sh.CreateItem(sh.GetSceneItemID(), node)
    sh.SetItemAttribute(item, "DICOM.Modality", "CT")
    assert mrml.modality_of_node(node) == "CT" and mrml.node_modality(node) == "CT"
    node.SetAttribute("DICOM.Modality", "PT")
    assert mrml.node_modality(node) == "PET"


def test_modality_is_looked_up_once_per_node():
    scene, _app = mrml.create_scene()
    rng = np.random.default_rng(0)
    node = mrml.volume_node_from_image(scene, sitk.GetImageFromArray(rng.gamma(1.5, 0.8, (4, 16, 16)).astype(np.float32)), "a")
    asked = []
    cache = mrml.ModalityCache(dicom_modality=lambda n: asked.append(n.GetID()))
    assert [cache(node) for _ in range(5)] == ["PET"] * 5
    assert cache.lookups == 1 and asked == [node.GetID()]  # one look at the voxels, one at the DICOM database
    node.SetAttribute("DICOM.Modality", "CT")
    assert cache(node) == "CT" and cache.lookups == 2
    hu = np.where(rng.random((4, 16, 16)) < 0.5, -1000, 40).astype(np.float32)
    node.SetAndObserveImageData(mrml.volume_node_from_image(scene, sitk.GetImageFromArray(hu), "b").GetImageData())
    node.RemoveAttribute("DICOM.Modality")
    assert cache(node) == "CT" and cache.lookups == 3  # new voxels: looked at again
    empty = slicer.vtkMRMLScalarVolumeNode()
    scene.AddNode(empty)
    assert cache(empty).startswith("unknown (")


def test_preselect_inputs_and_input_images():
    scene, _app = mrml.create_scene()
    rng = np.random.default_rng(2)
    assert mrml.preselect_inputs(scene) == {}
    pet_image = sitk.GetImageFromArray(rng.gamma(1.5, 0.8, (SIZE[2], 20, 24)).astype(np.float32))
    pet = mrml.volume_node_from_image(scene, pet_image, "PET")
    ct = mrml.volume_node_from_image(scene, make_ct(), "CT")
    label = slicer.vtkMRMLLabelMapVolumeNode()
    scene.AddNode(label)
    found = mrml.preselect_inputs(scene)
    assert found == {"ct": ct, "pet": pet}
    # a DICOM lookup wins over the intensities
    swapped = mrml.preselect_inputs(scene, lambda node: {"CT": "PT", "PET": "CT"}.get(node.GetName()))
    assert swapped == {"ct": pet, "pet": ct}
    # the heatmap of a result is never proposed as an input
    mrml.show_results(scene, make_assessment(make_ct()), ct)
    assert mrml.preselect_inputs(scene) == {"ct": ct, "pet": pet}

    images, reference = mrml.input_images(ct, pet)
    assert set(images) == {"ct", "pet"} and reference is ct
    assert np.array_equal(sitk.GetArrayFromImage(images["pet"]), sitk.GetArrayFromImage(pet_image))
    images, reference = mrml.input_images(pet=pet)
    assert set(images) == {"pet"} and reference is pet
    rgb = mrml.volume_node_from_image(scene, sitk.Image([8, 8, 2], sitk.sitkVectorUInt8, 3), "RGB")
    with pytest.raises(InputError):
        mrml.input_images(ct, None, rgb)
    with pytest.raises(InputError):
        mrml.input_images()


# ---------------------------------------------------------------------------- results


def test_show_results_nodes(scene_app):
    scene, app = scene_app
    image = make_ct()
    ct = mrml.volume_node_from_image(scene, image, "CT")
    assessment = make_assessment(image)
    res = mrml.show_results(scene, assessment, ct, app_logic=app, opacity=0.6)

    table = scene.GetNodeByID(res.table).GetTable()
    k = SIZE[2]
    assert table.GetNumberOfRows() == k
    slices = [table.GetColumnByName("slice").GetValue(r) for r in range(k)]
    scores = [table.GetColumnByName("score").GetValue(r) for r in range(k)]
    flagged = [table.GetColumnByName("flagged").GetValue(r) for r in range(k)]
    assert slices == list(range(k))
    assert np.allclose(scores, assessment.scores, atol=1e-6)
    assert flagged == assessment.flagged.astype(int).tolist()
    assert 0 < sum(flagged) < k

    series = scene.GetNodeByID(res.series)
    assert series.GetTableNodeID() == res.table
    assert (series.GetXColumnName(), series.GetYColumnName()) == ("slice", "score")
    assert series.GetPlotType() == slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter
    assert series.GetLineStyle() != slicer.vtkMRMLPlotSeriesNode.LineStyleNone
    chart = scene.GetNodeByID(res.chart)
    ids = [chart.GetNthPlotSeriesNodeID(i) for i in range(chart.GetNumberOfPlotSeriesNodes())]
    assert ids == [res.series, res.threshold_series]
    assert chart.GetXAxisTitle() and chart.GetYAxisTitle()
    assert scene.GetNodeByID(res.threshold_series).GetYColumnName() == "threshold"

    heat = scene.GetNodeByID(res.heatmap)
    assert np.array_equal(matrix(heat), matrix(ct))  # the reference's exact grid
    assert heat.GetImageData().GetDimensions() == SIZE
    values = voxels(heat)
    assert values.dtype == np.float32 and values.min() >= 0 and values.max() <= 1
    assert np.array_equal(values, assessment.heatmap.ravel())
    display = heat.GetDisplayNode()
    assert display.GetColorNodeID() == mrml.colormap_node_id(scene, "Inferno")
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx((0.0, 1.0))
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(mrml.DEFAULT_LOWER_THRESHOLD)

    composites = [scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode") for i in range(3)]
    assert all(c.GetForegroundVolumeID() == res.heatmap for c in composites)
    assert all(c.GetBackgroundVolumeID() == ct.GetID() for c in composites)
    assert all(c.GetForegroundOpacity() == pytest.approx(0.6) for c in composites)

    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    parent = sh.GetItemByDataNode(ct)
    for node_id in res.ids():
        item = sh.GetItemByDataNode(scene.GetNodeByID(node_id))
        assert item and sh.GetItemParent(item) == parent
        assert scene.GetNodeByID(node_id).GetAttribute(mrml.RESULT_FOR_ATTRIBUTE) == ct.GetID()
    assert mrml.result_nodes_of(scene, ct) == res


def test_rerun_replaces_and_input_untouched(scene_app):
    scene, app = scene_app
    image = make_ct()
    ct = mrml.volume_node_from_image(scene, image, "CT")
    pet = mrml.volume_node_from_image(scene, make_ct(), "other")
    before_voxels, before_matrix, before_mtime = voxels(ct), matrix(ct), ct.GetMTime()
    before_attrs = {n: ct.GetAttribute(n) for n in ct.GetAttributeNames()}

    first = mrml.show_results(scene, make_assessment(image, 1), ct, app_logic=app)
    other = mrml.show_results(scene, make_assessment(image, 5), pet, app_logic=app)
    counts, ids = class_counts(scene), node_ids(scene)
    second = mrml.show_results(scene, make_assessment(image, 2), ct, app_logic=app)
    assert class_counts(scene) == counts
    assert not set(first.ids()) & node_ids(scene)
    assert set(second.ids()) <= node_ids(scene) and len(node_ids(scene)) == len(ids)
    assert set(other.ids()) <= node_ids(scene)  # results of another input stay
    assert len(mrml.find_results(scene, ct)) == 5 and len(mrml.find_results(scene, pet)) == 5
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert sh.GetNumberOfItemChildren(sh.GetItemByDataNode(ct)) == 5

    assert np.array_equal(voxels(ct), before_voxels)
    assert np.array_equal(matrix(ct), before_matrix)
    assert ct.GetMTime() == before_mtime
    assert {n: ct.GetAttribute(n) for n in ct.GetAttributeNames()} == before_attrs

    assert mrml.remove_results(scene, ct) == 5
    assert not mrml.find_results(scene, ct)


def test_heatmap_of_another_grid_is_refused(scene_app):
    scene, _app = scene_app
    ct = mrml.volume_node_from_image(scene, make_ct(), "CT")
    small = sitk.Image(10, 10, 3, sitk.sitkInt16)
    with pytest.raises(InputError):
        mrml.show_results(scene, make_assessment(small), ct)
    assert not mrml.find_results(scene, ct)


def test_threshold_update(scene_app):
    scene, _app = scene_app
    image = make_ct()
    ct = mrml.volume_node_from_image(scene, image, "CT")
    assessment = make_assessment(image, threshold=2.0)
    res = mrml.show_results(scene, assessment, ct)
    stricter = assessment.with_threshold(3.0)
    mrml.update_threshold(scene, res, stricter)
    table = scene.GetNodeByID(res.table).GetTable()
    flagged = [table.GetColumnByName("flagged").GetValue(r) for r in range(table.GetNumberOfRows())]
    assert flagged == stricter.flagged.astype(int).tolist()
    assert table.GetColumnByName("threshold").GetValue(0) == pytest.approx(3.0)


def test_colormaps_and_overlay_controls(scene_app):
    scene, _app = scene_app
    image = make_ct()
    ct = mrml.volume_node_from_image(scene, image, "CT")
    res = mrml.show_results(scene, make_assessment(image), ct)
    heat = scene.GetNodeByID(res.heatmap)
    for name in mrml.COLORMAPS:
        color_id = mrml.set_colormap(scene, heat, name)
        assert heat.GetDisplayNode().GetColorNodeID() == color_id
        assert scene.GetNodeByID(color_id) is not None
    assert scene.GetNodeByID(mrml.colormap_node_id(scene, "PET-Heat")).GetName() == "PET-Heat"
    n_colors = scene.GetNumberOfNodesByClass("vtkMRMLColorNode")
    mrml.colormap_node_id(scene, "Inferno")
    assert scene.GetNumberOfNodesByClass("vtkMRMLColorNode") == n_colors  # built once, reused
    lut = mrml.inferno_lut(256)
    assert lut.shape == (256, 3) and np.all(np.diff(lut.sum(axis=1)) > -1e-9)  # brightness rises
    with pytest.raises(ValueError):
        mrml.colormap_node_id(scene, "NoSuchMap")

    assert mrml.set_overlay(scene, heat, visible=False) == 3
    assert all(not scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode").GetForegroundVolumeID() for i in range(3))
    mrml.set_overlay(scene, heat, visible=True, opacity=0.25)
    composite = scene.GetNthNodeByClass(0, "vtkMRMLSliceCompositeNode")
    assert composite.GetForegroundVolumeID() == res.heatmap and composite.GetForegroundOpacity() == pytest.approx(0.25)


# ---------------------------------------------------------------------------- layout and navigation


def test_layout_and_plot_view(scene_app):
    scene, _app = scene_app
    assert mrml.select_layout(scene) is False  # no layout node outside Slicer
    root = ET.fromstring(mrml.LAYOUT_XML)
    classes = [v.get("class") for v in root.iter("view")]
    assert classes.count("vtkMRMLSliceNode") == 3 and "vtkMRMLPlotViewNode" in classes

    layout = slicer.vtkMRMLLayoutNode()
    scene.AddNode(layout)
    plot_view = slicer.vtkMRMLPlotViewNode()
    plot_view.SetSingletonTag(mrml.PLOT_VIEW_TAG)
    scene.AddNode(plot_view)
    assert mrml.select_layout(scene) and mrml.select_layout(scene)  # idempotent
    assert layout.IsLayoutDescription(mrml.LAYOUT_ID)
    assert layout.GetViewArrangement() == mrml.LAYOUT_ID

    ct = mrml.volume_node_from_image(scene, make_ct(), "CT")
    res = mrml.show_results(scene, make_assessment(make_ct()), ct)
    assert plot_view.GetPlotChartNodeID() == res.chart
    assert plot_view.GetInteractionMode() == slicer.vtkMRMLPlotViewNode.InteractionModeSelectPoints


def test_chart_point_jumps_slice_views(scene_app):
    scene, _app = scene_app
    image = make_ct()
    ct = mrml.volume_node_from_image(scene, image, "CT")
    res = mrml.show_results(scene, make_assessment(image), ct)
    series = scene.GetNodeByID(res.series)
    table = scene.GetNodeByID(res.table)
    assert mrml.slice_index_from_plot_point(series, 7) == 7
    assert mrml.slice_index_from_plot_point(table, 3) == 3
    with pytest.raises(IndexError):
        mrml.slice_index_from_plot_point(series, SIZE[2])

    # what the plot view's dataSelected(vtkStringArray*, vtkCollection*) hands over
    ids, selections = vtk.vtkStringArray(), vtk.vtkCollection()
    for series_id, points in ((res.threshold_series, [2]), (res.series, [7, 8])):
        ids.InsertNextValue(series_id)
        array = vtk.vtkIdTypeArray()
        for point in points:
            array.InsertNextValue(point)
        selections.AddItem(array)
    k = mrml.slice_from_plot_selection(res.series, ids, selections, scene)
    assert k == 7
    assert mrml.slice_from_plot_selection("vtkMRMLPlotSeriesNode999", ids, selections, scene) is None
    ras = np.array(mrml.jump_to_slice(scene, ct, k))
    centre_ijk = np.array([(SIZE[0] - 1) / 2, (SIZE[1] - 1) / 2, k])
    expected_lps = np.array(image.TransformContinuousIndexToPhysicalPoint(centre_ijk.tolist()))
    assert np.allclose(ras, expected_lps * [-1, -1, 1], atol=1e-9)
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSliceNode")
        m = node.GetSliceToRAS()
        normal = np.array([m.GetElement(r, 2) for r in range(3)])
        origin = np.array([m.GetElement(r, 3) for r in range(3)])
        assert abs(normal @ (ras - origin)) < 1e-6, node.GetName()  # the plane holds the point
    red = scene.GetSingletonNode("Red", "vtkMRMLSliceNode")
    assert red.GetSliceToRAS().GetElement(2, 3) == pytest.approx(ras[2])
    with pytest.raises(IndexError):
        mrml.jump_to_slice(scene, ct, SIZE[2])


# ---------------------------------------------------------------------------- files


def test_mrb_written_and_read_back(tmp_path):
    ct_image = make_ct()
    pet_image = sitk.Cast(sitk.Abs(ct_image), sitk.sitkFloat32)
    assessment = make_assessment(ct_image)
    path = mrml.write_mrb(tmp_path / "study.mrb", assessment, {"CT": ct_image, "PET": pet_image}, name="study")
    assert path.is_file() and path.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.mrb"]  # no leftovers

    scene = mrml.read_mrb(path)
    assert scene.GetLastLoadedVersion().startswith("Slicer 5")
    roles = {}
    for i in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(i)
        if node.GetAttribute(mrml.ROLE_ATTRIBUTE):
            roles[node.GetAttribute(mrml.ROLE_ATTRIBUTE)] = node
    assert set(roles) == {"table", "series", "threshold", "chart", "heatmap"}
    ct = scene.GetFirstNodeByName("CT")
    assert ct is not None and scene.GetFirstNodeByName("PET") is not None
    assert roles["heatmap"].GetAttribute(mrml.RESULT_FOR_ATTRIBUTE) == ct.GetID()
    assert np.allclose(matrix(roles["heatmap"]), matrix(ct), atol=1e-6)
    # stored at the colour table's 256 steps: the same colours, and gzip packs it tighter
    heat = voxels(roles["heatmap"])
    assert np.abs(heat - assessment.heatmap.ravel()).max() <= 0.5 / 256 + 1e-7
    assert np.array_equal(heat * 256, np.round(heat * 256)) and np.unique(heat).size <= 257
    assert np.array_equal(voxels(ct), sitk.GetArrayFromImage(ct_image).ravel())
    back = mrml.image_from_volume_node(ct)
    assert np.allclose(back.GetDirection(), ct_image.GetDirection(), atol=1e-6)
    table = roles["table"].GetTable()
    assert table.GetNumberOfRows() == SIZE[2]
    assert np.allclose([table.GetValueByName(r, "score").ToDouble() for r in range(SIZE[2])], assessment.scores, atol=1e-5)
    display = roles["heatmap"].GetDisplayNode()
    assert display is not None and display.GetColorNode() is not None
    assert display.GetApplyThreshold()
    assert roles["series"].GetTableNodeID() == roles["table"].GetID()
    composite = scene.GetSingletonNode("Red", "vtkMRMLSliceCompositeNode") or scene.GetNthNodeByClass(0, "vtkMRMLSliceCompositeNode")
    assert composite.GetForegroundVolumeID() == roles["heatmap"].GetID()
    assert composite.GetBackgroundVolumeID() == ct.GetID()
    plot_view = scene.GetFirstNodeByClass("vtkMRMLPlotViewNode")
    assert plot_view.GetPlotChartNodeID() == roles["chart"].GetID()


def test_mrb_volumes_are_gzip_nrrd(tmp_path):
    import zipfile

    ct_image = make_ct()
    path = mrml.write_mrb(tmp_path / "study.mrb", make_assessment(ct_image), {"CT": ct_image}, name="study")
    with zipfile.ZipFile(path) as bundle:
        volumes = [n for n in bundle.namelist() if n.endswith(".nrrd")]
        headers = [bundle.read(n)[:1000].split(b"\n\n")[0] for n in volumes]
    assert len(volumes) == 2  # CT and heatmap
    assert all(b"encoding: gzip" in h for h in headers), headers


def test_mrb_refuses_incomplete_or_foreign_results(tmp_path):
    ct_image = make_ct()
    partial = make_assessment(ct_image)
    partial.complete = False
    with pytest.raises(MSIQAError):
        mrml.write_mrb(tmp_path / "a.mrb", partial, {"CT": ct_image})
    with pytest.raises(InputError):
        mrml.write_mrb(tmp_path / "b.mrb", make_assessment(ct_image), {"CT": sitk.Image(8, 8, 2, sitk.sitkInt16)})
    with pytest.raises(ValueError):
        mrml.write_mrb(tmp_path / "c.zip", make_assessment(ct_image), {"CT": ct_image})
    assert list(tmp_path.iterdir()) == []


def test_render_overlay_png(tmp_path, scene_app):
    scene, app = scene_app
    image = make_ct(np.eye(3))
    ct = mrml.volume_node_from_image(scene, image, "CT")
    res = mrml.show_results(scene, make_assessment(image), ct)
    before = node_ids(scene)
    plain = mrml.render_overlay_png(scene, ct, None, 6, tmp_path / "plain.png", app_logic=app, width=96)
    overlay = mrml.render_overlay_png(scene, ct, scene.GetNodeByID(res.heatmap), 6, tmp_path / "overlay.png", width=96)
    assert node_ids(scene) == before  # the temporary view is gone again
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(plain)))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(overlay)))
    assert a.shape[-1] == 3 and a.shape[1] == 96 and a.shape == b.shape
    assert a.max() > 100  # the body is visible
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5  # and the heatmap changes it
    assert np.ptp(b[..., 0].astype(int) - b[..., 2].astype(int)) > 20  # colour, not grey


# ---------------------------------------------------------------------------- end to end


def test_assess_then_show_results(scene_app):
    from msiqa import assess
    scene, app = scene_app
    z, y, x = np.mgrid[0:3, 0:64, 0:80]
    body = (x - 40) ** 2 / 900 + (y - 32) ** 2 / 500 < 1
    image = sitk.GetImageFromArray(np.where(body, 40, -1000).astype(np.int16))
    image.SetSpacing((2.0, 2.0, 3.0))
    image.SetOrigin((-80.0, -64.0, 10.0))
    ct = mrml.volume_node_from_image(scene, image, "CT")
    before = voxels(ct), matrix(ct)
    result = assess.assess(ct=mrml.image_from_volume_node(ct), device="cpu", batch_size=2)
    assert result.scores.shape == (3,)
    res = mrml.show_results(scene, result, ct, app_logic=app)
    heat = voxels(scene.GetNodeByID(res.heatmap))
    assert heat.min() >= 0 and heat.max() <= 1
    assert np.array_equal(matrix(scene.GetNodeByID(res.heatmap)), matrix(ct))
    assert scene.GetNodeByID(res.table).GetTable().GetNumberOfRows() == 3
    assert np.array_equal(voxels(ct), before[0]) and np.array_equal(matrix(ct), before[1])
