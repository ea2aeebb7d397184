"""Shared fixtures: the real bundled model, loaded once per session."""

import pytest
import torch

from msiqa.weights import load_model


@pytest.fixture(scope="session", autouse=True)
def _two_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def bundled_model():
    return load_model()
