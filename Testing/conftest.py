"""Shared fixtures: the real bundled model, loaded once per session, and the benchmark scripts as
modules (they are scripts, not a package)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from msiqa.weights import load_model


@pytest.fixture(scope="session", autouse=True)
def _two_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def bundled_model():
    return load_model()


@pytest.fixture(scope="session")
def benchmark_script():
    """``benchmark_script("accuracy")``: benchmarks/accuracy.py, imported as a module."""

    folder = str(Path(__file__).resolve().parents[1] / "benchmarks")

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, Path(folder) / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, folder)  # as when run as a script: a benchmark imports its sibling modules
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(folder)
        return module

    return load
