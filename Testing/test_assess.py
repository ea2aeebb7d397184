"""assess(): shapes, geometry, determinism, progress, cancel, batching and heatmap orientation.

Nothing here depends on what the model predicts, only on properties every model must have.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from msiqa.assess import Scored, Scorer, assess, score_images
from msiqa.errors import Cancelled, InputError
from msiqa.render import SliceRenderer
from msiqa.results import Geometry
from msiqa.volumes import DOSE_KEY, WEIGHT_KEY

K, J, I = 6, 48, 64  # not square, so a swapped axis cannot go unnoticed
OBLIQUE = tuple(np.array([[0.98480775, -0.17364818, 0], [0.17364818, 0.98480775, 0], [0, 0, 1]]).ravel())


def image(a, spacing=(1.5, 2.0, 3.0), origin=(-40.0, 25.0, 300.0), direction=OBLIQUE, vector=False):
    im = sitk.GetImageFromArray(a, isVector=vector)
    im.SetSpacing(spacing)
    im.SetOrigin(origin)
    im.SetDirection(direction)
    return im


def volumes(seed: int = 0):
    rng = np.random.default_rng(seed)
    k, y, x = np.mgrid[0:K, 0:J, 0:I]
    body = ((x - 32) / 28.0) ** 2 + ((y - 24) / 20.0) ** 2 < 1
    hu = np.where(body, 40.0, -1000.0) + rng.normal(0, 20, (K, J, I))
    hu[(x - 18) ** 2 + (y - 24) ** 2 < 16] = 800
    hu[:, 5:9, 50:56] = 1200  # an asymmetric marker
    bq = np.where(body, 4000.0, 0.0) * (1 + 0.2 * np.sin(k + x / 7.0))
    bq[:, 20:25, 40:46] = 25000.0
    return image(np.round(hu).astype(np.int16)), image(bq.astype(np.float32))


def flipped_copy(im: sitk.Image) -> sitk.Image:
    a = sitk.GetArrayFromImage(im)[:, ::-1, ::-1]
    size = im.GetSize()
    origin = im.TransformIndexToPhysicalPoint((size[0] - 1, size[1] - 1, 0))
    d = np.array(im.GetDirection()).reshape(3, 3) @ np.diag([-1.0, -1.0, 1.0])
    return image(np.ascontiguousarray(a), im.GetSpacing(), origin, tuple(d.ravel()))


@pytest.fixture(scope="module")
def pair():
    return volumes()


@pytest.fixture(scope="module")
def scorer(bundled_model):
    return Scorer(bundled_model, "cpu")


@pytest.fixture(scope="module")
def result(pair, scorer):
    ct, pet = pair
    return assess(ct, pet, scorer=scorer, batch_size=4)


def test_shapes(result):
    assert result.scores.shape == (K,) and result.scores.dtype == np.float32
    assert result.heatmap.shape == (K, J, I) and result.heatmap.dtype == np.float32
    assert np.isfinite(result.scores).all()
    s = result.summary()
    assert s["slices"] == K and s["complete"] is True
    assert s["flagged_slices"] == [int(k) for k in np.flatnonzero(result.scores < result.threshold)]


def test_heatmap_geometry_equals_the_reference(pair, result):
    ct, _ = pair
    heat = result.heatmap_image()
    assert Geometry.of(heat) == Geometry.of(ct)
    assert heat.GetSize() == ct.GetSize() and heat.GetOrigin() == ct.GetOrigin()
    assert heat.GetSpacing() == ct.GetSpacing() and heat.GetDirection() == ct.GetDirection()
    values = sitk.GetArrayViewFromImage(heat)
    assert values.min() >= 0.0 and values.max() <= 1.0


def test_deterministic(pair, scorer, result):
    ct, pet = pair
    again = assess(ct, pet, scorer=scorer, batch_size=4)
    assert np.array_equal(again.scores, result.scores)
    assert np.array_equal(again.heatmap, result.heatmap)


def test_model_and_rendering_are_recorded(result, bundled_model):
    assert result.model["sha256"] == bundled_model.card["sha256"]
    assert result.model["device"] == "cpu"
    assert result.rendering["reference"] == "CT" and result.rendering["inputs"] == "PET over CT"


def test_progress_callback_sequence(pair, scorer):
    ct, pet = pair
    calls = []
    assess(ct, pet, scorer=scorer, batch_size=4, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(4, K), (K, K)]


def test_cancel_returns_within_one_batch(pair, scorer):
    ct, pet = pair
    calls = []
    with pytest.raises(Cancelled, match="cancelled after 2 of 6"):
        assess(ct, pet, scorer=scorer, batch_size=2, progress=lambda d, t: calls.append(d), cancel=lambda: bool(calls))
    assert calls == [2]


def test_cancel_before_the_first_batch(pair, scorer):
    ct, pet = pair
    calls = []
    with pytest.raises(Cancelled):
        assess(ct, pet, scorer=scorer, progress=lambda d, t: calls.append(d), cancel=lambda: True)
    assert calls == []


@pytest.mark.parametrize("batch_size", [1, 3, 6, 50])
def test_batch_size_does_not_change_scores(pair, scorer, result, batch_size):
    ct, pet = pair
    other = assess(ct, pet, scorer=scorer, batch_size=batch_size)
    assert np.allclose(other.scores, result.scores, atol=1e-4, rtol=0)
    assert np.allclose(other.heatmap, result.heatmap, atol=1e-4, rtol=0)


def test_bad_batch_size(pair, scorer):
    with pytest.raises(InputError, match="batch size"):
        assess(pair[0], scorer=scorer, batch_size=0)


def test_threshold_flags(result):
    high = result.with_threshold(float(result.scores.max()) + 1)
    assert high.flagged.all() and high.summary()["flagged_count"] == K
    low = result.with_threshold(float(result.scores.min()) - 1)
    assert not low.flagged.any()


def test_heatmap_on_a_flipped_input_maps_back(pair, scorer, result):
    ct, pet = pair
    flipped = assess(flipped_copy(ct), flipped_copy(pet), scorer=scorer, batch_size=4)
    assert np.allclose(flipped.scores, result.scores, atol=1e-5)
    assert np.allclose(flipped.heatmap[:, ::-1, ::-1], result.heatmap, atol=1e-5)
    assert not np.allclose(flipped.heatmap, result.heatmap, atol=1e-5)  # the check has power: the map is not symmetric
    # Same voxels in space -> same heatmap values at the same physical points.
    a, b = result.heatmap_image(), flipped.heatmap_image()
    for idx in [(0, 0, 0), (5, 40, 2), (63, 47, 5)]:
        p = a.TransformIndexToPhysicalPoint(idx)
        assert a[idx] == pytest.approx(b[b.TransformPhysicalPointToIndex(p)], abs=1e-5)


class BrightnessScorer:
    """A stand-in network: the weight map is the picture's brightness, the score its mean."""

    class model:
        summary = {"name": "brightness", "version": "test", "preset": None, "sha256": None}

    device = "cpu"
    causes = ()

    def __call__(self, pictures):
        maps = pictures.astype(np.float32).mean(-1) / 255.0
        return Scored(maps.mean(axis=(1, 2)), maps, None)


