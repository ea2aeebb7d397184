"""The anthropomorphic phantom: ground truth of one patient on the CT grid.

Thorax and upper abdomen: body contour, skin, fat, muscle, lungs with vessel trees, heart
with a hot left-ventricular wall, aorta and great vessels, trachea and bronchi, oesophagus,
spine, ribs, sternum, scapulae, a two-domed diaphragm with the liver, stomach, spleen,
inferior vena cava and kidneys below it, hot lesions and the patient table. Shapes are
painted slice by slice from signed distances, so every property map carries
partial-volume edges.

``make_phantom(None)`` is the patient of the sample study; ``make_phantom(seed)`` draws
another patient (body size and fat, organ sizes and positions, diaphragm height, FDG
uptake of every tissue, lesions).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

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
from .suv import PATIENT_WEIGHT_KG, suv_factor
from .tissues import TISSUES

_T = TISSUES

# The thorax is laid out along t = (z - THORAX_BOTTOM_MM) / THORAX_HEIGHT_MM in [0, 1]
# (lung bases to apices); below it lies the upper abdomen.
THORAX_BOTTOM_MM = -21.0
THORAX_HEIGHT_MM = 177.0
RIGHT_DOME_MM = THORAX_BOTTOM_MM + 55.0  # z of the right diaphragm dome's apex
LEFT_DOME_DROP_MM = 18.0  # the left dome is this much lower
DOME_CURVATURE_MM = 75.0  # radius of curvature of each dome at its apex
_DOME_AP = 1.3  # the domes fall off faster antero-posteriorly than laterally
_RIB_PHASE_MM = 67.5  # keeps the rib pattern of the first version of the phantom


@dataclass(frozen=True)
class Anatomy:
    """What makes one patient differ from another; the defaults are the sample's patient."""

    width: float = 1.0  # body half-width, relative
    depth: float = 1.0  # body antero-posterior half-depth, relative
    fat: float = 1.0  # subcutaneous fat thickness, relative
    dome_mm: float = 0.0  # diaphragm height (+ cranial)
    heart: float = 1.0  # heart size, relative
    heart_shift_mm: tuple[float, float] = (0.0, 0.0)  # (x, y)
    liver: float = 1.0
    spleen: float = 1.0
    kidney: float = 1.0
    aorta: float = 1.0
    uptake: dict[str, float] = field(default_factory=dict)  # SUV per tissue name (default: Tissue.suv)
    weight_kg: float = PATIENT_WEIGHT_KG

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "Anatomy":
        width, depth, fat = rng.uniform(0.88, 1.14), rng.uniform(0.86, 1.16), rng.uniform(0.4, 2.2)
        liver_suv = rng.uniform(1.8, 3.0)
        uptake = {
            "liver": liver_suv,
            "spleen": liver_suv * rng.uniform(0.72, 0.95),
            "blood": rng.uniform(1.3, 2.2),
            "myocardium": float(np.exp(rng.uniform(np.log(1.5), np.log(12.0)))),  # fasting varies it most
            "muscle": rng.uniform(0.55, 1.1),
            "fat": rng.uniform(0.25, 0.5),
            "lung": rng.uniform(0.28, 0.55),
            "soft_tissue": rng.uniform(0.8, 1.4),
            "cancellous_bone": rng.uniform(1.0, 2.0),
            "kidney": rng.uniform(2.0, 4.0),
            "urine": rng.uniform(8.0, 30.0),
            "stomach_wall": rng.uniform(1.2, 3.0),
        }
        return cls(
            width=width,
            depth=depth,
            fat=fat,
            dome_mm=rng.uniform(-15.0, 15.0),
            heart=rng.uniform(0.85, 1.2),
            heart_shift_mm=(rng.uniform(-8.0, 8.0), rng.uniform(-6.0, 6.0)),
            liver=rng.uniform(0.85, 1.2),
            spleen=rng.uniform(0.7, 1.4),
            kidney=rng.uniform(0.85, 1.15),
            aorta=rng.uniform(0.85, 1.25),
            uptake=uptake,
            weight_kg=round(PATIENT_WEIGHT_KG * width * depth * (0.85 + 0.15 * fat), 1),
        )


