"""Signed distances and a painter's canvas with partial-volume edges.

Distances are in mm and negative inside. Ellipse distances are first-order approximations
(value / gradient), exact enough for layers of a few cm on a body of 30 cm.
"""

from __future__ import annotations

import math

import numpy as np

from .geometry import CT_N, CT_PIXEL_MM
from .tissues import TISSUES


def sd_ellipse(X, Y, cx, cy, a, b, p=2.0, angle=0.0):
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


def sd_circle(X, Y, cx, cy, r):
    return np.hypot(X - cx, Y - cy) - r


def sd_capsule(X, Y, x0, y0, x1, y1, r):
    dx, dy = x1 - x0, y1 - y0
    L2 = dx * dx + dy * dy
    h = np.clip(((X - x0) * dx + (Y - y0) * dy) / L2, 0.0, 1.0)
    return np.hypot(X - x0 - h * dx, Y - y0 - h * dy) - r


def sd_box(X, Y, cx, cy, hw, hh):
    qx, qy = np.abs(X - cx) - hw, np.abs(Y - cy) - hh
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0)


class Canvas:
    """Property volumes for a painter's algorithm with anti-aliased (partial-volume) edges.

    ``uptake`` gives this patient's SUV per tissue name (default: the tissue's own SUV).
    """

    def __init__(self, shape, pixel_mm, uptake: dict[str, float] | None = None):
        self.px = pixel_mm
        self.uptake = dict(uptake or {})
        self.label = np.zeros(shape, np.uint8)
        self.hu = np.full(shape, TISSUES["air"].hu, np.float64)
        self.mu70 = np.zeros(shape, np.float64)
        self.mu511 = np.zeros(shape, np.float64)
        self.suv = np.zeros(shape, np.float64)

    def blend(self, k, where, alpha, tissue, suv=None):
        """Cover ``alpha`` (0..1) of the pixels ``where`` of slice k with ``tissue``."""
        keep = 1.0 - alpha
        if suv is None:
            suv = self.uptake.get(tissue.name, tissue.suv)
        for vol, value in ((self.hu, tissue.hu), (self.mu70, tissue.mu70), (self.mu511, tissue.mu511), (self.suv, suv)):
            vol[k][where] = vol[k][where] * keep + value * alpha
        self.label[k][where][alpha >= 0.5] = tissue.label


def paint_segments(cv: Canvas, k, X, Y, z, segs, tissue, where):
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
        cv.blend(k, (slice(j0, j1), slice(i0, i1)), alpha, tissue)


class SliceCanvas:
    """View of one slice of a 3D canvas, so shapes can be painted slice by slice."""

    def __init__(self, cv: Canvas, k: int):
        self.cv, self.k = cv, k

    def paint(self, sd, tissue, suv=None, where=None):
        cv, k = self.cv, self.k
        alpha = np.clip(0.5 - sd / cv.px, 0.0, 1.0)
        if where is not None:
            alpha = alpha * where
        if not np.any(alpha):
            return
        cv.blend(k, ..., alpha, tissue, suv)


def ellipsoid_section(z, cz, cc):
    """Scale of an ellipsoid's cross-section at height z (0 if not cut)."""
    u = (z - cz) / cc
    return math.sqrt(1 - u * u) if abs(u) < 1 else 0.0

