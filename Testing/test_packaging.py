"""The extension's CMake lists every file the module needs at run time."""

from __future__ import annotations

import re
from pathlib import Path

MODULE = Path(__file__).resolve().parents[1] / "MSIQA"


def test_module_scripts_and_resources_are_packaged():
    cmake = (MODULE / "CMakeLists.txt").read_text(encoding="utf-8")
    listed = set(re.findall(r"\$\{MODULE_NAME\}(Lib/[\w/]+\.py)", cmake))
    assert listed == {str(p.relative_to(MODULE)).replace("MSIQALib", "Lib") for p in (MODULE / "MSIQALib").glob("*.py")}
    # the engine package is globbed whole: its Python files, weights, sample data, requirements list
    assert "msiqa/*.py" in cmake and "msiqa/requirements.txt" in cmake
    assert "msiqa/weights/*.safetensors" in cmake and "msiqa/sample_data/*" in cmake
