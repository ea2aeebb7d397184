"""A simulated thoracic PET/CT study on an anthropomorphic phantom of our own.

The sample study bundled with MS-IQA is made here, from first principles and with no
external data:

* an anthropomorphic thoracic phantom (body contour, skin, fat, muscle, lungs with
  vessel trees, heart with a hot left-ventricular wall, aorta and great vessels,
  trachea and bronchi, oesophagus, spine, ribs, sternum, scapulae, liver dome,
  spleen, three hot lesions and the patient table) defined analytically by signed
  distances, so that every property map carries partial-volume edges;
* a CT scan per slice: parallel-beam line integrals of the 70 keV attenuation
  coefficient, Poisson photon counts for a given number of incident photons per
  ray, log transform and filtered back-projection (ramp filter with Hann window);
* a PET scan per slice: 511 keV attenuation, detector blur, a uniform
  randoms + scatter background, Poisson counts and OSEM with an
  attenuation-corrected system model on the scanner's own coarser grid, then a
  light Gaussian post-filter; the result is in Bq/ml;
* deliberate degradations over recorded slice ranges (low PET counts, heavy block
  compression with impulse noise on CT, patient motion during the CT rotation,
  low-dose CT) so that quality assessment has something to find.

Everything is numpy/scipy and deterministic: the anatomy is fixed, and the noise of
slice k comes from a generator seeded by (seed, k, stream), so simulating a subset
of slices gives exactly the values those slices have in the full study.

Geometry is LPS with identity direction: x (column i) runs from the patient's
right to left, y (row j) from anterior to posterior, z (slice k) from inferior to
superior.  Arrays are indexed [k, j, i] like SimpleITK.GetArrayFromImage.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, sparse

__all__ = [
    "CT_SHAPE",
    "CT_SPACING",
    "CT_ORIGIN",
    "PET_SHAPE",
    "PET_SPACING",
    "PET_ORIGIN",
    "TISSUES",
    "DEGRADED_RANGES",
    "Tissue",
    "Phantom",
    "SimulatedVolumes",
    "make_phantom",
    "simulate_volumes",
    "simulate_study",
    "study_info",
    "blockiness",
    "suv_factor",
]

# --------------------------------------------------------------------------- geometry

N_SLICES = 60
CT_N = 160
CT_PIXEL_MM = 2.5
SLICE_MM = 3.0
CT_SHAPE = (N_SLICES, CT_N, CT_N)  # (k, j, i)
CT_SPACING = (CT_PIXEL_MM, CT_PIXEL_MM, SLICE_MM)  # (x, y, z) as SimpleITK wants it
CT_ORIGIN = (
    -(CT_N - 1) / 2 * CT_PIXEL_MM,
    -(CT_N - 1) / 2 * CT_PIXEL_MM,
    -(N_SLICES - 1) / 2 * SLICE_MM,
)

PET_N = 96
PET_PIXEL_MM = 400.0 / PET_N  # 4.1667 mm
PET_CENTER_MM = (1.9, -2.6)
TABLE_TOP_MM = 97.0  # the PET field of view is not centred exactly like the CT one
PET_SHAPE = (N_SLICES, PET_N, PET_N)
PET_SPACING = (PET_PIXEL_MM, PET_PIXEL_MM, SLICE_MM)
PET_ORIGIN = (
    PET_CENTER_MM[0] - (PET_N - 1) / 2 * PET_PIXEL_MM,
    PET_CENTER_MM[1] - (PET_N - 1) / 2 * PET_PIXEL_MM,
    CT_ORIGIN[2],
)

# --------------------------------------------------------------------------- scanners

MU_WATER_70KEV = 0.0193  # 1/mm, water at the ~70 keV effective energy of a 120 kVp beam

CT_ANGLES = 240  # views over 180 degrees (parallel beam)
CT_BINS = 231  # detector bins of CT_PIXEL_MM, covering the grid diagonal
CT_I0 = 5.0e4  # incident photons per ray and view
CT_LOW_DOSE_FACTOR = 30.0

PET_ANGLES = 96
PET_BINS = 137  # bins of PET_PIXEL_MM
PET_TRUES_PER_SLICE = 6.0e5  # mean true coincidences per 3 mm slice
PET_LOW_COUNT_FACTOR = 20.0
PET_RANDOMS_SCATTER_FRACTION = 0.35  # of the prompts
PET_DETECTOR_FWHM_MM = 4.5
PET_POSTFILTER_FWHM_MM = 5.0
OSEM_ITERATIONS = 3
OSEM_SUBSETS = 8

# SUV bookkeeping: F-18 FDG, 60 min uptake.
F18_HALF_LIFE_S = 6586.2
PATIENT_WEIGHT_KG = 75.0
INJECTED_DOSE_BQ = 370.0e6
UPTAKE_TIME_S = 3600.0
DECAY_CORRECTED_DOSE_BQ = INJECTED_DOSE_BQ * 2.0 ** (-UPTAKE_TIME_S / F18_HALF_LIFE_S)


def suv_factor() -> float:
    """SUV per Bq/ml: SUV = concentration[Bq/ml] * weight[g] / decay-corrected dose[Bq]."""
    return PATIENT_WEIGHT_KG * 1000.0 / DECAY_CORRECTED_DOSE_BQ


# --------------------------------------------------------------------------- tissues


@dataclass(frozen=True)
class Tissue:
    label: int
    name: str
    hu: float  # CT number
    mu511: float  # 1/mm at 511 keV
    suv: float  # FDG uptake (standardised uptake value)

    @property
    def mu70(self) -> float:
        """1/mm at the CT effective energy, consistent with the CT number."""
        return MU_WATER_70KEV * (1.0 + self.hu / 1000.0)


_TISSUE_LIST = [
    Tissue(0, "air", -1000.0, 0.0, 0.0),
    Tissue(1, "table_shell", 300.0, 0.0120, 0.0),
    Tissue(2, "table_foam", -880.0, 0.0012, 0.0),
    Tissue(3, "skin", 30.0, 0.0097, 0.8),
    Tissue(4, "fat", -100.0, 0.0090, 0.35),
    Tissue(5, "muscle", 45.0, 0.0099, 0.8),
    Tissue(6, "lung", -850.0, 0.0018, 0.35),
    Tissue(7, "soft_tissue", 35.0, 0.0097, 1.0),
    Tissue(8, "myocardium", 45.0, 0.0101, 6.0),
    Tissue(9, "blood", 45.0, 0.0101, 1.8),
    Tissue(10, "liver", 58.0, 0.0102, 2.5),
    Tissue(11, "spleen", 48.0, 0.0101, 2.0),
    Tissue(12, "cancellous_bone", 250.0, 0.0112, 1.4),
    Tissue(13, "cortical_bone", 1100.0, 0.0165, 0.3),
    Tissue(14, "airway", -1000.0, 0.0, 0.0),
    Tissue(15, "disc", 90.0, 0.0102, 0.9),
    Tissue(16, "csf", 15.0, 0.0096, 0.6),
    Tissue(17, "lesion", 40.0, 0.0099, 14.0),
]
TISSUES: dict[str, Tissue] = {t.name: t for t in _TISSUE_LIST}
_T = TISSUES

# --------------------------------------------------------------------------- degradations

DEGRADED_RANGES: tuple[dict, ...] = (
    {
        "name": "low_counts",
        "first": 6,
        "last": 10,
        "description": f"PET acquired with {PET_LOW_COUNT_FACTOR:g}x fewer counts (short frame): "
        "noisy PET; CT unaffected",
    },
    {
        "name": "heavy_compression",
        "first": 22,
        "last": 26,
        "description": "CT slices passed through strong 8x8 block-DCT quantisation (JPEG-like, "
        "quality 8, window -1000..1000 HU at 8 bits) plus 0.4% salt-and-pepper pixels",
    },
    {
        "name": "motion",
        "first": 34,
        "last": 38,
        "description": "patient moved in-plane (up to ~5 mm) during the CT rotation: views "
        "from displaced positions give blur, doubled edges and streaks",
    },
    {
        "name": "ct_low_dose",
        "first": 46,
        "last": 50,
        "description": f"CT with {CT_LOW_DOSE_FACTOR:g}x fewer incident photons: strong noise "
        "and photon-starvation streaks",
    },
)


def _range_of(k: int) -> str | None:
    for r in DEGRADED_RANGES:
        if r["first"] <= k <= r["last"]:
            return r["name"]
    return None


def _clean_ranges(n: int = N_SLICES) -> list[dict]:
    out, start = [], None
    for k in range(n):
        if _range_of(k) is None:
            if start is None:
                start = k
        elif start is not None:
            out.append({"first": start, "last": k - 1})
            start = None
    if start is not None:
        out.append({"first": start, "last": n - 1})
    return out


# --------------------------------------------------------------------------- signed distances
# All in mm; negative inside.  Ellipse distances are first-order approximations
# (value / gradient), exact enough for layers of a few cm on a body of 30 cm.


def _sd_ellipse(X, Y, cx, cy, a, b, p=2.0, angle=0.0):
    x, y = X - cx, Y - cy
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        x, y = c * x + s * y, -s * x + c * y
    ux, uy = np.abs(x) / a, np.abs(y) / b
    r = (ux**p + uy**p) ** (1.0 / p)
    rs = np.maximum(r, 1e-9) ** (1.0 - p)
    gx = rs * ux ** (p - 1.0) / a
    gy = rs * uy ** (p - 1.0) / b
    g = np.maximum(np.hypot(gx, gy), 1e-9)
    return (r - 1.0) / g


def _sd_circle(X, Y, cx, cy, r):
    return np.hypot(X - cx, Y - cy) - r


def _sd_capsule(X, Y, x0, y0, x1, y1, r):
    dx, dy = x1 - x0, y1 - y0
    L2 = dx * dx + dy * dy
    h = np.clip(((X - x0) * dx + (Y - y0) * dy) / L2, 0.0, 1.0)
    return np.hypot(X - x0 - h * dx, Y - y0 - h * dy) - r


def _sd_box(X, Y, cx, cy, hw, hh):
    qx, qy = np.abs(X - cx) - hw, np.abs(Y - cy) - hh
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0)


class _Canvas:
    """Property volumes for a painter's algorithm with anti-aliased (partial-volume) edges."""

    def __init__(self, shape, pixel_mm):
        self.px = pixel_mm
        self.label = np.zeros(shape, np.uint8)
        self.hu = np.full(shape, _T["air"].hu, np.float64)
        self.mu70 = np.zeros(shape, np.float64)
        self.mu511 = np.zeros(shape, np.float64)
        self.suv = np.zeros(shape, np.float64)


