"""Truncated or damaged files and incomplete DICOM series stop with a specific message, exit 2
and no outputs (issue 7, point 3); a folder of several series names each of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from msiqa.errors import InputError
from msiqa.volumes import read_volume
from test_volumes import assert_fails, ct_array, image, write, write_dicom_series


def cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("name,compress,data_file", [
    ("ct.nii", False, None), ("ct.nii.gz", True, None), ("ct.mha", False, None), ("ct.mha", True, None),
    ("ct.mhd", False, "ct.raw"), ("ct.nrrd", False, None), ("ct.nrrd", True, None),
])
@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_volume_files(tmp_path, capsys, name, compress, data_file, keep):
    path = tmp_path / "in" / name
    path.parent.mkdir()
    sitk.WriteImage(image(ct_array()), str(path), compress)
    cut(path.parent / (data_file or name), keep)
    err = assert_fails(tmp_path, capsys, ["--ct", str(path)], "is truncated", "copy or export it again")
    assert "No such file" not in err and "MetaImage:" not in capsys.readouterr().out


def test_the_same_files_whole_are_read(tmp_path):
    for name, compress in [("a.nii", False), ("b.nii.gz", True), ("c.mha", True), ("d.mhd", False)]:
        path = write(image(ct_array()), tmp_path / name) if not compress else tmp_path / name
        if compress:
            sitk.WriteImage(image(ct_array()), str(path), True)
        assert read_volume(path, "CT").GetSize() == image(ct_array()).GetSize()


@pytest.mark.parametrize("size,message", [
    (64, "it is damaged or not a valid NIfTI file"),  # small: ITK's header check sees the damage
    (256, "its gzip data cannot be decompressed"),  # larger: ITK would read the header; our check sees it
])
def test_damaged_gzip_in_a_nifti(tmp_path, capsys, size, message):
    path = tmp_path / "in" / "ct.nii.gz"
    path.parent.mkdir()
    noise = np.random.default_rng(0).normal(0, 100, (8, size, size)).astype(np.int16)
    sitk.WriteImage(image(noise), str(path), True)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(data))
    assert_fails(tmp_path, capsys, ["--ct", str(path)], message)


def test_mhd_without_its_data_file(tmp_path, capsys):
    path = write(image(ct_array()), tmp_path / "in" / "ct.mhd")
    (path.parent / "ct.raw").unlink()
    assert_fails(tmp_path, capsys, ["--ct", str(path)], "ct.raw, which does not exist")


def series(tmp_path: Path) -> Path:
    return write_dicom_series(tmp_path / "in" / "ct", ct_array(), (0.8, 0.8, 2.5), (-25.0, -25.0, 40.0), "CT", 1, -1024)


@pytest.mark.parametrize("keep", [0.02, 0.5, 0.95])
def test_dicom_series_with_a_truncated_file(tmp_path, capsys, keep):
    folder = series(tmp_path)
    cut(folder / "003.dcm", keep)
    assert_fails(tmp_path, capsys, ["--ct", str(folder)], "003.dcm", "not part of the series", "truncated")


def test_dicom_series_with_a_missing_file(tmp_path, capsys):
    folder = series(tmp_path)
    (folder / "002.dcm").unlink()
    assert_fails(tmp_path, capsys, ["--ct", str(folder)], "001.dcm and 003.dcm are 5.00 mm apart",
                 "2.50 mm", "a slice is missing")


def test_dicom_series_with_a_repeated_slice(tmp_path, capsys):
    folder = series(tmp_path)
    ds = pydicom.dcmread(folder / "004.dcm")
    ds.ImagePositionPatient = pydicom.dcmread(folder / "003.dcm").ImagePositionPatient
    ds.save_as(folder / "004.dcm")
    with pytest.raises(InputError, match="overlap or repeat"):
        read_volume(folder, "CT")


def test_a_whole_series_beside_a_dicomdir_and_notes_is_read(tmp_path):
    folder = series(tmp_path)
    (folder / "notes.txt").write_text("not DICOM")
    (folder / "DICOMDIR").write_bytes(bytes(128) + b"DICM")
    assert read_volume(folder, "CT").GetSize() == (64, 64, 6)


def test_mixed_series_are_each_named(tmp_path, capsys):
    folder = tmp_path / "in" / "mixed"
    write_dicom_series(tmp_path / "a", ct_array(), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), "CT", 1, -1024,
                       {"0008|103e": "CHEST 1.0 B30f", "0020|0011": "3"})
    write_dicom_series(tmp_path / "b", ct_array(1)[:4], (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), "CT", 1, -1024,
                       {"0008|103e": "TOPOGRAM", "0020|0011": "1"})
    folder.mkdir(parents=True)
    for sub in ("a", "b"):
        for f in (tmp_path / sub).iterdir():
            f.rename(folder / f"{sub}{f.name}")
        (tmp_path / sub).rmdir()
    err = assert_fails(tmp_path, capsys, ["--ct", str(folder)], "2 DICOM series")
    assert "series 3, CT, 'CHEST 1.0 B30f': 6 files" in err
    assert "series 1, CT, 'TOPOGRAM': 4 files" in err


def test_folder_without_dicom(tmp_path, capsys):
    folder = tmp_path / "in" / "notes"
    folder.mkdir(parents=True)
    (folder / "readme.txt").write_text("hello")
    assert_fails(tmp_path, capsys, ["--ct", str(folder)], "holds no readable DICOM series")
