"""The extension's metadata against what the Slicer Extensions Index checks.

Facts copied from the index and Slicer (read at Slicer/ExtensionsIndex 07f1d1b, 2026-08-07, and
Slicer/Slicer 583e9b3, 2026-08-21): scripts/check_description_files.py (its accepted categories,
LF-only JSON, the CMake project name = the description file's name, icon and screenshot URLs,
repository name starting with "Slicer", extension name not, a licence file) and
Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json (its properties and types).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]

ACCEPTED_EXTENSION_CATEGORIES = {
    "Active Learning", "Analysis", "Auto3dgm", "BigImage", "Cardiac", "Chest Imaging Platform", "Conda",
    "Converters", "DICOM", "DSCI", "Developer Tools", "Diffusion", "Examples", "Exporter", "FTV Segmentation",
    "Filtering", "Filtering.Morphology", "Filtering.Vesselness", "Holographic Display", "Image Synthesis", "IGT",
    "Informatics", "Netstim", "Neuroimaging", "Nuclear Medicine", "Orthodontics", "Osteotomy Planning",
    "Otolaryngology", "Photogrammetry", "Pipelines", "Planning", "Printing", "Quantification", "Radiotherapy",
    "Registration", "Remote", "Rendering", "SPHARM", "Segmentation", "Sequences", "Shape Analysis",
    "Shape Regression", "Shape Visualization", "Simulation", "SlicerCMF", "SlicerMorph", "Spectral Imaging",
    "Supervisely", "Surface Models", "SurfaceLearner", "Tomographic Reconstruction", "Tracking", "Tractography",
    "Training", "Ultrasound", "Utilities", "Vascular Modeling Toolkit", "Virtual Reality", "VisSimTools",
    "Web System Tools", "Wizards",
}

# slicer-extension-catalog-entry-schema-v1.0.2: property -> JSON type ("additionalProperties": false)
SCHEMA_PROPERTIES = {
    "$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
    "build_dependencies": list, "dicom_support_rule": str, "build_subdirectory": str, "enabled": bool, "tier": int,
}
SCHEMA_REQUIRED = {"$schema", "category", "scm_url"}
SCHEMA_URL = re.compile(r"^https://raw\.githubusercontent\.com/Slicer/Slicer/main/Schemas/"
                        r"slicer-extension-catalog-entry-schema-v1\.0\.[0-2]\.json#?$")


def description() -> dict:
    return json.loads((ROOT / "MSIQA.json").read_text(encoding="utf-8"))


def cmake_set(name: str) -> str:
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    match = re.search(rf'set\(\s*{name}\s+"([^"]*)"\s*\)', text)
    assert match, f"{name} is not set in CMakeLists.txt"
    return match.group(1)


def test_description_follows_the_catalog_schema():
    raw = (ROOT / "MSIQA.json").read_bytes()
    assert b"\r" not in raw  # the index refuses CR and CRLF line endings
    meta = description()
    assert SCHEMA_REQUIRED <= set(meta)
    assert set(meta) <= set(SCHEMA_PROPERTIES), set(meta) - set(SCHEMA_PROPERTIES)
    for key, value in meta.items():
        assert isinstance(value, SCHEMA_PROPERTIES[key]) and not (SCHEMA_PROPERTIES[key] is int and isinstance(value, bool)), key
    assert SCHEMA_URL.match(meta["$schema"])
    assert meta.get("scm_type", "git") in ("git", "local")
    assert 1 <= meta.get("tier", 1) <= 5
    assert all(isinstance(d, str) for d in meta.get("build_dependencies", []))
    assert "://" in meta["scm_url"] and urlsplit(meta["scm_url"]).scheme in ("https", "git")


def test_category_is_accepted_and_the_same_everywhere():
    category = description()["category"]
    assert category in ACCEPTED_EXTENSION_CATEGORIES
    assert cmake_set("EXTENSION_CATEGORY") == category
    s4ext = dict(line.split(" ", 1) for line in (ROOT / "msiqa.s4ext").read_text().splitlines()
                 if line.strip() and not line.startswith("#") and " " in line)
    assert s4ext["category"].strip() == category
    module = (ROOT / "MSIQA" / "MSIQA.py").read_text(encoding="utf-8")
    assert f'self.parent.categories = ["{category}"]' in module


def test_names_urls_and_licence_as_the_index_checks_them():
    name = "MSIQA"  # the description file's name
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.findall(r"project\s*\(\s*([^\s\)]+)", cmake, re.I)[0] == name
    assert not name.lower().startswith("slicer")
    repo = Path(urlsplit(description()["scm_url"]).path).stem
    assert repo.startswith("Slicer")
    for url in [cmake_set("EXTENSION_ICONURL"), *cmake_set("EXTENSION_SCREENSHOTURLS").split()]:
        assert url.startswith("https://raw.githubusercontent.com/")
        local = ROOT / url.split("/main/", 1)[1]
        assert local.is_file(), f"{url} points at {local}, which the repository does not have"
    assert (ROOT / "LICENSE").is_file()
    assert description()["build_dependencies"] == [cmake_set("EXTENSION_DEPENDS")] == ["PyTorch"]


def test_minimum_slicer_version_is_declared():
    """Slicer 5.10 ships Python 3.12, which the runner needs (non-blocking pipes on Windows)."""
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r"find_package\(\s*Slicer\s+5\.10\s+REQUIRED\s*\)", cmake)
    assert "5.10" in cmake_set("EXTENSION_DESCRIPTION")
    assert "Slicer 5.10" in (ROOT / "README.md").read_text(encoding="utf-8")
    module = (ROOT / "MSIQA" / "MSIQA.py").read_text(encoding="utf-8")
    assert "MINIMUM_SLICER = (5, 10)" in module