# --------------------------------------------------------------------------- phantom


@dataclass(frozen=True)
class Phantom:
    """Ground truth on the CT grid, arrays indexed [k, j, i]."""

    labels: np.ndarray  # uint8, Tissue.label of the dominant tissue
    hu: np.ndarray  # float32, noise-free CT numbers (with partial volume)
    mu70: np.ndarray  # float32, 1/mm
    mu511: np.ndarray  # float32, 1/mm
    suv: np.ndarray  # float32, FDG uptake in SUV
    lesions: tuple[dict, ...]  # centre (x, y, z) mm, radius mm, suv, name

    @property
    def activity_bqml(self) -> np.ndarray:
        return (self.suv / suv_factor()).astype(np.float32)


def _grid_mm():
    c = (np.arange(CT_N) - (CT_N - 1) / 2) * CT_PIXEL_MM
    X, Y = np.meshgrid(c, c)  # X[j, i] = x of column i, Y[j, i] = y of row j
    z = CT_ORIGIN[2] + np.arange(N_SLICES) * SLICE_MM
    return X, Y, z


def _vessel_trees(rng: np.random.Generator, hila, z_span):
    """Branching 3D segments (x0, y0, z0, x1, y1, z1, r) from each lung hilum."""
    segs = []

    def grow(p, d, length, radius, depth):
        q = p + d * length
        segs.append((*p, *q, radius))
        if depth == 0:
            return
        for sgn in (-1.0, 1.0):
            nd = d + sgn * 0.55 * _unit_perp(d, rng) + rng.normal(0, 0.25, 3)
            nd /= np.linalg.norm(nd)
            grow(q, nd, length * rng.uniform(0.65, 0.85), radius * 0.72, depth - 1)

    for hx, hy, hz, side in hila:
        for d in (
            (0.35 * side, -0.1, 1.0),  # up
            (0.45 * side, 0.15, -1.0),  # down
            (1.0 * side, -0.6, 0.1),  # lateral-anterior
            (1.0 * side, 0.7, -0.1),  # lateral-posterior
            (0.6 * side, -0.9, 0.5),  # anterior-up
            (0.7 * side, 0.8, 0.6),  # posterior-up
            (0.5 * side, -0.7, -0.8),  # anterior-down
        ):
            d = np.asarray(d, float)
            d /= np.linalg.norm(d)
            grow(np.array([hx, hy, hz], float), d, rng.uniform(36, 46), 4.2, 4)
    segs = np.asarray(segs)
    lo, hi = z_span
    segs[:, 2] = np.clip(segs[:, 2], lo, hi)
    segs[:, 5] = np.clip(segs[:, 5], lo, hi)
    return segs