def _sample_lesions(z_at) -> tuple[dict, ...]:
    return (
        {"name": "right_lung_nodule", "center": (-85.0, 22.0, z_at(0.62)), "radius": 8.0, "suv": 14.0},
        {"name": "left_lung_nodule", "center": (92.0, -28.0, z_at(0.78)), "radius": 7.0, "suv": 14.0},
        {"name": "right_paratracheal_node", "center": (-21.0, 8.0, z_at(0.74)), "radius": 8.0, "suv": 11.0},
    )


@dataclass(frozen=True)
class Phantom:
    """Ground truth on the CT grid, arrays indexed [k, j, i]."""

    labels: np.ndarray  # uint8, Tissue.label of the dominant tissue
    hu: np.ndarray  # float32, noise-free CT numbers (with partial volume)
    mu70: np.ndarray  # float32, 1/mm
    mu511: np.ndarray  # float32, 1/mm
    suv: np.ndarray  # float32, FDG uptake in SUV
    breathing: np.ndarray  # float32, 0..1: how far each voxel follows the diaphragm when breathing
    spine_y: np.ndarray  # float64 (k,), y (mm) of the vertebral body's centre in each slice
    lesions: tuple[dict, ...]  # centre (x, y, z) mm, radius mm, suv, name
    anatomy: Anatomy
    anatomy_seed: int | None

    @property
    def suv_per_bqml(self) -> float:
        return suv_factor(self.anatomy.weight_kg)

    @property
    def activity_bqml(self) -> np.ndarray:
        return (self.suv / self.suv_per_bqml).astype(np.float32)


def diaphragm_z(X, Y, dome_mm: float = 0.0):
    """z (mm) of the diaphragm above each (x, y) and the slope |grad z| of that surface.

    Two paraboloid domes, the right one higher; at the edges of the cavity they fall to the
    costophrenic recesses, deepest at the back.
    """
    best = None
    for xa, ya, za in ((-55.0, -5.0, RIGHT_DOME_MM), (60.0, 0.0, RIGHT_DOME_MM - LEFT_DOME_DROP_MM)):
        dx, dy = X - xa, Y - ya
        z = za + dome_mm - (dx * dx + _DOME_AP * dy * dy) / (2.0 * DOME_CURVATURE_MM)
        g = np.hypot(dx, _DOME_AP * dy) / DOME_CURVATURE_MM
        if best is None:
            best = (z, g)
        else:
            higher = z > best[0]
            best = (np.where(higher, z, best[0]), np.where(higher, g, best[1]))
    return best


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


def _body(t: float, a: Anatomy):
    """Half-width, half-depth and centre y of the body, and of the cavity inside its wall."""
    t = min(max(t, 0.0), 1.0)  # the abdomen keeps the shape of the lowest thorax
    a_b = (150.0 + 14.0 * math.sin(math.pi * (0.25 + 0.6 * t))) * a.width
    b_b = (104.0 + 4.0 * math.cos(math.pi * t)) * a.depth
    yc = TABLE_TOP_MM - 1.0 - b_b  # the back rests on the table
    a_c = a_b - 25.0 - 9.0 * a.fat
    b_c = b_b - 22.0 - 6.0 * a.fat
    return a_b, b_b, yc, a_c, b_c, yc - 4.0


def _cavity_scale(t: float, a: Anatomy):
    """Organs sit where they sit in the sample's patient, scaled to this patient's cavity:
    x -> x * sx, y -> y_cav + (y - y_cav0) * sy. Returns (sx, sy, y_cav0)."""
    _, _, _, a_c, b_c, _ = _body(t, a)
    _, _, _, a_c0, b_c0, y_cav0 = _body(t, Anatomy())
    return a_c / a_c0, b_c / b_c0, y_cav0


