"""Tests of the PET/CT simulator (msiqa.phantom) and of the bundled sample study."""

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

import msiqa.phantom as phantom
import msiqa.sample_data as sample_data
from msiqa.causes import CAUSES
from msiqa.errors import InputError
from msiqa.phantom import grading, measures
from msiqa.training.labels import ANCHORS

T = phantom.TISSUES
SOFT = [T[n].label for n in ("muscle", "soft_tissue", "blood", "myocardium", "liver", "spleen")]
RANGES = {r["name"]: r for r in phantom.DEGRADED_RANGES}
LIVER_KS = [26, 27]  # liver slices of the sample's patient, below the lung bases
DOME_KS = [55, 56]  # liver dome and lung bases


def _range(name):
    r = RANGES[name]
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


def _eroded(ph, k, labels, it):
    return ndimage.binary_erosion(np.isin(ph.labels[k], labels), iterations=it)


# ------------------------------------------------------------------ simulation


def test_simulation_is_deterministic_and_matches_bundle(volumes):
    ks = [2, 47, 98]  # clean, misregistered PET, metal in the CT
    a = phantom.simulate_volumes(seed=0, slices=ks)
    b = phantom.simulate_volumes(seed=0, slices=ks)
    np.testing.assert_array_equal(a.ct_hu, b.ct_hu)
    np.testing.assert_array_equal(a.pet_bqml, b.pet_bqml)
    assert a.ct_hu.dtype == np.int16 and a.pet_bqml.dtype == np.float32
    assert a.ct_hu.shape == (3, 160, 160) and a.pet_bqml.shape == (3, 96, 96)

    other = phantom.simulate_volumes(seed=1, slices=ks)
    assert np.abs(other.ct_hu.astype(float) - a.ct_hu).mean() > 1.0
    assert not np.array_equal(other.pet_bqml, a.pet_bqml)

    # a subset has the values of the full study: the bundled files are what the code makes
    ct, pet, _ = volumes
    assert np.abs(ct[ks].astype(float) - a.ct_hu).mean() < 0.5
    assert np.abs(pet[ks] - a.pet_bqml).mean() < 1e-3 * pet[ks].mean()


def test_bad_slices_rejected():
    with pytest.raises(ValueError, match="slices"):
        phantom.simulate_volumes(slices=[phantom.N_SLICES])
    with pytest.raises(ValueError, match="slices"):
        phantom.simulate_volumes(slices=[])


def test_clean_simulation_is_the_sample_without_its_faults(volumes):
    k_clean, k_faulty = 2, _range("ct_low_dose_x15")[0]
    clean = phantom.simulate_clean(None, 0, [k_clean, k_faulty])
    faulty = phantom.simulate_volumes(0, [k_clean, k_faulty])
    np.testing.assert_array_equal(clean.ct_hu[0], faulty.ct_hu[0])
    np.testing.assert_array_equal(clean.pet_bqml[0], faulty.pet_bqml[0])
    ph = clean.phantom
    liver = measures.inner(ph.labels[[k_faulty]] == T["liver"].label, 10.0)
    assert measures.noise_sd(faulty.ct_hu[1:], ph.hu[[k_faulty]], liver) > 2 * measures.noise_sd(
        clean.ct_hu[1:], ph.hu[[k_faulty]], liver
    )


# ------------------------------------------------------------------ anatomy


def test_phantom_anatomy(ph):
    assert ph.labels.shape == phantom.CT_SHAPE
    present = set(np.unique(ph.labels).tolist())
    assert {t.label for t in T.values()} <= present  # every tissue appears somewhere
    # lungs on both sides in the chest; abdomen below: liver on the patient's right (i = 0)
    k = 90
    lung = ph.labels[k] == T["lung"].label
    cols = np.nonzero(lung.any(axis=0))[0]
    assert cols.min() < 50 and cols.max() > 110
    liver_k = np.nonzero((ph.labels == T["liver"].label).any(axis=(1, 2)))[0]
    lung_k = np.nonzero((ph.labels == T["lung"].label).any(axis=(1, 2)))[0]
    assert liver_k.min() < 15 and liver_k.max() < 70 and lung_k.min() > 20 and lung_k.max() == phantom.N_SLICES - 1
    liver_i = np.nonzero(ph.labels[30] == T["liver"].label)[1]
    assert liver_i.mean() < phantom.CT_N / 2
    kidney_k = np.nonzero((ph.labels == T["kidney"].label).any(axis=(1, 2)))[0]
    assert kidney_k.max() < liver_k.max() - 20
    # the diaphragm: the right dome is higher than the left; no lung under it, no liver above
    top = {side: np.nonzero((ph.labels[:, 60:100, cols] == T["liver"].label).any(axis=(1, 2)) |
                            (ph.labels[:, 60:100, cols] == T["stomach_wall"].label).any(axis=(1, 2)))[0].max()
           for side, cols in (("right", slice(30, 60)), ("left", slice(100, 130)))}
    assert top["right"] > top["left"]
    # the table is below (posterior to) the body
    table_j = np.nonzero(np.isin(ph.labels[k], (1, 2)))[0]
    body_j = np.nonzero(ph.labels[k] == T["skin"].label)[0]
    assert table_j.min() > body_j.max() - 2
    for les in ph.lesions:
        assert les["suv"] > 8