def _unit_perp(d, rng):
    v = rng.normal(0, 1, 3)
    v -= v.dot(d) * d
    return v / np.linalg.norm(v)


def _paint_segments(cv: _Canvas, k, X, Y, z, segs, tissue, where):
    px = CT_PIXEL_MM
    for x0, y0, z0, x1, y1, z1, r in segs:
        if z < min(z0, z1) - r - px or z > max(z0, z1) + r + px:
            continue
        i0 = int(np.floor((min(x0, x1) - r - 2 * px - X[0, 0]) / px))
        i1 = int(np.ceil((max(x0, x1) + r + 2 * px - X[0, 0]) / px)) + 1
        j0 = int(np.floor((min(y0, y1) - r - 2 * px - Y[0, 0]) / px))
        j1 = int(np.ceil((max(y0, y1) + r + 2 * px - Y[0, 0]) / px)) + 1
        i0, j0 = max(i0, 0), max(j0, 0)
        i1, j1 = min(i1, CT_N), min(j1, CT_N)
        if i0 >= i1 or j0 >= j1:
            continue
        xs, ys = X[j0:j1, i0:i1], Y[j0:j1, i0:i1]
        d = np.array([x1 - x0, y1 - y0, z1 - z0])
        L2 = max(d.dot(d), 1e-9)
        h = np.clip(((xs - x0) * d[0] + (ys - y0) * d[1] + (z - z0) * d[2]) / L2, 0, 1)
        dist = np.sqrt((xs - x0 - h * d[0]) ** 2 + (ys - y0 - h * d[1]) ** 2 + (z - z0 - h * d[2]) ** 2)
        sd = dist - r
        alpha = np.clip(0.5 - sd / px, 0, 1) * where[j0:j1, i0:i1]
        if not np.any(alpha):
            continue
        sl = (slice(j0, j1), slice(i0, i1))
        keep = 1 - alpha
        cv.hu[k][sl] = cv.hu[k][sl] * keep + tissue.hu * alpha
        cv.mu70[k][sl] = cv.mu70[k][sl] * keep + tissue.mu70 * alpha
        cv.mu511[k][sl] = cv.mu511[k][sl] * keep + tissue.mu511 * alpha
        cv.suv[k][sl] = cv.suv[k][sl] * keep + tissue.suv * alpha
        lab = cv.label[k][sl]
        lab[alpha >= 0.5] = tissue.label


class _SliceCanvas:
    """View of one slice of a 3D canvas, so shapes can be painted slice by slice."""

    def __init__(self, cv: _Canvas, k: int):
        self.cv, self.k = cv, k

    def paint(self, sd, tissue, suv=None, where=None):
        cv, k = self.cv, self.k
        alpha = np.clip(0.5 - sd / cv.px, 0.0, 1.0)
        if where is not None:
            alpha = alpha * where
        if not np.any(alpha):
            return
        keep = 1.0 - alpha
        cv.hu[k] = cv.hu[k] * keep + tissue.hu * alpha
        cv.mu70[k] = cv.mu70[k] * keep + tissue.mu70 * alpha
        cv.mu511[k] = cv.mu511[k] * keep + tissue.mu511 * alpha
        cv.suv[k] = cv.suv[k] * keep + (tissue.suv if suv is None else suv) * alpha
        cv.label[k][alpha >= 0.5] = tissue.label


def _ellipsoid_section(z, cz, cc):
    """Scale of an ellipsoid's cross-section at height z (0 if not cut)."""
    u = (z - cz) / cc
    return math.sqrt(1 - u * u) if abs(u) < 1 else 0.0


