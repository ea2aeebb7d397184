"""Reading and checking the input volumes (NIfTI, NRRD, MHA, DICOM series).

Each check says what was wrong and what to do; nothing here writes or changes an input.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Union

import numpy as np
import SimpleITK as sitk

from .dicom_series import series_files
from .errors import GeometryError, InputError
from .truncation import check_whole

VolumeLike = Union[str, Path, sitk.Image]

# Metadata keys under which a PET volume may carry what SUV needs (the sample study writes
# them, so they survive an NRRD round trip); DICOM series are read with pydicom instead.
WEIGHT_KEY = "msiqa_patient_weight_kg"
DOSE_KEY = "msiqa_injected_dose_bq"  # decay-corrected to the scan start

# The network scores cells of 32x32 pixels (models.GRID_STRIDE); a picture smaller than one
# cell is mostly the black padding around it, and its score would mean nothing.
MIN_PICTURE_SIZE = 32


def read_volume(source: VolumeLike, role: str, *, rgb: bool = False) -> sitk.Image:
    """Read a 3D volume from a file, a DICOM folder or an in-memory image and check it."""
    if isinstance(source, sitk.Image):
        image = source
    else:
        path = Path(source)
        if not path.exists():
            raise InputError(f"{role}: {path} does not exist. Check the path.")
        image = _read_dicom_series(path, role) if path.is_dir() else _read_file(path, role)
        if path.is_dir():
            image.SetMetaData("msiqa_source", str(path))
    return check_volume(image, role, rgb=rgb)


def _read_file(path: Path, role: str) -> sitk.Image:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        known = next((fmt for suffix, fmt in _FORMATS.items() if path.name.lower().endswith(suffix)), None)
        if known:
            raise InputError(f"{role}: cannot read {path}: it is damaged or not a valid {known} file "
                             f"({_last_line(e)}). Copy or export it again.") from None
        raise InputError(
            f"{role}: cannot read {path} as an image ({_last_line(e)}). "
            "Give a NIfTI (.nii/.nii.gz), NRRD (.nrrd), MetaImage (.mha/.mhd) file or a DICOM series folder."
        ) from None
    check_whole(path, role, reader)
    try:
        return reader.Execute()
    except RuntimeError as e:
        reason = _last_line(e)
        if any(phrase in reason for phrase in _SHORT_DATA):
            raise InputError(f"{role}: {path} is truncated: its voxel data ends early ({reason}). "
                             "It was probably cut short by an interrupted copy or download: copy or export it again."
                             ) from None
        raise InputError(f"{role}: cannot read the voxels of {path} ({reason}). The file is damaged: "
                         "copy or export it again.") from None


_FORMATS = {".nii": "NIfTI", ".nii.gz": "NIfTI", ".nrrd": "NRRD", ".nhdr": "NRRD", ".mha": "MetaImage",
            ".mhd": "MetaImage"}

# How ITK's readers say that the voxel data is shorter than the header describes.
_SHORT_DATA = ("fread got only", "but received", "data not read completely", "unexpected end of file")


def _last_line(error: RuntimeError) -> str:
    text = str(error).strip()
    return text.splitlines()[-1] if text else ""


def _read_dicom_series(path: Path, role: str) -> sitk.Image:
    files = series_files(path, role)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as e:
        raise InputError(f"{role}: cannot read the DICOM series in {path}: {str(e).strip()[-200:]}") from None
    image.SetMetaData("msiqa_first_file", files[0])
    return image


def check_volume(image: sitk.Image, role: str, *, rgb: bool = False) -> sitk.Image:
    dim = image.GetDimension()
    if dim == 2 or (dim == 3 and image.GetSize()[2] == 1):
        raise InputError(
            f"{role}: this is a 2D image ({'x'.join(map(str, image.GetSize()[:2]))}), not a volume. "
            "Use 'msiqa score' for single images, or give the whole series."
        )
    if dim != 3:
        raise InputError(
            f"{role}: {dim}D data is not supported. Give one 3D volume (for a 4D or dynamic series, "
            "export the frame to assess)."
        )
    ncomp = image.GetNumberOfComponentsPerPixel()
    if rgb and ncomp != 3:
        raise InputError(
            f"{role}: an RGB fused volume needs 3 components per voxel, this one has {ncomp}. "
            "Pass a grey-scale CT with --ct or PET with --pet instead."
        )
    if not rgb and ncomp != 1:
        raise InputError(
            f"{role}: expected a grey-scale volume, this one has {ncomp} components per voxel. "
            "Pass an RGB fused PET/CT volume with --rgb."
        )
    if min(image.GetSize()) < 1:
        raise InputError(f"{role}: the volume is empty (size {image.GetSize()}).")
    a = sitk.GetArrayViewFromImage(image)
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            raise InputError(
                f"{role}: {int(bad.sum())} voxels are NaN or infinite. Fix or mask them before assessing."
            )
    lo, hi = a.min(), a.max()
    if lo == hi:
        raise InputError(f"{role}: every voxel has the value {lo}: the volume is constant (blank). Check the file.")
    return image


def check_picture_size(width: int, height: int, what: str, shown: str = "") -> None:
    """Refuse pictures (or slices) smaller than one cell of the network's grid."""
    if min(width, height) < MIN_PICTURE_SIZE:
        raise InputError(
            f"{what} {width}x{height} pixels{shown} are too small to assess: the network scores cells of "
            f"{MIN_PICTURE_SIZE}x{MIN_PICTURE_SIZE} pixels and needs at least one whole cell. "
            "Give the full-resolution image."
        )


