"""The Slicer module imports the engine beside it, not another installed or imported msiqa."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msiqa

MODULE_FOLDER = Path(msiqa.__file__).resolve().parents[1]  # MSIQA/, where MSIQA.py and MSIQALib live


def run(code: str, pythonpath: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(pythonpath), "PATH": "/usr/bin:/bin"}, cwd=pythonpath)


def test_own_engine_wins_over_an_installed_one(tmp_path):
    site = tmp_path / "site"
    (site / "msiqa" / "mrml").mkdir(parents=True)
    (site / "msiqa" / "__init__.py").write_text("__version__ = 'impostor'\n")
    (site / "msiqa" / "mrml" / "__init__.py").write_text("IMPOSTOR = True\n")
    code = (
        "import sys\n"
        "import msiqa, msiqa.mrml  # the impostor, first on the path, imported by something else\n"
        "assert msiqa.__version__ == 'impostor'\n"
        f"sys.path.append({str(MODULE_FOLDER)!r})  # as Slicer does: the module folder last\n"
        "from MSIQALib.engine_import import import_engine_beside\n"
        f"engine = import_engine_beside({str(MODULE_FOLDER)!r})\n"
        "from msiqa import dependencies, runner\n"
        "import msiqa as again\n"
        "print(engine.__file__, again.__file__, dependencies.__file__, runner.ENGINE_ROOT, sep='\\n')\n"
        "assert 'msiqa.mrml' not in sys.modules  # the impostor's submodule went with it\n"
    )
    result = run(code, site)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    own = MODULE_FOLDER / "msiqa"
    assert [Path(p).resolve() for p in lines[:3]] == [own / "__init__.py", own / "__init__.py", own / "dependencies.py"]
    assert Path(lines[3]) == MODULE_FOLDER


def test_already_imported_own_engine_is_kept():
    code = (
        "import msiqa\n"
        "from MSIQALib.engine_import import import_engine_beside\n"
        f"assert import_engine_beside({str(MODULE_FOLDER)!r}) is msiqa\n"
    )
    result = run(code, MODULE_FOLDER)
    assert result.returncode == 0, result.stderr