@functools.lru_cache(maxsize=2)
def _make_phantom_cached(anatomy_seed: int) -> Phantom:
    rng = np.random.default_rng(anatomy_seed)
    X, Y, zs = _grid_mm()
    z_lo, z_hi = zs[0], zs[-1]
    cv = _Canvas(CT_SHAPE, CT_PIXEL_MM)

    def z_at(t):
        return z_lo + t * (z_hi - z_lo)

    lesions = (
        {"name": "right_lung_nodule", "center": (-85.0, 22.0, z_at(0.62)), "radius": 8.0, "suv": 14.0},
        {"name": "left_lung_nodule", "center": (92.0, -28.0, z_at(0.78)), "radius": 7.0, "suv": 14.0},
        {"name": "right_paratracheal_node", "center": (-21.0, 8.0, z_at(0.74)), "radius": 8.0, "suv": 11.0},
    )
    hila = [(-44.0, 8.0, z_at(0.52), -1.0), (46.0, 8.0, z_at(0.52), 1.0)]
    vessels = _vessel_trees(rng, hila, (z_lo - 10, z_hi + 10))

    for k, z in enumerate(zs):
        t = (z - z_lo) / (z_hi - z_lo)
        s = _SliceCanvas(cv, k)

        # table: carbon-fibre shells around a foam core, fixed along z
        s.paint(_sd_box(X, Y, 0.0, TABLE_TOP_MM + 12.0, 185.0, 12.0), _T["table_shell"])
        s.paint(_sd_box(X, Y, 0.0, TABLE_TOP_MM + 12.0, 180.0, 7.0), _T["table_foam"])

        # body: superellipse that changes smoothly along z
        a_b = 150.0 + 14.0 * math.sin(math.pi * (0.25 + 0.6 * t))
        b_b = 104.0 + 4.0 * math.cos(math.pi * t)
        yc = TABLE_TOP_MM - 1.0 - b_b  # the back rests on the table
        body = _sd_ellipse(X, Y, 0.0, yc, a_b, b_b, p=2.5)
        s.paint(body, _T["skin"])
        s.paint(body + 2.0, _T["fat"])
        fat_mm = 9.0 + 10.0 * (X / a_b) ** 2 + 4.0 * np.clip(-(Y - yc) / b_b, 0, 1)
        s.paint(body + 2.0 + fat_mm, _T["muscle"])

        # thoracic cavity, lungs
        a_c, b_c, y_cav = a_b - 34.0, b_b - 28.0, yc - 4.0
        cavity = _sd_ellipse(X, Y, 0.0, y_cav, a_c, b_c, p=2.2)
        s.paint(cavity, _T["lung"])
        in_lung = np.clip(0.5 - cavity / CT_PIXEL_MM, 0, 1)
        _paint_segments(cv, k, X, Y, z, vessels, _T["blood"], in_lung)

        # ribs: tangent ellipses on the cavity wall whose angle drifts with z
        n_ribs, step = 6, 0.42
        for side in (-1.0, 1.0):
            for j in range(n_ribs):
                phi = 0.45 + ((j + z / 32.0 + (0.5 if side > 0 else 0.0)) % n_ribs) * step
                if phi > 2.6:
                    continue
                g = 7.0
                px_ = side * (a_c + g) * math.sin(phi)
                py_ = y_cav + (b_c + g) * math.cos(phi)
                tx, ty = side * (a_c + g) * math.cos(phi), -(b_c + g) * math.sin(phi)
                ang = math.atan2(ty, tx)
                rib = _sd_ellipse(X, Y, px_, py_, 9.0, 4.3, angle=ang)
                s.paint(rib, _T["cortical_bone"])
                s.paint(rib + 1.6, _T["cancellous_bone"])

        # scapulae (upper chest), behind the posterior ribs
        if t > 0.45:
            for side in (-1.0, 1.0):
                s.paint(
                    _sd_capsule(X, Y, side * 62.0, y_cav + b_c + 14.0, side * 122.0, y_cav + b_c - 22.0, 3.2),
                    _T["cortical_bone"],
                )

        # liver dome (right, lower slices) and spleen (left, lowest slices), inside the cavity
        sc = _ellipsoid_section(z, z_lo - 40.0, 95.0)
        if sc > 0:
            liver = np.maximum(_sd_ellipse(X, Y, -25.0, 5.0, 118.0 * sc, 96.0 * sc), cavity - 3.0)
            s.paint(liver, _T["liver"])
        sc = _ellipsoid_section(z, z_lo - 45.0, 75.0)
        if sc > 0:
            spleen = np.maximum(_sd_ellipse(X, Y, 70.0, 25.0, 55.0 * sc, 50.0 * sc), cavity - 3.0)
            s.paint(spleen, _T["spleen"])

        # mediastinum (fat) between the lungs
        w_med = 30.0 + 6.0 * (t < 0.6)
        s.paint(
            np.maximum(_sd_ellipse(X, Y, 4.0, y_cav + 4.0, w_med, b_c + 6.0, p=3.0), cavity - 4.0),
            _T["fat"],
        )

        # spine: vertebral body (or disc), canal, posterior elements
        y_vb = y_cav + b_c - 18.0
        disc = ((z - z_lo) % 27.0) < 5.0
        vb = _sd_circle(X, Y, 0.0, y_vb, 16.0)
        if disc:
            s.paint(vb, _T["disc"])
        else:
            s.paint(vb, _T["cortical_bone"])
            s.paint(vb + 3.0, _T["cancellous_bone"])
        lamina = np.maximum(_sd_circle(X, Y, 0.0, y_vb + 26.0, 13.0), -(_sd_circle(X, Y, 0.0, y_vb + 26.0, 8.0)))
        s.paint(np.maximum(lamina, -(Y - (y_vb + 14.0))), _T["cortical_bone"])
        s.paint(_sd_capsule(X, Y, 0.0, y_vb + 34.0, 0.0, y_vb + 41.0, 4.0), _T["cortical_bone"])
        for side in (-1.0, 1.0):
            s.paint(
                _sd_capsule(X, Y, side * 10.0, y_vb + 22.0, side * 30.0, y_vb + 28.0, 4.5), _T["cortical_bone"]
            )
        s.paint(_sd_circle(X, Y, 0.0, y_vb + 26.0, 7.5), _T["csf"])

        # sternum
        if 0.12 < t < 0.97:
            st = _sd_capsule(X, Y, -11.0, y_cav - b_c - 6.0, 11.0, y_cav - b_c - 6.0, 6.5)
            s.paint(st, _T["cortical_bone"])
            s.paint(st + 1.8, _T["cancellous_bone"])

        # oesophagus with a little air
        s.paint(_sd_circle(X, Y, 6.0, y_vb - 23.0, 7.0), _T["soft_tissue"])
        s.paint(_sd_circle(X, Y, 6.5, y_vb - 23.0, 1.8), _T["airway"])

        # heart: epicardial fat, chambers (blood), hot left-ventricular wall
        sc = _ellipsoid_section(z, z_at(0.28), 62.0)
        if sc > 0:
            s.paint(_sd_ellipse(X, Y, 18.0, -30.0, 62.0 * sc + 3.0, 52.0 * sc + 3.0, angle=0.35), _T["fat"])
            s.paint(_sd_ellipse(X, Y, 18.0, -30.0, 62.0 * sc, 52.0 * sc, angle=0.35), _T["blood"])
        sc = _ellipsoid_section(z, z_at(0.24), 46.0)
        if sc > 0:
            lv = _sd_ellipse(X, Y, 40.0, -20.0, 34.0 * sc, 29.0 * sc, angle=0.5)
            s.paint(lv, _T["myocardium"])
            s.paint(lv + 10.0 * sc, _T["blood"])

        # great vessels
        s.paint(_sd_circle(X, Y, 24.0, y_vb - 20.0, 11.0), _T["blood"])  # descending aorta
        if 0.56 < t < 0.88:
            s.paint(_sd_circle(X, Y, 6.0, -27.0, 14.0), _T["blood"])  # ascending aorta
        if 0.86 <= t < 0.95:
            s.paint(_sd_capsule(X, Y, 6.0, -27.0, 24.0, y_vb - 20.0, 11.0), _T["blood"])  # arch
        if t >= 0.95:
            for cx, cy, r in ((-9.0, -22.0, 6.5), (6.0, -18.0, 4.5), (19.0, -8.0, 5.0)):
                s.paint(_sd_circle(X, Y, cx, cy, r), _T["blood"])
        if 0.5 < t < 0.62:
            s.paint(_sd_circle(X, Y, 28.0, -30.0, 13.0), _T["blood"])  # pulmonary trunk
        if 0.55 < t < 0.61:
            s.paint(_sd_capsule(X, Y, 28.0, -26.0, 50.0, 5.0, 8.0), _T["blood"])
            s.paint(_sd_capsule(X, Y, 18.0, -12.0, -46.0, 4.0, 8.0), _T["blood"])
        if t > 0.55:
            s.paint(_sd_circle(X, Y, -25.0, -20.0, 9.0), _T["blood"])  # superior vena cava

        # trachea, then the two main bronchi below the carina
        y_tr = y_vb - 44.0
        if t >= 0.66:
            s.paint(_sd_circle(X, Y, 0.0, y_tr, 10.5), _T["soft_tissue"])
            s.paint(_sd_circle(X, Y, 0.0, y_tr, 8.5), _T["airway"])
        elif t > 0.5:
            off = 8.0 + 140.0 * (0.66 - t)
            for side in (-1.0, 1.0):
                s.paint(_sd_circle(X, Y, side * off, y_tr + 4.0, 7.0), _T["soft_tissue"])
                s.paint(_sd_circle(X, Y, side * off, y_tr + 4.0, 5.0), _T["airway"])

        # lesions last
        for les in lesions:
            cx, cy, cz = les["center"]
            dz = z - cz
            if abs(dz) < les["radius"] + CT_PIXEL_MM:
                rr = math.sqrt(max(les["radius"] ** 2 - dz * dz, 0.0))
                # a sphere cut near its pole: shrink the disc but keep the edge soft
                sd = np.hypot(X - cx, Y - cy) - rr if rr > 0 else np.hypot(X - cx, Y - cy) + abs(dz) - les["radius"]
                s.paint(sd, _T["lesion"], suv=les["suv"])

    return Phantom(
        labels=cv.label,
        hu=cv.hu.astype(np.float32),
        mu70=cv.mu70.astype(np.float32),
        mu511=cv.mu511.astype(np.float32),
        suv=cv.suv.astype(np.float32),
        lesions=tuple(
            {**les, "center": tuple(float(c) for c in les["center"])} for les in lesions
        ),
    )


