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


def versions_meeting(requirements, **override):
    """A version table where every requirement is met exactly at its minimum, then ``override``."""
    table = {r.name: r.minimum or "1.0" for r in requirements}
    table.update({k: v for k, v in override.items() if v is not None})
    for k, v in override.items():
        if v is None:
            table.pop(k, None)
    return fake_versions(table)


def test_nothing_missing():
    assert deps.missing(version_of=versions_meeting(deps.REQUIREMENTS)) == []
    assert deps.install_plan([]).empty


def test_missing_and_too_old():
    some = versions_meeting(deps.REQUIREMENTS, torch="1.13.1", timm=None)
    names = [r.name for r in deps.missing(version_of=some)]
    assert names == ["torch", "timm"]  # torch too old, timm absent
    plan = deps.install_plan(deps.missing(version_of=some))
    torch_min = next(r.minimum for r in deps.REQUIREMENTS if r.name == "torch")
    timm = next(r for r in deps.REQUIREMENTS if r.name == "timm")
    assert plan.torch and plan.torch_version == f">={torch_min}"
    assert plan.pip == (timm.pip_spec,)
    assert "PyTorch" in plan.describe() and "timm" in plan.describe()


def test_only_pip_packages_missing():
    no_extras = fake_versions({"torch": "2.3.0", "torchvision": "0.18.0"})
    plan = deps.install_plan(deps.missing(version_of=no_extras))
    expected = tuple(r.pip_spec for r in deps.REQUIREMENTS
                     if not r.via_pytorch_utils and r.name.lower() not in deps.NEVER_INSTALL)
    assert not plan.torch and plan.pip == expected
    assert "timm>=1.0.31" in plan.pip and "safetensors>=0.4" in plan.pip


def test_slicer_bundled_packages_are_never_installed():
    plan = deps.install_plan([deps.Requirement("SimpleITK"), deps.Requirement("numpy", "1.0"), deps.Requirement("timm")])
    assert plan.pip == ("timm",)
    assert {"simpleitk", "numpy"} <= deps.NEVER_INSTALL


def test_timm_is_new_enough_for_flexible_swin_sizes():
    """The Swin branch's stages at input sizes other than its pretraining size (features_only with
    dynamic_img_size) need timm 1.0.31: measured, test_network.py fails under 1.0.8-1.0.30 ("Input
    height (64) doesn't match model (224)") and passes under 1.0.31."""
    timm = next(r for r in deps.REQUIREMENTS if r.name == "timm")
    assert deps.is_satisfied(timm.minimum, "1.0.31")


def test_pyproject_takes_its_dependencies_from_the_same_file():
    import tomllib

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    assert "dependencies" not in project["project"]  # no second list to drift apart
    assert "dependencies" in project["project"]["dynamic"]
    files = project["tool"]["setuptools"]["dynamic"]["dependencies"]["file"]
    assert [(root / f).resolve() for f in files] == [deps.REQUIREMENTS_FILE.resolve()]
    assert "requirements.txt" in project["tool"]["setuptools"]["package-data"]["msiqa"]


def test_built_metadata_lists_what_msiqa_checks(tmp_path):
    """The package metadata setuptools builds (what pip installs) requires exactly the list the
    Slicer module checks."""
    import shutil

    root = Path(__file__).resolve().parents[1]
    for name in ("pyproject.toml", "README.md", "MSIQA/msiqa/__init__.py", "MSIQA/msiqa/requirements.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / name, tmp_path / name)
    (tmp_path / "meta").mkdir()
    code = ("import os, sys; from setuptools import build_meta as b; d = b.prepare_metadata_for_build_wheel('meta'); "
            "sys.stdout.write(open(os.path.join('meta', d, 'METADATA'), encoding='utf-8').read())")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    built = sorted(line.split(":", 1)[1].strip() for line in result.stdout.splitlines()
                   if line.startswith("Requires-Dist:") and "extra ==" not in line)
    assert built == sorted(r.pip_spec for r in deps.REQUIREMENTS)


def test_a_malformed_line_is_refused(tmp_path):
    bad = tmp_path / "requirements.txt"
    bad.write_text("torch>=2.1\ntimm ~= 1.0\n")
    with pytest.raises(ValueError, match="requirements.txt:2"):
        deps.read_requirements(bad)


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
