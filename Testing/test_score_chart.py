"""The report's inline SVG chart: 0-4 axis with labelled grades, whole slice ticks, legend clear of the data."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import msiqa
from msiqa import score_chart
from msiqa.results import Assessment, Geometry

NS = {"s": "http://www.w3.org/2000/svg"}


def assessment(scores, threshold=2.0) -> Assessment:
    scores = np.asarray(scores, dtype=np.float32)
    k = scores.size
    return Assessment(scores=scores, heatmap=np.zeros((k, 2, 2), np.float32),
                      geometry=Geometry((2, 2, k), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)),
                      threshold=threshold)


def parse(a: Assessment) -> ET.Element:
    return ET.fromstring(score_chart.score_chart_svg(a))


def texts(root, cls) -> list[str]:
    return [e.text for e in root.iter(f"{{{NS['s']}}}text") if e.get("class") == cls]


def test_y_axis_is_the_score_scale():
    rng = np.random.default_rng(3)
    root = parse(assessment(rng.uniform(1.5, 3.9, 40)))
    assert texts(root, "ylabel") == ["0", "1", "2", "3", "4"]
    ys = [float(e.get("y1")) for e in root.iter(f"{{{NS['s']}}}line") if e.get("class") == "ytick"]
    assert np.allclose(np.diff(ys), ys[1] - ys[0]) and ys[0] > ys[-1]  # evenly spaced, 0 at the bottom
    # whatever the scores, grade 4 is the top of the plot area and 0 its bottom
    assert ys[-1] == score_chart.TOP and ys[0] == score_chart.HEIGHT - score_chart.BOTTOM


@pytest.mark.parametrize("n, step", [(1, 1), (7, 1), (12, 1), (13, 2), (60, 5), (300, 50), (1001, 100)])
def test_x_ticks_are_whole_slices(n, step):
    assert score_chart.slice_tick_step(n) == step
    labels = texts(parse(assessment(np.full(n, 3.0))), "xlabel")
    assert [int(v) for v in labels] == list(range(0, n, step))
    assert len(labels) <= score_chart.MAX_X_TICKS


def test_points_threshold_and_flagged():
    scores = [3.5, 1.2, 2.8, 0.4, 3.9, 1.9]
    root = parse(assessment(scores, threshold=2.0))
    circles = list(root.iter(f"{{{NS['s']}}}circle"))
    flagged = [c for c in circles if c.get("class") == "flagged"]
    assert len(flagged) == 3  # 1.2, 0.4, 1.9
    line = next(e for e in root.iter(f"{{{NS['s']}}}polyline"))
    ys = [float(p.split(",")[1]) for p in line.get("points").split()]
    assert len(ys) == len(scores) and np.argmax(ys) == 3 and np.argmin(ys) == 4  # y grows downwards
    threshold = next(e for e in root.iter(f"{{{NS['s']}}}line") if e.get("class") == "threshold")
    y0 = score_chart.HEIGHT - score_chart.BOTTOM
    assert float(threshold.get("y1")) == pytest.approx(y0 - 2.0 / 4.0 * (y0 - score_chart.TOP), abs=0.06)
    assert "flagged (3)" in "".join(root.itertext()) and "threshold 2" in "".join(root.itertext())


def test_legend_is_clear_of_the_data():
    root = parse(assessment([4.0, 4.0, 0.0, 4.0], threshold=4.0))
    legend = next(g for g in root.iter(f"{{{NS['s']}}}g") if g.get("class") == "legend")
    ys = [float(v) for e in legend.iter() for key in ("y", "y1", "y2", "cy") if (v := e.get(key)) is not None]
    # every legend element sits above the plot area (which starts at TOP), where no data can be drawn
    assert ys and max(ys) + 4 < score_chart.TOP
    data_ys = [float(c.get("cy")) for c in root.iter(f"{{{NS['s']}}}circle") if c.get("class") in ("score", "flagged")]
    assert min(data_ys) >= score_chart.TOP


def test_scores_off_the_scale_stay_in_the_plot():
    root = parse(assessment([-0.8, 4.6, 2.0]))
    line = next(e for e in root.iter(f"{{{NS['s']}}}polyline"))
    ys = [float(p.split(",")[1]) for p in line.get("points").split()]
    assert ys[0] == score_chart.HEIGHT - score_chart.BOTTOM and ys[1] == score_chart.TOP


def test_report_needs_no_plotting_library(tmp_path):
    """The report is written without matplotlib (Slicer does not bundle it)."""
    code = (
        "import sys, numpy as np\n"
        "sys.modules['matplotlib'] = None  # any import of it now fails\n"
        "from msiqa.report import write_report\n"
        "from msiqa.results import Assessment, Geometry\n"
        "a = Assessment(scores=np.array([3.0, 1.0], np.float32), heatmap=np.zeros((2, 4, 4), np.float32),\n"
        "               geometry=Geometry((4, 4, 2), (0, 0, 0), (1, 1, 1), (1, 0, 0, 0, 1, 0, 0, 0, 1)))\n"
        "pic = np.zeros((4, 4, 3), np.uint8)\n"
        f"write_report(a, {str(tmp_path / 'r.html')!r}, pictures={{1: pic}}, maps={{1: np.ones((4, 4))}})\n"
    )
    env_path = str(Path(msiqa.__file__).parents[1])
    result = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert re.search(r"<svg[^>]*class=\"chart\"", html)
