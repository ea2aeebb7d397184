"""Tests of the simulated PET/CT phantom study and of the bundled sample data."""

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

import msiqa.phantom as phantom
import msiqa.sample_data as sample_data
from msiqa.errors import InputError

T = phantom.TISSUES
SOFT = [T[n].label for n in ("muscle", "soft_tissue", "blood", "myocardium", "liver", "spleen")]


def _range(name):
    r = next(r for r in phantom.DEGRADED_RANGES if r["name"] == name)
    return list(range(r["first"], r["last"] + 1))


@pytest.fixture(scope="module")
def study():
    return sample_data.load_sample_study()


@pytest.fixture(scope="module")
def volumes(study):
    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(study.ct_path)))
    pet_img = sitk.ReadImage(str(study.pet_path))
    return ct, sitk.GetArrayFromImage(pet_img), pet_img


@pytest.fixture(scope="module")
def ph():
    return phantom.make_phantom()


def _pet_masks(mask_ct_k):
    """A CT-grid mask of one slice sampled (nearest) at the PET pixel centres."""
    c = (np.arange(phantom.PET_N) - (phantom.PET_N - 1) / 2) * phantom.PET_PIXEL_MM
    ii = np.round((c + phantom.PET_CENTER_MM[0] - phantom.CT_ORIGIN[0]) / phantom.CT_PIXEL_MM).astype(int)
    jj = np.round((c + phantom.PET_CENTER_MM[1] - phantom.CT_ORIGIN[1]) / phantom.CT_PIXEL_MM).astype(int)
    ii, jj = ii.clip(0, phantom.CT_N - 1), jj.clip(0, phantom.CT_N - 1)
    return mask_ct_k[np.ix_(jj, ii)]


def _eroded(ph, k, labels, it):
    return ndimage.binary_erosion(np.isin(ph.labels[k], labels), iterations=it)


# ------------------------------------------------------------------ simulation


def test_simulation_is_deterministic_and_matches_bundle(volumes):
    ks = [2, 47]
    a = phantom.simulate_volumes(seed=0, slices=ks)
    b = phantom.simulate_volumes(seed=0, slices=ks)
    np.testing.assert_array_equal(a.ct_hu, b.ct_hu)
    np.testing.assert_array_equal(a.pet_bqml, b.pet_bqml)
    assert a.ct_hu.dtype == np.int16 and a.pet_bqml.dtype == np.float32
    assert a.ct_hu.shape == (2, 160, 160) and a.pet_bqml.shape == (2, 96, 96)

    other = phantom.simulate_volumes(seed=1, slices=ks)
    assert np.abs(other.ct_hu.astype(float) - a.ct_hu).mean() > 1.0
    assert not np.array_equal(other.pet_bqml, a.pet_bqml)

    # a subset has the values of the full study: the bundled files are what the code makes
    ct, pet, _ = volumes
    assert np.abs(ct[ks].astype(float) - a.ct_hu).mean() < 0.5
    assert np.abs(pet[ks] - a.pet_bqml).mean() < 1e-3 * pet[ks].mean()


def test_bad_slices_rejected():
    with pytest.raises(ValueError):
        phantom.simulate_volumes(slices=[60])
    with pytest.raises(ValueError):
        phantom.simulate_volumes(slices=[])


def test_phantom_anatomy(ph):
    assert ph.labels.shape == phantom.CT_SHAPE
    present = set(np.unique(ph.labels).tolist())
    assert {t.label for t in T.values()} <= present  # every tissue appears somewhere
    # lungs on both sides, liver only in the lower (inferior) slices, on the patient's right
    k = 30
    lung = ph.labels[k] == T["lung"].label
    cols = np.nonzero(lung.any(axis=0))[0]
    assert cols.min() < 50 and cols.max() > 110
    liver_k = np.nonzero((ph.labels == T["liver"].label).any(axis=(1, 2)))[0]
    assert liver_k.min() == 0 and liver_k.max() < 25
    liver_i = np.nonzero(ph.labels[2] == T["liver"].label)[1]
    assert liver_i.mean() < phantom.CT_N / 2  # i = 0 is the patient's right
    # the table is below (posterior to) the body
    table_j = np.nonzero(np.isin(ph.labels[k], (1, 2)))[0]
    body_j = np.nonzero(ph.labels[k] == T["skin"].label)[0]
    assert table_j.min() > body_j.max() - 2
    # lesions sit in lung or mediastinum and are hot
    for les in ph.lesions:
        assert les["suv"] > 8


