"""The command line fails early and clearly, says nothing in library words, loses nothing
(issue 7, point 5): unwritable outputs, tiny images, partly unreadable 'score' runs, library
warnings, the compressed heatmap."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

import msiqa
import msiqa.assess
from msiqa import cli
from msiqa.models import GRID_STRIDE
from msiqa.render import SliceRenderer
from msiqa.volumes import MIN_PICTURE_SIZE
from test_volumes import K, assert_fails, ct_array, image, pet_array, write, write_dicom_series

FAST = ["--device", "cpu", "-q"]


@pytest.fixture
def ct(tmp_path):
    return write(image(ct_array()), tmp_path / "in" / "ct.nrrd")


@pytest.fixture
def network_calls(monkeypatch):
    """Counts the batches the real network scores (a spy: every call still goes through)."""
    calls = []
    original = msiqa.assess.Scorer.__call__

    def spy(self, pictures):
        calls.append(len(pictures))
        return original(self, pictures)

    monkeypatch.setattr(msiqa.assess.Scorer, "__call__", spy)
    return calls


def child(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(msiqa.__file__).parents[1])}
    return subprocess.run([sys.executable, "-W", "always", "-m", "msiqa", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


# --- outputs that cannot be written are refused before the network runs -----------------


@pytest.mark.parametrize("option", ["--out", "--mrb"])
def test_unwritable_output_is_refused_before_the_network_runs(tmp_path, capsys, ct, network_calls, option):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    out = tmp_path / "out"
    args = ["assess", "--ct", str(ct), "--out", str(out), *FAST]
    target = blocker / "sub" / ("x.mrb" if option == "--mrb" else "result")
    if option == "--out":
        args[args.index("--out") + 1] = str(target)
    else:
        args += ["--mrb", str(target)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"msiqa: error: {option} ") and "is a file, so no folder can be made inside it" in err
    assert network_calls == []
    assert not out.exists() and blocker.read_text() == "in the way"


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs a read-only file system (Linux /sys)")
def test_read_only_place_is_refused_before_the_network_runs(tmp_path, capsys, ct, network_calls):
    assert cli.main(["assess", "--ct", str(ct), "--out", "/sys/msiqa-result", *FAST]) == 2
    assert "cannot write in /sys" in capsys.readouterr().err
    assert network_calls == []


def test_unwritable_csv_is_refused_before_scoring(tmp_path, capsys, network_calls):
    png = tmp_path / "a.png"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(png)
    (tmp_path / "a-file").write_text("")
    assert cli.main(["score", str(png), "--csv", str(tmp_path / "a-file" / "s.csv"), *FAST]) == 2
    assert "--csv" in capsys.readouterr().err
    assert network_calls == []


# --- a minimum size ----------------------------------------------------------------------


def test_minimum_size_is_one_network_cell():
    assert MIN_PICTURE_SIZE == GRID_STRIDE


@pytest.mark.parametrize("shape", [(3, 8, 8), (4, 31, 200), (4, 200, 16)])
def test_volume_with_too_small_slices(tmp_path, capsys, shape):
    hu = np.random.default_rng(0).integers(-1000, 1000, shape).astype(np.int16)
    path = write(image(hu), tmp_path / "in" / "small.nrrd")
    assert_fails(tmp_path, capsys, ["--ct", str(path)], "too small to assess", f"{shape[2]}x{shape[1]} pixels",
                 f"{MIN_PICTURE_SIZE}x{MIN_PICTURE_SIZE}")


def test_the_smallest_accepted_volume_is_assessed(tmp_path):
    hu = ct_array()[:, :MIN_PICTURE_SIZE, :MIN_PICTURE_SIZE].copy()
    out = tmp_path / "out"
    assert cli.main(["assess", "--ct", str(write(image(hu), tmp_path / "ct.nrrd")), "--out", str(out), *FAST]) == 0
    assert len(list(csv.reader(open(out / "scores.csv")))) == hu.shape[0] + 1


def coarse_pet(every: int) -> np.ndarray:
    """The test PET with one voxel for every `every` x `every` of its own (a coarser scanner)."""
    return pet_array()[:, ::every, ::every].copy()


def test_a_coarse_pet_under_a_ct_is_assessed_on_the_ct_grid(tmp_path):
    # 13x13 PET voxels of 10 mm: too few to picture alone at the voxels' size, but the pictures
    # are the CT's 64x64 (STS_002 of the IBSI test data is such a pair: a 30x27 PET crop under its CT).
    pet = write(image(coarse_pet(5), spacing=(10.0, 10.0, 3.0), origin=(3.0, 3.0, 0.0)), tmp_path / "in" / "pet.nrrd")
    ct = write(image(ct_array()), tmp_path / "in" / "ct.nrrd")
    out = tmp_path / "out"
    assert cli.main(["assess", "--ct", str(ct), "--pet", str(pet), "--out", str(out), *FAST]) == 0
    assert len(list(csv.reader(open(out / "scores.csv")))) == K + 1


def test_a_pet_alone_is_sized_as_it_is_shown(tmp_path, capsys):
    # 22x22 voxels of 6 mm are shown as 66x66 pixels of 2 mm: assessed.
    out = tmp_path / "accepted"
    pet = write(image(coarse_pet(3), spacing=(6.0, 6.0, 3.0)), tmp_path / "in" / "pet.nrrd")
    assert cli.main(["assess", "--pet", str(pet), "--out", str(out), *FAST]) == 0
    assert len(list(csv.reader(open(out / "scores.csv")))) == K + 1
    # 22x22 voxels of 2.5 mm are 28x28 pixels, less than one network cell: refused, saying so.
    small = write(image(coarse_pet(3), spacing=(2.5, 2.5, 3.0)), tmp_path / "in" / "small.nrrd")
    assert_fails(tmp_path, capsys, ["--pet", str(small)], "PET: slices of 28x28 pixels", "22x22 voxels of 2.5 x 2.5 mm",
                 "too small to assess")


def test_picture_too_small_to_score(tmp_path, capsys, network_calls):
    png = tmp_path / "tiny.png"
    Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(png)
    assert cli.main(["score", str(png), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("msiqa: error:") and "16x16 pixels are too small" in err
    assert network_calls == []


# --- score keeps going past unreadable files ---------------------------------------------


@pytest.fixture
def pictures(tmp_path):
    pics = SliceRenderer(ct=image(ct_array()), pet=image(pet_array())).render(0, 2)
    paths = []
    for k, p in enumerate(pics):
        paths.append(tmp_path / f"slice{k}.png")
        Image.fromarray(p).save(paths[-1])
    return paths


def test_score_lists_unreadable_files_and_scores_the_rest(tmp_path, capsys, pictures):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG cut short")
    missing = tmp_path / "gone.png"
    out = tmp_path / "scores.csv"
    names = [str(pictures[0]), str(bad), str(missing), str(pictures[1])]
    assert cli.main(["score", *names, "--csv", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert "wrote 2 scores and 2 failures to" in err
    assert "msiqa: error: 2 of 4 images could not be scored (listed in the CSV" in err
    assert "bad.png: cannot read" in err and "gone.png does not exist" in err
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == names  # every input, in order
    assert [bool(r["score"]) for r in rows] == [True, False, False, True]
    assert [bool(r["cause"]) for r in rows] == [True, False, False, True]
    assert "cannot read" in rows[1]["error"] and "does not exist" in rows[2]["error"]
    assert rows[0]["error"] == rows[3]["error"] == ""


def test_score_with_nothing_readable_keeps_an_earlier_csv(tmp_path, capsys):
    out = tmp_path / "scores.csv"
    out.write_text("image,score,error\nold.png,3.1000,\n")
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"not a picture")
    assert cli.main(["score", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--csv", str(out), *FAST]) == 2
    assert "2 of 2 images could not be scored:" in capsys.readouterr().err
    assert out.read_text() == "image,score,error\nold.png,3.1000,\n"


@pytest.mark.parametrize("count,wording", [(1, "wrote 1 score to"), (2, "wrote 2 scores to")])
def test_score_wording(tmp_path, capsys, pictures, count, wording):
    out = tmp_path / "s.csv"
    assert cli.main(["score", *map(str, pictures[:count]), "--csv", str(out), *FAST]) == 0
    assert wording in capsys.readouterr().err


# --- no library words on the user's screen -------------------------------------------------


def test_no_itk_or_python_warnings_on_screen(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("no DICOM here")
    run = child("assess", "--ct", str(notes), "--out", str(tmp_path / "o"), "--device", "cpu", cwd=tmp_path)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2
    assert lines[-1] == f"msiqa: error: CT: the folder {notes} holds no readable DICOM series. Point to the folder of one series."
    assert all(line.startswith("msiqa: ") for line in lines), lines  # our words only (stage lines, the error)

    gap = write_dicom_series(tmp_path / "gap", ct_array(), (0.8, 0.8, 2.5), (0.0, 0.0, 0.0), "CT", 1, -1024)
    (gap / "002.dcm").unlink()
    run = child("assess", "--ct", str(gap), "--out", str(tmp_path / "o"), "--device", "cpu", cwd=tmp_path)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and "a slice is missing" in lines[-1]
    assert all(line.startswith("msiqa: ") for line in lines), lines


def test_evaluate_and_score_print_no_warnings(tmp_path, pictures):
    """Pictures decoded by PIL are read-only arrays: torch used to warn about them."""
    labels = tmp_path / "labels.csv"
    labels.write_text("image,mos\n" + "".join(f"{p.name},{2 + k}\n" for k, p in enumerate(pictures)))
    run = child("evaluate", str(tmp_path), str(labels), cwd=tmp_path)
    assert run.returncode == 2 and "Give at least 3 images" in run.stderr and "Traceback" not in run.stderr
    labels.write_text(labels.read_text() + f"{pictures[0].name},1\n")  # a third, differently labelled row
    run = child("evaluate", str(tmp_path), str(labels), cwd=tmp_path)
    assert run.returncode == 0 and "srocc" in run.stdout.lower()
    assert "warn" not in run.stderr.lower(), run.stderr
    run = child("score", *map(str, pictures), "--device", "cpu", "-q", cwd=tmp_path)
    assert run.returncode == 0 and run.stderr == "", run.stderr


# --- the heatmap is written compressed ---------------------------------------------------------


def test_heatmap_is_gzip_and_on_its_grid(tmp_path, ct):
    out = tmp_path / "out"
    assert cli.main(["assess", "--ct", str(ct), "--out", str(out), *FAST]) == 0
    header = (out / "heatmap.nrrd").read_bytes()[:400]
    assert b"encoding: gzip" in header and b"type: float" in header
    heat = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "heatmap.nrrd")))
    levels = heat * 256  # the colour table's steps (colormap.display_steps)
    assert np.array_equal(levels, np.round(levels)) and heat.min() >= 0 and heat.max() <= 1
    assert np.unique(heat).size > 8  # still a map, not a few flat levels