def _anatomy_figures(p):
    body = ~np.isin(p.labels, [T[n].label for n in ("air", "table_shell", "table_foam")])
    liver = p.labels == T["liver"].label
    return {
        "body_ml": body.sum() * phantom.CT_PIXEL_MM**2 * phantom.SLICE_MM / 1000,
        "liver_ml": liver.sum() * phantom.CT_PIXEL_MM**2 * phantom.SLICE_MM / 1000,
        "liver_top_k": int(np.nonzero(liver.any(axis=(1, 2)))[0].max()),
        "liver_suv": float(np.median(p.suv[liver])),
        "lesions": tuple(les["center"] for les in p.lesions),
    }


def test_anatomy_seeds_give_different_patients(ph):
    patients = [_anatomy_figures(p) for p in (ph, phantom.make_phantom(11), phantom.make_phantom(12))]
    for a, b in ((0, 1), (0, 2), (1, 2)):
        pa, pb = patients[a], patients[b]
        assert abs(pa["body_ml"] / pb["body_ml"] - 1) > 0.02
        assert abs(pa["liver_ml"] / pb["liver_ml"] - 1) > 0.02
        assert pa["liver_suv"] != pytest.approx(pb["liver_suv"], abs=0.05) or pa["liver_top_k"] != pb["liver_top_k"]
        assert pa["lesions"] != pb["lesions"]
    # a drawn patient keeps the anatomy's order: liver under the diaphragm, lungs above
    p = phantom.make_phantom(11)
    liver_k = np.nonzero((p.labels == T["liver"].label).any(axis=(1, 2)))[0]
    assert liver_k.max() < 75 and (p.labels[100] == T["lung"].label).sum() > 1000
    assert p.suv_per_bqml == pytest.approx(phantom.suv_factor(p.anatomy.weight_kg))


def test_anatomy_seed_changes_the_clean_simulation():
    a = phantom.simulate_clean(11, 0, [30])
    b = phantom.simulate_clean(12, 0, [30])
    assert np.abs(a.ct_hu.astype(float) - b.ct_hu).mean() > 20.0
    assert a.phantom.anatomy != b.phantom.anatomy


# ------------------------------------------------------------------ the sample's clean slices


def test_ct_numbers_in_clean_slice(volumes, ph, study):
    ct, _, _ = volumes
    k = 80
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


def test_clean_noise_is_clinical(volumes, ph, study):
    ct, pet, _ = volumes
    ks = [k for k in study.clean_slices() if 12 <= k <= 45]  # liver slices
    liver = measures.inner(ph.labels[ks] == T["liver"].label, 10.0)
    sd = measures.noise_sd(ct[ks], ph.hu[ks], liver)
    cov = measures.coefficient_of_variation(pet[ks][measures.on_pet_grid(liver)])
    assert 10 < sd < 30  # HU: the low-dose attenuation CT of a PET/CT
    assert 0.05 < cov < 0.10  # a good clinical FDG PET (EANM/EARL: <= ~0.10-0.15)


def test_pet_suv_ordering(volumes, ph):
    _, pet, pet_img = volumes
    f = float(pet_img.GetMetaData("msiqa_patient_weight_kg")) * 1000 / float(
        pet_img.GetMetaData("msiqa_decay_corrected_dose_bq")
    )
    assert f == pytest.approx(ph.suv_per_bqml)
    suv = pet * f
    k_liver = 18
    liver = suv[k_liver][measures.on_pet_grid(_eroded(ph, k_liver, [T["liver"].label], 4)[None])[0]]
    k_lung = 80
    lung = suv[k_lung][measures.on_pet_grid(_eroded(ph, k_lung, [T["lung"].label], 4)[None])[0]]
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


# ------------------------------------------------------------------ each fault grows with its severity


def _figures(family, ks, severities):
    return [grading.measure(family, ks, s)["value"] for s in severities]


