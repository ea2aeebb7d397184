"""The anthropomorphic thoracic phantom: ground truth on the CT grid.

Body contour, skin, fat, muscle, lungs with vessel trees, heart with a hot left-ventricular
wall, aorta and great vessels, trachea and bronchi, oesophagus, spine, ribs, sternum,
scapulae, liver dome, spleen, hot lesions and the patient table, painted slice by slice from
signed distances so that every property map carries partial-volume edges.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .geometry import CT_PIXEL_MM, CT_SHAPE, TABLE_TOP_MM, grid_mm
from .shapes import (
    Canvas,
    SliceCanvas,
    ellipsoid_section,
    paint_segments,
    sd_box,
    sd_capsule,
    sd_circle,
    sd_ellipse,
)
from .suv import suv_factor
from .tissues import TISSUES

_T = TISSUES


@dataclass(frozen=True)
class Phantom:
    """Ground truth on the CT grid, arrays indexed [k, j, i]."""

    labels: np.ndarray  # uint8, Tissue.label of the dominant tissue
    hu: np.ndarray  # float32, noise-free CT numbers (with partial volume)
    mu70: np.ndarray  # float32, 1/mm
    mu511: np.ndarray  # float32, 1/mm
    suv: np.ndarray  # float32, FDG uptake in SUV
    lesions: tuple[dict, ...]  # centre (x, y, z) mm, radius mm, suv, name
    anatomy_seed: int

    @property
    def activity_bqml(self) -> np.ndarray:
        return (self.suv / suv_factor()).astype(np.float32)


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


@functools.lru_cache(maxsize=2)
def _make_phantom_cached(anatomy_seed: int) -> Phantom:
    rng = np.random.default_rng(anatomy_seed)
    X, Y, zs = grid_mm()
    z_lo, z_hi = zs[0], zs[-1]
    cv = Canvas(CT_SHAPE, CT_PIXEL_MM)

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
        s = SliceCanvas(cv, k)

        # table: carbon-fibre shells around a foam core, fixed along z
        s.paint(sd_box(X, Y, 0.0, TABLE_TOP_MM + 12.0, 185.0, 12.0), _T["table_shell"])
        s.paint(sd_box(X, Y, 0.0, TABLE_TOP_MM + 12.0, 180.0, 7.0), _T["table_foam"])

        # body: superellipse that changes smoothly along z
        a_b = 150.0 + 14.0 * math.sin(math.pi * (0.25 + 0.6 * t))
        b_b = 104.0 + 4.0 * math.cos(math.pi * t)
        yc = TABLE_TOP_MM - 1.0 - b_b  # the back rests on the table
        body = sd_ellipse(X, Y, 0.0, yc, a_b, b_b, p=2.5)
        s.paint(body, _T["skin"])
        s.paint(body + 2.0, _T["fat"])
        fat_mm = 9.0 + 10.0 * (X / a_b) ** 2 + 4.0 * np.clip(-(Y - yc) / b_b, 0, 1)
        s.paint(body + 2.0 + fat_mm, _T["muscle"])

        # thoracic cavity, lungs
        a_c, b_c, y_cav = a_b - 34.0, b_b - 28.0, yc - 4.0
        cavity = sd_ellipse(X, Y, 0.0, y_cav, a_c, b_c, p=2.2)
        s.paint(cavity, _T["lung"])
        in_lung = np.clip(0.5 - cavity / CT_PIXEL_MM, 0, 1)
        paint_segments(cv, k, X, Y, z, vessels, _T["blood"], in_lung)

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
                rib = sd_ellipse(X, Y, px_, py_, 9.0, 4.3, angle=ang)
                s.paint(rib, _T["cortical_bone"])
                s.paint(rib + 1.6, _T["cancellous_bone"])

        # scapulae (upper chest), behind the posterior ribs
        if t > 0.45:
            for side in (-1.0, 1.0):
                s.paint(
                    sd_capsule(X, Y, side * 62.0, y_cav + b_c + 14.0, side * 122.0, y_cav + b_c - 22.0, 3.2),
                    _T["cortical_bone"],
                )

        # liver dome (right, lower slices) and spleen (left, lowest slices), inside the cavity
        sc = ellipsoid_section(z, z_lo - 40.0, 95.0)
        if sc > 0:
            liver = np.maximum(sd_ellipse(X, Y, -25.0, 5.0, 118.0 * sc, 96.0 * sc), cavity - 3.0)
            s.paint(liver, _T["liver"])
        sc = ellipsoid_section(z, z_lo - 45.0, 75.0)
        if sc > 0:
            spleen = np.maximum(sd_ellipse(X, Y, 70.0, 25.0, 55.0 * sc, 50.0 * sc), cavity - 3.0)
            s.paint(spleen, _T["spleen"])

        # mediastinum (fat) between the lungs
        w_med = 30.0 + 6.0 * (t < 0.6)
        s.paint(
            np.maximum(sd_ellipse(X, Y, 4.0, y_cav + 4.0, w_med, b_c + 6.0, p=3.0), cavity - 4.0),
            _T["fat"],
        )

        # spine: vertebral body (or disc), canal, posterior elements
        y_vb = y_cav + b_c - 18.0
        disc = ((z - z_lo) % 27.0) < 5.0
        vb = sd_circle(X, Y, 0.0, y_vb, 16.0)
        if disc:
            s.paint(vb, _T["disc"])
        else:
            s.paint(vb, _T["cortical_bone"])
            s.paint(vb + 3.0, _T["cancellous_bone"])
        lamina = np.maximum(sd_circle(X, Y, 0.0, y_vb + 26.0, 13.0), -(sd_circle(X, Y, 0.0, y_vb + 26.0, 8.0)))
        s.paint(np.maximum(lamina, -(Y - (y_vb + 14.0))), _T["cortical_bone"])
        s.paint(sd_capsule(X, Y, 0.0, y_vb + 34.0, 0.0, y_vb + 41.0, 4.0), _T["cortical_bone"])
        for side in (-1.0, 1.0):
            s.paint(
                sd_capsule(X, Y, side * 10.0, y_vb + 22.0, side * 30.0, y_vb + 28.0, 4.5), _T["cortical_bone"]
            )
        s.paint(sd_circle(X, Y, 0.0, y_vb + 26.0, 7.5), _T["csf"])

        # sternum
        if 0.12 < t < 0.97:
            st = sd_capsule(X, Y, -11.0, y_cav - b_c - 6.0, 11.0, y_cav - b_c - 6.0, 6.5)
            s.paint(st, _T["cortical_bone"])
            s.paint(st + 1.8, _T["cancellous_bone"])

        # oesophagus with a little air
        s.paint(sd_circle(X, Y, 6.0, y_vb - 23.0, 7.0), _T["soft_tissue"])
        s.paint(sd_circle(X, Y, 6.5, y_vb - 23.0, 1.8), _T["airway"])

        # heart: epicardial fat, chambers (blood), hot left-ventricular wall
        sc = ellipsoid_section(z, z_at(0.28), 62.0)
        if sc > 0:
            s.paint(sd_ellipse(X, Y, 18.0, -30.0, 62.0 * sc + 3.0, 52.0 * sc + 3.0, angle=0.35), _T["fat"])
            s.paint(sd_ellipse(X, Y, 18.0, -30.0, 62.0 * sc, 52.0 * sc, angle=0.35), _T["blood"])
        sc = ellipsoid_section(z, z_at(0.24), 46.0)
        if sc > 0:
            lv = sd_ellipse(X, Y, 40.0, -20.0, 34.0 * sc, 29.0 * sc, angle=0.5)
            s.paint(lv, _T["myocardium"])
            s.paint(lv + 10.0 * sc, _T["blood"])

        # great vessels
        s.paint(sd_circle(X, Y, 24.0, y_vb - 20.0, 11.0), _T["blood"])  # descending aorta
        if 0.56 < t < 0.88:
            s.paint(sd_circle(X, Y, 6.0, -27.0, 14.0), _T["blood"])  # ascending aorta
        if 0.86 <= t < 0.95:
            s.paint(sd_capsule(X, Y, 6.0, -27.0, 24.0, y_vb - 20.0, 11.0), _T["blood"])  # arch
        if t >= 0.95:
            for cx, cy, r in ((-9.0, -22.0, 6.5), (6.0, -18.0, 4.5), (19.0, -8.0, 5.0)):
                s.paint(sd_circle(X, Y, cx, cy, r), _T["blood"])
        if 0.5 < t < 0.62:
            s.paint(sd_circle(X, Y, 28.0, -30.0, 13.0), _T["blood"])  # pulmonary trunk
        if 0.55 < t < 0.61:
            s.paint(sd_capsule(X, Y, 28.0, -26.0, 50.0, 5.0, 8.0), _T["blood"])
            s.paint(sd_capsule(X, Y, 18.0, -12.0, -46.0, 4.0, 8.0), _T["blood"])
        if t > 0.55:
            s.paint(sd_circle(X, Y, -25.0, -20.0, 9.0), _T["blood"])  # superior vena cava

        # trachea, then the two main bronchi below the carina
        y_tr = y_vb - 44.0
        if t >= 0.66:
            s.paint(sd_circle(X, Y, 0.0, y_tr, 10.5), _T["soft_tissue"])
            s.paint(sd_circle(X, Y, 0.0, y_tr, 8.5), _T["airway"])
        elif t > 0.5:
            off = 8.0 + 140.0 * (0.66 - t)
            for side in (-1.0, 1.0):
                s.paint(sd_circle(X, Y, side * off, y_tr + 4.0, 7.0), _T["soft_tissue"])
                s.paint(sd_circle(X, Y, side * off, y_tr + 4.0, 5.0), _T["airway"])

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
        anatomy_seed=anatomy_seed,
    )


def make_phantom(anatomy_seed: int = 2024) -> Phantom:
    """The ground-truth phantom on the CT grid (cached; the arrays must not be modified)."""
    ph = _make_phantom_cached(int(anatomy_seed))
    for a in (ph.labels, ph.hu, ph.mu70, ph.mu511, ph.suv):
        a.flags.writeable = False
    return ph
