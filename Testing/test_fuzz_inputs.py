"""Random volumes through the reading, rendering and scoring path (issue 7, point 6).

Sizes, spacings, direction matrices (axis-aligned, flipped, oblique, not axial), voxel types
int8 ... float64 and uint8 RGB, NaN / constant / empty volumes, PET/CT pairs with random
offsets, written as NRRD, NIfTI or MetaImage. Two properties:
- any case either succeeds with a heatmap on the input's exact geometry (as SimpleITK reads
  the file back) or stops with our InputError; never another exception, never a crash;
- a case with nothing wrong with it (axial, >= 2 slices of >= 32x32 pixels, not constant, no
  NaN, PET overlapping the CT) is always assessed.
For a small sample the whole command line runs: exit 0 with all outputs, or 2 with none.
The examples come from a fixed seed (derandomize): CI sees the same cases on every run.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from msiqa import cli
from msiqa.assess import Scorer, assess
from msiqa.errors import InputError
from msiqa.results import Assessment, Geometry
from msiqa.render import PET_DISPLAY_MM
from msiqa.volumes import MIN_PICTURE_SIZE

SUFFIXES = (".nrrd", ".nii.gz", ".nii", ".mha")
DTYPES = (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.float32, np.float64)
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    a, b = [i for i in range(3) if i != axis]
    r = np.eye(3)
    r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
    return r


@st.composite
def directions(draw, valid: bool) -> tuple[float, ...]:
    """Axis flips, oblique rotations (up to 40 degrees about k keeps the slices axial) and, unless
    ``valid``, axis permutations and tilts that make the slices sagittal or coronal."""
    m = np.diag([draw(st.sampled_from([1.0, -1.0])) for _ in range(3)])
    if draw(st.booleans()):
        m = rotation(2, draw(st.floats(-40, 40))) @ m
    if not valid and draw(st.booleans()):
        m = m[:, list(draw(st.permutations([0, 1, 2])))]
        m = rotation(draw(st.integers(0, 1)), draw(st.floats(-60, 60))) @ m
    return tuple(float(v) for v in m.ravel())


@st.composite
def voxels(draw, valid: bool, rgb: bool) -> np.ndarray:
    smallest = MIN_PICTURE_SIZE if valid else 8
    k = draw(st.integers(2 if valid else 1, 5))
    j, i = draw(st.integers(smallest, 64)), draw(st.integers(smallest, 64))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    content = draw(st.sampled_from(["noise", "extremes"] + ([] if valid else ["constant", "nan"])))
    if rgb:
        a = rng.integers(0, 256, (k, j, i, 3)).astype(np.uint8)
        if content == "constant":
            a[:] = 77
        return a
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
    lo, hi = max(float(info.min), -3000.0), min(float(info.max), 30000.0)
    a = rng.uniform(lo, hi, (k, j, i))
    if content == "constant":
        a[:] = lo
    a = a.astype(dtype)
    if content == "extremes":  # the type's own limits (floats: +-1e30), where overflow hides
        a.flat[::7] = -1e30 if dtype.kind == "f" else info.min
        a.flat[3::11] = 1e30 if dtype.kind == "f" else info.max
    if content == "nan":
        a = a.astype(np.float32)
        a.flat[rng.integers(0, a.size)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return a


@st.composite
def volumes(draw, valid: bool, rgb: bool = False) -> sitk.Image:
    im = sitk.GetImageFromArray(draw(voxels(valid, rgb)), isVector=rgb)
    im.SetSpacing([draw(st.floats(0.2, 6.0)) for _ in range(3)])
    im.SetOrigin([draw(st.floats(-500, 500)) for _ in range(3)])
    im.SetDirection(draw(directions(valid)))
    return im


@st.composite
def cases(draw, valid: bool) -> dict[str, sitk.Image]:
    """{role: image}: a lone CT or PET, a PET/CT pair, or an RGB volume. A valid pair's PET shares
    the CT's direction and starts inside the CT; otherwise it lies anywhere up to 2 CT extents away."""
    kind = draw(st.sampled_from(["pair", "ct", "rgb", "pet"]))
    if kind == "rgb":
        return {"rgb": draw(volumes(valid, rgb=True))}
    ct = draw(volumes(valid))
    if kind == "pet" and valid:
        # A lone PET is pictured at PET_DISPLAY_MM pixels: its picture, not its voxel grid, must hold a cell.
        ct.SetSpacing([max(s, PET_DISPLAY_MM * MIN_PICTURE_SIZE / n) if axis < 2 else s
                       for axis, (s, n) in enumerate(zip(ct.GetSpacing(), ct.GetSize()))])
    if kind != "pair":
        return {kind: ct}
    pet = draw(volumes(valid))
    if valid:
        pet.SetDirection(ct.GetDirection())
        inside = [draw(st.floats(0.0, 0.5)) * (n - 1) for n in ct.GetSize()]
        pet.SetOrigin(ct.TransformContinuousIndexToPhysicalPoint(inside))
    else:
        extent = np.array(ct.GetSize()) * np.array(ct.GetSpacing())
        shift = np.array([draw(st.floats(-2.0, 2.0)) for _ in range(3)])
        pet.SetOrigin(tuple(float(v) for v in np.array(ct.GetOrigin()) + extent * shift))
    return {"ct": ct, "pet": pet}


