"""Is a volume file whole? Its voxel data must be as long as its header says.

ITK reads a NIfTI file (.nii or .nii.gz) that was cut short without an error: the missing
voxels become zeros and would be scored as if they were real. A MetaImage (.mha/.mhd) cut
short fails inside ITK with a misleading "No such file or directory" and raw MetaIO lines on
the terminal. Both are checked here, before ITK reads the voxels, from the header ITK has
read (size and pixel type) and the few header fields that say where the voxels start.
NRRD needs no check: ITK refuses a short NRRD itself (see ``volumes._read_file``).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import SimpleITK as sitk

from .errors import InputError

_CHUNK = 1 << 16  # a cut stream loses at most the chunk being read from the count


def voxel_bytes(reader: sitk.ImageFileReader) -> int:
    """Bytes of voxel data the header describes (after ReadImageInformation)."""
    one = sitk.Image([1] * reader.GetDimension(), reader.GetPixelID(), reader.GetNumberOfComponents())
    return math.prod(reader.GetSize()) * reader.GetNumberOfComponents() * one.GetSizeOfPixelComponent()


def check_whole(path: Path, role: str, reader: sitk.ImageFileReader) -> None:
    """Raise InputError if ``path`` holds less voxel data than its header (read by ``reader``) describes."""
    name = path.name.lower()
    cut = False
    if name.endswith((".nii", ".nii.gz")):
        start, available, cut = _nifti(path, role)
        expected = voxel_bytes(reader)
    elif name.endswith((".mha", ".mhd")):
        counted = _metaimage(path, role, voxel_bytes(reader))
        if counted is None:
            return
        (expected, available), start = counted, 0
    else:
        return
    if cut or available < start + expected:
        held = min(expected, max(0, available - start))
        what = "its compressed data stops before the end" if cut else f"the file holds {held:,}"
        raise InputError(
            f"{role}: {path} is truncated: its header describes {expected:,} bytes of voxel data and {what} "
            f"({100.0 * held / max(expected, 1):.0f} % there). It was probably cut short by an interrupted copy "
            "or download: copy or export it again."
        )


def _nifti(path: Path, role: str) -> tuple[int, int, bool]:
    """(offset of the first voxel, bytes the file holds once decompressed, whether the gzip stream is cut)."""
    if not path.name.lower().endswith(".gz"):
        with open(path, "rb") as f:
            head = f.read(540)
        return _vox_offset(head, path, role), path.stat().st_size, False
    head, total, cut = b"", 0, False
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(540)
            total = len(head)
            while chunk := f.read(_CHUNK):
                total += len(chunk)
    except EOFError:  # the compressed stream ends early
        cut = True
    except (OSError, zlib.error) as e:
        raise InputError(f"{role}: {path} is damaged: its gzip data cannot be decompressed ({e}). "
                         "Copy or export it again.") from None
    start = _vox_offset(head, path, role) if head or not cut else 0
    return start, total, cut


def _vox_offset(head: bytes, path: Path, role: str) -> int:
    """Where the voxels start: NIfTI-1 (348-byte header, float vox_offset) or NIfTI-2 (540, int64)."""
    for order in "<>":
        if len(head) >= 4 and struct.unpack(order + "i", head[:4])[0] == 348 and len(head) >= 112:
            return int(struct.unpack(order + "f", head[108:112])[0])
        if len(head) >= 4 and struct.unpack(order + "i", head[:4])[0] == 540 and len(head) >= 176:
            return int(struct.unpack(order + "q", head[168:176])[0])
    raise InputError(f"{role}: {path} does not start with a NIfTI header (it is damaged or not NIfTI).")


def _metaimage(path: Path, role: str, voxels: int) -> tuple[int, int] | None:
    """(expected, available) bytes of voxel data, or None where the layout is not one file of raw or
    zlib data (file lists and patterns are left to ITK)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    fields: dict[str, str] = {}
    end = None
    offset = 0
    for line in head.split(b"\n"):
        offset += len(line) + 1
        key, _, value = line.decode("latin-1").partition("=")
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            end = offset
            break
    if end is None:
        return None  # ITK has read the header, so it is there; a header over 64 KB is left to ITK
    data_file = fields["elementdatafile"]
    compressed = fields.get("compresseddata", "false").lower() == "true"
    if data_file.upper() == "LOCAL":
        available = path.stat().st_size - end
    elif data_file.upper().startswith("LIST") or "%" in data_file:
        return None
    else:
        raw = path.parent / data_file
        if not raw.is_file():
            raise InputError(f"{role}: {path} keeps its voxels in {raw}, which does not exist. "
                             "Keep the .mhd and its data file together.")
        available = raw.stat().st_size
    if compressed:
        size = fields.get("compresseddatasize")
        return (int(size), available) if size and size.isdigit() else None
    header = int(fields.get("headersize", "0") or 0)
    return voxels + max(header, 0), available
