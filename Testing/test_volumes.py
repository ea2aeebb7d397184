"""Reading and checking inputs: every bad input fails clearly, through the command line, and
leaves nothing behind; every supported format reads back the same volume."""

from __future__ import annotations

import json
import locale
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from msiqa import cli
from msiqa.errors import InputError
from msiqa.render import pseudo_suv_factor
from msiqa.volumes import axial_order, read_volume, suv_info
from msiqa.weights import DEFAULT_MODEL, WEIGHTS_DIR, load_model

K, J, I = 6, 64, 64
FLIP_XY = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def ct_array(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    _, y, x = np.mgrid[0:K, 0:J, 0:I]
    body = ((x - 32) / 26.0) ** 2 + ((y - 32) / 20.0) ** 2 < 1
    hu = np.where(body, 40.0, -1000.0) + rng.normal(0, 15, (K, J, I))
    hu[(x - 20) ** 2 + (y - 32) ** 2 < 25] = 700
    return np.round(hu).astype(np.int16)


def pet_array() -> np.ndarray:
    _, y, x = np.mgrid[0:K, 0:J, 0:I]
    body = ((x - 32) / 26.0) ** 2 + ((y - 32) / 20.0) ** 2 < 1
    pet = np.where(body, 5000.0, 0.0).astype(np.float32)
    pet[:, 28:33, 40:45] = 30000.0
    return pet


def image(a: np.ndarray, spacing=(2.0, 2.0, 3.0), origin=(0.0, 0.0, 0.0), direction=None, vector=False) -> sitk.Image:
    im = sitk.GetImageFromArray(a, isVector=vector)
    im.SetSpacing(spacing)
    im.SetOrigin(origin)
    if direction is not None:
        im.SetDirection(direction)
    return im


def write(im: sitk.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(im, str(path))
    return path


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    return write(image(ct_array()), folder / "ct.nrrd"), write(image(pet_array()), folder / "pet.nrrd")


def snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def assert_fails(tmp_path, capsys, args, *phrases, command="assess"):
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    rc = cli.main([command, *args, "--out", str(out), "--device", "cpu", "--batch-size", "4", "-q"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("msiqa: error: "), err
    assert "Traceback" not in err
    for phrase in phrases:
        assert phrase in err, err
    assert not out.exists()
    assert snapshot(tmp_path) == before  # no partial or temporary files either
    return err


# --- bad inputs -------------------------------------------------------------------------


def test_missing_file(tmp_path, capsys, inputs):
    assert_fails(tmp_path, capsys, ["--ct", str(tmp_path / "nope.nrrd")], "CT:", "nope.nrrd does not exist")


def test_unreadable_file(tmp_path, capsys):
    bad = tmp_path / "garbage.nrrd"
    bad.write_bytes(bytes(range(256)) * 20)
    assert_fails(tmp_path, capsys, ["--ct", str(bad)], "cannot read", "garbage.nrrd")


def test_2d_image_where_a_volume_is_expected(tmp_path, capsys):
    flat = write(image(ct_array()[0], spacing=(2.0, 2.0), origin=(0.0, 0.0)), tmp_path / "slice.nrrd")
    assert_fails(tmp_path, capsys, ["--ct", str(flat)], "2D image", "msiqa score")


def test_single_slice_volume_counts_as_2d(tmp_path, capsys):
    one = write(image(ct_array()[:1]), tmp_path / "one.nrrd")
    assert_fails(tmp_path, capsys, ["--ct", str(one)], "2D image")


@pytest.mark.parametrize("suffix", [".nrrd", ".nii"])
def test_4d_data(tmp_path, capsys, suffix):
    data = np.random.default_rng(0).random((3, K, 16, 16)).astype(np.float32)  # T, K, J, I
    four = sitk.GetImageFromArray(data, isVector=False)
    assert four.GetDimension() == 4
    path = write(four, tmp_path / f"dynamic{suffix}")
    assert_fails(tmp_path, capsys, ["--pet", str(path)], "4D data is not supported")


def test_empty_volume(tmp_path, capsys):
    # SimpleITK can create but not write a volume with a zero-length axis (and its NRRD reader
    # rejects one); a MetaImage header with DimSize 0 reads back as an empty 3D image.
    path = tmp_path / "empty.mha"
    path.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 64 64 0\nElementType = MET_SHORT\n"
        "ElementSpacing = 1 1 1\nElementDataFile = LOCAL\n"
    )
    assert sitk.ReadImage(str(path)).GetSize() == (64, 64, 0)
    assert_fails(tmp_path, capsys, ["--ct", str(path)], "empty")


def test_constant_volume(tmp_path, capsys):
    path = write(image(np.full((K, J, I), -1000, np.int16)), tmp_path / "blank.nrrd")
    assert_fails(tmp_path, capsys, ["--ct", str(path)], "constant", "-1000")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels(tmp_path, capsys, bad):
    pet = pet_array()
    pet[2, 10, 10:13] = bad
    path = write(image(pet), tmp_path / "pet.nrrd")
    assert_fails(tmp_path, capsys, ["--pet", str(path)], "3 voxels are NaN or infinite")


def test_pet_and_ct_that_do_not_overlap(tmp_path, capsys):
    ct = write(image(ct_array()), tmp_path / "ct.nrrd")
    pet = write(image(pet_array(), origin=(0.0, 0.0, 900.0)), tmp_path / "pet.nrrd")
    assert_fails(tmp_path, capsys, ["--ct", str(ct), "--pet", str(pet)], "do not overlap", "same study")


def test_grey_volume_given_as_rgb(tmp_path, capsys):
    ct = write(image(ct_array()), tmp_path / "ct.nrrd")
    assert_fails(tmp_path, capsys, ["--rgb", str(ct)], "3 components per voxel", "has 1")


def test_rgb_volume_given_as_ct(tmp_path, capsys):
    rgb = np.random.default_rng(0).integers(0, 255, (K, J, I, 3), dtype=np.uint8)
    path = write(image(rgb, vector=True), tmp_path / "fused.nrrd")
    assert_fails(tmp_path, capsys, ["--ct", str(path)], "--rgb")


def test_rgb_and_ct_together(tmp_path, capsys, inputs):
    ct, _ = inputs
    assert_fails(tmp_path, capsys, ["--ct", str(ct), "--rgb", str(ct)], "not both")


def test_nothing_to_assess(tmp_path, capsys):
    assert_fails(tmp_path, capsys, [], "nothing to assess")


def test_non_axial_volume(tmp_path, capsys):
    coronal = (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0)  # k runs anterior-posterior
    path = write(image(ct_array(), direction=coronal), tmp_path / "coronal.nrrd")
    assert_fails(tmp_path, capsys, ["--ct", str(path)], "not axial")


def test_weights_that_fail_their_checksum(tmp_path, capsys, inputs):
    ct, _ = inputs
    weights = tmp_path / "x.safetensors"
    shutil.copy(WEIGHTS_DIR / f"{DEFAULT_MODEL}.safetensors", weights)
    shutil.copy(WEIGHTS_DIR / f"{DEFAULT_MODEL}.json", tmp_path / "x.json")
    assert load_model(weights).card["sha256"]  # the intact copy loads
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert_fails(tmp_path, capsys, ["--ct", str(ct), "--model", str(weights)], "x.safetensors fails its checksum")


def test_unknown_model_name(tmp_path, capsys, inputs):
    ct, _ = inputs
    assert_fails(tmp_path, capsys, ["--ct", str(ct), "--model", "no-such-model"], "not found", DEFAULT_MODEL)


def test_failed_run_keeps_the_previous_outputs(tmp_path, capsys, inputs):
    ct, pet = inputs
    out = tmp_path / "out"
    assert cli.main(["assess", "--ct", str(ct), "--pet", str(pet), "--out", str(out), "--device", "cpu",
                     "--batch-size", "4", "-q"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == sorted(cli.OUTPUTS)
    blank = write(image(np.zeros((K, J, I), np.int16)), tmp_path / "blank.nrrd")
    capsys.readouterr()
    rc = cli.main(["assess", "--ct", str(blank), "--out", str(out), "--device", "cpu", "-q"])
    assert rc == 2 and "constant" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --- formats ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_reads_each_file_format(tmp_path, suffix):
    hu = ct_array()
    original = image(hu, spacing=(0.9, 1.1, 2.5), origin=(-30.0, 12.5, 100.0), direction=FLIP_XY)
    path = write(original, tmp_path / f"ct{suffix}")
    back = read_volume(path, "CT")
    assert np.array_equal(sitk.GetArrayViewFromImage(back), hu)
    assert np.allclose(back.GetSpacing(), original.GetSpacing(), atol=1e-5)
    assert np.allclose(back.GetOrigin(), original.GetOrigin(), atol=1e-4)
    assert np.allclose(back.GetDirection(), original.GetDirection(), atol=1e-6)


def write_dicom_series(folder: Path, arr: np.ndarray, spacing, origin, modality: str, slope: float,
                       intercept: float, extra: dict[str, str] | None = None) -> Path:
    """One file per slice with SimpleITK; ITK stores (value - intercept) / slope.

    GDCM's writer leaves the process's LC_CTYPE at "C" once it has formatted an image position:
    the locale is put back, or later tests that decode a child's output as text would read ASCII."""
    saved = locale.setlocale(locale.LC_CTYPE)
    try:
        return _write_dicom_series(folder, arr, spacing, origin, modality, slope, intercept, extra)
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)


def _write_dicom_series(folder: Path, arr: np.ndarray, spacing, origin, modality: str, slope: float,
                        intercept: float, extra: dict[str, str] | None) -> Path:
    folder.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    sop_class = "1.2.840.10008.5.1.4.1.1.2" if modality == "CT" else "1.2.840.10008.5.1.4.1.1.128"
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(arr.shape[0]):
        sl = sitk.GetImageFromArray(arr[k])
        sl.SetSpacing(spacing[:2])
        position = (origin[0], origin[1], origin[2] + k * spacing[2])
        tags = {
            "0008|0016": sop_class, "0008|0018": generate_uid(), "0008|0060": modality,
            "0020|000d": study, "0020|000e": series, "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:g}" for v in position), "0020|0037": "1\\0\\0\\0\\1\\0",
            "0018|0050": f"{spacing[2]:g}", "0028|1052": f"{intercept:g}", "0028|1053": f"{slope:g}",
            **(extra or {}),
        }
        for tag, value in tags.items():
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{k:03d}.dcm"))
        writer.Execute(sl)
    return folder


def test_reads_a_ct_dicom_series_with_rescale(tmp_path):
    hu = ct_array()
    folder = write_dicom_series(tmp_path / "ct", hu, (0.8, 0.8, 2.5), (-25.0, -25.0, 40.0), "CT", 1, -1024)
    ds = pydicom.dcmread(str(folder / "000.dcm"))
    assert ds.pixel_array.dtype == np.int16 and float(ds.RescaleIntercept) == -1024.0
    assert np.array_equal(ds.pixel_array, hu[0] + 1024)  # stored values really are rescaled
    back = read_volume(folder, "CT")
    assert np.array_equal(sitk.GetArrayViewFromImage(back), hu)
    assert np.allclose(back.GetSpacing(), (0.8, 0.8, 2.5))
    assert np.allclose(back.GetOrigin(), (-25.0, -25.0, 40.0))
    assert suv_info(back).factor is None


@pytest.mark.parametrize("start,series_time,elapsed", [("100000", "110000.000", 3600.0), ("233000", "003000", 3600.0),
                                                        ("081512.5", "091012.5", 3300.0)])
def test_reads_a_pet_dicom_series_with_suv_tags(tmp_path, start, series_time, elapsed):
    activity = pet_array()  # even values up to 30000: stored as int16 with slope 2
    bits = {"0028|0100": "16", "0028|0101": "16", "0028|0102": "15", "0028|0103": "1"}
    folder = write_dicom_series(tmp_path / "pet", activity, (2.0, 2.0, 3.0), (0.0, 0.0, 0.0), "PT", 2.0, 0, bits)
    weight, dose, half_life = 72.5, 3.7e8, 6586.2
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(str(f))
        ds.Units = "BQML"
        ds.PatientWeight = weight
        ds.SeriesTime = series_time
        rp = Dataset()
        rp.RadionuclideTotalDose = dose
        rp.RadionuclideHalfLife = half_life
        rp.RadiopharmaceuticalStartTime = start
        ds.RadiopharmaceuticalInformationSequence = Sequence([rp])
        ds.save_as(str(f))
    pet = read_volume(folder, "PET")
    assert np.allclose(sitk.GetArrayViewFromImage(pet), activity)
    info = suv_info(pet)
    expected = weight * 1000.0 / (dose * 2.0 ** (-elapsed / half_life))  # g / (Bq at scan start)
    assert info.factor == pytest.approx(expected, rel=1e-9)
    assert "DICOM" in info.method


def test_a_pet_dicom_series_in_suv_units_is_read_as_suv(tmp_path):
    # Units GML (g/ml) means the values are SUVbw already, as the IBSI sarcoma PET crops store them:
    # rescaling them again by their own median would move the colour map a reader sees.
    suv = (pet_array() / 10000.0).astype(np.float32)  # body SUV 0.5, lesion 3
    bits = {"0028|0100": "16", "0028|0101": "16", "0028|0102": "15", "0028|0103": "1"}
    folder = write_dicom_series(tmp_path / "pet", suv, (4.0, 4.0, 3.0), (0.0, 0.0, 0.0), "PT",
                                0.001, 0, bits)
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(str(f))
        ds.Units = "GML"
        ds.PatientWeight = 71.0
        ds.save_as(str(f))
    pet = read_volume(folder, "PET")
    assert np.allclose(sitk.GetArrayViewFromImage(pet), suv, atol=1e-3)
    info = suv_info(pet)
    assert info.factor == 1.0 and "GML" in info.method
    assert pseudo_suv_factor(pet) != pytest.approx(1.0, abs=0.05)  # the fallback would have rescaled it


def test_suv_from_volume_metadata(tmp_path):
    pet = image(pet_array())
    pet.SetMetaData("msiqa_patient_weight_kg", "80")
    pet.SetMetaData("msiqa_injected_dose_bq", "4e8")
    back = read_volume(write(pet, tmp_path / "pet.nrrd"), "PET")
    assert suv_info(back).factor == pytest.approx(80_000 / 4e8)


def test_dicom_folder_with_two_series(tmp_path, capsys):
    folder = tmp_path / "mixed"
    write_dicom_series(folder / "a", ct_array(), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), "CT", 1, -1024)
    write_dicom_series(folder / "b", ct_array(1), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), "CT", 1, -1024)
    for f in (folder / "b").iterdir():
        f.rename(folder / f"b{f.name}")
    for f in (folder / "a").iterdir():
        f.rename(folder / f"a{f.name}")
    (folder / "a").rmdir()
    (folder / "b").rmdir()
    assert_fails(tmp_path, capsys, ["--ct", str(folder)], "2 DICOM series")


# --- directions -------------------------------------------------------------------------


def _rot_z(deg: float) -> tuple[float, ...]:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return tuple(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).ravel())