@pytest.mark.parametrize("copy", [None, flipped_copy])
def test_heatmap_lands_on_the_voxels_the_network_looked_at(copy):
    hu = np.full((K, J, I), -1000, np.int16)
    hu[:, 5:9, 50:56] = 1000  # white marker, in patient-left/anterior corner
    hu[2, 30, 10] = 1000
    ct = image(hu)
    if copy is not None:
        ct = copy(ct)
    heat = assess(ct, scorer=BrightnessScorer(), batch_size=4).heatmap_image()
    for k, j, i in [(0, 6, 52), (4, 8, 55), (2, 30, 10)]:
        point = image(hu).TransformIndexToPhysicalPoint((i, j, k))
        assert heat[heat.TransformPhysicalPointToIndex(point)] == pytest.approx(1.0)
    assert heat[heat.TransformPhysicalPointToIndex(image(hu).TransformIndexToPhysicalPoint((10, 30, 3)))] == 0.0


@pytest.mark.parametrize("copy", [None, flipped_copy])
def test_a_lone_pet_is_shown_at_display_pixels_and_its_heatmap_lands_on_its_own_voxels(copy):
    """4 mm PET voxels are shown at 2 mm pixels (twice as many per side); the weight map comes
    back onto the PET's own grid, bright where the PET is hot."""
    bq = np.zeros((K, 40, 48), np.float32)
    bq[:, 4:8, 20:26] = 6000.0  # SUV 6: white
    bq[:, 12:20, 4:12] = 1000.0  # body background
    pet = image(bq, spacing=(4.0, 4.0, 3.0))
    pet.SetMetaData(WEIGHT_KEY, "70")  # 70 kg, 70 MBq: 1000 Bq/ml reads SUV 1
    pet.SetMetaData(DOSE_KEY, "7e7")
    if copy is not None:
        pet = copy(pet)
    r = SliceRenderer(pet=pet)
    size = pet.GetSize()
    assert r.render(0, 1).shape[1:3] == (2 * size[1], 2 * size[0])
    assert "2 mm" in r.description["display"]
    heat = assess(pet=pet, scorer=BrightnessScorer(), batch_size=4).heatmap_image()
    assert heat.GetSize() == size
    ref = image(bq, spacing=(4.0, 4.0, 3.0))
    at = lambda i, j, k: heat[heat.TransformPhysicalPointToIndex(ref.TransformIndexToPhysicalPoint((i, j, k)))]  # noqa: E731
    assert at(22, 5, 1) == pytest.approx(1.0, abs=0.01)
    assert at(40, 30, 3) == pytest.approx(0.0, abs=0.01)
    assert 0.05 < at(8, 16, 2) < 0.5  # SUV 1 on the hot map: dark red


def test_score_images_matches_the_scorer(pair, scorer):
    pics = SliceRenderer(ct=pair[0], pet=pair[1]).render(0, 2)
    direct = scorer(pics).scores
    assert np.allclose(score_images(list(pics), scorer), direct, atol=1e-5)


def test_scorer_handles_sizes_that_are_not_multiples_of_32(scorer):
    pics = np.random.default_rng(0).integers(0, 256, (2, 50, 70, 3), dtype=np.uint8)
    scores, maps, _ = scorer(pics)
    assert scores.shape == (2,) and maps.shape == (2, 50, 70)
    assert maps.min() >= 0 and maps.max() <= 1
