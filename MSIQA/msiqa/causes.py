"""The faults the network names: one per slice, with a confidence.

The order is the order of the cause head's outputs, stored in every model card; "none"
comes first so that a model without a cause head reads as naming nothing.
"""

from __future__ import annotations

CAUSES: tuple[str, ...] = (
    "none",
    "compression",
    "impulse",
    "noise",
    "pet_low_counts",
    "ct_low_dose",
    "motion",
    "misregistration",
    "streaks",
    "blur",
)

DESCRIPTIONS: dict[str, str] = {
    "none": "no fault found",
    "compression": "lossy compression (8x8 JPEG blocks, JPEG 2000 ringing)",
    "impulse": "isolated impulse (salt-and-pepper) pixels",
    "noise": "image noise of the picture (not of one modality)",
    "pet_low_counts": "PET with too few counts (short frame, low dose): noisy PET",
    "ct_low_dose": "CT at too low a dose: noisy, streaky CT",
    "motion": "patient or respiratory motion: blurred or doubled structures",
    "misregistration": "PET shifted against the CT",
    "streaks": "CT streaks from metal or beam hardening",
    "blur": "blur of the whole picture",
}
