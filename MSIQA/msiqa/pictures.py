"""2D picture files as the network's input: uint8 RGB (H, W, 3), for ``msiqa score``.

PNG, JPEG, TIFF and BMP through Pillow, single-frame DICOM through pydicom (modality LUT, YBR
colour, MONOCHROME1; a CT is windowed as the volumes are), whatever else SimpleITK reads (2D NRRD,
MHA, compressed DICOM). A volume, a multi-frame file or a folder is refused with a pointer to
``msiqa assess``; a picture smaller than one grid cell is refused as the volumes' slices are.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import InputError

_NOT_2D = "{path}: {what}; 'msiqa score' takes single 2D pictures. Assess a volume with 'msiqa assess' instead."


def _grey_to_uint8(a: np.ndarray, *, ct: bool) -> np.ndarray:
    if ct:
        from .render import RenderSettings, window_ct

        return np.round(window_ct(a, RenderSettings()) * 255.0).astype(np.uint8)
    if a.dtype == np.uint8:
        return a
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise InputError("the picture has NaN or infinite pixels.")
    if np.issubdtype(a.dtype, np.integer) or (a == np.round(a)).all():
        if a.min() >= 0 and a.max() <= 255:
            return a.astype(np.uint8)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.round((a - lo) / (hi - lo) * 255.0).astype(np.uint8)


def to_rgb(a: np.ndarray, *, ct: bool = False, path: str = "picture") -> np.ndarray:
    """A 2D picture as uint8 RGB (H, W, 3): grey is repeated, alpha dropped, wide ranges scaled."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        try:
            grey = _grey_to_uint8(a, ct=ct)
        except InputError as e:
            raise InputError(f"{path}: {e}") from None
        return np.repeat(grey[..., None], 3, axis=-1)
    if a.ndim == 3 and a.shape[-1] in (2, 3, 4):
        if a.shape[-1] == 2:  # grey + alpha
            return to_rgb(a[..., 0], ct=ct, path=path)
        rgb = a[..., :3]
        if rgb.dtype == np.uint8:
            return np.ascontiguousarray(rgb)
        rgb = rgb.astype(np.float64)
        if not np.isfinite(rgb).all():
            raise InputError(f"{path}: the picture has NaN or infinite pixels.")
        peak = float(rgb.max())
        scale = 1.0 if 0 <= rgb.min() and peak <= 255 else 255.0 / max(peak, 1e-6)
        return np.clip(np.round(rgb * scale), 0, 255).astype(np.uint8)
    raise InputError(f"{path}: a picture of shape {a.shape} is neither grey nor RGB.")


def _read_dicom_picture(path: Path) -> np.ndarray:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
    except Exception as e:  # pydicom raises several kinds for a damaged file
        raise InputError(f"{path}: cannot read it as DICOM ({e}).") from None
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise InputError(_NOT_2D.format(path=path, what=f"a multi-frame DICOM with {frames} frames"))
    if "PixelData" not in ds:
        raise InputError(f"{path}: this DICOM file holds no image (no pixel data).")
    modality = str(getattr(ds, "Modality", "")).upper()
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    try:
        a = ds.pixel_array
    except Exception:
        return _read_with_sitk(path)  # compressed transfer syntaxes pydicom cannot decode: GDCM can
    if photometric.startswith("YBR"):
        try:
            from pydicom.pixels import convert_color_space
        except ImportError:  # pydicom 2
            from pydicom.pixel_data_handlers.util import convert_color_space
        a = convert_color_space(a, photometric, "RGB")
    elif photometric.startswith("MONOCHROME"):
        try:
            from pydicom.pixels import apply_modality_lut
        except ImportError:
            from pydicom.pixel_data_handlers.util import apply_modality_lut
        a = apply_modality_lut(a, ds)
        if photometric == "MONOCHROME1" and modality != "CT":
            a = a.max() + a.min() - a
    return to_rgb(a, ct=(modality == "CT" and a.ndim == 2), path=str(path))


def _read_with_sitk(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        last = str(e).strip().splitlines()[-1] if str(e).strip() else ""
        raise InputError(f"{path}: cannot read it as an image ({last}). Give a PNG, JPEG or single-frame DICOM.") from None
    size = image.GetSize()
    if image.GetDimension() > 3 or (image.GetDimension() == 3 and size[2] > 1):
        raise InputError(_NOT_2D.format(path=path, what=f"this is a {'x'.join(map(str, size))} volume"))
    a = sitk.GetArrayFromImage(image)
    if image.GetDimension() == 3:
        a = a[0]
    modality = image.GetMetaData("0008|0060").strip().upper() if image.HasMetaDataKey("0008|0060") else ""
    return to_rgb(a, ct=(modality == "CT" and image.GetNumberOfComponentsPerPixel() == 1), path=str(path))


def _read_picture_file(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    from .dicom_series import looks_like_dicom

    if not path.exists():
        raise InputError(f"{path} does not exist. Check the path.")
    if path.is_dir():
        raise InputError(_NOT_2D.format(path=path, what="this is a folder (a DICOM series is a volume)"))
    if looks_like_dicom(path):
        return _read_dicom_picture(path)
    try:
        with Image.open(path) as im:
            frames = int(getattr(im, "n_frames", 1) or 1)
            if frames > 1:
                raise InputError(_NOT_2D.format(path=path, what=f"a multi-frame picture with {frames} frames"))
            if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
            a = np.array(im)
    except UnidentifiedImageError:
        return _read_with_sitk(path)
    except OSError as e:
        raise InputError(f"{path}: cannot read the picture ({e}).") from None
    return to_rgb(a, path=str(path))


def read_picture(path: str | os.PathLike) -> np.ndarray:
    """A 2D picture file (PNG, JPEG, TIFF, BMP, single-frame DICOM, 2D NRRD/MHA) -> uint8 RGB (H, W, 3),
    at least MIN_PICTURE_SIZE pixels each way."""
    from .volumes import check_picture_size

    picture = _read_picture_file(Path(path))
    check_picture_size(picture.shape[1], picture.shape[0], f"{path}: a picture of")
    return picture
