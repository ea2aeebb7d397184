"""Simulated FDG PET/CT of the thorax and upper abdomen, on an anthropomorphic phantom of our own.

The sample study bundled with MS-IQA is made here, from first principles and with no
external data:

* ``anatomy``: an analytic anthropomorphic phantom (tissues in ``tissues``, shapes in
  ``shapes``) on the CT grid (``geometry``);
* ``ct``: a CT scan per slice (parallel-beam projection, Poisson photon counts, FBP);
* ``pet``: a PET scan per slice (511 keV attenuation, Poisson counts, OSEM), in Bq/ml with
  the SUV bookkeeping of ``suv``;
* ``faults``: what an acquisition can get wrong (simulated where the scanner makes it:
  ``breathing`` moves the organs for the PET's faults);
* ``study``: simulation of any patient, clean or faulty, and the sample study's layout;
* ``measures`` and ``grading``: each fault measured in its clinical criterion's unit, and
  whether it is acceptable.

Everything is numpy/scipy and deterministic: the noise of slice k comes from a generator
seeded by (seed, k, stream), so simulating a subset of slices gives exactly the values those
slices have in the full study.
"""

from __future__ import annotations

from .anatomy import Phantom, make_phantom
from .faults import FAULTS, Acquisition, Fault
from .geometry import (
    CT_N,
    CT_ORIGIN,
    CT_PIXEL_MM,
    CT_SHAPE,
    CT_SPACING,
    N_SLICES,
    PET_CENTER_MM,
    PET_N,
    PET_ORIGIN,
    PET_PIXEL_MM,
    PET_SHAPE,
    PET_SPACING,
    SLICE_MM,
)
from .measures import blockiness
from .study import (
    DEGRADED_RANGES,
    SimulatedVolumes,
    acquisition_of,
    range_of,
    simulate,
    simulate_clean,
    simulate_study,
    simulate_volumes,
    study_info,
)
from .suv import suv_factor
from .tissues import TISSUES, Tissue

__all__ = [
    "CT_N",
    "CT_ORIGIN",
    "CT_PIXEL_MM",
    "CT_SHAPE",
    "CT_SPACING",
    "N_SLICES",
    "PET_CENTER_MM",
    "PET_N",
    "PET_ORIGIN",
    "PET_PIXEL_MM",
    "PET_SHAPE",
    "PET_SPACING",
    "SLICE_MM",
    "TISSUES",
    "DEGRADED_RANGES",
    "FAULTS",
    "Acquisition",
    "Fault",
    "Tissue",
    "Phantom",
    "SimulatedVolumes",
    "make_phantom",
    "range_of",
    "acquisition_of",
    "simulate",
    "simulate_clean",
    "simulate_volumes",
    "simulate_study",
    "study_info",
    "blockiness",
    "suv_factor",
]
