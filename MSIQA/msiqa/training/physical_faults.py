"""Clinical faults as the simulator's scanners make them, on patients other than the sample study's.

``layer_faults`` imitates each fault on the layers of any picture; the simulator makes it where
a scanner does (counts through OSEM, photons through FBP, breathing during the frame, the PET
acquired in another breathing state than the CT, steel in the beam). The two differ: model 2,
trained on the imitations alone, scored the sample study's 15 mm misregistration, 30 mm
breathing, 8-15 mm CT motion and 4.5 mm metal like clean slices. This bank gives the network
the scanners' versions, each slice beside its clean acquisition (same patient, same noise
seed), labelled by the same rule (``labels.ANCHORS``) on the same physical measure the sample
study is graded with (``phantom.grading``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .labels import ANCHORS
from .phantom_bank import PhantomSlice, as_slices

# fault family (phantom.FAULTS) -> display modes that show it, the severities trained on
# (log-uniform), and the label anchor that scores it (as ``phantom.grading.ANCHORED``).
SHOWN_IN = {
    "pet_low_counts": ("petct", "pet"),
    "ct_low_dose": ("petct", "ct"),
    "pet_respiratory_motion": ("petct", "pet"),
    "misregistration": ("petct",),  # a PET alone has no CT to be misregistered against
    "ct_motion": ("petct", "ct"),
    "metal_streaks": ("petct", "ct"),
}
SEVERITIES = {
    "pet_low_counts": (1.5, 30.0),
    "ct_low_dose": (2.0, 60.0),
    "pet_respiratory_motion": (5.0, 40.0),
    "misregistration": (2.0, 30.0),
    "ct_motion": (1.0, 20.0),
    "metal_streaks": (1.0, 8.0),
}
ANCHOR_OF = {
    "pet_low_counts": "pet_low_counts",
    "ct_low_dose": "ct_low_dose",
    "pet_respiratory_motion": "pet_motion",
    "misregistration": "misregistration",
    "ct_motion": "ct_motion",
    "metal_streaks": "streaks",
}
# Severity -> the anchor's measure, as ``phantom.grading.measure`` finds it on the simulator
# (sample patient, seed 0; Testing/test_physical_faults.py checks the table against it). Measuring
# every training slice would double the simulation time; these relations are the scanners'
# physics (liver COV ~ 1/sqrt(counts), added CT noise ~ sqrt(1/dose - 1)), not the patient's.
_MEASURE_TABLE: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "pet_low_counts": ((1.0, 2.0, 6.0, 20.0, 30.0), (0.083, 0.118, 0.198, 0.366, 0.45)),
    "ct_low_dose": ((1.0, 3.0, 15.0, 50.0, 60.0), (0.0, 30.0, 85.4, 149.3, 163.0)),
    "pet_respiratory_motion": ((0.0, 8.0, 30.0, 40.0), (0.0, 3.0, 14.0, 18.7)),
    "misregistration": ((0.0, 4.0, 15.0, 30.0), (0.0, 3.7, 15.2, 30.0)),
    "ct_motion": ((0.0, 2.0, 8.0, 20.0), (0.0, 2.0, 8.0, 20.0)),
    "metal_streaks": ((0.0, 1.5, 4.5, 6.5, 8.0), (0.0, 87.2, 245.8, 335.1, 400.0)),
}


def measure_of(family: str, severity: float) -> float:
    """The physical measure (the anchor's unit) of a fault family at this severity."""
    xs, ys = _MEASURE_TABLE[family]
    return float(np.interp(severity, xs, ys))


def drop_of(family: str, severity: float) -> float:
    return ANCHORS[ANCHOR_OF[family]].drop(measure_of(family, severity))


@dataclass
class FaultedSlice:
    family: str
    cause: str  # the name msiqa.causes gives it
    severity: float
    drop: float
    slice: PhantomSlice


@dataclass
class PhysicalGroup:
    """One slice of one simulated patient, clean and with one fault family at several severities."""

    clean: PhantomSlice
    faulted: list[FaultedSlice]
    anatomy: int
    k: int  # the slice's index in the simulated study

    @property
    def family(self) -> str:
        return self.faulted[0].family


# Families whose effect depends on the slice: the diaphragm moves the organs at the liver dome
# and the lung bases, and elsewhere in their range a faulted slice looks like its clean one
# (noise-free PET of anatomy 1: 3 % of its mean changed on some slices, 19 % at the dome, for a
# 15 mm misregistration). ``pick="visible"`` trains them on the slices where they show.
SLICE_DEPENDENT = ("misregistration", "pet_respiratory_motion")
PICKS = ("random", "visible")


def visibility(family: str, anatomy: int, ks: np.ndarray) -> np.ndarray:
    """How much the family, at the geometric middle of its trained severities, changes each
    slice's noise-free PET: mean absolute change over the slice's mean activity."""
    from ..phantom import FAULTS, simulate

    severity = float(np.sqrt(np.prod(SEVERITIES[family])))
    clean = simulate(ks, anatomy_seed=anatomy, noisy=False).pet_bqml
    faulty = simulate(ks, anatomy_seed=anatomy, noisy=False, acquisition=FAULTS[family].acquisition(severity)).pet_bqml
    return np.abs(faulty - clean).mean(axis=(1, 2)) / clean.mean(axis=(1, 2))


def _where(family: str, margin: int = 8) -> tuple[int, int]:
    """Slices where the sample study's layout puts this family (organ positions vary little
    between simulated patients), widened by ``margin`` slices."""
    from ..phantom import N_SLICES
    from ..phantom.study import DEGRADED_RANGES

    rs = [r for r in DEGRADED_RANGES if r["fault"] == family]
    return max(0, min(r["first"] for r in rs) - margin), min(N_SLICES - 1, max(r["last"] for r in rs) + margin)


def pick_slices(family: str, anatomy: int, n: int, rng: np.random.Generator, pick: str = "random") -> np.ndarray:
    """n slices (sorted) of the family's range for the bank; see ``build_bank``."""
    if pick not in PICKS:
        raise ValueError(f"pick must be one of {PICKS}, not {pick!r}")
    lo, hi = _where(family)
    candidates = np.arange(lo, hi + 1)
    if pick == "visible" and family in SLICE_DEPENDENT:
        shown = visibility(family, anatomy, candidates)
        candidates = candidates[shown >= np.median(shown)]
    return np.sort(rng.choice(candidates, size=n, replace=False))


def build_bank(anatomies: list[int], noise_seed: int, slices_per_family: int = 3, severities: int = 5,
               seed: int = 0, pick: str = "random", families: list[str] | None = None) -> list[PhysicalGroup]:
    """Groups for every anatomy x family x slice: the clean slice and ``severities`` faulted
    versions spread over the family's range (log-uniform, one per stratum).

    ``pick``: the slices of a family's range are drawn at random, or (``"visible"``), for the
    SLICE_DEPENDENT families, among the half of them where the fault changes the PET most.
    ``families``: only these (default: all); the slices drawn for them then differ from a full bank's."""
    from ..phantom import FAULTS, simulate

    rng = np.random.default_rng([seed, noise_seed])
    groups = []
    for anatomy in anatomies:
        for family in SHOWN_IN if families is None else [f for f in SHOWN_IN if f in families]:
            ks = pick_slices(family, anatomy, slices_per_family, rng, pick)
            tag = f"phys-a{anatomy}-n{noise_seed}"
            clean = as_slices(simulate(ks, anatomy_seed=anatomy, noise_seed=noise_seed), f"{tag}-clean")
            a, b = np.log(SEVERITIES[family])
            strata = np.exp(a + (b - a) * (np.arange(severities) + rng.random(severities)) / severities)
            versions = []
            for s in strata:
                s = float(s)
                vol = simulate(ks, anatomy_seed=anatomy, noise_seed=noise_seed, acquisition=FAULTS[family].acquisition(s))
                versions.append((s, as_slices(vol, f"{tag}-{family}-{s:.3g}")))
            for c in range(len(ks)):
                faulted = [FaultedSlice(family, FAULTS[family].cause, s, drop_of(family, s), v[c]) for s, v in versions]
                groups.append(PhysicalGroup(clean[c], faulted, anatomy, int(ks[c])))
    return groups
