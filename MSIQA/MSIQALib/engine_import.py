"""Import the ``msiqa`` engine that ships beside the module, whatever else is installed.

Slicer appends a scripted module's folder to the end of ``sys.path``
(qSlicerScriptedLoadableModuleFactory.cxx, qSlicerCorePythonManager::appendPythonPath), so a
``msiqa`` installed in Slicer's site-packages, or imported earlier by something else, would
stand in for the module's own copy. The package is therefore loaded from its file, by
location, without changing ``sys.path``; the engine's child processes get the same folder
first on their PYTHONPATH (msiqa.runner.engine_env).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

NAME = "msiqa"


def _inside(module: ModuleType, folder: Path) -> bool:
    origin = getattr(module, "__file__", None)
    return origin is not None and Path(origin).resolve().parent == folder


def import_engine_beside(module_folder: str | Path) -> ModuleType:
    """The ``msiqa`` package from ``module_folder/msiqa``; an other copy already imported is
    dropped from ``sys.modules`` first (with its submodules)."""
    folder = (Path(module_folder) / NAME).resolve()
    loaded = sys.modules.get(NAME)
    if loaded is not None and _inside(loaded, folder):
        return loaded
    for name in [n for n in sys.modules if n == NAME or n.startswith(NAME + ".")]:
        del sys.modules[name]
    spec = importlib.util.spec_from_file_location(NAME, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:
        raise ImportError(f"the MS-IQA engine is missing from {folder}; reinstall the MSIQA extension.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[NAME]
        raise
    return module
