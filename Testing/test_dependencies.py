"""msiqa.dependencies: which packages are missing, without importing any of them."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import msiqa  # noqa: F401
except ImportError:  # run without the pyproject's pythonpath
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MSIQA"))

from msiqa import dependencies as deps  # noqa: E402


def fake_versions(table):
    def version_of(name):
        if name in table:
            return table[name]
        raise importlib.metadata.PackageNotFoundError(name)

    return version_of


def test_version_parsing():
    assert deps.version_tuple("2.4.1+cu121") == (2, 4, 1)
    assert deps.version_tuple("0.9.16rc1") == (0, 9, 16)
    assert deps.version_tuple("1.0.0.dev3") == (1, 0, 0)
    assert deps.is_satisfied("2.0", "2.0") and deps.is_satisfied("2.0.1", "2.0")
    assert deps.is_satisfied("10.0", "9.9") and not deps.is_satisfied("1.13.1", "2.0")
    assert deps.is_satisfied("anything", None)


def test_nothing_missing():
    everything = fake_versions({"torch": "2.5.0+cpu", "torchvision": "0.20.0", "timm": "1.0.9", "safetensors": "0.4.5"})
    assert deps.missing(version_of=everything) == []
    assert deps.install_plan([]).empty


def test_missing_and_too_old():
    some = fake_versions({"torch": "1.13.1", "torchvision": "0.14.1", "safetensors": "0.4.5"})
    names = [r.name for r in deps.missing(version_of=some)]
    assert names == ["torch", "timm"]  # torch too old, timm absent
    plan = deps.install_plan(deps.missing(version_of=some))
    assert plan.torch and plan.torch_version == ">=2.0"
    assert plan.pip == ("timm>=0.9",)
    assert "PyTorch" in plan.describe() and "timm" in plan.describe()


def test_only_pip_packages_missing():
    no_extras = fake_versions({"torch": "2.3.0", "torchvision": "0.18.0"})
    plan = deps.install_plan(deps.missing(version_of=no_extras))
    assert not plan.torch and plan.pip == ("timm>=0.9", "safetensors>=0.4")


def test_slicer_bundled_packages_are_never_installed():
    plan = deps.install_plan([deps.Requirement("SimpleITK"), deps.Requirement("numpy", "1.0"), deps.Requirement("timm")])
    assert plan.pip == ("timm",)
    assert not any(r.name.lower() in deps.NEVER_INSTALL for r in deps.REQUIREMENTS)


def test_check_imports_nothing():
    """Checking must not import torch (that would lock its files against a repair install)."""
    code = (
        "import sys; from msiqa import dependencies as d; d.missing(); "
        "bad = [m for m in ('torch', 'torchvision', 'timm', 'safetensors') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[1] / "MSIQA"
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_this_environment_has_everything():
    pytest.importorskip("torch")
    assert deps.missing() == []
