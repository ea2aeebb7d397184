"""Volumes -> pictures: windowing, colour map, fusion, resampling and display orientation."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from msiqa.render import RenderSettings, SliceRenderer, fuse, hot, window_ct
from msiqa.volumes import DOSE_KEY, WEIGHT_KEY

K, J, I = 6, 64, 64
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
FLIP_XY = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def image(a, spacing=(2.0, 2.0, 3.0), origin=(0.0, 0.0, 0.0), direction=IDENTITY, vector=False):
    im = sitk.GetImageFromArray(a, isVector=vector)
    im.SetSpacing(spacing)
    im.SetOrigin(origin)
    im.SetDirection(direction)
    return im


def with_suv(pet: sitk.Image, weight_kg=70.0, dose_bq=7.0e7) -> sitk.Image:
    """SUV factor weight*1000/dose: 70 kg, 70 MBq -> 1e-3, so 1000 Bq/ml reads SUV 1."""
    pet.SetMetaData(WEIGHT_KEY, str(weight_kg))
    pet.SetMetaData(DOSE_KEY, str(dose_bq))
    return pet


def flipped_copy(im: sitk.Image) -> sitk.Image:
    """The same voxels in space, stored with i and j reversed (direction diag(-1, -1, 1))."""
    a = sitk.GetArrayFromImage(im)[:, ::-1, ::-1]
    size = im.GetSize()
    origin = im.TransformIndexToPhysicalPoint((size[0] - 1, size[1] - 1, 0))
    d = np.array(im.GetDirection()).reshape(3, 3) @ np.diag([-1.0, -1.0, 1.0])
    return image(np.ascontiguousarray(a), im.GetSpacing(), origin, tuple(d.ravel()),
                 vector=im.GetNumberOfComponentsPerPixel() > 1)


def transposed_copy(im: sitk.Image) -> sitk.Image:
    """The same voxels in space, stored with i running along y and j along x."""
    a = sitk.GetArrayFromImage(im).transpose(0, 2, 1)
    d = np.array(im.GetDirection()).reshape(3, 3)[:, [1, 0, 2]]
    sp = im.GetSpacing()
    return image(np.ascontiguousarray(a), (sp[1], sp[0], sp[2]), im.GetOrigin(), tuple(d.ravel()))


def body_ct(marker=False) -> np.ndarray:
    _, y, x = np.mgrid[0:K, 0:J, 0:I]
    body = ((x - 32) / 28.0) ** 2 + ((y - 32) / 24.0) ** 2 < 1
    hu = np.where(body, 40, -1000).astype(np.int16)
    if marker:
        hu[:, 8:13, 50:55] = 1000  # large i = patient left (+x), small j = anterior (-y)
    return hu


# --- building blocks --------------------------------------------------------------------


def test_ct_window():
    s = RenderSettings(window=400, level=40)
    hu = np.array([-1000, -160, -60, 40, 140, 240, 3000])
    assert np.allclose(window_ct(hu, s), [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0])
    lung = RenderSettings(window=1500, level=-600)
    assert np.allclose(window_ct(np.array([-1350, -600, 150]), lung), [0.0, 0.5, 1.0])


def test_hot_colour_map_endpoints():
    assert np.allclose(hot(np.array(0.0)), [0, 0, 0])
    assert np.allclose(hot(np.array(1.0)), [1, 1, 1])
    assert np.allclose(hot(np.array(0.365)), [1, 0, 0])
    assert np.allclose(hot(np.array(0.746)), [1, 1, 0])
    assert np.allclose(hot(np.array([-3.0, 7.0])), [[0, 0, 0], [1, 1, 1]])  # clipped
    ramp = hot(np.linspace(0, 1, 101))
    assert (np.diff(ramp, axis=0) >= -1e-12).all()  # each channel rises monotonically


def test_fuse_known_values():
    ct = np.array([[0.5, 1.0, 0.0]])
    pet = np.array([[0.0, 1.0, 0.5]])
    rgb = fuse(ct, pet, 0.4)
    expected = (0.6 * ct[..., None] + 0.4 * hot(pet)) * 255
    assert rgb.dtype == np.uint8
    assert np.abs(rgb.astype(float) - expected).max() <= 0.5 + 1e-9
    assert rgb[0, 1].tolist() == [255, 255, 255]


# --- rendering volumes ------------------------------------------------------------------


def test_fusion_of_a_known_ct_pet_pair():
    hu = body_ct()  # soft tissue 40 HU -> grey 0.5
    bq = np.where(hu > -500, 3000.0, 0.0).astype(np.float32)  # SUV 3 = half of SUV max 6
    ct, pet = image(hu), with_suv(image(bq))
    r = SliceRenderer(ct=ct, pet=pet)
    assert r.description["inputs"] == "PET over CT" and "metadata" in r.description["pet_scaling"]
    pic = r.render(2, 3)[0]
    tissue = 0.6 * 0.5 + 0.4 * hot(np.array(0.5))
    assert np.abs(pic[32, 32].astype(float) - tissue * 255).max() <= 1
    assert pic[0, 0].tolist() == [0, 0, 0]  # air, no activity


def test_pet_is_resampled_onto_the_ct_grid():
    ct = image(body_ct(), spacing=(2.0, 2.0, 2.0))
    # Coarser, differently oriented PET; one hot voxel at a known physical point.
    bq = np.full((3, 32, 32), 1000.0, np.float32)
    bq[1, 10, 7] = 5000.0  # SUV 5: below the top of the map, so the peak is unique
    pet = with_suv(image(bq, spacing=(4.0, 4.0, 4.0), origin=(126.0, 2.0, 0.0), direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1)))
    point = pet.TransformIndexToPhysicalPoint((7, 10, 1))
    i, j, k = ct.TransformPhysicalPointToIndex(point)
    assert np.allclose(ct.TransformIndexToPhysicalPoint((i, j, k)), point)  # lands on a CT voxel centre
    r = SliceRenderer(ct=ct, pet=pet)
    reference = SliceRenderer(ct=ct).render(k, k + 1)[0].astype(int)
    extra = r.render(k, k + 1)[0].astype(int).sum(-1) - reference.sum(-1)
    assert np.unravel_index(np.argmax(extra), extra.shape) == (j, i)  # identity CT: row j, column i
    assert r.render(k - 1, k)[0].astype(int).sum(-1).max() < r.render(k, k + 1)[0].astype(int).sum(-1).max()


@pytest.mark.parametrize("copy", [None, flipped_copy, transposed_copy])
def test_display_orientation(copy):
    ct = image(body_ct(marker=True))
    base = SliceRenderer(ct=ct).render(0, K)
    pic = base[3, ..., 0].astype(int)
    rows, cols = np.nonzero(pic == 255)  # the marker (1000 HU) is the only white
    assert rows.max() < J // 2 and cols.min() > I // 2  # anterior up, patient left on screen right
    if copy is not None:
        other = copy(ct)
        assert other.GetDirection() != ct.GetDirection()
        assert np.array_equal(SliceRenderer(ct=other).render(0, K), base)


def test_to_display_inverts_to_reference():
    ct = flipped_copy(image(body_ct(marker=True)))
    r = SliceRenderer(ct=ct)
    maps = np.random.default_rng(0).random((2, J, I)).astype(np.float32)
    assert np.array_equal(r.to_display(r.to_reference(maps)), maps)
    t = SliceRenderer(ct=transposed_copy(image(body_ct())))
    assert np.array_equal(t.to_reference(t.to_display(maps)), maps)


def test_rgb_passthrough():
    rgb = np.random.default_rng(1).integers(0, 256, (K, J, I, 3), dtype=np.uint8)
    r = SliceRenderer(rgb=image(rgb, vector=True))
    assert r.description["inputs"].startswith("RGB")
    assert np.array_equal(r.render(0, K), rgb)
    flipped = SliceRenderer(rgb=flipped_copy(image(rgb, vector=True)))
    assert np.array_equal(flipped.render(0, K), rgb)


def test_lone_ct_is_grey():
    hu = body_ct()
    pic = SliceRenderer(ct=image(hu)).render(0, K)
    assert (pic[..., 0] == pic[..., 1]).all() and (pic[..., 1] == pic[..., 2]).all()
    assert np.array_equal(pic[..., 0], np.round(window_ct(hu, RenderSettings()) * 255).astype(np.uint8))


def test_lone_pet_uses_the_hot_map():
    bq = np.where(body_ct() > -500, 1500.0, 0.0).astype(np.float32)
    bq[:, 30:34, 30:34] = 6000.0  # SUV 6: the top of the map, white
    r = SliceRenderer(pet=with_suv(image(bq)))
    assert r.description["inputs"] == "PET alone"
    pic = r.render(0, K)
    assert pic[1, 32, 32].tolist() == [255, 255, 255]
    assert pic[1, 0, 0].tolist() == [0, 0, 0]
    assert np.abs(pic[1, 20, 32].astype(float) - hot(np.array(0.25)) * 255).max() <= 0.5 + 1e-9


def test_pet_without_suv_tags_is_normalised():
    bq = np.where(body_ct() > -500, 2500.0, 0.0).astype(np.float32)
    r = SliceRenderer(pet=image(bq))
    assert r.pet_factor == pytest.approx(1 / 2500.0)
    assert "median body voxel" in r.description["pet_scaling"]
