"""A sparse parallel-beam projector shared by the CT and PET scanners."""

from __future__ import annotations

import numpy as np
from scipy import sparse


def build_projector(n, px, center, n_angles, n_bins, bin_w, sub=1, chunk=24):
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