def test_pet_low_counts_raise_the_liver_cov():
    cov = _figures("pet_low_counts", LIVER_KS, [1, 3, 10])
    assert cov[0] < 0.10 < cov[2]
    assert cov[0] < cov[1] < cov[2]
    assert cov[2] / cov[0] == pytest.approx(np.sqrt(10), rel=0.25)  # Poisson: CoV ~ 1/sqrt(counts)


def test_ct_low_dose_raises_the_noise_sd():
    sd = _figures("ct_low_dose", LIVER_KS, [1, 4, 16])
    assert sd[0] == 0.0 < sd[1] < sd[2]
    assert sd[2] > ANCHORS["ct_low_dose"].bad  # 16x fewer photons: past the limit


def test_breathing_blurs_the_pet_at_the_dome():
    fwhm = _figures("pet_respiratory_motion", DOME_KS, [0, 10, 30])
    assert fwhm[0] == 0.0 < fwhm[1] < fwhm[2]
    # the CT is unaffected by the PET's breathing
    still, moving = (phantom.simulate(DOME_KS, acquisition=phantom.FAULTS["pet_respiratory_motion"].acquisition(s))
                     for s in (0, 30))
    np.testing.assert_array_equal(still.ct_hu, moving.ct_hu)


@pytest.mark.parametrize("shift", [6.0, 15.0])
def test_misregistration_shift_is_measured_within_a_voxel(shift):
    dz, dy, dx = grading.misregistration_shift_mm(DOME_KS, shift)
    from msiqa.phantom.breathing import AP_PER_CC

    assert abs(dz + shift) < phantom.SLICE_MM  # caudal
    assert abs(dy + AP_PER_CC * shift) < phantom.PET_PIXEL_MM  # and a little anterior
    assert abs(dx) < phantom.PET_PIXEL_MM


def test_ct_motion_grows_the_error_against_the_anatomy(ph):
    ks = [80]
    acq = phantom.FAULTS["ct_motion"].acquisition
    errs = [np.abs(phantom.simulate(ks, acquisition=acq(s), noisy=False).ct_hu[0] - ph.hu[80]).mean()
            for s in (0, 4, 12)]
    assert errs[0] < errs[1] < errs[2]
    assert errs[2] > 2 * errs[0]


def test_metal_streaks_grow_with_the_screws(ph):
    amp = _figures("metal_streaks", [97], [1.5, 6.5])
    assert 20 < amp[0] < amp[1]
    ct = phantom.simulate([97], acquisition=phantom.FAULTS["metal_streaks"].acquisition(6.5)).ct_hu[0]
    steel = phantom.ct.steel_screws(ph, 97, 6.5) > 0.5
    assert np.median(ct[steel]) > 2000  # the metal itself, far above bone


def test_compression_and_impulse_grow_with_severity():
    ratio = _figures("compression", [9], [90, 30, 8])
    assert ratio[0] < ratio[1] < ratio[2]
    blocks = [grading.measure("compression", [9], q)["blockiness"] for q in (90, 8)]
    assert blocks[0] < 2.0 < blocks[1]
    imp = _figures("impulse", [77], [0.001, 0.005])
    assert 0 < imp[0] < imp[1] <= 0.005


def test_faults_hit_only_their_own_modality():
    ks = [30]
    clean = phantom.simulate(ks)
    severity = {"pet_low_counts": 5, "ct_low_dose": 5, "ct_motion": 5, "metal_streaks": 5, "compression": 8,
                "impulse": 0.005, "pet_respiratory_motion": 20, "misregistration": 10}
    for family, fault in phantom.FAULTS.items():
        v = phantom.simulate(ks, acquisition=fault.acquisition(severity[family]))
        pet_only = family in ("pet_low_counts", "pet_respiratory_motion", "misregistration")
        assert np.array_equal(v.ct_hu, clean.ct_hu) == pet_only, family
        assert np.array_equal(v.pet_bqml, clean.pet_bqml) != pet_only, family


# ------------------------------------------------------------------ bundled files


def test_bundled_files(study):
    assert study.ct_path.parent == sample_data.SAMPLE_DIR
    total = 0
    for name in (sample_data.CT_FILE, sample_data.PET_FILE, sample_data.INFO_FILE):
        p = sample_data.SAMPLE_DIR / name
        assert p.is_file()
        total += p.stat().st_size
    assert total < 8 * 1024 * 1024
    info = json.loads((sample_data.SAMPLE_DIR / sample_data.INFO_FILE).read_text())
    for name in (sample_data.CT_FILE, sample_data.PET_FILE):
        assert sample_data.sha256_of(sample_data.SAMPLE_DIR / name) == info["files"][name]["sha256"]
    assert study.info == info