def test_ct_numbers_in_clean_slice(volumes, ph, study):
    ct, _, _ = volumes
    k = 30
    assert k in study.clean_slices()
    hu = ct[k].astype(float)
    lung = hu[_eroded(ph, k, [T["lung"].label], 2)]
    soft = hu[_eroded(ph, k, SOFT, 2)]
    fat = hu[_eroded(ph, k, [T["fat"].label], 1)]
    bone = hu[ph.labels[k] == T["cortical_bone"].label]
    air = hu[:8, :8]
    assert -900 < np.median(lung) < -780
    assert 20 < np.median(soft) < 70
    assert -160 < np.median(fat) < -40
    assert np.percentile(bone, 90) > 700
    assert np.median(air) < -950


def _noise(ct, ph, ks):
    out = []
    for k in ks:
        m = _eroded(ph, k, SOFT, 2)
        out.append(np.std(ct[k][m].astype(float) - ph.hu[k][m]))
    return float(np.mean(out))


def test_low_dose_ct_is_noisier(volumes, ph):
    ct, _, _ = volumes
    low = _range("ct_low_dose")
    clean = [k for k in range(low[0] - 4, low[-1] + 5) if k not in low]
    assert all(phantom.range_of(k) is None for k in clean)
    n_low, n_clean = _noise(ct, ph, low), _noise(ct, ph, clean)
    assert 5 < n_clean < 30  # HU, a plausible clinical level
    assert n_low > 2.5 * n_clean


def test_compressed_slices_are_blocky(volumes, study, ph):
    ct, _, _ = volumes
    comp = _range("heavy_compression")
    win = np.clip(ct.astype(float), -160, 240)
    b_comp = [phantom.blockiness(win[k]) for k in comp]
    b_clean = [phantom.blockiness(win[k]) for k in study.clean_slices()]
    assert min(b_comp) > 2.0
    assert max(b_clean) < 1.5
    # salt-and-pepper pixels: bright pixels in the air around the patient
    def salt(k):
        return int((ct[k][ph.labels[k] == T["air"].label] > 500).sum())

    assert min(salt(k) for k in comp) > 10
    assert max(salt(k) for k in study.clean_slices()) == 0


def test_motion_slices_disagree_with_anatomy(volumes, ph):
    ct, _, _ = volumes
    motion = _range("motion")
    clean = [motion[0] - 2, motion[0] - 1, motion[-1] + 1, motion[-1] + 2]

    def err(k):
        return np.abs(ct[k].astype(float) - ph.hu[k]).mean()

    assert np.mean([err(k) for k in motion]) > 1.5 * np.mean([err(k) for k in clean])


def test_pet_suv_ordering(volumes, ph):
    _, pet, pet_img = volumes
    f = float(pet_img.GetMetaData("msiqa_patient_weight_kg")) * 1000 / float(
        pet_img.GetMetaData("msiqa_decay_corrected_dose_bq")
    )
    assert f == pytest.approx(phantom.suv_factor())
    suv = pet * f
    k_liver = 3
    liver = suv[k_liver][_pet_masks(_eroded(ph, k_liver, [T["liver"].label], 4))]
    k_lung = 30
    lung = suv[k_lung][_pet_masks(_eroded(ph, k_lung, [T["lung"].label], 4))]
    assert 2.0 < liver.mean() < 3.0
    assert 0.1 < lung.mean() < 0.8
    c = (np.arange(phantom.PET_N) - (phantom.PET_N - 1) / 2) * phantom.PET_PIXEL_MM
    X, Y = np.meshgrid(c + phantom.PET_CENTER_MM[0], c + phantom.PET_CENTER_MM[1])
    for les in ph.lesions:
        x, y, z = les["center"]
        k = int(round((z - phantom.CT_ORIGIN[2]) / phantom.SLICE_MM))
        near = np.hypot(X - x, Y - y) < les["radius"] + 5
        assert suv[k][near].max() > 5.0
        assert suv[k][near].max() > liver.mean() > lung.mean()