def _paint_slice(s: SliceCanvas, X, Y, z: float, a: Anatomy, vessels) -> float:
    """Paint every tissue but the lesions into one slice; returns the vertebral body's y."""
    t = (z - THORAX_BOTTOM_MM) / THORAX_HEIGHT_MM

    def z_at(tt):
        return THORAX_BOTTOM_MM + tt * THORAX_HEIGHT_MM

    # table: carbon-fibre shells around a foam core, fixed along z
    s.paint(sd_box(X, Y, 0.0, TABLE_TOP_MM + 12.0, 185.0, 12.0), _T["table_shell"])
    s.paint(sd_box(X, Y, 0.0, TABLE_TOP_MM + 12.0, 180.0, 7.0), _T["table_foam"])

    # body: superellipse that changes smoothly along z
    a_b, b_b, yc, a_c, b_c, y_cav = _body(t, a)
    body = sd_ellipse(X, Y, 0.0, yc, a_b, b_b, p=2.5)
    s.paint(body, _T["skin"])
    s.paint(body + 2.0, _T["fat"])
    fat_mm = (9.0 + 10.0 * (X / a_b) ** 2 + 4.0 * np.clip(-(Y - yc) / b_b, 0, 1)) * a.fat
    s.paint(body + 2.0 + fat_mm, _T["muscle"])

    sx, sy, y_cav0 = _cavity_scale(t, a)

    def at(x0, y0):
        return x0 * sx, y_cav + (y0 - y_cav0) * sy

    # the diaphragm: the abdomen lies below it, the lungs, heart and mediastinum above
    zd, slope = diaphragm_z(X / sx, y_cav0 + (Y - y_cav) / sy, a.dome_mm)
    below = np.clip(0.5 + (zd - z) / np.maximum(slope, 0.02) / CT_PIXEL_MM, 0.0, 1.0)
    above = 1.0 - below

    # thoracic cavity: lungs, and the abdominal cavity under the diaphragm
    cavity = sd_ellipse(X, Y, 0.0, y_cav, a_c, b_c, p=2.2)
    s.paint(cavity, _T["lung"])
    in_lung = np.clip(0.5 - cavity / CT_PIXEL_MM, 0, 1) * above
    paint_segments(s.cv, s.k, X, Y, z, vessels, _T["blood"], in_lung)
    if below.any():
        s.paint(cavity, _T["fat"], where=below)
        cx, cy = at(-5.0, -45.0)
        s.paint(np.maximum(sd_ellipse(X, Y, cx, cy, 75.0 * sx, 32.0 * sy), cavity + 4.0), _T["soft_tissue"], where=below)

    # ribs: tangent ellipses on the cavity wall whose angle drifts with z
    n_ribs, step = 6, 0.42
    for side in (-1.0, 1.0):
        for j in range(n_ribs):
            phi = 0.45 + ((j + (z - _RIB_PHASE_MM) / 32.0 + (0.5 if side > 0 else 0.0)) % n_ribs) * step
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
                sd_capsule(X, Y, side * 62.0 * sx, y_cav + b_c + 14.0, side * 122.0 * sx, y_cav + b_c - 22.0, 3.2),
                _T["cortical_bone"],
            )

    y_vb = y_cav + b_c - 18.0  # vertebral body centre

    # under the diaphragm: liver (right), stomach (left, under the left dome), spleen (left,
    # posterior), inferior vena cava, and the upper poles of the kidneys
    if below.any():
        z_right, z_left = RIGHT_DOME_MM + a.dome_mm, RIGHT_DOME_MM + a.dome_mm - LEFT_DOME_DROP_MM
        sc = ellipsoid_section(z, z_right - 60.0 * a.liver, 115.0 * a.liver)
        if sc > 0:
            cx, cy = at(-40.0, 5.0)
            liver = np.maximum(sd_ellipse(X, Y, cx, cy, 108.0 * sc * sx * a.liver, 96.0 * sc * sy * a.liver), cavity - 3.0)
            s.paint(liver, _T["liver"], where=below)
        sc = ellipsoid_section(z, z_left - 55.0, 75.0)
        if sc > 0:
            cx, cy = at(58.0, -22.0)
            wall = sd_ellipse(X, Y, cx, cy, 48.0 * sc * sx, 36.0 * sc * sy, angle=-0.3)
            s.paint(np.maximum(wall, cavity + 2.0), _T["stomach_wall"], where=below)
            s.paint(np.maximum(wall + 4.0, cavity + 6.0), _T["gastric_content"], where=below)
            # swallowed air rises to the front of the stomach in a supine patient
            s.paint(np.maximum(wall + 4.0, Y - (cy - 0.45 * 36.0 * sc * sy)), _T["airway"], where=below)
        sc = ellipsoid_section(z, z_left - 50.0, 58.0 * a.spleen)
        if sc > 0:
            cx, cy = at(80.0, 36.0)
            spleen = np.maximum(sd_ellipse(X, Y, cx, cy, 45.0 * sc * a.spleen, 32.0 * sc * a.spleen, angle=0.6), cavity - 3.0)
            s.paint(spleen, _T["spleen"], where=below)
        cx, _ = at(-24.0, 0.0)
        s.paint(sd_circle(X, Y, cx, y_vb - 24.0, 10.0), _T["blood"], where=below)  # inferior vena cava
        sc = ellipsoid_section(z, z_right - 185.0, 55.0 * a.kidney)
        if sc > 0:
            for side in (-1.0, 1.0):
                cx, _ = at(side * 62.0, 0.0)
                kid = sd_ellipse(X, Y, cx, y_vb + 2.0, 30.0 * sc * a.kidney, 22.0 * sc * a.kidney, angle=-side * 0.5)
                s.paint(kid, _T["kidney"], where=below)
                s.paint(kid + 12.0 * sc * a.kidney, _T["urine"], where=below)  # renal pelvis

    # mediastinum (fat) between the lungs
    w_med = 30.0 + 6.0 * (t < 0.6)
    cx, _ = at(4.0, 0.0)
    s.paint(
        np.maximum(sd_ellipse(X, Y, cx, y_cav + 4.0, w_med * sx, b_c + 6.0, p=3.0), cavity - 4.0),
        _T["fat"],
        where=above,
    )

    # spine: vertebral body (or disc), canal, posterior elements
    disc = ((z - THORAX_BOTTOM_MM) % 27.0) < 5.0
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
        s.paint(sd_capsule(X, Y, side * 10.0, y_vb + 22.0, side * 30.0, y_vb + 28.0, 4.5), _T["cortical_bone"])
    s.paint(sd_circle(X, Y, 0.0, y_vb + 26.0, 7.5), _T["csf"])

    # sternum
    if 0.12 < t < 0.97:
        st = sd_capsule(X, Y, -11.0, y_cav - b_c - 6.0, 11.0, y_cav - b_c - 6.0, 6.5)
        s.paint(st, _T["cortical_bone"])
        s.paint(st + 1.8, _T["cancellous_bone"])

    # oesophagus with a little air (it joins the stomach under the left dome)
    cx, _ = at(6.0, 0.0)
    s.paint(sd_circle(X, Y, cx, y_vb - 23.0, 7.0), _T["soft_tissue"], where=above)
    s.paint(sd_circle(X, Y, cx + 0.5, y_vb - 23.0, 1.8), _T["airway"], where=above)

    # heart: epicardial fat, chambers (blood), hot left-ventricular wall; it rests on the diaphragm
    hx, hy = a.heart_shift_mm
    hs = a.heart
    sc = ellipsoid_section(z, z_at(0.28), 62.0 * hs)
    if sc > 0:
        cx, cy = at(18.0 + hx, -30.0 + hy)
        s.paint(sd_ellipse(X, Y, cx, cy, 62.0 * sc * hs + 3.0, 52.0 * sc * hs + 3.0, angle=0.35), _T["fat"], where=above)
        s.paint(sd_ellipse(X, Y, cx, cy, 62.0 * sc * hs, 52.0 * sc * hs, angle=0.35), _T["blood"], where=above)
    sc = ellipsoid_section(z, z_at(0.24), 46.0 * hs)
    if sc > 0:
        cx, cy = at(40.0 + hx, -20.0 + hy)
        lv = sd_ellipse(X, Y, cx, cy, 34.0 * sc * hs, 29.0 * sc * hs, angle=0.5)
        s.paint(lv, _T["myocardium"], where=above)
        s.paint(lv + 10.0 * sc * hs, _T["blood"], where=above)

    # great vessels
    ra = a.aorta
    cx, _ = at(24.0, 0.0)
    s.paint(sd_circle(X, Y, cx, y_vb - 20.0, 11.0 * ra), _T["blood"])  # descending aorta
    asc = at(6.0, -27.0)
    if 0.56 < t < 0.88:
        s.paint(sd_circle(X, Y, *asc, 14.0 * ra), _T["blood"])  # ascending aorta
    if 0.86 <= t < 0.95:
        s.paint(sd_capsule(X, Y, *asc, cx, y_vb - 20.0, 11.0 * ra), _T["blood"])  # arch
    if t >= 0.95:
        for x0, y0, r in ((-9.0, -22.0, 6.5), (6.0, -18.0, 4.5), (19.0, -8.0, 5.0)):
            s.paint(sd_circle(X, Y, *at(x0, y0), r), _T["blood"])
    if 0.5 < t < 0.62:
        s.paint(sd_circle(X, Y, *at(28.0, -30.0), 13.0), _T["blood"])  # pulmonary trunk
    if 0.55 < t < 0.61:
        s.paint(sd_capsule(X, Y, *at(28.0, -26.0), *at(50.0, 5.0), 8.0), _T["blood"])
        s.paint(sd_capsule(X, Y, *at(18.0, -12.0), *at(-46.0, 4.0), 8.0), _T["blood"])
    if t > 0.55:
        s.paint(sd_circle(X, Y, *at(-25.0, -20.0), 9.0), _T["blood"])  # superior vena cava

    # trachea, then the two main bronchi below the carina
    y_tr = y_vb - 44.0
    if t >= 0.66:
        s.paint(sd_circle(X, Y, 0.0, y_tr, 10.5), _T["soft_tissue"])
        s.paint(sd_circle(X, Y, 0.0, y_tr, 8.5), _T["airway"])
    elif t > 0.5:
        off = 8.0 + 140.0 * (0.66 - t)
        for side in (-1.0, 1.0):
            s.paint(sd_circle(X, Y, side * off * sx, y_tr + 4.0, 7.0), _T["soft_tissue"])
            s.paint(sd_circle(X, Y, side * off * sx, y_tr + 4.0, 5.0), _T["airway"])
    return y_vb