def make_phantom(anatomy_seed: int = 2024) -> Phantom:
    """The ground-truth phantom on the CT grid (cached; the arrays must not be modified)."""
    ph = _make_phantom_cached(int(anatomy_seed))
    for a in (ph.labels, ph.hu, ph.mu70, ph.mu511, ph.suv):
        a.flags.writeable = False
    return ph


# --------------------------------------------------------------------------- projectors


def _build_projector(n, px, center, n_angles, n_bins, bin_w, sub=1, chunk=24):
    """Sparse parallel-beam projector, rows (angle, bin), columns j*n + i.

    Pixel-driven: each of sub x sub points per pixel spreads its share of the pixel
    area over the two nearest bins (linear interpolation).  Entries are in mm, so
    A @ mu[1/mm] gives dimensionless line integrals.  Angle theta projects a point
    (x, y) to t = x cos(theta) + y sin(theta); bins are centred on t = 0.
    """
    angles = np.arange(n_angles) * (np.pi / n_angles)
    c = (np.arange(n) - (n - 1) / 2) * px
    off = ((np.arange(sub) + 0.5) / sub - 0.5) * px
    XX = np.concatenate([np.broadcast_to(center[0] + c[None, :] + a, (n, n)).ravel() for a in off for _ in off])
    YY = np.concatenate([np.broadcast_to(center[1] + c[:, None] + b, (n, n)).ravel() for _ in off for b in off])
    cols = np.tile(np.arange(n * n), sub * sub)
    w = px * px / (sub * sub) / bin_w
    blocks = []
    for a0 in range(0, n_angles, chunk):
        ang = angles[a0 : a0 + chunk]
        u = (np.cos(ang)[:, None] * XX[None] + np.sin(ang)[:, None] * YY[None]) / bin_w + (n_bins - 1) / 2
        b0 = np.floor(u).astype(np.int64)
        f = u - b0
        base = (np.arange(len(ang)) * n_bins)[:, None]
        rows = np.concatenate([(base + b0).ravel(), (base + b0 + 1).ravel()])
        vals = np.concatenate([(1 - f).ravel(), f.ravel()]) * w
        cc = np.concatenate([np.broadcast_to(cols, b0.shape).ravel()] * 2)
        ok = np.concatenate([((b0 >= 0) & (b0 < n_bins)).ravel(), ((b0 >= -1) & (b0 < n_bins - 1)).ravel()])
        m = sparse.csr_matrix(
            (vals[ok].astype(np.float32), (rows[ok], cc[ok])), shape=(len(ang) * n_bins, n * n)
        )
        m.sum_duplicates()
        blocks.append(m)
    return sparse.vstack(blocks, format="csr")