def physical_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned physical bounding box of the voxel centres."""
    size = np.array(image.GetSize()) - 1
    corners = [
        image.TransformContinuousIndexToPhysicalPoint([float(c) for c in (size * np.array(bits))])
        for bits in np.ndindex(2, 2, 2)
    ]
    pts = np.array(corners)
    return pts.min(0), pts.max(0)


def check_overlap(reference: sitk.Image, moving: sitk.Image, role: str) -> None:
    lo1, hi1 = physical_bounds(reference)
    lo2, hi2 = physical_bounds(moving)
    overlap = np.minimum(hi1, hi2) - np.maximum(lo1, lo2)
    if (overlap <= 0).any():
        raise GeometryError(
            f"{role} and the reference volume do not overlap in space (reference spans "
            f"{np.round(lo1, 1).tolist()}..{np.round(hi1, 1).tolist()} mm, {role} spans "
            f"{np.round(lo2, 1).tolist()}..{np.round(hi2, 1).tolist()} mm). "
            "Are they from the same study? Register them first."
        )


def axial_order(image: sitk.Image, role: str) -> tuple[np.ndarray, bool, bool]:
    """How to show each k slice as Slicer's axial view shows it.

    Returns (axes, flip_rows, flip_cols): the slice array [j, i] becomes the displayed
    picture by an optional transpose (axes) and flips, so that screen-right is patient left
    and screen-up is anterior. Raises for volumes whose k axis is not superior-inferior.
    """
    d = np.array(image.GetDirection()).reshape(3, 3)  # columns: directions of i, j, k in LPS
    if np.argmax(np.abs(d[:, 2])) != 2:
        raise InputError(
            f"{role}: slices along k are not axial (k points along {np.round(d[:, 2], 2).tolist()} in LPS). "
            "Reformat the volume to axial slices first."
        )
    # Which of i, j points mostly left-right (LPS x)?
    i_is_x = abs(d[0, 0]) >= abs(d[0, 1])
    axes = np.array([0, 1]) if i_is_x else np.array([1, 0])
    col_axis = 0 if i_is_x else 1  # the ITK axis that runs across the screen
    row_axis = 1 - col_axis
    flip_cols = d[0, col_axis] < 0  # screen right must be patient left (+x in LPS)
    flip_rows = d[1, row_axis] < 0  # screen down must be posterior (+y in LPS)
    return axes, bool(flip_rows), bool(flip_cols)


@dataclass(frozen=True)
class SUVInfo:
    factor: float | None  # multiply Bq/ml by this to get SUV (body weight)
    method: str  # what happened, for the report


def suv_info(image: sitk.Image) -> SUVInfo:
    """SUV scaling from DICOM tags or the engine's metadata keys, if the metadata allows."""
    keys = set(image.GetMetaDataKeys())
    if WEIGHT_KEY in keys and DOSE_KEY in keys:
        w, dose = float(image.GetMetaData(WEIGHT_KEY)), float(image.GetMetaData(DOSE_KEY))
        if w > 0 and dose > 0:
            return SUVInfo(w * 1000.0 / dose, f"SUVbw from volume metadata (weight {w:g} kg, dose {dose:.4g} Bq)")
    if "msiqa_first_file" in keys:
        return _dicom_suv(image.GetMetaData("msiqa_first_file"))
    return SUVInfo(None, "no SUV metadata")


def _dicom_suv(path: str) -> SUVInfo:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    units = str(getattr(ds, "Units", "")).upper()
    weight = float(getattr(ds, "PatientWeight", 0) or 0)
    if units == "GML":  # DICOM PS3.3 C.8.9.1.1.3: g/ml is SUVbw, the values are SUV already
        return SUVInfo(1.0, "SUVbw from DICOM (Units GML: the values are SUV already)")
    seq = getattr(ds, "RadiopharmaceuticalInformationSequence", None)
    if units != "BQML" or weight <= 0 or not seq:
        return SUVInfo(None, f"DICOM PET lacks SUV tags (Units={units or 'missing'}, weight={weight or 'missing'})")
    rp = seq[0]
    dose = float(getattr(rp, "RadionuclideTotalDose", 0) or 0)
    half_life = float(getattr(rp, "RadionuclideHalfLife", 0) or 0)
    start = _dicom_time(getattr(rp, "RadiopharmaceuticalStartTime", None))
    scan = _dicom_time(getattr(ds, "SeriesTime", None) or getattr(ds, "AcquisitionTime", None))
    if dose <= 0 or half_life <= 0 or start is None or scan is None:
        return SUVInfo(None, "DICOM PET lacks dose, half-life or times for SUV")
    elapsed = (scan - start) % 86400.0  # scans past midnight
    decayed = dose * 0.5 ** (elapsed / half_life)
    return SUVInfo(weight * 1000.0 / decayed, f"SUVbw from DICOM (weight {weight:g} kg, dose decayed {elapsed:.0f} s)")


def _dicom_time(value) -> float | None:
    if not value:
        return None
    s = str(value).split(".")[0].ljust(6, "0")
    try:
        t = datetime.strptime(s[:6], "%H%M%S")
    except ValueError:
        return None
    frac = float("0." + str(value).split(".")[1]) if "." in str(value) else 0.0
    return t.hour * 3600 + t.minute * 60 + t.second + frac