# Where drawn lesions may sit: (tissue labels, name, SUV range).
_LESION_SITES = (
    ((_T["lung"].label,), "lung_nodule", (3.0, 20.0)),
    ((_T["fat"].label,), "mediastinal_node", (3.0, 15.0)),
    ((_T["liver"].label,), "liver_metastasis", (4.5, 15.0)),
    ((_T["cancellous_bone"].label,), "bone_metastasis", (4.0, 14.0)),
)


def _draw_lesions(rng: np.random.Generator, labels: np.ndarray, X, Y, zs) -> tuple[dict, ...]:
    """0-5 hot lesions at random places inside lung, mediastinum, liver or vertebrae."""
    out = []
    for n in range(int(rng.integers(0, 6))):
        tissues, name, (lo, hi) = _LESION_SITES[int(rng.integers(len(_LESION_SITES)))]
        radius = float(rng.uniform(3.5, 9.0) if name == "bone_metastasis" else rng.uniform(4.0, 14.0))
        inside = np.isin(labels, tissues)
        if name == "mediastinal_node":  # fat between the lungs only, not under the skin
            inside &= np.abs(X)[None] < 45.0
        # keep the centre at least a radius inside the tissue
        erode = max(1, int(round(radius / CT_PIXEL_MM)))
        inside = ndimage.binary_erosion(inside, iterations=erode)
        where = np.argwhere(inside)
        if len(where) == 0:
            continue
        k, j, i = where[int(rng.integers(len(where)))]
        out.append({
            "name": f"{name}_{n + 1}",
            "center": (float(X[j, i]), float(Y[j, i]), float(zs[k])),
            "radius": round(radius, 1),
            "suv": round(float(rng.uniform(lo, hi)), 1),
        })
    return tuple(out)