@functools.lru_cache(maxsize=1)
def _ct_projector():
    A = _build_projector(CT_N, CT_PIXEL_MM, (0.0, 0.0), CT_ANGLES, CT_BINS, CT_PIXEL_MM, sub=2)
    return A, A.T.tocsr()


@functools.lru_cache(maxsize=1)
def _pet_projectors():
    fine = _build_projector(CT_N, CT_PIXEL_MM, (0.0, 0.0), PET_ANGLES, PET_BINS, PET_PIXEL_MM, sub=1)
    coarse = _build_projector(PET_N, PET_PIXEL_MM, PET_CENTER_MM, PET_ANGLES, PET_BINS, PET_PIXEL_MM, sub=2)
    subsets = []
    for s in range(OSEM_SUBSETS):
        rows = (np.arange(s, PET_ANGLES, OSEM_SUBSETS)[:, None] * PET_BINS + np.arange(PET_BINS)[None]).ravel()
        As = coarse[rows]
        subsets.append((rows, As, As.T.tocsr()))
    return fine, subsets


def _ramp_hann(n_bins, d):
    n = 1
    while n < 2 * n_bins:
        n *= 2
    k = np.arange(n)
    k = np.where(k < n // 2, k, k - n)  # FFT order
    h = np.zeros(n)
    h[k == 0] = 1.0 / (4.0 * d * d)
    odd = (k % 2) != 0
    h[odd] = -1.0 / (np.pi * k[odd] * d) ** 2
    H = np.real(np.fft.fft(h)) * d  # ~|nu| in cycles/mm, exact at DC (Ram-Lak)
    H *= 0.5 * (1.0 + np.cos(2.0 * np.pi * np.fft.fftfreq(n)))  # Hann, zero at Nyquist
    return H, n


def _fbp(sino):
    """sino: (CT_ANGLES*CT_BINS, ns) line integrals -> (ns, CT_N, CT_N) mu in 1/mm."""
    ns = sino.shape[1]
    H, n = _ramp_hann(CT_BINS, CT_PIXEL_MM)
    s = sino.reshape(CT_ANGLES, CT_BINS, ns)
    q = np.real(np.fft.ifft(np.fft.fft(s, n=n, axis=1) * H[None, :, None], axis=1))[:, :CT_BINS]
    _, AT = _ct_projector()
    # A's entries are px^2/bin_w; back-projection must interpolate (weights summing to 1)
    img = AT @ q.reshape(-1, ns).astype(np.float32)
    img *= (np.pi / CT_ANGLES) * (CT_PIXEL_MM / CT_PIXEL_MM**2)
    return np.moveaxis(img.reshape(CT_N, CT_N, ns), 2, 0)


# --------------------------------------------------------------------------- CT degradations

_JPEG_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    float,
)
COMPRESSION_QUALITY = 8
COMPRESSION_WINDOW_HU = (-1000.0, 1000.0)
IMPULSE_FRACTION = 0.004


def _dct_matrix(n=8):
    k = np.arange(n)
    C = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2.0 / n)
    C[0] /= math.sqrt(2.0)
    return C


def _block_dct_quantise(img8, quality):
    """8x8 block DCT quantisation of an image of 0..255 values (sides multiple of 8)."""
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
    Q = np.clip(np.floor((_JPEG_LUMA * scale + 50.0) / 100.0), 1, 255)
    C = _dct_matrix()
    h, w = img8.shape
    blocks = (img8 - 128.0).reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)
    coef = np.einsum("ab,ijbc,dc->ijad", C, blocks, C)
    coef = np.round(coef / Q) * Q
    back = np.einsum("ba,ijbc,cd->ijad", C, coef, C)
    return np.clip(np.round(back.transpose(0, 2, 1, 3).reshape(h, w) + 128.0), 0, 255)


def _compress_slice(hu, rng):
    lo, hi = COMPRESSION_WINDOW_HU
    v = np.round(np.clip((hu - lo) / (hi - lo), 0, 1) * 255.0)
    v = _block_dct_quantise(v, COMPRESSION_QUALITY)
    u = rng.random(v.shape)
    v[u < IMPULSE_FRACTION / 2] = 0.0
    v[(u >= IMPULSE_FRACTION / 2) & (u < IMPULSE_FRACTION)] = 255.0
    return lo + v / 255.0 * (hi - lo)


MOTION_GROUPS = 16


def _motion_shifts_mm():
    """In-plane displacement (dx, dy) of the patient for each group of views."""
    v = (np.arange(MOTION_GROUPS) + 0.5) / MOTION_GROUPS
    dx = 2.0 * np.sin(2 * np.pi * 1.3 * v)
    dy = 4.5 * np.sin(2 * np.pi * 2.0 * v + 0.5)
    return np.stack([dx, dy], 1)


