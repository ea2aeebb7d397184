"""Which devices the network can run on, for ``msiqa devices`` and the Slicer module's choice.

:func:`probe` imports torch (seconds; in Slicer it runs in a child process, ``msiqa devices
--json``, so the application never loads torch on its main thread). :func:`choices` turns the
probe's answer into the labels of the device menu and imports nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import MSIQAError

KEYS = ("auto", "cuda", "mps", "cpu")


def probe() -> dict[str, Any]:
    """{"torch": version, "devices": [{"key", "name", ...}], "auto": the key 'auto' picks,
    "engine": the folder of the msiqa package that answered}."""
    try:
        import torch
    except ImportError as e:
        raise MSIQAError(f"PyTorch is not installed ({e}); install torch (in Slicer: the PyTorch extension).") from None

    from .assess import pick_device

    devices: list[dict[str, Any]] = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append({"key": "cuda", "index": index, "name": props.name,
                            "memory_gb": round(props.total_memory / 1024**3, 1)})
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append({"key": "mps", "name": "Apple GPU"})
    devices.append({"key": "cpu", "name": "CPU"})
    return {"torch": torch.__version__, "devices": devices, "auto": pick_device("auto").type,
            "engine": str(Path(__file__).resolve().parent)}


def choices(info: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(key, label) pairs for a device menu: every key, named after what the probe found.

    Without a probe answer (not yet known, or torch missing) the keys are offered plainly; a
    device the probe did not find is marked, and choosing it gives the engine's clear error.
    """
    labels = {"auto": "Auto", "cuda": "CUDA", "mps": "MPS (Apple GPU)", "cpu": "CPU"}
    if info is None:
        return [(key, labels[key]) for key in KEYS]
    found: dict[str, dict[str, Any]] = {}
    for device in info.get("devices", []):
        found.setdefault(device["key"], device)
    if "cuda" in found:
        labels["cuda"] = f"CUDA: {found['cuda']['name']}"
    auto = info.get("auto")
    if auto in found:
        labels["auto"] = f"Auto ({found[auto]['name']})"
    for key in ("cuda", "mps"):
        if key not in found:
            labels[key] += " (not found)"
    return [(key, labels[key]) for key in KEYS]