def test_low_count_pet_is_noisier(volumes, ph):
    _, pet, _ = volumes
    low = _range("low_counts")
    clean = [2, 3, 4, 5, 11, 12, 13]

    def cov(k):
        m = _pet_masks(_eroded(ph, k, [T["liver"].label], 3))
        v = pet[k][m]
        assert v.size > 30
        return v.std() / v.mean()

    c_low = np.mean([cov(k) for k in low])
    c_clean = np.mean([cov(k) for k in clean])
    assert c_clean < 0.15
    assert c_low > 2.5 * c_clean


# ------------------------------------------------------------------ bundled files


def test_bundled_files(study):
    assert study.ct_path.parent == sample_data.SAMPLE_DIR
    total = 0
    for name in (sample_data.CT_FILE, sample_data.PET_FILE, sample_data.INFO_FILE):
        p = sample_data.SAMPLE_DIR / name
        assert p.is_file()
        total += p.stat().st_size
    assert total < 6 * 1024 * 1024
    info = json.loads((sample_data.SAMPLE_DIR / sample_data.INFO_FILE).read_text())
    for name in (sample_data.CT_FILE, sample_data.PET_FILE):
        assert sample_data.sha256_of(sample_data.SAMPLE_DIR / name) == info["files"][name]["sha256"]
    assert study.info == info


def test_bundled_geometry_and_metadata(volumes, study):
    ct_img = sitk.ReadImage(str(study.ct_path))
    _, _, pet_img = volumes
    assert ct_img.GetPixelID() == sitk.sitkInt16
    assert pet_img.GetPixelID() == sitk.sitkFloat32
    assert ct_img.GetSize() == (160, 160, 60)
    assert ct_img.GetSpacing() == pytest.approx((2.5, 2.5, 3.0))
    assert ct_img.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    centre = ct_img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in ct_img.GetSize()])
    assert abs(centre[0]) < 1 and abs(centre[1]) < 1
    assert pet_img.GetSize() == (96, 96, 60)
    assert pet_img.GetSpacing()[0] > 4.0
    assert pet_img.GetOrigin() != ct_img.GetOrigin()  # PET on its own grid
    for key in ("msiqa_patient_weight_kg", "msiqa_injected_dose_bq", "msiqa_half_life_s"):
        assert float(pet_img.GetMetaData(key)) > 0
    assert float(pet_img.GetMetaData("msiqa_half_life_s")) == pytest.approx(6586.2)
    suv = study.info["pet_suv_factor"]
    assert suv["decay_corrected_dose_bq"] < suv["injected_dose_bq"]


def test_ranges(study):
    n = study.info["n_slices"]
    seen = set()
    for r in study.info["degraded_ranges"]:
        assert {"name", "first", "last", "description"} <= set(r)
        assert 0 <= r["first"] <= r["last"] < n
        ks = set(range(r["first"], r["last"] + 1))
        assert not ks & seen
        seen |= ks
    names = {r["name"] for r in study.info["degraded_ranges"]}
    assert names == {"low_counts", "heavy_compression", "motion", "ct_low_dose"}
    assert study.degraded_slices() == sorted(seen)
    assert sorted(study.clean_slices() + study.degraded_slices()) == list(range(n))
    from_info = sorted(
        k for r in study.info["clean_ranges"] for k in range(r["first"], r["last"] + 1)
    )
    assert from_info == study.clean_slices()
    # clean slices between the degraded ranges
    rs = sorted(study.info["degraded_ranges"], key=lambda r: r["first"])
    for a, b in zip(rs, rs[1:]):
        assert b["first"] - a["last"] > 1


def test_checksum_mismatch_is_reported(tmp_path):
    for name in (sample_data.CT_FILE, sample_data.PET_FILE, sample_data.INFO_FILE):
        shutil.copy(sample_data.SAMPLE_DIR / name, tmp_path / name)
    assert sample_data.load_sample_study(tmp_path).ct_path == tmp_path / sample_data.CT_FILE
    data = bytearray((tmp_path / sample_data.PET_FILE).read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / sample_data.PET_FILE).write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256"):
        sample_data.load_sample_study(tmp_path)
    (tmp_path / sample_data.CT_FILE).unlink()
    with pytest.raises(InputError, match="missing"):
        sample_data.load_sample_study(tmp_path)
