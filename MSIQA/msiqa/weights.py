"""Model weights: safetensors files with a sha256 and a JSON model card beside them.

``NAME.safetensors`` holds the tensors (fp16 for the bundled model), ``NAME.json`` the
card: the network configuration, the file's sha256, the training data, command and
cross-validation figures. An ensemble's card lists its ``members`` (each network's own card);
its file holds all their tensors, and it loads as one network. The loader refuses a file whose
hash differs from its card's and never unpickles anything.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import WeightsError
from .checksums import sha256_of
from .models import MSIQAEnsemble, MSIQANet, NetConfig

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL = "msiqa-compact"


@dataclass
class LoadedModel:
    net: MSIQANet | MSIQAEnsemble
    card: dict[str, Any]
    path: Path

    @property
    def summary(self) -> dict[str, Any]:
        keys = ("name", "version", "preset", "sha256")
        return {k: self.card.get(k) for k in keys}


def card_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def bundled_models() -> list[dict[str, Any]]:
    """Model cards of the models shipped inside the package."""
    return [json.loads(card_path(p).read_text()) for p in sorted(WEIGHTS_DIR.glob("*.safetensors"))]


def resolve(name_or_path: str | Path | None) -> Path:
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    p = Path(name_or_path)
    if p.suffix == ".safetensors":
        return p
    return WEIGHTS_DIR / f"{name_or_path}.safetensors"


# What save_model writes about the file itself, and what a refit records: not carried over to a
# network made from another (a refit, a kept fold network).
FILE_FIELDS = ("config", "file", "sha256", "dtype")


def card_of_source(card: dict[str, Any]) -> dict[str, Any]:
    """The fields of a network's card that a network made from it inherits: its training, data,
    and cross-validation, not its file's fields or an earlier refit's record."""
    return {k: v for k, v in card.items() if k not in (*FILE_FIELDS, "refit")}


def save_model(net: MSIQANet | MSIQAEnsemble, path: str | Path, card: dict[str, Any], *, half: bool = True) -> dict[str, Any]:
    """Write NAME.safetensors and NAME.json (card with config and sha256); returns the card."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    tensors = {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in net.state_dict().items()
    }
    # A weight beyond float16's range turns into inf, and the model into NaN scores or causes that
    # read as "none": refuse to write it rather than ship a model that fails silently.
    overflow = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if overflow:
        raise WeightsError(f"not writing {path.name}: {', '.join(overflow)} "
                           f"{'do' if len(overflow) > 1 else 'does'} not fit in {str(dtype).removeprefix('torch.')} "
                           "(a weight is infinite or NaN). Write it in float32, or fit that layer with a larger penalty.")
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)
    os.chmod(path, 0o644)  # safetensors writes owner-only files; weights are meant to be shared
    card = {**card, "config": net.config.to_dict(), "file": path.name, "sha256": sha256_of(path),
            "dtype": str(dtype).removeprefix("torch.")}
    card_path(path).write_text(json.dumps(card, indent=2) + "\n")
    return card


def load_model(name_or_path: str | Path | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a bundled model by name (default: the compact model) or a .safetensors path."""
    path = resolve(name_or_path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found. Known models: {[c['name'] for c in bundled_models()]}.")
    cpath = card_path(path)
    if not cpath.is_file():
        raise WeightsError(f"{path.name} has no model card ({cpath.name}) beside it; a card with its sha256 is required.")
    try:
        card = json.loads(cpath.read_text())
        expected = card["sha256"]
        config = NetConfig.from_dict(card["config"])
        members = card.get("members")
        if members is not None and not (isinstance(members, list) and len(members) >= 2):
            raise ValueError("'members' must list at least 2 networks")
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError(f"model card {cpath} is malformed ({e}); restore it from the release.") from None
    actual = sha256_of(path)
    if actual != expected:
        raise WeightsError(
            f"{path.name} fails its checksum: sha256 {actual[:16]}... but the card says {expected[:16]}.... "
            "The file is corrupt or was replaced; reinstall the model."
        )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise WeightsError(f"{path.name} is not a valid safetensors file ({e}).") from None
    net = MSIQAEnsemble(config, len(members)) if members else MSIQANet(config)
    try:
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as e:
        raise WeightsError(f"{path.name} does not fit its card's network configuration: {str(e)[:300]}") from None
    return LoadedModel(net.to(device).eval(), card, path)
