"""A DICOM series folder: which series it holds, and whether the one to read is whole.

GDCM leaves out of a series, without a word, every file it cannot parse (a truncated or
damaged file), and ITK stacks what remains with one average spacing, so a missing slice
would shift every slice after it. Here a folder must hold exactly one series, no DICOM file
that is not part of it, and slices evenly spaced; otherwise the message says which.
A slice missing at either end of a series leaves no gap and cannot be seen this way.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputError

# Spacing between neighbouring slices may differ from the median by this fraction (rounded
# positions in the headers); more than that is a gap or an overlap.
SPACING_TOLERANCE = 0.05


@dataclass(frozen=True)
class Series:
    uid: str
    files: tuple[str, ...]
    modality: str
    description: str
    number: str

    def __str__(self) -> str:
        what = ", ".join(v for v in (f"series {self.number}" if self.number else "", self.modality,
                                       repr(self.description) if self.description else "") if v)
        return f"{what or 'no description'}: {len(self.files)} files (UID {self.uid})"


def _header(path: str):
    import pydicom

    return pydicom.dcmread(path, stop_before_pixels=True)


@contextlib.contextmanager
def _itk_warnings_off():
    """GDCM's 'No Series were found' goes to the terminal; our own message says it better."""
    before = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(before)


def list_series(folder: Path) -> list[Series]:
    out = []
    with _itk_warnings_off():
        uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
        found = {uid: tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in uids}
    for uid, files in found.items():
        try:
            ds = _header(files[0])
        except Exception:  # pydicom raises several kinds; GDCM has read it, so describe it without tags
            ds = None
        tag = lambda name: str(getattr(ds, name, "") or "").strip()  # noqa: E731
        out.append(Series(uid, files, tag("Modality"), tag("SeriesDescription"), tag("SeriesNumber")))
    return out


def series_files(folder: Path, role: str) -> list[str]:
    """The files of the one series in ``folder``, in slice order, after checking it is whole."""
    series = list_series(folder)
    if not series:
        stray = _dicom_files_outside(folder, set())
        detail = f" ({len(stray)} files look like DICOM but cannot be read: {_names(stray)})" if stray else ""
        raise InputError(f"{role}: the folder {folder} holds no readable DICOM series{detail}. "
                         "Point to the folder of one series.")
    if len(series) > 1:
        listing = "\n".join(f"  - {s}" for s in series)
        raise InputError(
            f"{role}: the folder {folder} holds {len(series)} DICOM series:\n{listing}\n"
            "Put the series to assess in a folder of its own and give that folder."
        )
    files = list(series[0].files)
    _check_no_stray_files(folder, files, role)
    _check_even_spacing(files, role, folder)
    return files


def looks_like_dicom(path: Path) -> bool:
    """A DICOM suffix, or the 'DICM' marker after the 128-byte preamble."""
    if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _dicom_files_outside(folder: Path, files: set[str]) -> list[Path]:
    inside = {Path(f).resolve() for f in files}
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.resolve() not in inside
                  and p.name.upper() != "DICOMDIR" and looks_like_dicom(p))  # DICOMDIR: an index, not an image


def _names(paths: list[Path], shown: int = 5) -> str:
    names = ", ".join(p.name for p in paths[:shown])
    return names + (f" and {len(paths) - shown} more" if len(paths) > shown else "")


def _check_no_stray_files(folder: Path, files: list[str], role: str) -> None:
    stray = _dicom_files_outside(folder, set(files))
    if stray:
        raise InputError(
            f"{role}: in {folder}, {len(stray)} DICOM file(s) are not part of the series of {len(files)} files: "
            f"{_names(stray)}. They are truncated or damaged (or not images): the series may be incomplete. "
            "Copy or export the series again, or move those files out of the folder."
        )


def _check_even_spacing(files: list[str], role: str, folder: Path) -> None:
    if len(files) < 3:
        return
    positions, normal = [], None
    for f in files:
        ds = _header(f)
        ipp, iop = getattr(ds, "ImagePositionPatient", None), getattr(ds, "ImageOrientationPatient", None)
        if ipp is None or iop is None or len(ipp) != 3 or len(iop) != 6:
            return  # no geometry in the headers (e.g. secondary captures): nothing to compare
        if normal is None:
            normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
        positions.append(float(np.dot(normal, np.asarray(ipp, float))))
    order = np.argsort(positions)
    steps = np.diff(np.asarray(positions)[order])
    typical = float(np.median(steps))
    if typical <= 0:
        raise InputError(f"{role}: in {folder}, most slices share one position: the series holds several "
                         "acquisitions or time frames. Export one of them on its own.")
    bad = np.flatnonzero(np.abs(steps - typical) > SPACING_TOLERANCE * typical)
    if bad.size:
        i = int(bad[0])
        a, b = Path(files[order[i]]).name, Path(files[order[i + 1]]).name
        kind = "a slice is missing between them" if steps[i] > typical else "they overlap or repeat a slice"
        raise InputError(
            f"{role}: in {folder}, slices {a} and {b} are {steps[i]:.2f} mm apart where the series' slices are "
            f"{typical:.2f} mm apart: {kind} ({bad.size} such place(s)). Copy or export the whole series again "
            "(if the scanner really spaced them unevenly, resample the series to even spacing first)."
        )
