"""The sample PET/CT study bundled with MS-IQA.

The files in ``sample_data/`` are made by :mod:`msiqa.phantom` and can be remade
byte for byte with (about a minute on two CPU cores)::

    python -m msiqa.sample_data            # regenerate the bundled files in place
    python -m msiqa.sample_data OUT_DIR    # or write them elsewhere

``sample_study.json`` holds the study description and the sha256 of both volumes;
:func:`load_sample_study` checks them before handing the paths out. Each of its
``degraded_ranges`` says which fault it holds (``fault``, ``cause`` as the model names it,
``severity`` with its unit), what that fault measures there (``measured``: e.g. the liver
CoV of the PET, the added HU noise of the CT, a shift in mm), and whether a reader would
accept it (``clinically_acceptable``, with the criterion in ``reason``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk

from .errors import InputError
from .checksums import sha256_of

__all__ = [
    "SAMPLE_DIR",
    "CT_FILE",
    "PET_FILE",
    "INFO_FILE",
    "SampleStudy",
    "load_sample_study",
    "generate",
    "sha256_of",
]

SAMPLE_DIR = Path(__file__).parent / "sample_data"
CT_FILE = "sample_ct.nrrd"
PET_FILE = "sample_pet.nrrd"
INFO_FILE = "sample_study.json"




@dataclass(frozen=True)
class SampleStudy:
    """Paths of the bundled volumes and the study description."""

    ct_path: Path
    pet_path: Path
    info: dict = field(repr=False, hash=False)

    def degraded_slices(self) -> list[int]:
        """Sorted CT slice indices k that lie in a degraded range."""
        ks = set()
        for r in self.info["degraded_ranges"]:
            ks.update(range(int(r["first"]), int(r["last"]) + 1))
        return sorted(ks)

    def degraded_slices_by_name(self) -> dict[str, list[int]]:
        return {
            r["name"]: list(range(int(r["first"]), int(r["last"]) + 1)) for r in self.info["degraded_ranges"]
        }

    def clean_slices(self) -> list[int]:
        """Sorted CT slice indices k outside every degraded range."""
        bad = set(self.degraded_slices())
        return [k for k in range(int(self.info["n_slices"])) if k not in bad]


def load_sample_study(directory: Path | str | None = None) -> SampleStudy:
    """The bundled sample study, after checking the sha256 of both volumes.

    Raises InputError when a file is missing or does not match its recorded checksum.
    """
    d = Path(directory) if directory is not None else SAMPLE_DIR
    info_path = d / INFO_FILE
    if not info_path.is_file():
        raise InputError(
            f"Sample study description {info_path} is missing; regenerate it with "
            "'python -m msiqa.sample_data'."
        )
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        recorded = info["files"]
    except (ValueError, KeyError) as exc:
        raise InputError(f"Sample study description {info_path} is malformed ({exc}); regenerate it.") from exc
    paths = {}
    for role, name in (("ct", CT_FILE), ("pet", PET_FILE)):
        path = d / name
        if not path.is_file():
            raise InputError(f"Sample {role.upper()} volume {path} is missing; regenerate it.")
        want = recorded.get(name, {}).get("sha256")
        got = sha256_of(path)
        if got != want:
            raise InputError(
                f"Sample {role.upper()} volume {path} does not match its recorded sha256 "
                f"(expected {want}, found {got}); the file is damaged or was changed. "
                "Restore it from the repository or regenerate it with 'python -m msiqa.sample_data'."
            )
        paths[role] = path
    return SampleStudy(ct_path=paths["ct"], pet_path=paths["pet"], info=info)


def generate(out_dir: Path | str, seed: int = 0) -> SampleStudy:
    """Simulate the study and write the two volumes and the description to out_dir."""
    from . import phantom  # heavy imports only when generating

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ct, pet, info = phantom.simulate_study(seed)
    ct_path, pet_path = out / CT_FILE, out / PET_FILE
    sitk.WriteImage(ct, str(ct_path), useCompression=True)
    sitk.WriteImage(pet, str(pet_path), useCompression=True)
    info = dict(info)
    info.pop("generation_time_s", None)  # keep the description reproducible
    info["files"] = {
        CT_FILE: {"sha256": sha256_of(ct_path), "bytes": ct_path.stat().st_size},
        PET_FILE: {"sha256": sha256_of(pet_path), "bytes": pet_path.stat().st_size},
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return SampleStudy(ct_path=ct_path, pet_path=pet_path, info=info)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else SAMPLE_DIR
    import time

    t0 = time.perf_counter()
    study = generate(out)
    dt = time.perf_counter() - t0
    for p in (study.ct_path, study.pet_path, out / INFO_FILE):
        print(f"{p}  {p.stat().st_size / 1024:.0f} KiB")
    print(f"generated in {dt:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