def _paint_lesions(cv: Canvas, X, Y, zs, lesions) -> None:
    for k, z in enumerate(zs):
        s = SliceCanvas(cv, k)
        for les in lesions:
            cx, cy, cz = les["center"]
            dz = z - cz
            if abs(dz) < les["radius"] + CT_PIXEL_MM:
                rr = math.sqrt(max(les["radius"] ** 2 - dz * dz, 0.0))
                # a sphere cut near its pole: shrink the disc but keep the edge soft
                sd = np.hypot(X - cx, Y - cy) - rr if rr > 0 else np.hypot(X - cx, Y - cy) + abs(dz) - les["radius"]
                s.paint(sd, _T["lesion"], suv=les["suv"])


def _breathing_weight(labels: np.ndarray, zs, dome_mm: float) -> np.ndarray:
    """1 for what follows the diaphragm fully (abdominal organs, lung bases), falling to 0 at
    the lung apices; 0 for the chest wall, spine and table, which do not slide with it."""
    moving = ~np.isin(labels, [_T[n].label for n in (
        "air", "table_shell", "table_foam", "skin", "muscle", "cortical_bone", "cancellous_bone", "disc", "csf",
    )])
    # the body wall's fat stays too: only fat inside the ribs (mediastinum, abdomen) moves
    wall_fat = (labels == _T["fat"].label) & ~ndimage.binary_fill_holes(
        np.isin(labels, [_T["cortical_bone"].label, _T["cancellous_bone"].label, _T["muscle"].label]),
        structure=np.array([[[0, 0, 0], [0, 1, 0], [0, 0, 0]], [[0, 1, 0], [1, 1, 1], [0, 1, 0]], [[0, 0, 0], [0, 1, 0], [0, 0, 0]]]),
    )
    moving &= ~wall_fat
    top = RIGHT_DOME_MM + dome_mm
    w_z = np.clip(1.0 - (np.asarray(zs) - (top + 10.0)) / 130.0, 0.0, 1.0)
    w = moving.astype(np.float32) * w_z[:, None, None].astype(np.float32)
    # soften the sliding boundary over a pixel so the warp does not tear single voxels
    return ndimage.gaussian_filter(w, (0, 0.7, 0.7)).astype(np.float32)