def test_bundled_geometry_and_metadata(volumes, study):
    ct_img = sitk.ReadImage(str(study.ct_path))
    _, _, pet_img = volumes
    n = study.info["n_slices"]
    assert n == phantom.N_SLICES
    assert ct_img.GetPixelID() == sitk.sitkInt16
    assert pet_img.GetPixelID() == sitk.sitkFloat32
    assert ct_img.GetSize() == (160, 160, n)
    assert ct_img.GetSpacing() == pytest.approx((2.5, 2.5, 3.0))
    assert ct_img.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    centre = ct_img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in ct_img.GetSize()])
    assert abs(centre[0]) < 1 and abs(centre[1]) < 1
    assert pet_img.GetSize() == (96, 96, n)
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
        assert 0 <= r["first"] <= r["last"] < n
        assert 3 <= r["last"] - r["first"] + 1 <= 5
        ks = set(range(r["first"], r["last"] + 1))
        assert not ks & seen
        seen |= ks
    assert [(r["name"], r["first"], r["last"]) for r in study.info["degraded_ranges"]] == [
        (r["name"], r["first"], r["last"]) for r in phantom.DEGRADED_RANGES
    ]
    assert study.degraded_slices() == sorted(seen)
    assert sorted(study.clean_slices() + study.degraded_slices()) == list(range(n))
    from_info = sorted(k for r in study.info["clean_ranges"] for k in range(r["first"], r["last"] + 1))
    assert from_info == study.clean_slices()
    # clean slices between the degraded ranges
    rs = sorted(study.info["degraded_ranges"], key=lambda r: r["first"])
    for a, b in zip(rs, rs[1:]):
        assert b["first"] - a["last"] > 1


def test_every_range_says_what_it_is_and_whether_a_reader_accepts_it(study):
    by_family = {}
    for r in study.info["degraded_ranges"]:
        assert r["fault"] in phantom.FAULTS and r["cause"] == phantom.FAULTS[r["fault"]].cause
        assert r["cause"] in CAUSES and r["cause"] != "none"
        assert isinstance(r["severity"]["value"], (int, float)) and r["severity"]["unit"] and r["severity"]["parameter"]
        m = r["measured"]
        assert isinstance(m["value"], float) and m["quantity"] and m["how"] and "unit" in m
        assert isinstance(r["clinically_acceptable"], bool)
        assert isinstance(r["reason"], str) and r["reason"].endswith(".") and r["reason"].count(". ") == 0
        anchor = r["label_rule_anchor"]
        if anchor is not None:  # the study and the label rule agree
            assert r["clinically_acceptable"] == (m["value"] < ANCHORS[anchor].bad)
        by_family.setdefault(r["fault"], []).append(r)
    assert set(by_family) == set(phantom.FAULTS)
    for family, rs in by_family.items():
        assert 2 <= len(rs) <= 3, family
        accepted = [r["clinically_acceptable"] for r in rs]
        assert any(accepted) and not all(accepted), family  # a mild grade and an unacceptable one
        # stronger faults measure larger
        sign = -1 if phantom.FAULTS[family].worse_when_lower else 1
        rs = sorted(rs, key=lambda r: sign * r["severity"]["value"])
        values = [r["measured"]["value"] for r in rs]
        assert values == sorted(values), family
        assert accepted == sorted(accepted, reverse=True), family


def test_recorded_figures_are_what_the_simulator_measures(study):
    r = next(r for r in study.info["degraded_ranges"] if r["fault"] == "pet_low_counts")
    again = grading.measure(r["fault"], range(r["first"], r["last"] + 1), r["severity"]["value"], study.info["seed"])
    assert again["value"] == pytest.approx(r["measured"]["value"], abs=1e-3)


def test_faults_show_in_the_bundled_volumes(volumes, study, ph):
    ct, pet, _ = volumes
    win = np.clip(ct.astype(float), -160, 240)
    clean = study.clean_slices()
    b_comp = [phantom.blockiness(win[k]) for k in _range("compression_q8")]
    assert min(b_comp) > 2.0 > max(phantom.blockiness(win[k]) for k in clean)
    # salt-and-pepper pixels: bright pixels in the air around the patient

    def salt(k):
        return int((ct[k][ph.labels[k] == T["air"].label] > 500).sum())

    assert min(salt(k) for k in _range("impulse_0.5pct")) > 10
    assert max(salt(k) for k in clean) == 0

    def liver_cov(ks):
        m = measures.on_pet_grid(measures.inner(ph.labels[ks] == T["liver"].label, 10.0))
        return measures.coefficient_of_variation(pet[ks][m])

    assert liver_cov(_range("pet_low_counts_x20")) > 2.5 * liver_cov([k for k in clean if 12 <= k <= 45])


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
