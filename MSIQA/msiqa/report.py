"""A self-contained HTML report of one assessment.

One file, no external resources: the per-slice chart is inline SVG, the pictures of the
lowest-scoring slices (as rendered, and with the attention heatmap blended over them) are
inlined as base64 PNG, the styles sit in the page. It opens in any browser, offline, and can be mailed.
"""

from __future__ import annotations

import base64
import html
import io
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

from .causes import DESCRIPTIONS
from .colormap import inferno
from .results import Assessment
from .score_chart import score_chart_svg

HEATMAP_COLORMAP = "inferno"
HEATMAP_ALPHA = 0.45


# ---------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------


def colorize(heat: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> float RGB (H, W, 3) in [0, 1], in the colours of Slicer's overlay."""
    return inferno(heat)


def blend(picture: np.ndarray, heat: np.ndarray, alpha: float = HEATMAP_ALPHA) -> np.ndarray:
    """The heatmap over the picture: ``(1 - alpha) * picture + alpha * colour(heat)``, uint8 RGB.

    ``picture`` is (H, W, 3) uint8 (or (H, W) grey), ``heat`` (H, W) in [0, 1] on the same pixels.
    """
    pic = np.asarray(picture)
    if pic.ndim == 2:
        pic = np.repeat(pic[..., None], 3, axis=-1)
    if pic.shape[:2] != np.shape(heat):
        raise ValueError(f"picture {pic.shape[:2]} and heatmap {np.shape(heat)} differ in size")
    out = (1.0 - alpha) * (pic[..., :3].astype(np.float32) / 255.0) + alpha * colorize(heat)
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


def png_bytes(picture: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(picture)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def collect_lowest(assessment: Assessment, renderer, n: int = 6) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Pictures and heatmaps (display orientation) of the ``n`` lowest-scoring slices.

    ``renderer`` is the :class:`~msiqa.render.SliceRenderer` of the assessed inputs. Returns
    ``(pictures, maps)``, both keyed by slice index k, lowest score first.
    """
    order = np.argsort(assessment.scores, kind="stable")[: max(0, int(n))]
    pictures: dict[int, np.ndarray] = {}
    maps: dict[int, np.ndarray] = {}
    for k in (int(v) for v in order):
        pictures[k] = renderer.render(k, k + 1)[0]
        maps[k] = renderer.to_display(assessment.heatmap[k : k + 1])[0]
    return pictures, maps


# ---------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------

_CSS = """
:root { --ink:#1a202c; --muted:#4a5568; --line:#e2e8f0; --accent:#2b6cb0; --bad:#c53030; --ok:#2f855a; }
* { box-sizing: border-box; }
body { margin: 0; background: #f7fafc; color: var(--ink);
       font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 28px 24px 48px; }
header { border-bottom: 3px solid var(--accent); margin-bottom: 20px; padding-bottom: 10px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.sub { color: var(--muted); font-size: 13px; }
.verdict { padding: 10px 14px; border-radius: 6px; margin: 16px 0; font-weight: 600; }
.verdict.ok { background: #f0fff4; color: var(--ok); border: 1px solid #c6f6d5; }
.verdict.bad { background: #fff5f5; color: var(--bad); border: 1px solid #fed7d7; }
.verdict.warn { background: #fffaf0; color: #9c4221; border: 1px solid #feebc8; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 22px; font-weight: 600; }
.card .note { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; background: #fff; border: 1px solid var(--line); font-size: 14px; }
th, td { text-align: left; padding: 5px 12px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #edf2f7; font-weight: 600; }
table.kv th { width: 190px; background: #f7fafc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-family: SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; word-break: break-all; }
svg.chart { width: 100%; height: auto; display: block; border: 1px solid var(--line); border-radius: 6px; }
.slices { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px; }
figure .pair { display: grid; grid-template-columns: 1fr 1fr; gap: 6px; }
figure img { width: 100%; image-rendering: auto; background: #000; display: block; }
figcaption { margin-top: 6px; font-size: 13px; display: flex; justify-content: space-between; }
.badge { display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.badge.bad { background: #fed7d7; color: var(--bad); }
.badge.ok { background: #c6f6d5; color: var(--ok); }
.legend { color: var(--muted); font-size: 12px; margin: 6px 0 0; }
.scale { display: inline-flex; align-items: center; gap: 4px; vertical-align: middle; }
.scale .bar { display: inline-block; width: 120px; height: 10px; border-radius: 2px; border: 1px solid var(--line); }
footer { margin-top: 36px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 10px; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _kv_table(rows: list[tuple[str, str]]) -> str:
    """Rows of (label, already-escaped HTML)."""
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _card(label: str, value: str, note: str = "") -> str:
    note_html = f'<div class="note">{_e(note)}</div>' if note else ""
    return f'<div class="card"><div class="label">{_e(label)}</div><div class="value">{_e(value)}</div>{note_html}</div>'


def _inputs_section(assessment: Assessment, inputs: Mapping[str, Any] | None) -> str:
    rows: list[tuple[str, str]] = []
    for role, value in (inputs or {}).items():
        if value is not None:
            rows.append((role, f"<code>{_e(value)}</code>"))
    r = assessment.rendering or {}
    g = assessment.geometry
    if r.get("inputs"):
        rows.append(("Pictures", _e(r["inputs"])))
    if r.get("reference"):
        rows.append(("Reference grid", _e(
            f"{r['reference']}: {g.size[0]} x {g.size[1]} x {g.size[2]} voxels, spacing "
            + " x ".join(f"{s:.3g}" for s in g.spacing) + " mm"
        )))
    settings = r.get("settings") or {}
    if settings:
        parts = []
        if "window" in settings and "level" in settings:
            parts.append(f"CT window {_fmt(settings['window'])} / level {_fmt(settings['level'])} HU")
        if "suv_max" in settings:
            parts.append(f"PET hot colour map over SUV 0-{_fmt(settings['suv_max'])}")
        if "pet_alpha" in settings:
            parts.append(f"PET opacity {_fmt(settings['pet_alpha'])}")
        rows.append(("Rendering", _e(", ".join(parts))))
    if r.get("pet_scaling"):
        rows.append(("PET scaling", _e(r["pet_scaling"])))
    for key, value in r.items():
        if key not in ("inputs", "reference", "settings", "pet_scaling"):
            rows.append((key.replace("_", " ").capitalize(), _e(value)))
    return _kv_table(rows) if rows else "<p>No input description.</p>"


def _model_section(assessment: Assessment) -> str:
    m = assessment.model or {}
    sha = str(m.get("sha256") or "")
    rows = [
        ("Name", _e(m.get("name", "unknown"))),
        ("Version", _e(m.get("version", "unknown"))),
    ]
    if m.get("preset"):
        rows.append(("Preset", _e(m["preset"])))
    rows.append(("sha256", f'<code title="{_e(sha)}">{_e(sha[:16])}</code>' if sha else "unknown"))
    rows.append(("Device", _e(m.get("device", "unknown"))))
    return _kv_table(rows)


def _colour_bar() -> str:
    """A small inline legend of the heatmap colours from 0 to 1 (a CSS gradient, no image)."""
    stops = []
    for x in np.linspace(0.0, 1.0, 11):
        r, g, b = np.round(colorize(np.array(x)) * 255.0).astype(int)
        stops.append(f"rgb({r},{g},{b}) {x * 100:.0f}%")
    return (f'<span class="scale"><span>0</span><span class="bar" style="background: linear-gradient(to right, '
            f'{", ".join(stops)})"></span><span>1</span></span>')


def _lowest_section(assessment: Assessment, pictures: Mapping[int, np.ndarray], maps: Mapping[int, np.ndarray]) -> str:
    if not pictures:
        return ""
    figures = []
    ks = sorted(pictures, key=lambda k: (float(assessment.scores[k]), k))
    for k in ks:
        pic = np.asarray(pictures[k])
        score = float(assessment.scores[k])
        bad = bool(score < assessment.threshold)
        badge = '<span class="badge bad">flagged</span>' if bad else '<span class="badge ok">above threshold</span>'
        heat = maps.get(k)
        imgs = f'<img alt="slice {k} as scored" src="{_data_uri(png_bytes(pic))}">'
        if heat is not None:
            imgs += f'<img alt="slice {k} with attention heatmap" src="{_data_uri(png_bytes(blend(pic, heat)))}">'
        figures.append(
            f'<figure><div class="pair">{imgs}</div>'
            f"<figcaption><span>slice <b>{k}</b> &middot; score <b>{score:.2f}</b>"
            f"{' &middot; ' + _cause_text(assessment, k) if bad else ''}</span>{badge}</figcaption></figure>"
        )
    return (
        f"<h2>Lowest-scoring slices</h2><div class=\"slices\">{''.join(figures)}</div>"
        f'<p class="legend">Left: the slice as the network saw it (display orientation: patient left on '
        f"screen right, anterior up). Right: the network's attention heatmap ({HEATMAP_COLORMAP} colour map, "
        f"opacity {HEATMAP_ALPHA:g}; scale {_colour_bar()}): bright where the slice's score was "
        f"weighted most.</p>"
    )


def _cause_text(assessment: Assessment, k: int) -> str:
    """The cause head's reading of slice k, for a person: what and how sure."""
    cause = assessment.causes[k]
    if not cause:
        return ""
    return f"{_e(DESCRIPTIONS[cause])} ({100 * float(assessment.cause_confidence[k]):.0f} %)"


def _flagged_section(assessment: Assessment, shown: set[int]) -> str:
    flagged = np.flatnonzero(assessment.flagged)
    if flagged.size == 0:
        return f"<h2>Flagged slices</h2><p>No slice scores below the threshold ({assessment.threshold:g}).</p>"
    rows = "".join(
        f'<tr><td class="num">{int(k)}</td><td class="num">{float(assessment.scores[k]):.3f}</td>'
        f"<td>{_cause_text(assessment, int(k))}</td>"
        f'<td>{"shown above" if int(k) in shown else ""}</td></tr>'
        for k in flagged
    )
    table = (
        '<table><tr><th class="num">slice (k)</th><th class="num">score</th><th>likely cause</th><th></th></tr>'
        f"{rows}</table>"
    )
    if flagged.size > 40:
        table = f"<details><summary>{flagged.size} slices</summary>{table}</details>"
    return f"<h2>Flagged slices ({flagged.size})</h2>{table}"


def render_html(
    assessment: Assessment,
    *,
    pictures: Mapping[int, np.ndarray],
    maps: Mapping[int, np.ndarray],
    inputs: Mapping[str, Any] | None = None,
    title: str = "MS-IQA image-quality report",
    version: str | None = None,
) -> str:
    """The report as one HTML string (see :func:`write_report`)."""
    if version is None:
        from . import __version__ as version
    s = assessment.summary()
    n = s["slices"]
    when = datetime.now(timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M %Z")

    if not assessment.complete:
        verdict = '<div class="verdict warn">This assessment was cut short: the figures below are incomplete.</div>'
    elif s["flagged_count"]:
        verdict = (f'<div class="verdict bad">{s["flagged_count"]} of {n} slices score below the threshold '
                   f'{s["threshold"]:g} and should be reviewed.</div>')
    else:
        verdict = f'<div class="verdict ok">All {n} slices score at or above the threshold {s["threshold"]:g}.</div>'

    cards = "".join([
        _card("Slices", str(n)),
        _card("Mean score", f"{s['mean']:.2f}"),
        _card("Minimum", f"{s['min']:.2f}", f"slice {s['min_slice']}"),
        _card("10th percentile", f"{s['p10']:.2f}"),
        _card("Threshold", f"{s['threshold']:g}"),
        _card("Flagged", str(s["flagged_count"]), f"{100.0 * s['flagged_count'] / max(n, 1):.0f} % of slices"),
    ])

    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<header>
<h1>{_e(title)}</h1>
<div class="sub">Generated {_e(when)} by msiqa {_e(version)} &middot; scores on the 0 (unusable) to 4 (excellent) scale</div>
</header>
{verdict}
<h2>Summary</h2>
<div class="cards">{cards}</div>
<h2>Score per slice</h2>
{score_chart_svg(assessment)}
{_lowest_section(assessment, pictures, maps)}
{_flagged_section(assessment, set(int(k) for k in pictures))}
<h2>Inputs and rendering</h2>
{_inputs_section(assessment, inputs)}
<h2>Model</h2>
{_model_section(assessment)}
<footer>MS-IQA rates the technical image quality of each axial slice as the network sees the fused
rendering; it is a screening aid for research use, not a diagnostic device.</footer>
</main>
</body>
</html>
"""
    return page


def write_report(
    assessment: Assessment,
    path: str | os.PathLike,
    *,
    pictures: Mapping[int, np.ndarray],
    maps: Mapping[int, np.ndarray],
    inputs: Mapping[str, Any] | None = None,
    title: str = "MS-IQA image-quality report",
) -> Path:
    """Write the report to ``path`` (one self-contained HTML file) and return the path.

    ``pictures`` maps slice index k -> uint8 RGB (H, W, 3) in display orientation, ``maps``
    k -> the heatmap (H, W) in [0, 1] on the same pixels (see :func:`collect_lowest`);
    ``inputs`` (optional) maps a role ("CT", "PET", ...) to where the input came from.
    """
    path = Path(path)
    text = render_html(assessment, pictures=pictures, maps=maps, inputs=inputs, title=title)
    path.write_text(text, encoding="utf-8")
    return path
