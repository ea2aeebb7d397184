"""No picture outlives the SimpleITK memory it was cut from (issue 7, point 2).

``msiqa assess --rgb`` on a 54x512x512 uint8 RGB volume used to crash (exit 139) in about one
run of four, and in the runs that did not crash the report showed the bytes of whatever had
reused the freed volume memory instead of the slices. Both are checked here: the exit code of
several child processes and, for each, that the report's pictures are the input's slices.
"""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

import msiqa
from msiqa.cli import LOWEST_SHOWN
from msiqa.render import SliceRenderer

RUNS = 6
SHAPE = (54, 512, 512)  # slices, rows, columns


def fused_volume(shape=SHAPE, seed=0) -> np.ndarray:
    """A PACS-style fused PET/CT capture: grey body, a red hot spot moving with k, noise."""
    rng = np.random.default_rng(seed)
    k, rows, cols = shape
    y, x = np.mgrid[:rows, :cols]
    body = ((x - cols / 2) / (0.4 * cols)) ** 2 + ((y - rows / 2) / (0.3 * rows)) ** 2 < 1
    out = np.zeros((k, rows, cols, 3), np.uint8)
    for i in range(k):
        grey = np.where(body, 90 + 20 * np.sin(x / 17.0 + i), 0) + rng.normal(0, 3 + i / 3, (rows, cols))
        hot = body & ((x - 0.6 * cols - i) ** 2 + (y - rows / 2) ** 2 < 400)
        out[i, ..., 0] = np.clip(grey + 60 * hot, 0, 255)
        out[i, ..., 1] = np.clip(grey, 0, 255)
        out[i, ..., 2] = np.clip(0.9 * grey, 0, 255)
    return out


@pytest.fixture(scope="module")
def rgb_file(tmp_path_factory):
    voxels = fused_volume()
    im = sitk.GetImageFromArray(voxels, isVector=True)
    im.SetSpacing((0.8, 0.8, 3.0))
    path = tmp_path_factory.mktemp("rgb") / "fused.nrrd"
    sitk.WriteImage(im, str(path), True)
    return path, voxels


def owns_its_memory(a: np.ndarray) -> bool:
    """True when the array's buffer belongs to NumPy (not to a SimpleITK or VTK object)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a.base is None and a.flags.owndata


@pytest.mark.parametrize("flip", [False, True])
def test_rendered_rgb_pictures_own_their_memory(flip):
    a = fused_volume((3, 40, 48))
    im = sitk.GetImageFromArray(a, isVector=True)
    if flip:
        im.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    renderer = SliceRenderer(rgb=im)
    picture = renderer.render(0, 2)
    del renderer, im
    assert owns_its_memory(picture)
    expected = a[:2, ::-1, ::-1] if flip else a[:2]
    assert np.array_equal(picture, expected)


def report_pictures(out: Path) -> dict[int, np.ndarray]:
    """{slice k: the picture the report shows of it}, from the report's own image labels."""
    html = (out / "report.html").read_text(encoding="utf-8")
    found = re.findall(r'<img alt="slice (\d+) as scored" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    return {int(k): np.asarray(Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB")) for k, b in found}


def test_assess_rgb_in_child_processes(rgb_file, tmp_path):
    path, voxels = rgb_file
    # A random hash seed per run varies allocation and collection order, as separate launches do.
    env = {**os.environ, "PYTHONPATH": str(Path(msiqa.__file__).parents[1]), "PYTHONHASHSEED": "random"}
    exits, wrong_pictures = [], []
    for run in range(RUNS):
        out = tmp_path / f"out{run}"
        done = subprocess.run(
            [sys.executable, "-X", "faulthandler", "-m", "msiqa", "assess", "--rgb", str(path), "--out", str(out),
             "--device", "cpu", "-q"],
            env=env, capture_output=True, text=True, timeout=600,
        )
        exits.append(done.returncode)
        if done.returncode == 0:
            pictures = report_pictures(out)
            assert len(pictures) == LOWEST_SHOWN, f"the report shows {len(pictures)} slices, not the {LOWEST_SHOWN} lowest"
            wrong_pictures.append(sum(not np.array_equal(p, voxels[k]) for k, p in pictures.items()))
        else:
            print(done.stderr[-2000:])
    print(f"exit codes of {RUNS} runs: {exits}; wrong report pictures per completed run: {wrong_pictures}")
    assert exits == [0] * RUNS
    assert wrong_pictures == [0] * RUNS