# --------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class SimulatedVolumes:
    """Simulated slices (a subset or all) with the phantom they came from."""

    slices: np.ndarray  # CT/PET slice indices k
    ct_hu: np.ndarray  # int16 (n, 160, 160)
    pet_bqml: np.ndarray  # float32 (n, 96, 96)
    phantom: Phantom = field(repr=False)


def _slice_rng(seed: int, k: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(k), int(stream)])


def _simulate_ct(ph: Phantom, ks: np.ndarray, seed: int) -> np.ndarray:
    A, _ = _ct_projector()
    mu = ph.mu70[ks].reshape(len(ks), -1).T.astype(np.float32)  # (pixels, ns)
    p = np.asarray(A @ mu)  # (rows, ns)
    shifts = _motion_shifts_mm()
    views_per_group = CT_ANGLES // MOTION_GROUPS
    for c, k in enumerate(ks):
        if _range_of(k) != "motion":
            continue
        # the patient moves, the table does not
        table = ndimage.binary_dilation(np.isin(ph.labels[k], (1, 2)), iterations=1)
        mu_table = np.where(table, ph.mu70[k], 0.0)
        mu_body = ph.mu70[k] - mu_table
        for g, (dx, dy) in enumerate(shifts):
            moved = mu_table + ndimage.shift(mu_body, (dy / CT_PIXEL_MM, dx / CT_PIXEL_MM), order=1, mode="constant")
            rows = slice(g * views_per_group * CT_BINS, (g + 1) * views_per_group * CT_BINS)
            p[rows, c] = A[rows] @ moved.ravel()
    p_hat = np.empty_like(p, dtype=np.float64)
    for c, k in enumerate(ks):
        i0 = CT_I0 / (CT_LOW_DOSE_FACTOR if _range_of(k) == "ct_low_dose" else 1.0)
        counts = _slice_rng(seed, k, 1).poisson(i0 * np.exp(-p[:, c].astype(np.float64)))
        p_hat[:, c] = -np.log(np.maximum(counts, 0.5) / i0)
    mu_rec = _fbp(p_hat)
    hu = 1000.0 * (mu_rec - MU_WATER_70KEV) / MU_WATER_70KEV
    for c, k in enumerate(ks):
        if _range_of(k) == "heavy_compression":
            hu[c] = _compress_slice(hu[c], _slice_rng(seed, k, 3))
    return np.clip(np.round(hu), -1024, 3071).astype(np.int16)


@functools.lru_cache(maxsize=1)
def _pet_noise_free():
    """Noise-free attenuated trues (per unit sensitivity), attenuation factors, sensitivity.

    The sensitivity (counts per unit of attenuated line integral of Bq/ml x mm) is fixed
    for the study, chosen so that an average slice gives PET_TRUES_PER_SLICE trues.
    """
    ph = make_phantom()
    fine, _ = _pet_projectors()
    sig_px = PET_DETECTOR_FWHM_MM / 2.3548 / np.array([SLICE_MM, CT_PIXEL_MM, CT_PIXEL_MM])
    act = ndimage.gaussian_filter(ph.activity_bqml.astype(np.float64), sig_px, mode="nearest")
    n = N_SLICES
    lines = np.asarray(fine @ act.reshape(n, -1).T.astype(np.float32), dtype=np.float64)
    atten = np.exp(-np.asarray(fine @ ph.mu511.reshape(n, -1).T, dtype=np.float64))
    trues = atten * lines
    sens = PET_TRUES_PER_SLICE / trues.sum(axis=0).mean()
    return trues, atten, sens


def _simulate_pet(ph: Phantom, ks: np.ndarray, seed: int) -> np.ndarray:
    trues_all, atten_all, sens = _pet_noise_free()
    _, subsets = _pet_projectors()
    trues = trues_all[:, ks]
    atten = atten_all[:, ks]
    scale = np.array(
        [sens / (PET_LOW_COUNT_FACTOR if _range_of(k) == "low_counts" else 1.0) for k in ks]
    )
    expected = trues * scale[None, :]
    f = PET_RANDOMS_SCATTER_FRACTION
    background = (f / (1 - f)) * expected.sum(axis=0) / expected.shape[0]  # per bin, per slice
    y = np.empty_like(expected)
    for c, k in enumerate(ks):
        y[:, c] = _slice_rng(seed, k, 2).poisson(expected[:, c] + background[c])
    # OSEM with the attenuation-corrected model: ybar = scale*atten*(A lam) + background
    w = atten * scale[None, :]
    lam = np.full((PET_N * PET_N, len(ks)), 5000.0)
    sens_img = [np.asarray(AsT @ w[rows]) for rows, _, AsT in subsets]
    for _ in range(OSEM_ITERATIONS):
        for (rows, As, AsT), sen in zip(subsets, sens_img):
            ybar = w[rows] * np.asarray(As @ lam) + background[None, :]
            ratio = y[rows] / np.maximum(ybar, 1e-12)
            lam *= np.asarray(AsT @ (w[rows] * ratio)) / np.maximum(sen, 1e-12)
    img = np.moveaxis(lam.reshape(PET_N, PET_N, len(ks)), 2, 0)
    sig = PET_POSTFILTER_FWHM_MM / 2.3548 / PET_PIXEL_MM
    img = ndimage.gaussian_filter(img, (0, sig, sig), mode="nearest")
    return np.maximum(img, 0).astype(np.float32)


def simulate_volumes(seed: int = 0, slices: Sequence[int] | None = None) -> SimulatedVolumes:
    """Simulate the CT (HU) and PET (Bq/ml) slices `slices` (default: all) of the study.

    A subset gives exactly the values those slices have in the full study.
    """
    ks = np.arange(N_SLICES) if slices is None else np.asarray(sorted(set(int(k) for k in slices)))
    if ks.size == 0 or ks.min() < 0 or ks.max() >= N_SLICES:
        raise ValueError(f"slices must be non-empty indices in 0..{N_SLICES - 1}")
    ph = make_phantom()
    ct = _simulate_ct(ph, ks, seed)
    pet = _simulate_pet(ph, ks, seed)
    return SimulatedVolumes(slices=ks, ct_hu=ct, pet_bqml=pet, phantom=ph)


