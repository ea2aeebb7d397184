"""What an assessment returns: per-slice scores, their summary and the attention heatmap."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import SimpleITK as sitk

from .causes import name_causes


@dataclass(frozen=True)
class Geometry:
    """An ITK (LPS) image grid: the reference input's size, origin, spacing and direction."""

    size: tuple[int, int, int]  # (I, J, K), ITK order
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]  # 9 values, row-major

    @classmethod
    def of(cls, image: sitk.Image) -> "Geometry":
        return cls(
            tuple(int(v) for v in image.GetSize()),
            tuple(float(v) for v in image.GetOrigin()),
            tuple(float(v) for v in image.GetSpacing()),
            tuple(float(v) for v in image.GetDirection()),
        )

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        image.SetOrigin(self.origin)
        image.SetSpacing(self.spacing)
        image.SetDirection(self.direction)
        return image


@dataclass
class Assessment:
    """Per-slice quality of one volume.

    ``scores[k]`` is the predicted quality (0 = unusable ... 4 = excellent, the radiologists'
    scale of the training labels) of axial slice k; ``heatmap`` is a (K, J, I) float32 array on
    ``geometry`` with values in [0, 1], high where the network put its weight.
    ``cause_probs[k]`` are the cause head's probabilities over ``cause_names`` for slice k
    (no columns for a model without a cause head).
    ``complete`` is False only for a result that was cut short; such a result is never written
    as if it were whole.
    """

    scores: np.ndarray
    heatmap: np.ndarray
    geometry: Geometry
    threshold: float = 2.0
    cause_names: tuple[str, ...] = ()
    cause_probs: np.ndarray | None = None
    rendering: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    complete: bool = True

    @property
    def flagged(self) -> np.ndarray:
        return self.scores < self.threshold

    @property
    def causes(self) -> list[str]:
        """The fault each slice is named after ("" where the model names none); a flagged slice
        gets its most likely fault (msiqa.causes.name_causes)."""
        if not self.cause_names or self.cause_probs is None:
            return [""] * len(self.scores)
        return name_causes(self.cause_probs, self.cause_names, self.flagged)[0]

    @property
    def cause_confidence(self) -> np.ndarray:
        """The head's probability of each slice's named cause."""
        if not self.cause_names or self.cause_probs is None:
            return np.full(len(self.scores), np.nan, dtype=np.float32)
        return name_causes(self.cause_probs, self.cause_names, self.flagged)[1]

    def with_threshold(self, threshold: float) -> "Assessment":
        return replace(self, threshold=float(threshold))

    def summary(self) -> dict[str, Any]:
        s = self.scores.astype(np.float64)
        flagged = np.flatnonzero(self.flagged)
        causes = self.causes  # once: each reading names every slice
        return {
            "slices": int(s.size),
            "mean": float(s.mean()),
            "min": float(s.min()),
            "min_slice": int(s.argmin()),
            "p10": float(np.percentile(s, 10)),
            "threshold": float(self.threshold),
            "flagged_count": int(flagged.size),
            "flagged_slices": [int(k) for k in flagged],
            "flagged_causes": {int(k): causes[k] for k in flagged} if self.cause_names else {},
            "complete": bool(self.complete),
            "rendering": self.rendering,
            "model": self.model,
        }

    def heatmap_image(self) -> sitk.Image:
        return self.geometry.apply_to(sitk.GetImageFromArray(self.heatmap.astype(np.float32, copy=False)))