def save(case: dict[str, sitk.Image], folder: Path, suffix: str) -> dict[str, Path]:
    paths = {}
    for role, image in case.items():
        # ITK writes a vector NIfTI as 5D: RGB goes to NRRD, which holds it as 3D.
        ext = ".nrrd" if image.GetNumberOfComponentsPerPixel() > 1 and "nii" in suffix else suffix
        paths[role] = folder / f"{role}{ext}"
        sitk.WriteImage(image, str(paths[role]))
    return paths


def reference_of(paths: dict[str, Path]) -> sitk.Image:
    """The grid the heatmap must be on: the CT's, else the RGB volume's, else the PET's, as read back."""
    return sitk.ReadImage(str(paths.get("ct") or paths.get("rgb") or paths["pet"]))


def assert_on_the_grid_of(result: Assessment, reference: sitk.Image) -> None:
    want = Geometry.of(reference)
    got = result.geometry
    assert got.size == want.size
    assert np.allclose(got.origin, want.origin, atol=1e-6) and np.allclose(got.spacing, want.spacing, rtol=1e-9)
    assert np.allclose(got.direction, want.direction, atol=1e-9)
    assert result.heatmap.shape == want.size[::-1]
    assert np.isfinite(result.heatmap).all() and result.heatmap.min() >= 0 and result.heatmap.max() <= 1
    assert result.scores.shape == (want.size[2],) and np.isfinite(result.scores).all()


@pytest.fixture(scope="module")
def scorer(bundled_model):
    return Scorer(bundled_model, "cpu")


@FUZZ
@given(case=cases(valid=False), suffix=st.sampled_from(SUFFIXES))
def test_any_volume_is_assessed_or_refused_with_our_error(tmp_path_factory, scorer, case, suffix):
    paths = save(case, tmp_path_factory.mktemp("fuzz"), suffix)
    try:
        result = assess(**paths, scorer=scorer, batch_size=8)
    except InputError as e:
        event(f"refused: {' '.join(str(e).split()[1:5])}")
        return
    event("assessed")
    assert_on_the_grid_of(result, reference_of(paths))


@settings(FUZZ, max_examples=20)  # each runs the network: the slow one
@given(case=cases(valid=True), suffix=st.sampled_from(SUFFIXES))
def test_a_volume_with_nothing_wrong_is_assessed(tmp_path_factory, scorer, case, suffix):
    paths = save(case, tmp_path_factory.mktemp("fuzz"), suffix)
    assert_on_the_grid_of(assess(**paths, scorer=scorer, batch_size=8), reference_of(paths))


def test_empty_volume_in_memory_is_refused(scorer):
    with pytest.raises(InputError, match="empty"):
        assess(ct=sitk.Image([0, 64, 64], sitk.sitkInt16), scorer=scorer)


@settings(FUZZ, max_examples=8)
@given(case=cases(valid=False), suffix=st.sampled_from(SUFFIXES))
def test_command_line_on_random_volumes(tmp_path_factory, case, suffix):
    folder = tmp_path_factory.mktemp("fuzzcli")
    paths = save(case, folder, suffix)
    out = folder / "out"
    inputs = [a for role, p in paths.items() for a in (f"--{role}", str(p))]
    rc = cli.main(["assess", *inputs, "--out", str(out), "--device", "cpu", "-q"])
    assert rc in (0, 2)
    if rc == 2:
        assert not out.exists()
        return
    assert sorted(p.name for p in out.iterdir()) == sorted(cli.OUTPUTS)
    assert Geometry.of(sitk.ReadImage(str(out / "heatmap.nrrd"))) == Geometry.of(reference_of(paths))
