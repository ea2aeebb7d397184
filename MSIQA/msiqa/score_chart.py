"""The report's score-per-slice chart as inline SVG: no plotting library, no image file.

The y axis is the score scale itself, 0 (unusable) to 4 (excellent), one labelled tick per
grade; x ticks are whole slice indices at a 1-2-5 step; the legend sits in its own band above
the plot area, so it never covers a point.
"""

from __future__ import annotations

import html
import math

import numpy as np

from .results import Assessment

SCORE_MIN, SCORE_MAX = 0.0, 4.0
WIDTH, HEIGHT = 900, 320
LEFT, RIGHT, TOP, BOTTOM = 58, 18, 40, 46  # margins; TOP holds the legend
MAX_X_TICKS = 12
MARKERS_UP_TO = 80  # slices; beyond that a marker per slice is a smear

LINE_COLOUR, THRESHOLD_COLOUR, FLAGGED_COLOUR = "#2b6cb0", "#c05621", "#e53e3e"
GRID_COLOUR, INK, MUTED = "#e2e8f0", "#1a202c", "#4a5568"


def slice_tick_step(n_slices: int, max_ticks: int = MAX_X_TICKS) -> int:
    """The smallest whole step of the 1, 2, 5, 10, 20, 50, ... series that gives at most
    ``max_ticks`` ticks over slices 0 .. n_slices - 1."""
    span = max(1, n_slices - 1)
    step = 1
    while span // step + 1 > max_ticks:
        magnitude = 10 ** int(math.log10(step))
        mantissa = step // magnitude
        step = (2 if mantissa == 1 else 5 if mantissa == 2 else 10) * magnitude
    return step


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def score_chart_svg(assessment: Assessment, *, title: str = "score per axial slice") -> str:
    """Scores against slice index k, the threshold (dashed) and the flagged slices (red), as an
    ``<svg>`` element for inlining in HTML. Scores outside 0-4 are drawn at the nearest edge."""
    scores = np.asarray(assessment.scores, dtype=np.float64)
    flagged = np.asarray(assessment.flagged, dtype=bool)
    n = int(scores.size)
    x_lo, x_hi = -0.5, max(0.5, n - 0.5)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(k: float) -> float:
        return LEFT + (k - x_lo) / (x_hi - x_lo) * plot_w

    def py(score: float) -> float:
        s = min(SCORE_MAX, max(SCORE_MIN, score))
        return TOP + (SCORE_MAX - s) / (SCORE_MAX - SCORE_MIN) * plot_h

    bottom = TOP + plot_h
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{html.escape(title, quote=True)}" '
        f'font-family="-apple-system, Segoe UI, Roboto, Arial, sans-serif" font-size="12">',
        f"<title>{html.escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
    ]
    # y axis: one grid line and label per grade
    for grade in range(int(SCORE_MIN), int(SCORE_MAX) + 1):
        y = py(grade)
        parts.append(f'<line class="ytick" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="{GRID_COLOUR}"/>')
        parts.append(f'<text class="ylabel" x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}">{grade}</text>')
    # x axis: whole slice indices
    step = slice_tick_step(n)
    for k in range(0, max(n, 1), step):
        x = px(k)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 5}" stroke="{MUTED}"/>')
        parts.append(f'<text class="xlabel" x="{x:.1f}" y="{bottom + 18}" text-anchor="middle" fill="{MUTED}">{k}</text>')
    parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{bottom}" y2="{bottom}" stroke="{MUTED}"/>')
    parts.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{bottom}" stroke="{MUTED}"/>')
    parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" fill="{INK}">'
                 "axial slice (k index)</text>")
    parts.append(f'<text x="14" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" fill="{INK}" '
                 f'transform="rotate(-90 14 {TOP + plot_h / 2:.1f})">quality score (0-4)</text>')
    # data
    threshold_y = py(float(assessment.threshold))
    parts.append(f'<line class="threshold" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{threshold_y:.1f}" '
                 f'y2="{threshold_y:.1f}" stroke="{THRESHOLD_COLOUR}" stroke-width="1.2" stroke-dasharray="6 4"/>')
    if n:
        points = " ".join(f"{px(k):.1f},{py(s):.1f}" for k, s in enumerate(scores))
        parts.append(f'<polyline class="scores" points="{points}" fill="none" stroke="{LINE_COLOUR}" '
                     'stroke-width="1.5" stroke-linejoin="round"/>')
    if n <= MARKERS_UP_TO:
        parts += [f'<circle class="score" cx="{px(k):.1f}" cy="{py(s):.1f}" r="2.5" fill="{LINE_COLOUR}"/>'
                  for k, s in enumerate(scores) if not flagged[k]]
    parts += [f'<circle class="flagged" cx="{px(k):.1f}" cy="{py(scores[k]):.1f}" r="3.5" fill="{FLAGGED_COLOUR}">'
              f"<title>slice {k}: {scores[k]:.2f}</title></circle>" for k in np.flatnonzero(flagged)]
    # legend, in the band above the plot area
    y = TOP / 2
    x = LEFT
    legend = [
        (f'<line x1="{x}" x2="{x + 22}" y1="{y}" y2="{y}" stroke="{LINE_COLOUR}" stroke-width="1.5"/>', "slice score"),
        (f'<line x1="{x}" x2="{x + 22}" y1="{y}" y2="{y}" stroke="{THRESHOLD_COLOUR}" stroke-width="1.2" '
         f'stroke-dasharray="6 4"/>', f"threshold {_num(float(assessment.threshold))}"),
        (f'<circle cx="{x + 11}" cy="{y}" r="3.5" fill="{FLAGGED_COLOUR}"/>', f"flagged ({int(flagged.sum())})"),
    ]
    parts.append(f'<g class="legend" fill="{INK}">')
    for offset, (sample, label) in zip((0, 150, 300), legend):
        parts.append(f'<g transform="translate({offset} 0)">{sample}'
                     f'<text x="{x + 28}" y="{y + 4}">{html.escape(label)}</text></g>')
    parts.append("</g></svg>")
    return "\n".join(parts)