def study_info(seed: int = 0) -> dict:
    """The description of the study (JSON-serialisable)."""
    return {
        "description": "MS-IQA sample study: simulated thoracic FDG PET/CT of an "
        "anthropomorphic analytic phantom (msiqa.phantom)",
        "seed": int(seed),
        "n_slices": N_SLICES,
        "orientation": "LPS, identity direction; i: right->left, j: anterior->posterior, k: inferior->superior",
        "degraded_ranges": [dict(r) for r in DEGRADED_RANGES],
        "clean_ranges": _clean_ranges(),
        "ct": {
            "shape_kji": list(CT_SHAPE),
            "spacing_mm": list(CT_SPACING),
            "origin_mm": list(CT_ORIGIN),
            "geometry": "parallel beam, pixel-driven projector, FBP with ramp x Hann filter",
            "views": CT_ANGLES,
            "detector_bins": CT_BINS,
            "bin_mm": CT_PIXEL_MM,
            "i0_photons_per_ray": CT_I0,
            "low_dose_factor": CT_LOW_DOSE_FACTOR,
            "effective_energy_kev": 70,
            "mu_water_per_mm": MU_WATER_70KEV,
            "compression_quality": COMPRESSION_QUALITY,
            "compression_window_hu": list(COMPRESSION_WINDOW_HU),
            "impulse_fraction": IMPULSE_FRACTION,
            "motion_shifts_mm": _motion_shifts_mm().round(3).tolist(),
        },
        "pet": {
            "shape_kji": list(PET_SHAPE),
            "spacing_mm": list(PET_SPACING),
            "origin_mm": list(PET_ORIGIN),
            "units": "Bq/ml",
            "views": PET_ANGLES,
            "detector_bins": PET_BINS,
            "trues_per_slice": PET_TRUES_PER_SLICE,
            "low_count_factor": PET_LOW_COUNT_FACTOR,
            "randoms_scatter_fraction": PET_RANDOMS_SCATTER_FRACTION,
            "detector_fwhm_mm": PET_DETECTOR_FWHM_MM,
            "osem_iterations": OSEM_ITERATIONS,
            "osem_subsets": OSEM_SUBSETS,
            "postfilter_fwhm_mm": PET_POSTFILTER_FWHM_MM,
            "attenuation": "511 keV mu map of the phantom, in the system model",
        },
        "pet_suv_factor": {
            "patient_weight_kg": PATIENT_WEIGHT_KG,
            "injected_dose_bq": INJECTED_DOSE_BQ,
            "uptake_time_s": UPTAKE_TIME_S,
            "half_life_s": F18_HALF_LIFE_S,
            "decay_corrected_dose_bq": DECAY_CORRECTED_DOSE_BQ,
            "suv_per_bqml": suv_factor(),
            "formula": "SUV = Bq/ml * patient_weight_kg * 1000 / decay_corrected_dose_bq",
        },
        "tissues": {
            t.name: {"label": t.label, "hu": t.hu, "mu70_per_mm": t.mu70, "mu511_per_mm": t.mu511, "suv": t.suv}
            for t in _TISSUE_LIST
        },
        "lesions": [dict(les) for les in make_phantom().lesions],
    }


def simulate_study(seed: int = 0) -> tuple[sitk.Image, sitk.Image, dict]:
    """The whole study: CT (int16 HU), PET (float32 Bq/ml, own grid) and its description."""
    t0 = time.perf_counter()
    vol = simulate_volumes(seed)
    ct = sitk.GetImageFromArray(vol.ct_hu)
    ct.SetSpacing(CT_SPACING)
    ct.SetOrigin(CT_ORIGIN)
    ct.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    ct.SetMetaData("msiqa_modality", "CT")
    ct.SetMetaData("msiqa_units", "HU")
    pet = sitk.GetImageFromArray(vol.pet_bqml)
    pet.SetSpacing(PET_SPACING)
    pet.SetOrigin(PET_ORIGIN)
    pet.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    for key, value in {
        "msiqa_modality": "PT",
        "msiqa_units": "BQML",
        "msiqa_patient_weight_kg": PATIENT_WEIGHT_KG,
        "msiqa_injected_dose_bq": INJECTED_DOSE_BQ,
        "msiqa_decay_corrected_dose_bq": DECAY_CORRECTED_DOSE_BQ,
        "msiqa_half_life_s": F18_HALF_LIFE_S,
        "msiqa_uptake_time_s": UPTAKE_TIME_S,
        "msiqa_radionuclide": "F-18",
    }.items():
        pet.SetMetaData(key, value if isinstance(value, str) else repr(float(value)))
    info = study_info(seed)
    info["generation_time_s"] = round(time.perf_counter() - t0, 1)
    return ct, pet, info


# --------------------------------------------------------------------------- measures


def blockiness(img: np.ndarray, block: int = 8) -> float:
    """Mean absolute step across block boundaries over the mean step inside blocks.

    About 1 for an image without a block grid, clearly above 1 after block coding.
    """
    img = np.asarray(img, np.float64)
    ratios = []
    for d in (np.abs(np.diff(img, axis=1)), np.abs(np.diff(img, axis=0).T)):
        at = (np.arange(d.shape[1]) % block) == block - 1
        ratios.append(d[:, at].mean() / max(d[:, ~at].mean(), 1e-9))
    return float(np.mean(ratios))


if __name__ == "__main__":  # pragma: no cover - quick look
    t = time.perf_counter()
    ct_img, pet_img, inf = simulate_study()
    print(f"simulated in {time.perf_counter() - t:.1f} s", ct_img.GetSize(), pet_img.GetSize())
