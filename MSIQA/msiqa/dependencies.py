"""Which Python packages the engine needs and which of them are missing.

The list is ``requirements.txt`` beside this file, the same file pyproject.toml takes the
package's dependencies from. GUI-free and import-free: packages are looked up through their
installed metadata (importlib.metadata), never imported, so checking does not load torch or
lock its files (which would block a repair install in Slicer). The Slicer module installs
torch and torchvision through the PyTorch extension (PyTorchUtils, which picks the CUDA/CPU
build) and the rest with pip; what Slicer itself ships (:data:`NEVER_INSTALL`) is never
installed here.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional


REQUIREMENTS_FILE = Path(__file__).with_name("requirements.txt")

# Installed by the PyTorch extension (PyTorchUtils picks the CUDA or CPU build), not by pip.
VIA_PYTORCH_UTILS = frozenset({"torch", "torchvision"})

# Packages Slicer 5.10+ ships (SuperBuild/External_python-*.cmake: numpy, SimpleITK, scipy,
# pydicom and pillow in the DICOM requirements) and that must never be replaced from inside it.
NEVER_INSTALL = frozenset({"simpleitk", "numpy", "scipy", "pydicom", "pillow"})


@dataclass(frozen=True)
class Requirement:
    name: str  # distribution name, as pip knows it
    minimum: Optional[str] = None  # lowest acceptable version, or None for any
    via_pytorch_utils: bool = False  # installed by the PyTorch extension, not by pip

    @property
    def pip_spec(self) -> str:
        return f"{self.name}>={self.minimum}" if self.minimum else self.name


_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:>=\s*([0-9][0-9A-Za-z.]*))?$")


def read_requirements(path: Path = REQUIREMENTS_FILE) -> tuple[Requirement, ...]:
    """The requirements file: one ``NAME>=MINIMUM`` (or ``NAME``) a line, ``#`` comments."""
    out = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _LINE.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: {raw!r} is not NAME>=MINIMUM")
        name = match.group(1)
        out.append(Requirement(name, match.group(2), via_pytorch_utils=name.lower() in VIA_PYTORCH_UTILS))
    return tuple(out)


REQUIREMENTS: tuple[Requirement, ...] = read_requirements()


def version_tuple(version: str) -> tuple[int, ...]:
    """Leading numeric release parts of a version: "2.4.1+cu121" -> (2, 4, 1); "0.9.16rc1" -> (0, 9, 16)."""
    parts = []
    for piece in version.split("+")[0].split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
        if match.end() != len(piece):  # "16rc1": keep 16, stop at the pre-release tag
            break
    return tuple(parts)


def is_satisfied(installed: str, minimum: Optional[str]) -> bool:
    if minimum is None:
        return True
    have, need = version_tuple(installed), version_tuple(minimum)
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) >= need + (0,) * (width - len(need))


def installed_version(name: str, version_of: Callable[[str], str] = importlib.metadata.version) -> Optional[str]:
    """The installed version of a distribution, or None if it is not installed."""
    try:
        return version_of(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing(
    requirements: Iterable[Requirement] = REQUIREMENTS,
    version_of: Callable[[str], str] = importlib.metadata.version,
) -> list[Requirement]:
    """The requirements that are not installed or installed in too old a version."""
    out = []
    for requirement in requirements:
        version = installed_version(requirement.name, version_of)
        if version is None or not is_satisfied(version, requirement.minimum):
            out.append(requirement)
    return out


@dataclass(frozen=True)
class InstallPlan:
    torch: bool  # install torch/torchvision through PyTorchUtils
    torch_version: Optional[str]  # e.g. ">=2.0" for PyTorchUtils' torchVersionRequirement
    pip: tuple[str, ...]  # pip requirement strings for the rest

    @property
    def empty(self) -> bool:
        return not self.torch and not self.pip

    def describe(self) -> str:
        items = (["PyTorch (torch, torchvision)"] if self.torch else []) + list(self.pip)
        return ", ".join(items)


def install_plan(missing_requirements: Iterable[Requirement]) -> InstallPlan:
    """Split what is missing into the PyTorch install and the pip installs."""
    missing_requirements = list(missing_requirements)
    torch_reqs = [r for r in missing_requirements if r.via_pytorch_utils]
    torch_min = next((r.minimum for r in REQUIREMENTS if r.name == "torch"), None)
    pip = tuple(
        r.pip_spec
        for r in missing_requirements
        if not r.via_pytorch_utils and r.name.lower() not in NEVER_INSTALL
    )
    return InstallPlan(bool(torch_reqs), f">={torch_min}" if torch_reqs and torch_min else None, pip)