@pytest.mark.parametrize(
    "direction,axes,flip_rows,flip_cols",
    [
        ((1, 0, 0, 0, 1, 0, 0, 0, 1), (0, 1), False, False),  # LPS identity
        (FLIP_XY, (0, 1), True, True),  # RAS-style storage
        ((-1, 0, 0, 0, 1, 0, 0, 0, -1), (0, 1), False, True),  # x flipped, slices head-first
        ((0, 1, 0, 1, 0, 0, 0, 0, -1), (1, 0), False, False),  # i runs along y: transposed
        ((0, -1, 0, 1, 0, 0, 0, 0, 1), (1, 0), False, True),  # i along +y, j along -x
        (_rot_z(15), (0, 1), False, False),  # mildly oblique
        (_rot_z(170), (0, 1), True, True),  # nearly flipped oblique
    ],
)
def test_axial_order(direction, axes, flip_rows, flip_cols):
    im = image(ct_array(), direction=tuple(float(v) for v in direction))
    got_axes, got_rows, got_cols = axial_order(im, "CT")
    assert tuple(got_axes) == axes and got_rows == flip_rows and got_cols == flip_cols


def test_axial_order_refuses_sagittal_slices():
    sagittal = (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # k runs left-right
    with pytest.raises(InputError, match="not axial"):
        axial_order(image(ct_array(), direction=sagittal), "CT")


def test_read_volume_accepts_an_image_in_memory():
    im = image(ct_array())
    assert read_volume(im, "CT") is im


def test_summary_records_the_inputs(tmp_path, inputs):
    ct, pet = inputs
    out = tmp_path / "res"
    assert cli.main(["assess", "--ct", str(ct), "--pet", str(pet), "--out", str(out), "--device", "cpu", "-q"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == {"CT": str(ct.resolve()), "PET": str(pet.resolve())}
    assert summary["rendering"]["inputs"] == "PET over CT"
