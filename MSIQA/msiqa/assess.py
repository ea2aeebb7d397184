"""Slice-by-slice assessment of a volume: the engine's one entry point.

    inputs -> SliceRenderer (axial RGB pictures, one batch at a time)
           -> MSIQANet (score and weight grid per slice)
           -> Assessment (per-slice scores, heatmap on the reference geometry)
"""

from __future__ import annotations

import contextlib
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import Cancelled, InputError
from .models import GRID_STRIDE, for_inference
from .render import RenderSettings, SliceRenderer
from .results import Assessment
from .volumes import VolumeLike
from .weights import LoadedModel, load_model

Progress = Callable[[int, int], None]
CancelCheck = Callable[[], bool]


def pick_device(device: str = "auto") -> torch.device:
    """'auto' takes CUDA, then MPS, then the CPU; a named device must exist."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU. Use --device auto or cpu.")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("device 'mps' was asked for, but this machine has no Apple GPU. Use --device auto or cpu.")
    if device not in ("cpu", "cuda", "mps"):
        raise InputError(f"unknown device {device!r}: choose auto, cpu, cuda or mps.")
    return torch.device(device)


class Scored(NamedTuple):
    scores: np.ndarray  # (B,) on the 0-4 scale
    maps: np.ndarray  # (B, H, W) attention weights in [0, 1]
    causes: np.ndarray | None  # (B, len(model causes)) probabilities; None without a cause head


def network_input(pictures: np.ndarray, device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """(B, H, W, 3) uint8 pictures -> the network's (B, 3, H', W') input in [0, 1], zero-padded (black,
    like the air around a patient) at the bottom and right up to a multiple of 32, so every pixel
    belongs to a grid cell. The one preparation the engine and the refit share."""
    h, w = pictures.shape[1:3]
    x = torch.from_numpy(np.require(pictures, np.uint8, ["C", "W"])).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    ph, pw = -h % GRID_STRIDE, -w % GRID_STRIDE
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


class Scorer:
    """Runs the network on batches of uint8 RGB pictures of any size (``network_input``); the
    weight grid is upsampled back to the picture."""

    def __init__(self, model: LoadedModel | None = None, device: str = "auto"):
        self.device = pick_device(device)
        self.model = model if model is not None else load_model()
        # channels_last: measured 103 -> 67 ms per 512x512 slice for the compact net on 2 CPU cores.
        self.net = for_inference(self.model.net).to(self.device, memory_format=torch.channels_last)

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def __call__(self, pictures: np.ndarray) -> Scored:
        """(B, H, W, 3) uint8 -> scores, weight maps and cause probabilities."""
        h, w = pictures.shape[1:3]
        x = network_input(pictures, self.device)
        with self._autocast():
            out = self.net(x)
        maps = F.interpolate(out.weight.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
        maps = maps[:, 0, :h, :w].clamp_(0, 1)
        causes = None if out.cause is None else torch.softmax(out.cause.float(), dim=1).cpu().numpy()
        return Scored(out.score.float().cpu().numpy(), maps.cpu().numpy(), causes)

    @property
    def causes(self) -> tuple[str, ...]:
        return self.net.config.causes


def score_images(pictures: Sequence[np.ndarray], scorer: Scorer | None = None) -> np.ndarray:
    """Scores of single 2D RGB pictures (each HxWx3 uint8), one at a time (sizes may differ)."""
    scorer = scorer or Scorer()
    return np.array([float(scorer(p[None]).scores[0]) for p in pictures], dtype=np.float32)


def assess(
    ct: VolumeLike | None = None,
    pet: VolumeLike | None = None,
    rgb: VolumeLike | None = None,
    *,
    model: LoadedModel | None = None,
    device: str = "auto",
    batch_size: int = 8,
    threshold: float = 2.0,
    settings: RenderSettings = RenderSettings(),
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
    scorer: Scorer | None = None,
) -> Assessment:
    """Score every axial slice of a CT, a PET, a PET/CT pair or an RGB fused volume.

    ``progress(done, total)`` is called after each batch; ``cancel()`` is polled before each
    batch and, when it returns True, stops the run with :class:`Cancelled` (nothing partial is
    returned). Results are deterministic for a given model and device.
    """
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}.")
    renderer = SliceRenderer(ct=ct, pet=pet, rgb=rgb, settings=settings)
    scorer = scorer or Scorer(model, device)
    n = len(renderer)
    size = renderer.geometry.size
    scores = np.empty(n, dtype=np.float32)
    heatmap = np.empty((n, size[1], size[0]), dtype=np.float32)
    causes = np.zeros((n, len(scorer.causes)), dtype=np.float32)
    for k0 in range(0, n, batch_size):
        if cancel is not None and cancel():
            raise Cancelled(f"assessment cancelled after {k0} of {n} slices; no result was kept.")
        k1 = min(n, k0 + batch_size)
        out = scorer(renderer.render(k0, k1))
        scores[k0:k1] = out.scores
        heatmap[k0:k1] = renderer.to_reference(out.maps)
        if out.causes is not None:
            causes[k0:k1] = out.causes
        if progress is not None:
            progress(k1, n)
    return Assessment(
        scores=scores,
        heatmap=heatmap,
        geometry=renderer.geometry,
        threshold=float(threshold),
        cause_names=tuple(scorer.causes),
        cause_probs=causes,
        rendering=renderer.description,
        model={**scorer.model.summary, "device": str(scorer.device)},
    )
