"""Clinical acquisition faults, applied to the CT (HU) and PET (SUV) layers before fusion.

A scanner degrades one modality, not the fused picture: low counts make the PET noisy, a low
dose makes the CT noisy, breathing blurs the PET near the diaphragm, a patient who moves
between the CT and the PET gives a PET shifted against the CT, metal streaks the CT. These
functions work on the layers of a picture (a simulated study has them; a fused picture has
them approximately, through ``degrade.split_layers``) so the fused result is what the
scanner would show. Each returns the degraded layers and the physical size of the fault,
which ``labels.ANCHORS`` turns into a score drop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

from ..render import RenderSettings
from .degrade import split_layers
from .labels import ANCHORS

# A liver-like PET level (SUV) and the COV of a good clinical PET: the noise added for low
# counts is scaled so that a region at LIVER_SUV reaches the target COV.
LIVER_SUV = 2.5
GOOD_COV = 0.10
PET_VOXEL_MM = 4.0  # PET noise is correlated over about one reconstructed voxel


Region = tuple[slice, slice] | None


@dataclass
class Layers:
    ct_hu: np.ndarray | None  # (H, W) float32, display orientation
    pet_suv: np.ndarray | None  # (H, W) float32, on the same grid as ct_hu when both exist
    px_mm: float  # in-plane pixel size

    @classmethod
    def of_picture(cls, img: np.ndarray, px_mm: float, settings: RenderSettings = RenderSettings()) -> "Layers":
        """Approximate layers of a fused PET/CT picture (see ``degrade.split_layers``)."""
        grey, level = split_layers(img, settings.pet_alpha)
        lo = settings.level - settings.window / 2
        return cls(lo + grey * settings.window, level * settings.suv_max, px_mm)

    def copy(self) -> "Layers":
        return Layers(
            None if self.ct_hu is None else self.ct_hu.copy(),
            None if self.pet_suv is None else self.pet_suv.copy(),
            self.px_mm,
        )


@dataclass(frozen=True)
class Applied:
    family: str  # key of FAULTS
    anchor: str  # key of labels.ANCHORS that scores it
    measure: float

    @property
    def drop(self) -> float:
        return ANCHORS[self.anchor].drop(self.measure)


def _unit_noise(shape, rng: np.random.Generator, sigma_px: float) -> np.ndarray:
    n = rng.normal(0.0, 1.0, shape)
    if sigma_px > 0.3:
        n = ndimage.gaussian_filter(n, sigma_px)
    return n / (n.std() + 1e-9)


def pet_low_counts(x: Layers, rng: np.random.Generator, s: float, region: Region = None) -> tuple[Layers, Applied]:
    """Fewer counts: Poisson-like noise (variance proportional to activity), correlated over a
    PET voxel, added until a liver-level region reaches COV 0.10 .. 0.40."""
    cov = GOOD_COV + 0.30 * s
    extra = np.sqrt(max(cov**2 - GOOD_COV**2, 0.0))
    pet = x.pet_suv
    noise = _unit_noise(pet.shape, rng, 0.5 * PET_VOXEL_MM / x.px_mm)
    out = x.copy()
    out.pet_suv = np.maximum(pet + extra * np.sqrt(np.maximum(pet, 0.0) * LIVER_SUV) * noise, 0.0).astype(np.float32)
    return out, Applied("pet_low_counts", "pet_low_counts", cov)


# CT low dose: the added noise SD (HU) at strength 0 and 1.
CT_NOISE_SD = (15.0, 150.0)


def ct_low_dose_strength(sd_hu: float) -> float:
    """The strength at which ``ct_low_dose`` adds ``sd_hu`` of noise."""
    lo, hi = CT_NOISE_SD
    return (sd_hu - lo) / (hi - lo)


def ct_low_dose(x: Layers, rng: np.random.Generator, s: float, region: Region = None) -> tuple[Layers, Applied]:
    """Quantum noise of a low-dose CT: filtered back-projection makes it high-pass (fine grain
    with a ~1 mm texture, no low frequencies); past half severity photon starvation adds
    streaks along the widest (lateral) direction."""
    lo, hi = CT_NOISE_SD
    sd = lo + (hi - lo) * s
    white = rng.normal(0.0, 1.0, x.ct_hu.shape)
    grain = ndimage.gaussian_filter(white, 0.5 / x.px_mm) - ndimage.gaussian_filter(white, 3.0 / x.px_mm)
    grain /= grain.std() + 1e-9
    out = x.copy()
    out.ct_hu = x.ct_hu + sd * grain
    if s > 0.5:
        h, w = x.ct_hu.shape
        rows = rng.normal(0.0, 1.0, (h, 1)) * ndimage.gaussian_filter(rng.normal(0, 1, (1, w)), (0, 8.0)) * 8.0
        out.ct_hu = out.ct_hu + (s - 0.5) * sd * ndimage.gaussian_filter(rows, (0.7, 0))
    out.ct_hu = out.ct_hu.astype(np.float32)
    return out, Applied("ct_low_dose", "ct_low_dose", sd)


def motion(x: Layers, rng: np.random.Generator, s: float, region: Region = None) -> tuple[Layers, Applied]:
    """Breathing blurs the PET (it is acquired over minutes; mostly antero-posterior in an axial
    slice near the diaphragm); a CT that moved during the rotation shows doubled edges."""
    out = x.copy()
    if x.pet_suv is not None and (x.ct_hu is None or rng.random() < 0.6):
        fwhm = 3.0 + 27.0 * s
        sig = fwhm / 2.3548 / x.px_mm
        out.pet_suv = ndimage.gaussian_filter(x.pet_suv, (sig, 0.35 * sig)).astype(np.float32)
        return out, Applied("motion", "pet_motion", fwhm)
    shift = 1.0 + 14.0 * s
    angle = rng.uniform(0, 2 * np.pi)
    d = (shift * np.sin(angle) / x.px_mm, shift * np.cos(angle) / x.px_mm)
    ghost = ndimage.shift(x.ct_hu, d, order=1, mode="nearest")
    out.ct_hu = (0.6 * x.ct_hu + 0.4 * ghost).astype(np.float32)
    return out, Applied("motion", "ct_motion", shift)


def misregistration(x: Layers, rng: np.random.Generator, s: float, region: Region = None) -> tuple[Layers, Applied]:
    """The PET shifted against the CT by 2 .. 25 mm (patient moved between the two scans)."""
    shift = 2.0 + 23.0 * s
    angle = rng.uniform(0, 2 * np.pi)
    d = (shift * np.sin(angle) / x.px_mm, shift * np.cos(angle) / x.px_mm)
    out = x.copy()
    out.pet_suv = ndimage.shift(x.pet_suv, d, order=1, mode="constant", cval=0.0).astype(np.float32)
    return out, Applied("misregistration", "misregistration", shift)


def streaks(x: Layers, rng: np.random.Generator, s: float, region: Region = None) -> tuple[Layers, Applied]:
    """A metal object inside the body (and inside ``region``, when the fault is local) with dark
    and bright streaks radiating from it."""
    ct = x.ct_hu
    h, w = ct.shape
    body = ct > -300
    if region is not None and body[region].any():
        body = np.zeros_like(body)
        body[region] = ct[region] > -300
    inside = np.argwhere(body)
    cy, cx = inside[rng.integers(len(inside))] if len(inside) else (h / 2, w / 2)
    amp = 20.0 + 480.0 * s
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    dy, dx = (yy - cy) * x.px_mm, (xx - cx) * x.px_mm
    r = np.hypot(dy, dx)
    pattern = np.zeros_like(ct, dtype=np.float32)
    for _ in range(int(rng.integers(3, 9))):
        a = rng.uniform(0, np.pi)
        perp = np.abs(dx * np.sin(a) - dy * np.cos(a))
        width = max(rng.uniform(1.0, 3.0), 0.7 * x.px_mm)  # a streak is at least a pixel wide
        pattern += rng.choice([-1.0, 1.0]) * np.exp(-0.5 * (perp / width) ** 2)
    decay = (20.0 / np.maximum(r, 5.0)) ** 0.8
    out = x.copy()
    out.ct_hu = (ct + amp * pattern * decay).astype(np.float32)
    out.ct_hu[r < rng.uniform(2.0, 6.0)] = 3000.0
    return out, Applied("streaks", "streaks", amp)


# A fault takes the layers, its randomness, a strength in [0, 1] and the region a local fault
# is confined to (None: the whole picture); faults with one focus put it inside the region.
Fault = Callable[[Layers, np.random.Generator, float, Region], tuple[Layers, Applied]]

# Which layers each fault needs.
FAULTS: dict[str, tuple[Fault, tuple[str, ...]]] = {
    "pet_low_counts": (pet_low_counts, ("pet",)),
    "ct_low_dose": (ct_low_dose, ("ct",)),
    "motion": (motion, ()),
    "misregistration": (misregistration, ("ct", "pet")),
    "streaks": (streaks, ("ct",)),
}


def applicable(layers: Layers) -> list[str]:
    have = {name for name, a in (("ct", layers.ct_hu), ("pet", layers.pet_suv)) if a is not None}
    return [f for f, (_, needs) in FAULTS.items() if set(needs) <= have]


def apply_fault(layers: Layers, family: str, strength: float, rng: np.random.Generator,
                region: Region = None) -> tuple[Layers, Applied]:
    """One fault at ``strength`` in [0, 1], over the whole picture or inside ``region`` only."""
    out, applied = FAULTS[family][0](layers, rng, strength, region)
    if region is not None:
        for name in ("ct_hu", "pet_suv"):
            a, b = getattr(layers, name), getattr(out, name)
            if a is not None:
                keep = a.copy()
                keep[region] = b[region]
                setattr(out, name, keep)
    return out, applied
