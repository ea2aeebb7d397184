"""The liver-CoV measure of benchmarks/pet_noise.py, on volumes whose noise is known."""

import json

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from test_volumes import pet_array, write_dicom_series

from msiqa.volumes import read_volume

SPACING = (3.0, 4.0, 4.0)  # k, j, i (mm)


@pytest.fixture(scope="module")
def pet_noise(benchmark_script):
    return benchmark_script("pet_noise")


def body_with_liver(cov: float, seed: int = 0) -> np.ndarray:
    """Muscle-like SUV 0.7 around an ellipsoidal liver of SUV 2.5 whose voxels vary by ``cov``, and a
    smaller region of SUV 3 (liver-like too, 18 x 24 x 24 mm) that must not be taken for the liver."""
    k, j, i = np.meshgrid(*[np.arange(n) for n in (40, 64, 64)], indexing="ij")
    suv = np.full(k.shape, 0.7)
    liver = ((k - 20) * 3.0 / 45) ** 2 + ((j - 30) * 4.0 / 70) ** 2 + ((i - 24) * 4.0 / 80) ** 2 <= 1
    suv[liver] = 2.5 * (1 + cov * np.random.default_rng(seed).normal(size=int(liver.sum())))
    suv[17:23, 50:56, 50:56] = 3.0
    return suv


@pytest.mark.parametrize("cov", [0.08, 0.16])
def test_liver_cov_is_the_liver_voxels_noise(pet_noise, cov):
    measured, mean, depth = pet_noise.liver_voi_cov(body_with_liver(cov), SPACING)
    assert measured == pytest.approx(cov, rel=0.15)
    assert mean == pytest.approx(2.5, rel=0.05)
    assert depth > 30  # the sphere sits deep in the liver, not in the smaller region


def test_a_pet_without_liver_like_uptake_is_refused(pet_noise):
    with pytest.raises(ValueError, match="liver-like uptake"):
        pet_noise.liver_voi_cov(np.full((20, 32, 32), 0.5), SPACING)


def muscle_with_organ(cov: float, seed: int = 0) -> np.ndarray:
    """Soft tissue of SUV 0.8 whose voxels vary by ``cov``, around a sharp-edged hot organ of SUV 6."""
    suv = 0.8 * (1 + cov * np.random.default_rng(seed).normal(size=(20, 64, 64)))
    suv[:, 20:44, 20:44] = 6.0
    return suv


@pytest.mark.parametrize("cov", [0.1, 0.2])
def test_soft_tissue_noise_is_the_tissues_voxel_noise_not_its_edges(pet_noise, cov):
    measured, voxels = pet_noise.soft_tissue_cov(muscle_with_organ(cov), SPACING)
    assert measured == pytest.approx(cov, rel=0.05)
    assert voxels > 20 * (64 * 64 - 44 * 44)  # the tissue, less a rim at the organ and the borders


def test_soft_tissue_noise_ranks_volumes_by_their_noise(pet_noise):
    quiet, _ = pet_noise.soft_tissue_cov(muscle_with_organ(0.12), SPACING)
    noisy, _ = pet_noise.soft_tissue_cov(muscle_with_organ(0.15), SPACING)
    assert quiet < noisy


def test_a_pet_without_soft_tissue_is_refused(pet_noise):
    with pytest.raises(ValueError, match="soft tissue"):
        pet_noise.soft_tissue_cov(np.full((20, 32, 32), 5.0), SPACING)


def test_flags_are_read_for_the_pets_shown_alone(pet_noise, tmp_path):
    runs = [{"kind": "PET alone", "input": "/data/STS_004/PET/image", "flagged_pct": 2.5},
            {"kind": "CT alone", "input": "/data/STS_004/CT/image", "flagged_pct": 50.0},
            {"kind": "PET/CT", "input": "/data/STS_004/CT/image + /data/STS_004/PET/image", "flagged_pct": 0.0}]
    (tmp_path / "flags.json").write_text(json.dumps({"model": {}, "runs": runs}))
    assert pet_noise.flagged_share(tmp_path / "flags.json") == {"/data/STS_004/PET/image": 2.5}


def dicom_pet(folder, dose_bq: float | None):
    """A DICOM PET series of 4 x 4 x 3 mm voxels, 100 kg, 3 min frames, ``dose_bq`` injected (None: not recorded)."""
    bits = {"0028|0100": "16", "0028|0101": "16", "0028|0102": "15", "0028|0103": "1"}
    write_dicom_series(folder, pet_array(), (4.0, 4.0, 3.0), (0.0, 0.0, 0.0), "PT", 2.0, 0, bits)
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(str(f))
        ds.PatientWeight, ds.ActualFrameDuration = 100.0, 180000
        if dose_bq is not None:
            rp = Dataset()
            rp.RadionuclideTotalDose = dose_bq
            ds.RadiopharmaceuticalInformationSequence = Sequence([rp])
        ds.save_as(str(f))
    return read_volume(folder, "PET")


def test_acquired_counts_are_read_from_a_dicom_pets_tags(pet_noise, tmp_path):
    # 400 MBq / 100 kg x 3 min x (4 x 4 x 3 mm = 0.048 mL)
    assert pet_noise.acquired_counts(dicom_pet(tmp_path / "a", 4.0e8)) == pytest.approx(4.0 * 3.0 * 0.048)
    assert pet_noise.acquired_counts(dicom_pet(tmp_path / "b", None)) is None
