"""Shared fixtures: the real bundled model, loaded once per session, and the benchmark scripts as
modules (they are scripts, not a package)."""

import importlib.util
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

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
