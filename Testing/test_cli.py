"""The msiqa command line: outputs, the report, score/assess agreement, demo, models, version."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image

import msiqa
from msiqa import cli, pictures
from msiqa.assess import assess
from msiqa.render import SliceRenderer
from msiqa.results import Geometry
from msiqa.weights import DEFAULT_MODEL, bundled_models

K, J, I = 6, 64, 64
FAST = ["--device", "cpu", "--batch-size", "4", "-q"]


def image(a, spacing=(2.0, 2.0, 3.0), origin=(-64.0, -64.0, 0.0), direction=None):
    im = sitk.GetImageFromArray(a)
    im.SetSpacing(spacing)
    im.SetOrigin(origin)
    if direction is not None:
        im.SetDirection(direction)
    return im


def arrays(seed=0):
    rng = np.random.default_rng(seed)
    k, y, x = np.mgrid[0:K, 0:J, 0:I]
    body = ((x - 32) / 27.0) ** 2 + ((y - 32) / 21.0) ** 2 < 1
    hu = np.where(body, 40.0, -1000.0) + rng.normal(0, 25, (K, J, I)) * (1 + k)  # noise grows with k
    hu[(x - 20) ** 2 + (y - 30) ** 2 < 20] = 650
    bq = np.where(body, 5000.0, 0.0) * (1 + 0.1 * rng.standard_normal((K, J, I)))
    bq[:, 26:32, 38:44] = 28000.0
    return np.round(hu).astype(np.int16), np.clip(bq, 0, None).astype(np.float32)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    hu, bq = arrays()
    flip = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # stored RAS-style: exercises the display flips
    ct, pet = image(hu, direction=flip, origin=(64.0, 64.0, 0.0)), image(bq, direction=flip, origin=(64.0, 64.0, 0.0))
    sitk.WriteImage(ct, str(folder / "ct.nrrd"))
    sitk.WriteImage(pet, str(folder / "pet.nrrd"))
    return folder / "ct.nrrd", folder / "pet.nrrd"


@pytest.fixture(scope="module")
def assessed(study, tmp_path_factory):
    ct, pet = study
    out = tmp_path_factory.mktemp("run") / "result"
    assert cli.main(["assess", "--ct", str(ct), "--pet", str(pet), "--out", str(out), *FAST]) == 0
    return out


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


# --- assess -----------------------------------------------------------------------------


def test_assess_writes_the_four_outputs(assessed, study, bundled_model):
    assert sorted(p.name for p in assessed.iterdir()) == sorted(cli.OUTPUTS)
    rows = read_csv(assessed / "scores.csv")
    assert rows[0] == ["slice", "score", "flagged", "cause", "cause_confidence"]
    assert [int(r[0]) for r in rows[1:]] == list(range(K))
    names = bundled_model.net.config.causes
    assert all(r[3] in names and 0 < float(r[4]) <= 1 for r in rows[1:]) if names else all(r[3:] == ["", ""] for r in rows[1:])
    assert all(re.fullmatch(r"-?\d+\.\d{4}", r[1]) for r in rows[1:])
    summary = json.loads((assessed / "summary.json").read_text())
    assert summary["version"] == msiqa.__version__ and summary["slices"] == K
    assert set(summary["inputs"]) == {"CT", "PET"}
    assert summary["model"]["sha256"] == bundled_model.card["sha256"]
    for row in rows[1:]:
        assert int(row[2]) == int(float(row[1]) < summary["threshold"]) or abs(float(row[1]) - summary["threshold"]) < 1e-4
    assert [int(r[0]) for r in rows[1:] if r[2] == "1"] == summary["flagged_slices"]
    heat = sitk.ReadImage(str(assessed / "heatmap.nrrd"))
    assert Geometry.of(heat) == Geometry.of(sitk.ReadImage(str(study[0])))
    a = sitk.GetArrayViewFromImage(heat)
    assert a.min() >= 0 and a.max() <= 1
    assert b"gzip" in (assessed / "heatmap.nrrd").read_bytes()[:400]  # compressed


def test_csv_scores_match_the_engine(assessed, study, bundled_model):
    ct, pet = study
    expected = assess(ct, pet, model=bundled_model, device="cpu", batch_size=4).scores
    got = np.array([float(r[1]) for r in read_csv(assessed / "scores.csv")[1:]])
    assert np.allclose(got, expected, atol=5e-5)


def test_report_is_self_contained(assessed):
    html = (assessed / "report.html").read_text(encoding="utf-8")
    assert html.lstrip().startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "@import" not in html and "<script" not in html.lower()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 2 * K  # (picture, overlay) for each of the 6 lowest slices
    assert html.count("<svg") == 1  # the chart, inline
    import base64
    import io

    pics = [Image.open(io.BytesIO(base64.b64decode(b))) for b in images]
    assert all(p.format == "PNG" for p in pics)
    assert pics[0].size == (I, J)
    summary = json.loads((assessed.parent / "result" / "summary.json").read_text())
    assert f"slice <b>{summary['min_slice']}</b>" in html
    assert DEFAULT_MODEL in html and summary["model"]["sha256"][:16] in html


def test_blend():
    from msiqa.report import blend, colorize

    pic = np.full((4, 5, 3), 200, np.uint8)
    heat = np.linspace(0, 1, 20).reshape(4, 5)
    out = blend(pic, heat, alpha=0.5)
    expected = 0.5 * 200 / 255 + 0.5 * colorize(heat)
    assert out.dtype == np.uint8 and out.shape == (4, 5, 3)
    assert np.abs(out / 255.0 - expected).max() <= 0.5 / 255 + 1e-9
    assert np.array_equal(blend(pic, heat, alpha=0.0), pic)


def test_existing_outputs_are_replaced_on_success(study, tmp_path):
    ct, pet = study
    out = tmp_path / "out"
    out.mkdir()
    (out / "scores.csv").write_text("stale\n")
    (out / "notes.txt").write_text("mine\n")
    assert cli.main(["assess", "--ct", str(ct), "--out", str(out), *FAST]) == 0
    assert read_csv(out / "scores.csv")[0] == ["slice", "score", "flagged", "cause", "cause_confidence"]
    assert (out / "notes.txt").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folders left


@pytest.mark.parametrize("where", ["assessing", "writing"])
def test_ctrl_c_leaves_nothing_half_written(study, tmp_path, monkeypatch, capsys, where):
    ct, pet = study
    if where == "assessing":
        import msiqa.render

        original = msiqa.render.SliceRenderer.render
        calls = []

        def render(self, k0, k1):
            calls.append(k0)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return original(self, k0, k1)

        monkeypatch.setattr(msiqa.render.SliceRenderer, "render", render)
    else:
        import msiqa.report

        def write_report(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(msiqa.report, "write_report", write_report)
    out = tmp_path / "deep" / "out"
    rc = cli.main(["assess", "--ct", str(ct), "--pet", str(pet), "--out", str(out), *FAST])
    assert rc == 130
    assert "interrupted" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # not even the parent folder it had created


def test_mrb_without_slicer(study, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "msiqa.mrml", None)  # as if slicer-core were missing
    out = tmp_path / "out"
    rc = cli.main(["assess", "--ct", str(study[0]), "--out", str(out), "--mrb", str(tmp_path / "s.mrb"), *FAST])
    assert rc == 2
    assert "pip install msiqa[slicer]" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_mrb_needs_the_mrb_suffix(study, tmp_path, capsys):
    rc = cli.main(["assess", "--ct", str(study[0]), "--out", str(tmp_path / "o"), "--mrb", str(tmp_path / "s.zip"), *FAST])
    assert rc == 2 and ".mrb" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(importlib.util.find_spec("slicer") is None, reason="slicer-core is not installed")
def test_mrb_is_written(study, tmp_path):
    pytest.importorskip("msiqa.mrml")
    ct, pet = study
    mrb = tmp_path / "scene" / "study.mrb"
    assert cli.main(["assess", "--ct", str(ct), "--pet", str(pet), "--out", str(tmp_path / "o"), "--mrb", str(mrb), *FAST]) == 0
    import zipfile

    assert zipfile.is_zipfile(mrb)
    assert any(n.endswith(".mrml") for n in zipfile.ZipFile(mrb).namelist())
    assert sorted(p.name for p in mrb.parent.iterdir()) == ["study.mrb"]


def test_bad_arguments_exit_2(capsys):
    assert cli.main(["assess", "--ct", "x.nrrd", "--out", "o", "--batch-size", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert cli.main([]) == 2
    assert cli.main(["assess", "--ct", "x.nrrd"]) == 2  # --out is required


# --- score ------------------------------------------------------------------------------


def save_png(picture: np.ndarray, path: Path) -> Path:
    Image.fromarray(picture).save(path)
    return path


def test_score_agrees_with_assess(study, tmp_path, bundled_model):
    ct, pet = study
    result = assess(ct, pet, model=bundled_model, device="cpu", batch_size=4)
    renderer = SliceRenderer(ct=ct, pet=pet)
    ks = [0, 3, K - 1]
    pngs = [save_png(renderer.render(k, k + 1)[0], tmp_path / f"slice{k}.png") for k in ks]
    out = tmp_path / "scores.csv"
    assert cli.main(["score", *map(str, pngs), "--csv", str(out), "--device", "cpu", "-q"]) == 0
    rows = read_csv(out)
    assert rows[0] == list(cli.SCORE_COLUMNS) and [r[0] for r in rows[1:]] == [str(p) for p in pngs]
    assert all(r[4] == "" for r in rows[1:])  # no errors
    for k, row in zip(ks, rows[1:]):
        assert abs(float(row[1]) - float(result.scores[k])) < 0.05
        # The same cause as assess names for that slice, unless the two are close to a tie.
        assert row[2] in bundled_model.net.config.causes and 0 < float(row[3]) <= 1
        assert row[2] == result.causes[k] or abs(float(row[3]) - float(result.cause_confidence[k])) < 0.1


def test_score_prints_csv_lines(study, tmp_path, capsys):
    pic = SliceRenderer(ct=study[0]).render(2, 3)[0]
    png = save_png(pic, tmp_path / "a.png")
    assert cli.main(["score", str(png), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "image,score,cause,cause_confidence,error" and lines[1].startswith(f"{png},") and len(lines) == 2


def test_score_expands_grey_to_rgb(study, tmp_path, capsys):
    pic = SliceRenderer(ct=study[0]).render(2, 3)[0]  # CT alone: grey
    grey = save_png(pic[..., 0], tmp_path / "grey.png")
    rgb = save_png(pic, tmp_path / "rgb.png")
    assert Image.open(grey).mode == "L"
    assert cli.main(["score", str(grey), str(rgb), "--device", "cpu", "-q"]) == 0
    rows = list(csv.reader(capsys.readouterr().out.splitlines()))
    assert rows[1][1] == rows[2][1]


def test_score_reads_single_frame_ct_dicom_like_assess(study, tmp_path, bundled_model):
    ct = sitk.ReadImage(str(study[0]))
    # A CT slice stored as DICOM: identity direction (the display orientation), int16 + rescale.
    hu = sitk.GetArrayFromImage(ct)[3, ::-1, ::-1].copy()
    sl = sitk.GetImageFromArray(hu)
    for tag, value in {"0008|0060": "CT", "0028|1052": "-1024", "0028|1053": "1"}.items():
        sl.SetMetaData(tag, value)
    path = tmp_path / "slice.dcm"
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(path))
    writer.Execute(sl)
    assert float(pydicom.dcmread(str(path)).RescaleIntercept) == -1024
    picture = pictures.read_picture(path)
    expected = SliceRenderer(ct=ct).render(3, 4)[0]
    assert np.array_equal(picture, expected)
    out = tmp_path / "s.csv"
    assert cli.main(["score", str(path), "--csv", str(out), "--device", "cpu", "-q"]) == 0
    whole = assess(ct=ct, model=bundled_model, device="cpu", batch_size=4).scores[3]
    assert abs(float(read_csv(out)[1][1]) - float(whole)) < 0.05


def test_score_reads_an_rgb_dicom(tmp_path):
    pic = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    im = sitk.GetImageFromArray(pic, isVector=True)
    im.SetMetaData("0008|0060", "OT")
    path = tmp_path / "capture.dcm"
    sitk.WriteImage(im, str(path))
    assert np.array_equal(pictures.read_picture(path), pic)


@pytest.mark.parametrize("kind", ["volume", "multiframe", "folder"])
def test_score_refuses_volumes(study, tmp_path, capsys, kind):
    if kind == "volume":
        path = study[0]
    elif kind == "multiframe":
        path = tmp_path / "frames.tif"
        frames = [Image.fromarray(np.full((32, 32), v, np.uint8)) for v in (10, 200)]
        frames[0].save(path, save_all=True, append_images=frames[1:])
    else:
        path = tmp_path
    out = tmp_path / "s.csv"
    assert cli.main(["score", str(path), "--csv", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("msiqa: error:") and "msiqa assess" in err
    assert not out.exists()


def test_score_missing_and_unreadable(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    assert cli.main(["score", str(tmp_path / "none.png"), "--device", "cpu"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["score", str(bad), "--device", "cpu"]) == 2
    assert "cannot read" in capsys.readouterr().err


# --- demo, models, version, hook --------------------------------------------------------


def test_demo_runs(tmp_path, capsys):
    from msiqa import sample_data
    study = sample_data.load_sample_study()
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--device", "cpu", "--batch-size", "8", "-q"]) == 0
    text = capsys.readouterr().out
    assert str((out / "report.html").resolve()) in text and "mean score" in text and "slices below" in text
    assert sorted(p.name for p in out.iterdir()) == sorted(cli.OUTPUTS)
    n = sitk.ReadImage(str(study.ct_path)).GetSize()[2]
    assert len(read_csv(out / "scores.csv")) == n + 1


def test_models_lists_the_bundled_card(capsys):
    assert cli.main(["models"]) == 0
    text = capsys.readouterr().out
    for card in bundled_models():
        assert card["name"] in text and card["sha256"] in text and str(card["version"]) in text
    assert f"{DEFAULT_MODEL}  (default)" in text


def test_format_card_names_only_the_backbones_the_network_holds():
    config = {"cnn": "resnet10t", "swin": "swin_tiny_patch4_window7_224", "head": "grid"}
    both = cli.format_card({"name": "m", "config": config})
    assert "cnn=resnet10t, swin=swin_tiny_patch4_window7_224" in both
    alone = cli.format_card({"name": "m", "config": {**config, "branches": "cnn"}})
    assert "network:        cnn=resnet10t, branches=cnn, head=grid" in alone and "swin" not in alone


def test_format_card_shows_nested_metrics():
    card = {"name": "m", "version": "1", "sha256": "ab" * 32, "training_data": {"slices": 1200, "source": "x"},
            "metrics": {"srocc": 0.91234, "folds": [{"plcc": 0.9}, {"plcc": 0.8}]}, "config": {"cnn": "resnet50"}}
    text = cli.format_card(card)
    assert "training data:" in text and "slices: 1200" in text
    assert "srocc: 0.9123" in text and "plcc: 0.8" in text and "cnn=resnet50" in text


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"msiqa {msiqa.__version__}"


def test_python_dash_m(tmp_path):
    msiqa_root = Path(msiqa.__file__).parent.parent
    run = subprocess.run([sys.executable, "-m", "msiqa", "--version"], capture_output=True, text=True,
                         env={"PYTHONPATH": str(msiqa_root), "PATH": "/usr/bin:/bin"}, cwd=tmp_path, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == f"msiqa {msiqa.__version__}"


def test_training_commands_hook(monkeypatch, capsys):
    def add_parsers(subparsers):
        p = subparsers.add_parser("train", help="train a model")
        p.add_argument("--epochs", type=int, default=1)
        p.set_defaults(func=lambda args: 7 if args.epochs == 3 else 0)

    fake = types.ModuleType("msiqa.training.commands")
    fake.add_parsers = add_parsers
    monkeypatch.setitem(sys.modules, "msiqa.training.commands", fake)
    assert cli.main(["train", "--epochs", "3"]) == 7
    cli.main(["--help"])
    assert "train" in capsys.readouterr().out
