"""The rule that puts a synthetic fault on the radiologists' 0-4 scale.

Each clinical fault is measured by one physical quantity (PET liver-equivalent coefficient
of variation, CT noise SD in HU, blur FWHM or shift in mm, streak amplitude in HU). Three
anchors place that quantity on the scale, as a drop from the source picture's score:

- ``ok``: up to here the fault is within what a good clinical study shows: no drop;
- ``bad``: the limit of clinical acceptability: a clean picture (CLEAN_MOS) lands just under
  the default flag threshold (FLAG_AT), i.e. the slice is flagged from here on;
- ``worst``: the picture is unusable: a clean picture lands at 0.2.

Between anchors the drop is linear, beyond ``worst`` it stays at its maximum, so the rule is
monotone in severity and never improves a picture. The anchors and their reasons are below;
the families the development set grades (compression, impulse pixels, noise) are instead
calibrated on its radiologist scores (``handcrafted.Calibration``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The radiologists' score of undegraded development images: 90th percentile of the 324 MOS,
# the level of the versions saved at JPEG quality ~100 without impulse pixels or noise.
CLEAN_MOS = 3.6
FLAG_AT = 2.0  # the engine's default threshold
_DROP_AT_BAD = CLEAN_MOS - FLAG_AT + 0.1
_DROP_AT_WORST = CLEAN_MOS - 0.2


@dataclass(frozen=True)
class Anchor:
    ok: float
    bad: float
    worst: float
    unit: str
    why: str

    def drop(self, measure: float) -> float:
        """Score drop for a fault of this size (>= 0, non-decreasing in ``measure``)."""
        return float(np.interp(measure, [self.ok, self.bad, self.worst], [0.0, _DROP_AT_BAD, _DROP_AT_WORST]))


ANCHORS: dict[str, Anchor] = {
    "pet_low_counts": Anchor(
        0.10, 0.15, 0.40, "liver coefficient of variation",
        "EANM procedure guidelines for FDG PET/CT tumour imaging v2.0 (Boellaard et al., EJNMMI 2015) and "
        "the EARL accreditation use the liver COV as the image-noise criterion: about 10 % is a good study, "
        "above 15 % the noise is no longer acceptable for reading.",
    ),
    "ct_low_dose": Anchor(
        20.0, 60.0, 150.0, "added noise SD in soft tissue (HU)",
        "Diagnostic chest CT has ~10-20 HU of soft-tissue noise and the low-dose attenuation CT of PET/CT "
        "~20-30 HU, accepted for localisation; at ~60 HU the 10-20 HU contrast of liver, muscle and "
        "nodes is at a contrast-to-noise ratio below 0.3 and anatomical localisation fails.",
    ),
    "pet_motion": Anchor(
        4.0, 12.0, 30.0, "added PET blur FWHM (mm)",
        "Below ~4 mm the blur is under the ~5-6 mm resolution of clinical PET; at 12 mm (twice it) a 1 cm "
        "lesion near the diaphragm loses more than half its contrast, the accepted reason to repeat or "
        "gate the bed position.",
    ),
    "ct_motion": Anchor(
        1.5, 5.0, 15.0, "CT ghost shift (mm)",
        "Shifts under ~1.5 mm (two CT pixels) are invisible at mediastinal window; from ~5 mm doubled "
        "edges of the heart, diaphragm and vessels mimic or hide findings.",
    ),
    "misregistration": Anchor(
        3.0, 10.0, 25.0, "PET-to-CT shift (mm)",
        "Registration within one PET voxel (~4 mm) is the PET/CT QC tolerance; at ~1 cm uptake at the "
        "liver dome and lung bases is assigned to the wrong organ and attenuation correction is wrong.",
    ),
    "streaks": Anchor(
        20.0, 120.0, 500.0, "streak amplitude 2 cm from the metal (HU)",
        "Streaks of a few tens of HU are common near shoulders and ports and are read through; at ~120 HU "
        "they exceed soft-tissue contrast over the region they cross, at ~500 HU that region is unreadable.",
    ),
    "blur": Anchor(
        2.0, 5.0, 10.0, "picture blur FWHM (pixels)",
        "At the development set's ~0.9 mm pixels a 2-pixel FWHM is below the CT's own sharpness; 5 pixels "
        "(~4.5 mm) blurs vessels and nodule edges at mediastinal window.",
    ),
}

# A fault whose drop is smaller than this is not named: the slice's cause is "none".
NAMED_FROM = 0.3


def faulted_score(source_mos: float, drop: float) -> float:
    return float(np.clip(source_mos - max(0.0, drop), 0.0, 4.0))