@functools.lru_cache(maxsize=3)
def _make_phantom_cached(anatomy_seed: int | None) -> Phantom:
    rng = np.random.default_rng(2024 if anatomy_seed is None else anatomy_seed)
    X, Y, zs = grid_mm()

    def z_at(t):
        return THORAX_BOTTOM_MM + t * THORAX_HEIGHT_MM

    hila = [(-44.0, 8.0, z_at(0.52), -1.0), (46.0, 8.0, z_at(0.52), 1.0)]
    vessels = _vessel_trees(rng, hila, (THORAX_BOTTOM_MM - 10, zs[-1] + 10))
    anatomy = Anatomy() if anatomy_seed is None else Anatomy.draw(rng)
    if anatomy_seed is not None:  # the vessel trees follow the drawn chest's size
        sx, sy, y_cav0 = _cavity_scale(0.5, anatomy)
        y_cav = _body(0.5, anatomy)[5]
        vessels[:, [0, 3]] *= sx
        vessels[:, [1, 4]] = y_cav + (vessels[:, [1, 4]] - y_cav0) * sy
    cv = Canvas(CT_SHAPE, CT_PIXEL_MM, anatomy.uptake)
    spine_y = np.array([_paint_slice(SliceCanvas(cv, k), X, Y, z, anatomy, vessels) for k, z in enumerate(zs)])
    if anatomy_seed is None:
        lesions = _sample_lesions(z_at)
    else:
        lesions = _draw_lesions(rng, cv.label, X, Y, zs)
    _paint_lesions(cv, X, Y, zs, lesions)
    return Phantom(
        labels=cv.label,
        hu=cv.hu.astype(np.float32),
        mu70=cv.mu70.astype(np.float32),
        mu511=cv.mu511.astype(np.float32),
        suv=cv.suv.astype(np.float32),
        breathing=_breathing_weight(cv.label, zs, anatomy.dome_mm),
        spine_y=spine_y,
        lesions=tuple({**les, "center": tuple(float(c) for c in les["center"])} for les in lesions),
        anatomy=anatomy,
        anatomy_seed=anatomy_seed,
    )


def make_phantom(anatomy_seed: int | None = None) -> Phantom:
    """The ground-truth phantom on the CT grid: the sample study's patient for None, another
    patient drawn from ``anatomy_seed`` otherwise (cached; the arrays must not be modified)."""
    ph = _make_phantom_cached(None if anatomy_seed is None else int(anatomy_seed))
    for a in (ph.labels, ph.hu, ph.mu70, ph.mu511, ph.suv, ph.breathing, ph.spine_y):
        a.flags.writeable = False
    return ph
