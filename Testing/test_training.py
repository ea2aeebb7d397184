"""Training pieces: metrics, degradations, calibration, dataset layouts, resumable training."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import PIL
import pytest
import scipy
import SimpleITK as sitk
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import stats

from msiqa.render import SliceRenderer
from msiqa.sample_data import load_sample_study
from msiqa.training import handcrafted
from msiqa.training.datasets import Sample, load_dataset
from msiqa.training.degrade import FAMILIES, degrade, split_layers
from msiqa.training.metrics import correlations
from msiqa.models.msiqa_net import Output
from msiqa.errors import InputError
from msiqa.training.train import (BatchMaker, TrainConfig, _lr, attention_loss, map_divergence, order_loss, peak_loss,
                                  ranking_loss, step_loss, train)
from msiqa.render import fuse


@pytest.fixture(scope="module")
def pictures():
    study = load_sample_study()
    r = SliceRenderer(ct=study.ct_path, pet=study.pet_path)
    return r.render(12, 20)  # clean slices, 160x160


def test_correlations_match_scipy_and_group_by_scene():
    rng = np.random.default_rng(0)
    mos = rng.uniform(0, 4, 30)
    pred = mos + rng.normal(0, 0.5, 30)
    scenes = ["a"] * 15 + ["b"] * 15
    m = correlations(pred, mos, scenes)
    assert m["srocc"] == pytest.approx(stats.spearmanr(pred, mos)[0])
    assert m["sum"] == pytest.approx(m["plcc"] + m["srocc"] + m["krocc"])
    within = np.mean([stats.spearmanr(pred[s], mos[s])[0] for s in (slice(0, 15), slice(15, 30))])
    assert m["within_scene_srocc"] == pytest.approx(within)
    with pytest.raises(ValueError):
        correlations([1, 1, 1], [1, 2, 3])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_degradation_changes_the_picture_more_when_stronger(pictures, family):
    img = pictures[0]
    weak = degrade(img, family, 0.1, np.random.default_rng(1))
    strong = degrade(img, family, 1.0, np.random.default_rng(1))
    assert weak.shape == img.shape and weak.dtype == np.uint8
    err = lambda a: np.abs(a.astype(float) - img).mean()
    assert 0 < err(weak) < err(strong)
    again = degrade(img, family, 1.0, np.random.default_rng(1))
    assert np.array_equal(strong, again)


def test_local_degradation_stays_in_its_region(pictures):
    img = pictures[0]
    region = (slice(32, 96), slice(64, 128))
    out = degrade(img, "impulse", 1.0, np.random.default_rng(0), region)
    outside = np.ones(img.shape[:2], bool)
    outside[region] = False
    assert np.array_equal(out[outside], img[outside])
    assert not np.array_equal(out[region], img[region])


def test_fused_layers_split_and_blend_back(pictures):
    ct, pet = split_layers(pictures[0])
    assert np.abs(fuse(ct, pet, 0.4).astype(int) - pictures[0]).mean() < 1.0


def test_handcrafted_measures_see_their_degradation(pictures):
    img = pictures[0]
    rng = np.random.default_rng(0)
    assert handcrafted.impulse_density(degrade(img, "impulse", 1.0, rng)) > 5 * handcrafted.impulse_density(img) + 1e-3
    assert handcrafted.noise_sigma(degrade(img, "gaussian_noise", 1.0, rng)) > 2 * handcrafted.noise_sigma(img)
    assert handcrafted.blockiness(degrade(img, "jpeg8", 1.0, rng)) > handcrafted.blockiness(img) + 0.1


def test_calibration_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    y = x @ np.array([-1.0, 0.5, 2.0]) + 3.0
    cal = handcrafted.Calibration.fit(x, y, ridge=0.0)
    assert np.allclose(cal.coef, [-1.0, 0.5, 2.0]) and cal.intercept == pytest.approx(3.0)


def test_ranking_loss_only_compares_versions_of_one_scene():
    target = torch.tensor([3.0, 1.0, 3.0, 1.0])
    groups = torch.tensor([0, 0, 1, 1])
    right = torch.tensor([3.0, 1.0, 1.0, 3.0])  # scene 1 inverted
    assert ranking_loss(right, target, groups) > 0
    assert ranking_loss(torch.tensor([3.0, 1.0, 3.0, 1.0]), target, groups) == 0
    assert ranking_loss(torch.tensor([3.0, 1.0, 3.0, 1.0]), target, torch.tensor([0, 1, 2, 3])) == 0


def test_the_versions_of_a_scene_are_cut_from_one_window(pictures):
    """The development set's versions are pixel-aligned: a batch must compare them on the same
    anatomy, or the ranking learns where its crops happened to fall instead of the degradation."""
    versions = {"A": pictures[0], "B": pictures[4]}
    samples = [Sample(f"{scene}{k}", pic, 4.0 - k, scene) for scene, pic in versions.items() for k in range(4)]
    cfg = TrainConfig(batch_scenes=2, per_scene=3, crop=64, synthetic=0.0, phantom_scenes=0,
                      clinical_scenes=0, physical_scenes=0)
    make = BatchMaker(samples, cfg)
    windows = set()
    for step in range(8):
        b = make(step)
        for g in (0, 1):
            x = b["x"][b["group"] == g]
            assert len(x) == 3 and all(torch.equal(x[0], xi) for xi in x[1:])
            windows.add(x[0].numpy().tobytes())
    assert len(windows) > 4  # one window per scene and step, not one for the whole training


@pytest.fixture(scope="module")
def two_scenes(pictures):
    """Two development scenes of four versions each, scored 4 (clean) down to 1 (noisiest)."""
    return [Sample(f"{scene}{k}", degrade(pic, "gaussian_noise", k / 3, np.random.default_rng(k)), 4.0 - k, scene)
            for scene, pic in (("A", pictures[0]), ("B", pictures[4])) for k in range(4)]


def test_pointing_crops_fault_one_region_of_the_best_version_and_carry_no_score(two_scenes):
    """Local faults on development pictures teach the attention where a fault is, but the
    radiologists never scored them: no score label, only the order under their source."""
    cfg = TrainConfig(batch_scenes=2, per_scene=3, crop=64, synthetic=0.0, layer_faults=0.5, pointing=2,
                      phantom_scenes=0, clinical_scenes=0, physical_scenes=0)
    make = BatchMaker(two_scenes, cfg)
    ordered = 0
    for step in range(10):
        b = make(step)
        assert len(b["x"]) == 2 * (3 + 1 + 2)
        unscored = torch.isnan(b["mos"])
        assert unscored.sum() == 4 and (b["below"][~unscored] == -1).all()
        for i in torch.nonzero(b["below"] >= 0).flatten():
            src = int(b["below"][i])
            assert b["mos"][src] == 4.0 and b["group"][src] == b["group"][i]  # the scene's best version
            inside = F.interpolate(b["region"][i : i + 1], size=64)[0, 0].bool()
            assert inside.any() and not inside.all()
            assert torch.equal(b["x"][i][:, ~inside], b["x"][src][:, ~inside])
            assert not torch.equal(b["x"][i][:, inside], b["x"][src][:, inside])
            ordered += 1
    assert ordered > 10
    pred = torch.tensor([3.0, 1.0, 3.5])
    assert order_loss(pred, torch.tensor([-1, 0, -1])) == 0
    assert order_loss(pred, torch.tensor([-1, -1, 0])) > 0  # scored above its own source


def test_pointing_order_off_leaves_the_unscored_crops_scores_out_of_the_loss(two_scenes):
    cfg = TrainConfig(batch_scenes=2, per_scene=3, crop=64, synthetic=0.0, pointing=2,
                      phantom_scenes=0, clinical_scenes=0, physical_scenes=0)
    b = BatchMaker(two_scenes, cfg)(0)
    unscored = torch.isnan(b["mos"])
    ordered = b["below"] >= 0  # a fault too mild to name is not ordered, with the hinge or without
    cells = torch.rand(len(b["mos"]), 1, 2, 2)
    grads = {}
    for order in (True, False):
        # Every faulted crop scored above its source, so that the order hinge is active.
        score = torch.where(unscored, 3.9, 2.0).requires_grad_()
        step_loss(Output(score, cells, cells, None), b, replace(cfg, pointing_order=order)).backward()
        grads[order] = score.grad
    assert ordered.any() and (grads[True][ordered] != 0).all()
    assert (grads[False][unscored] == 0).all()


def test_peak_loss_asks_only_that_the_highest_cell_lies_in_the_region():
    region = torch.zeros(1, 1, 4, 4)
    region[0, 0, :2, :2] = 1
    spread = torch.full((1, 1, 4, 4), 0.5)
    spread[0, 0, 0, 0] = 0.9  # the peak is inside, most of the weight outside
    assert peak_loss(spread, region) == 0
    assert attention_loss(spread, region) > 1.0
    outside = spread.clone()
    outside[0, 0, 3, 3] = 0.95
    assert peak_loss(outside, region) > 0
    with pytest.raises(ValueError, match="peak"):
        TrainConfig(attention_loss="max")


def test_the_anchor_holds_the_maps_of_scored_crops_and_leaves_the_pointing_crops_free(two_scenes):
    cfg = TrainConfig(batch_scenes=2, per_scene=3, crop=64, synthetic=0.0, pointing=2, attention_weight=0.0,
                      phantom_scenes=0, clinical_scenes=0, physical_scenes=0, tail_steps=1, tail_lr=1e-4,
                      anchor_weight=1.0)
    b = BatchMaker(two_scenes, cfg)(0)
    unscored = torch.isnan(b["mos"])
    score = b["mos"].nan_to_num(2.0)
    reference = torch.rand(len(score), 1, 2, 2) + 0.1
    assert map_divergence(reference, 3 * reference) == pytest.approx(0.0, abs=1e-6)  # a map is where, not how much
    plain = step_loss(Output(score, reference, reference, None), b, replace(cfg, anchor_weight=0.0))
    same = step_loss(Output(score, 3 * reference, reference, None), b, cfg, Output(score, reference, reference, None))
    assert same == pytest.approx(float(plain), abs=1e-6)
    weight = torch.rand(len(score), 1, 2, 2).add(0.1).requires_grad_()
    step_loss(Output(score, weight, reference, None), b, cfg, Output(score, reference, reference, None)).backward()
    assert unscored.any() and (weight.grad[unscored] == 0).all()
    assert (weight.grad[~unscored].flatten(1).abs().sum(1) > 0).all()
    with pytest.raises(ValueError, match="needs tail_steps"):
        TrainConfig(anchor_weight=1.0)


def test_picture_faults_are_calibrated_without_synthetic_development_crops(pictures):
    """With ``synthetic: 0`` the development pictures keep their own faults, but simulated and real
    slices still get JPEG, impulse and noise faults: those must be labelled by the calibration
    fitted on the development set, not by the fixed rule."""
    rng = np.random.default_rng(0)
    samples = [Sample(f"{k}{i}", degrade(pic, "impulse", s, rng), 4.0 - 3.5 * s, f"S{i}")
               for i, pic in enumerate(pictures[:4]) for k, s in enumerate((0.0, 0.3, 0.6, 0.9))]
    cfg = TrainConfig(synthetic=0.0, labels="calibrated", crop=64)
    make = BatchMaker(samples, cfg)
    assert make.calibration is not None
    clean = pictures[6][32:96, 32:96]
    drops = []
    for seed in range(60):
        out, drop, cause, region = make._picture_fault(clean, np.random.default_rng(seed))
        if cause == "impulse" and region is None:
            expected = make.calibration(handcrafted.features(clean)) - make.calibration(handcrafted.features(out))
            assert drop == pytest.approx(max(0.0, float(expected)))
            drops.append(drop)
    assert drops and max(drops) > 0


@pytest.fixture(scope="module")
def dataset_folder(tmp_path_factory, pictures):
    d = tmp_path_factory.mktemp("ds")
    (d / "images").mkdir()
    rows = ["image,mos,scene"]
    for i, p in enumerate(pictures[:6]):
        for q, mos in ((95, 3.5), (10, 1.0)):
            name = f"{i}_{q}.jpg"
            Image.fromarray(p).save(d / "images" / name, quality=q)
            rows.append(f"{name},{mos},S{i % 3}")
    (d / "labels.csv").write_text("\n".join(rows) + "\n")
    return d


def test_dataset_layouts(dataset_folder, tmp_path):
    s = load_dataset(dataset_folder / "images", dataset_folder / "labels.csv")
    assert len(s) == 12 and {x.scene for x in s} == {"S0", "S1", "S2"}
    assert s[0].image.shape == (160, 160, 3) and s[0].jpeg_q > 0
    (tmp_path / "scores.json").write_text(json.dumps({x.name: x.mos for x in s}))
    ldct = load_dataset(dataset_folder / "images", tmp_path / "scores.json")
    assert sorted(x.mos for x in ldct) == sorted(x.mos for x in s)
    study = load_sample_study()
    (tmp_path / "vol.csv").write_text(f"ct,pet,rgb,slice,mos,scene\n{study.ct_path},{study.pet_path},,14,3.0,A\n")
    vol = load_dataset(tmp_path / "vol.csv")
    expected = SliceRenderer(ct=study.ct_path, pet=study.pet_path).render(14, 15)[0]
    assert np.array_equal(vol[0].image, expected)


def test_training_resumes_exactly_from_its_checkpoint(dataset_folder, tmp_path):
    samples = load_dataset(dataset_folder / "images", dataset_folder / "labels.csv")
    cfg = dict(steps=4, batch_scenes=2, per_scene=2, crop=64, warmup=1, checkpoint_every=2, synthetic=0.5)
    whole = train(samples, TrainConfig(**cfg), out_dir=tmp_path / "a", progress=False, log=lambda m: None)
    # Stop after 2 steps, then resume to 4 from the checkpoint.
    train(samples, TrainConfig(**{**cfg, "steps": 2}), out_dir=tmp_path / "b", progress=False, log=lambda m: None)
    resumed = train(samples, TrainConfig(**cfg), out_dir=tmp_path / "b", progress=False, log=lambda m: None)
    assert (tmp_path / "b" / "checkpoint.safetensors").exists()
    for (k, v), w in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(v.float(), w.float(), atol=1e-6), k


def test_a_tail_fine_tunes_at_its_own_rate_and_resumes_from_the_recipe_without_it(dataset_folder, tmp_path):
    samples = load_dataset(dataset_folder / "images", dataset_folder / "labels.csv")
    cfg = dict(steps=3, batch_scenes=2, per_scene=2, crop=64, warmup=1, checkpoint_every=10, synthetic=0.5)
    tail = dict(tail_steps=2, tail_lr=1e-4)
    rates = [_lr(step, TrainConfig(**cfg, **tail)) for step in range(5)]
    assert rates[1] > rates[2] > 0 and rates[3:] == [1e-4, 1e-4]  # the cosine, then the tail
    quiet = dict(progress=False, log=lambda m: None)
    whole = train(samples, TrainConfig(**cfg, **tail), out_dir=tmp_path / "a", **quiet)
    untailed = {k: v.clone() for k, v in train(samples, TrainConfig(**cfg), out_dir=tmp_path / "b", **quiet).state_dict().items()}
    resumed = train(samples, TrainConfig(**cfg, **tail), out_dir=tmp_path / "b", **quiet)
    for (k, v), w in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(v.float(), w.float(), atol=1e-6), k
    assert any(not torch.equal(v, untailed[k]) for k, v in whole.state_dict().items() if v.is_floating_point())
    for bad in (dict(tail_steps=2), dict(tail_steps=-1, tail_lr=1e-4)):
        with pytest.raises(ValueError, match="a tail is tail_steps > 0 at a tail_lr > 0"):
            TrainConfig(**cfg, **bad)


def test_a_tail_can_bring_its_own_losses_and_pointing_crops(two_scenes, dataset_folder, tmp_path):
    """A recipe whose pointing crops and attention loss start with its tail trains its first ``steps``
    as the recipe without them, so one command makes what a tail resumed from that recipe makes."""
    tail = dict(pointing=2, attention_weight=1.0, attention_loss="peak", anchor_weight=2.0)
    cfg = TrainConfig(batch_scenes=2, per_scene=3, crop=64, synthetic=0.0, phantom_scenes=0, clinical_scenes=0,
                      physical_scenes=0, steps=3, tail_steps=2, tail_lr=1e-4, tail=tail)
    assert cfg.at(2) is cfg and cfg.at(3).pointing == 2 and cfg.at(3).attention_loss == "peak" and not cfg.at(3).tail
    make, plain = BatchMaker(two_scenes, cfg), BatchMaker(two_scenes, replace(cfg, tail={}, tail_steps=0))
    assert torch.equal(make(2)["x"], plain(2)["x"])  # before the tail: the recipe without it
    assert torch.isnan(make(3)["mos"]).sum() == 4  # in the tail: two pointing crops per scene
    samples = load_dataset(dataset_folder / "images", dataset_folder / "labels.csv")
    quiet = dict(progress=False, log=lambda m: None)
    small = dict(steps=2, batch_scenes=2, per_scene=2, crop=64, warmup=1, checkpoint_every=10, synthetic=0.5,
                 tail_steps=2, tail_lr=1e-3)
    train(samples, TrainConfig(**small, tail=tail), out_dir=tmp_path / "a", **quiet)
    assert (tmp_path / "a" / "anchor.safetensors").exists()  # the tail's anchor weight took effect
    for bad in (dict(tail={"steps": 5}), dict(tail={"pointing": 2}, tail_steps=0)):
        with pytest.raises(ValueError, match="tail gives other values"):
            replace(cfg, **bad)
    with pytest.raises(ValueError, match="attention_loss is one of"):  # before training, not at its tail
        replace(cfg, tail={"attention_loss": "max"})


def test_an_anchored_tail_resumes_inside_the_tail_against_the_network_it_started_from(dataset_folder, tmp_path):
    samples = load_dataset(dataset_folder / "images", dataset_folder / "labels.csv")
    cfg = dict(steps=2, batch_scenes=2, per_scene=2, crop=64, warmup=1, checkpoint_every=10, synthetic=0.5,
               tail_lr=1e-3, anchor_weight=100.0)
    quiet = dict(progress=False, log=lambda m: None)
    whole = train(samples, TrainConfig(**cfg, tail_steps=3), out_dir=tmp_path / "a", **quiet)
    train(samples, TrainConfig(**cfg, tail_steps=1), out_dir=tmp_path / "b", **quiet)
    resumed = train(samples, TrainConfig(**cfg, tail_steps=3), out_dir=tmp_path / "b", **quiet)
    for (k, v), w in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(v.float(), w.float(), atol=1e-6), k
    free = train(samples, TrainConfig(**{**cfg, "anchor_weight": 0.0}, tail_steps=3), out_dir=tmp_path / "c", **quiet)
    assert any(not torch.equal(v, free.state_dict()[k]) for k, v in whole.state_dict().items() if v.is_floating_point())
    (tmp_path / "b" / "anchor.safetensors").unlink()
    (tmp_path / "b" / "checkpoint.safetensors").write_bytes((tmp_path / "a" / "checkpoint.safetensors").read_bytes())
    with pytest.raises(InputError, match="anchor.safetensors"):
        train(samples, TrainConfig(**cfg, tail_steps=4), out_dir=tmp_path / "b", **quiet)


@pytest.mark.parametrize("family", ["jpeg12", "jpeg2000"])
def test_codec_degradations_without_imagecodecs_name_the_extra(pictures, family, monkeypatch):
    from msiqa.errors import MissingDependency

    monkeypatch.setitem(__import__("sys").modules, "imagecodecs", None)  # as in a plain 'pip install msiqa'
    with pytest.raises(MissingDependency, match=r"pip install msiqa\[train\]"):
        degrade(pictures[0], family, 0.5, np.random.default_rng(0))


def test_train_without_imagecodecs_stops_before_loading_data(tmp_path, monkeypatch, capsys):
    from msiqa import cli

    monkeypatch.setitem(__import__("sys").modules, "imagecodecs", None)
    rc = cli.main(["train", str(tmp_path / "missing"), str(tmp_path / "labels.csv"), "--out", str(tmp_path / "m.safetensors")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "imagecodecs" in err and "msiqa[train]" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["train", "refit", "ensemble", "evaluate"])
def test_training_commands_describe_every_argument(command, capsys):
    import argparse

    from msiqa import cli

    subparsers = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = subparsers.choices[command]
    assert len(parser.description or "") > 100
    for action in parser._actions:
        assert action.help, f"{command}: {action.option_strings or action.dest} has no help text"
    assert cli.main([command, "--help"]) == 0
    if command != "ensemble":
        assert "volume table" in capsys.readouterr().out  # why LABELS may be left out


def test_train_command_writes_weights_and_a_card_that_describe_the_recipe(dataset_folder, tmp_path):
    """`msiqa train` end to end: the weights load through the checksum, and the card names the
    branches the recipe built (here the ResNet branch alone) and carries the recipe itself."""
    from msiqa import cli
    from msiqa.training.train import TrainConfig
    from msiqa.weights import load_model

    recipe = {"overrides": {"branches": "cnn"}, "steps": 2, "batch_scenes": 2, "per_scene": 2, "crop": 64, "warmup": 1}
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    out = tmp_path / "m.safetensors"
    rc = cli.main(["train", str(dataset_folder / "images"), str(dataset_folder / "labels.csv"),
                   "--config", str(tmp_path / "recipe.json"), "--out", str(out)])
    assert rc == 0
    model = load_model(out)
    assert model.net.swin is None and model.card["config"]["branches"] == "cnn"
    assert "Swin branch left out" in model.card["architecture"]
    assert model.card["train_config"] == json.loads(json.dumps(TrainConfig.load(tmp_path / "recipe.json").to_dict()))
    env = model.card["environment"]
    assert (env["torch"], env["cpu_threads"]) == (torch.__version__, torch.get_num_threads())
    assert (env["numpy"], env["scipy"], env["PIL"], env["SimpleITK"], env["timm"]) == (
        np.__version__, scipy.__version__, PIL.__version__, sitk.__version__, timm.__version__)


def test_the_training_constraints_pin_each_library_a_card_records_within_the_requirements():
    """training-constraints.txt (the README's environment for repeating a bundled network) pins
    exactly the libraries ``environment()`` writes into every card, each at a version the engine's
    requirements allow: a library added to one list and not the other would leave a card naming a
    version nobody pinned."""
    import importlib.metadata

    from msiqa import dependencies
    from msiqa.training.commands import environment

    root = Path(__file__).resolve().parents[1]
    lines = [line.strip() for line in (root / "training-constraints.txt").read_text().splitlines()]
    pins = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    pins = {name.lower(): version for name, version in pins.items()}
    distribution = importlib.metadata.packages_distributions()
    recorded = {distribution[module][0].lower() for module in set(environment()) - {"python", "cpu_threads"}}
    assert set(pins) == recorded
    minimum = {r.name.lower(): r.minimum for r in dependencies.REQUIREMENTS}
    assert all(dependencies.is_satisfied(version, minimum[name]) for name, version in pins.items())


TINY_RECIPE = {"overrides": {"branches": "cnn"}, "steps": 2, "batch_scenes": 2, "per_scene": 2, "crop": 64, "warmup": 1}


@pytest.fixture(scope="module")
def seed_members(dataset_folder, tmp_path_factory):
    """Two networks of one recipe, trained by `msiqa train` with seeds 1 and 2."""
    from msiqa import cli

    d = tmp_path_factory.mktemp("members")
    (d / "recipe.json").write_text(json.dumps(TINY_RECIPE))
    paths = []
    for seed in (1, 2):
        out = d / f"seed{seed}.safetensors"
        assert cli.main(["train", str(dataset_folder / "images"), str(dataset_folder / "labels.csv"),
                         "--config", str(d / "recipe.json"), "--seed", str(seed), "--out", str(out)]) == 0
        paths.append(out)
    return paths


def test_train_seed_option_changes_the_network_and_is_recorded(seed_members):
    from msiqa.weights import load_model

    a, b = (load_model(p) for p in seed_members)
    assert [a.card["train_config"]["seed"], b.card["train_config"]["seed"]] == [1, 2]
    assert "--seed 1" in a.card["command"] and "--seed 2" in b.card["command"]
    assert a.card["config"] == b.card["config"] and a.card["sha256"] != b.card["sha256"]


def test_the_same_recipe_and_seed_train_the_same_network(seed_members, dataset_folder, tmp_path):
    """At one thread count a run repeats bit for bit: a seed names a network, so a member can be made again."""
    from msiqa import cli
    from msiqa.weights import load_model

    (tmp_path / "recipe.json").write_text(json.dumps(TINY_RECIPE))
    out = tmp_path / "again.safetensors"
    assert cli.main(["train", str(dataset_folder / "images"), str(dataset_folder / "labels.csv"),
                     "--config", str(tmp_path / "recipe.json"), "--seed", "1", "--out", str(out)]) == 0
    assert load_model(out).card["sha256"] == load_model(seed_members[0]).card["sha256"]


def test_ensemble_command_writes_one_model_whose_outputs_are_the_members_mean(seed_members, pictures, tmp_path):
    from msiqa import cli
    from msiqa.assess import Scorer
    from msiqa.models import MSIQAEnsemble
    from msiqa.weights import load_model

    out = tmp_path / "ens.safetensors"
    assert cli.main(["ensemble", *map(str, seed_members), "--out", str(out)]) == 0
    ens = load_model(out)  # through the checksum, as every model
    members = [load_model(p) for p in seed_members]
    assert isinstance(ens.net, MSIQAEnsemble) and len(ens.net.members) == 2
    assert [m["sha256"] for m in ens.card["members"]] == [m.card["sha256"] for m in members]
    assert [m["train_config"]["seed"] for m in ens.card["members"]] == [1, 2]
    assert ens.card["command"] == f"msiqa ensemble seed1.safetensors seed2.safetensors --out {out.name}"

    x = torch.from_numpy(np.stack(pictures[:3])).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        got, outs = ens.net.eval()(x), [m.net.eval()(x) for m in members]
    assert not torch.allclose(outs[0].score, outs[1].score)  # two different networks are averaged
    for field in ("score", "weight", "cell_score", "cause"):
        mean = (getattr(outs[0], field) + getattr(outs[1], field)) / 2
        assert torch.allclose(getattr(got, field), mean, atol=1e-5), field
    # The scorer the engine runs takes an ensemble as it takes one network.
    scored = Scorer(ens, "cpu")(np.stack(pictures[:3]))
    assert np.allclose(scored.scores, got.score.numpy(), atol=1e-4)
    assert scored.maps.shape == (3, 160, 160) and np.allclose(scored.causes.sum(1), 1, atol=1e-5)


def test_ensemble_command_refuses_what_it_cannot_average_and_changes_nothing(seed_members, tmp_path, capsys):
    from msiqa import cli
    from msiqa.models import create_model
    from msiqa.weights import save_model

    before = [p.read_bytes() for p in seed_members]
    assert cli.main(["ensemble", str(seed_members[0]), "--out", str(tmp_path / "e.safetensors")]) == 2
    assert "give two or more" in capsys.readouterr().err
    assert cli.main(["ensemble", *map(str, seed_members), "--out", str(seed_members[1])]) == 2
    assert "is one of the members" in capsys.readouterr().err
    other = tmp_path / "wider.safetensors"
    save_model(create_model("compact", branches="cnn", fusion_dim=32), other, {"name": "wider"})
    assert cli.main(["ensemble", str(seed_members[0]), str(other), "--out", str(tmp_path / "e.safetensors")]) == 2
    assert "share one network configuration" in capsys.readouterr().err
    ens = tmp_path / "ens.safetensors"
    assert cli.main(["ensemble", *map(str, seed_members), "--out", str(ens)]) == 0
    capsys.readouterr()
    assert cli.main(["ensemble", str(ens), str(seed_members[0]), "--out", str(tmp_path / "e.safetensors")]) == 2
    assert "already an ensemble" in capsys.readouterr().err
    assert not (tmp_path / "e.safetensors").exists()
    assert [p.read_bytes() for p in seed_members] == before


def test_a_card_whose_members_are_not_a_list_of_networks_is_refused(seed_members, tmp_path):
    from msiqa import cli
    from msiqa.errors import WeightsError
    from msiqa.weights import load_model

    ens = tmp_path / "ens.safetensors"
    assert cli.main(["ensemble", *map(str, seed_members), "--out", str(ens)]) == 0
    card = json.loads(ens.with_suffix(".json").read_text())
    for members in (2, [card["members"][0]]):
        ens.with_suffix(".json").write_text(json.dumps({**card, "members": members}))
        with pytest.raises(WeightsError, match="malformed.*at least 2 networks"):
            load_model(ens)
