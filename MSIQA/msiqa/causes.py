"""The faults the network names: one per slice, with a confidence.

The order is the order of the cause head's outputs, stored in every model card; "none"
comes first so that a model without a cause head reads as naming nothing.
"""

from __future__ import annotations

import numpy as np

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


def name_causes(probs: np.ndarray, names: tuple[str, ...], flagged: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The cause each slice is named after, and the head's probability of it.

    A flagged slice is named after its most likely fault even where the head finds "none"
    likelier: the score has already said that something is wrong, and a reader needs the best
    guess of what, with how sure the head is of it (STS_003 of the IBSI test data had 7 flagged
    slices named "none"). Where the faults tie, as in a result read back from a file that
    stored only "none", no fault is made up: "none" stays.
    """
    best = probs.argmax(axis=1)
    if "none" in names:
        none = names.index("none")
        faults = np.delete(probs, none, axis=1)
        top = faults.max(axis=1, keepdims=True)
        fault = faults.argmax(axis=1)
        fault += fault >= none  # back to the index in names
        clear = (faults == top).sum(axis=1) == 1
        best = np.where(flagged & clear & (best == none), fault, best)
    return [names[i] for i in best], probs[np.arange(len(best)), best]
