"""The last layers fitted again on whole slices (`msiqa refit`): only they change."""

from __future__ import annotations

import copy
import functools
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr

from msiqa.causes import CAUSES
from msiqa.training import refit_slices
from msiqa.training.labels import NAMED_FROM
from msiqa.training.refit import (_at_most_label, fit_cause_head, fit_score_head, fit_score_layer, fit_weight_head,
                                  pick_head_ridge, pick_ridge)
from msiqa.training.refit_slices import RefitConfig
from msiqa.weights import load_model


@pytest.fixture(scope="module")
def bundled_network(bundled_model):
    """The bundled model's network (an ensemble's first member): what the refitted layers belong to."""
    from msiqa.models import members_of
    from msiqa.weights import LoadedModel

    card = bundled_model.card["members"][0] if bundled_model.card.get("members") else bundled_model.card
    return LoadedModel(members_of(bundled_model.net)[0].eval(), card, bundled_model.path)


def test_a_slice_score_is_the_last_layer_applied_to_the_pooled_hidden_cells(bundled_network):
    """Why the score layer can be fitted exactly on pooled features: sum(s*w)/sum(w) of a 1x1 conv."""
    from msiqa.models.msiqa_net import onto_scale
    from msiqa.sample_data import load_sample_study
    from msiqa.render import SliceRenderer

    study = load_sample_study()
    x = torch.from_numpy(SliceRenderer(ct=study.ct_path, pet=study.pet_path).render(30, 32)).permute(0, 3, 1, 2).float() / 255
    net = bundled_network.net
    with torch.inference_mode():
        fused, cells = net.pooled_features(x)
        out = net(x)
        score, cause = onto_scale(net.score[-1](cells[:, :, None, None]).flatten()), net.cause(fused)
    assert torch.allclose(score, out.score, atol=1e-5)
    assert torch.allclose(torch.softmax(cause, 1), torch.softmax(out.cause, 1), atol=1e-5)


def test_the_refit_reads_a_picture_as_the_engine_scores_it(bundled_network):
    """A lone PET's picture is 200 or 285 pixels wide: the refit must see it padded to the grid, as scored."""
    from msiqa.assess import Scorer
    from msiqa.models.msiqa_net import onto_scale
    from msiqa.render import SliceRenderer
    from msiqa.sample_data import load_sample_study
    from msiqa.training.refit import _pooled

    study = load_sample_study()
    pictures = SliceRenderer(ct=study.ct_path, pet=study.pet_path).render(30, 32)[:, 40:240, 60:260]
    net = bundled_network.net
    fused, cells = _pooled(net, pictures)
    scored = Scorer(bundled_network, "cpu")(pictures)
    with torch.inference_mode():
        score = onto_scale(net.score[-1](torch.from_numpy(cells)[:, :, None, None]).flatten())
        cause = torch.softmax(net.cause(torch.from_numpy(fused)), 1)
    np.testing.assert_allclose(score.numpy(), scored.scores, atol=1e-4)
    np.testing.assert_allclose(cause.numpy(), scored.causes, atol=1e-4)


def test_fit_cause_head_separates_the_causes_it_has_examples_of_and_never_names_the_others():
    rng = np.random.default_rng(0)
    centres = {0: rng.normal(0, 3, 16), 1: rng.normal(0, 3, 16), 8: rng.normal(0, 3, 16)}
    counts = {0: 300, 1: 12, 8: 40}  # far fewer compressed than clean examples
    x = np.concatenate([centres[c] + rng.normal(0, 1, (n, 16)) for c, n in counts.items()]).astype(np.float32)
    y = np.concatenate([[c] * n for c, n in counts.items()])
    w, b = fit_cause_head(x, y, len(CAUSES), l2=1e-3, none_weight=1.0)
    assert w.shape == (len(CAUSES), 16) and b.shape == (len(CAUSES),)
    for c in counts:
        pts = torch.from_numpy(centres[c] + rng.normal(0, 1, (50, 16))).float()
        assert ((pts @ w.T + b).argmax(1).numpy() == c).mean() > 0.9, CAUSES[c]
    anywhere = (torch.from_numpy(rng.normal(0, 6, (500, 16))).float() @ w.T + b).argmax(1).numpy()
    assert set(anywhere) <= set(counts)


def test_fit_cause_head_leaves_out_a_feature_that_hardly_varies():
    # A channel all but dead on the examples, whose last digits still follow the cause: fitted on
    # its own scale, it would take a weight past float16's 65504.
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 8], 60)
    x = rng.normal(0, 1, (len(y), 8)) + 2.0 * np.eye(3)[np.searchsorted([0, 1, 8], y)] @ rng.normal(0, 1, (3, 8))
    dead = 0.5 + 1e-7 * (y == 8) + 1e-9 * rng.normal(size=len(y))
    w, b = fit_cause_head(np.column_stack([x, dead]).astype(np.float64), y, len(CAUSES), l2=1e-3, none_weight=1.0)
    assert torch.isfinite(w.half()).all() and float(w.abs().max()) < 1e3
    assert torch.all(w[:, -1] == 0)
    assert ((torch.from_numpy(x).float() @ w[:, :-1].T + b).argmax(1).numpy() == y).mean() > 0.8


def test_fit_cause_head_needs_clean_examples_and_a_fault():
    from msiqa.errors import InputError

    x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    with pytest.raises(InputError, match="clean slices and at least one fault"):
        fit_cause_head(x, np.full(20, 8), len(CAUSES), 1e-3, 1.0)


def test_the_score_layer_learns_the_labels_and_holds_the_anchored_slices():
    rng = np.random.default_rng(1)
    a0 = rng.normal(size=8)
    truth = a0 + rng.normal(0, 1, 8)  # the labels follow another direction than the trained layer
    cells = rng.normal(size=(60, 8))
    mos = cells @ truth + 2.0
    held = rng.normal(size=(200, 8))
    held_scores = held @ a0 + 2.0
    free, _ = fit_score_layer(cells, mos, held, held_scores, a0, ridge=1e-3, anchor_weight=0.0)
    assert np.allclose(free, truth, atol=1e-3)  # nothing held: the labels' own layer
    a, b = fit_score_layer(cells, mos, held, held_scores, a0, ridge=1e-3, anchor_weight=1.0)
    err = lambda a, b, z, t: np.sqrt(np.mean((z @ a + b - t) ** 2))  # noqa: E731
    assert err(a, b, held, held_scores) < err(free, 2.0, held, held_scores)  # held slices stay nearer
    assert err(a, b, cells, mos) < err(a0, 2.0, cells, mos)  # and the labels are met better than before
    scenes = np.repeat(np.arange(6), 10)
    ridge, found = pick_ridge(cells, mos, scenes, held, held_scores, a0, [0.01, 1e4], 1.0)
    assert ridge == 0.01 and found[0.01] > found[1e4]  # a huge ridge keeps the old layer, which ranks worse


def _head(seed: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(4, 8, 1), torch.nn.GELU(), torch.nn.Conv2d(8, 1, 1))


def test_the_whole_score_head_learns_what_no_layer_over_pooled_hidden_cells_can():
    """Two kinds of slice whose cells differ in spread, not in mean: one target for each. The pooled
    hidden cells of the given head tell them apart only through its GELU's curvature; fitting the
    hidden convolution too makes the difference, and the ridge holds the head near where it started."""
    rng = np.random.default_rng(0)
    n, per = 40, 16
    spread = np.repeat([0.2, 2.0], n // 2)  # quiet and noisy slices, alike on average
    x = torch.from_numpy(rng.normal(0, 1, (n * per, 4)) * np.repeat(spread, per)[:, None]).float()
    w = torch.from_numpy(rng.uniform(0.2, 1.0, n * per)).float()
    s = torch.arange(n).repeat_interleave(per)
    targets = np.where(spread > 1, 1.0, 3.0)
    heads = [_head(0), _head(1)]
    start = [[p.detach().clone() for p in h.parameters()] for h in heads]
    with torch.no_grad():  # the best last layer over the given heads' pooled hidden cells (both side by side)
        hidden = torch.cat([h[:2](x[:, :, None, None]).flatten(1) for h in heads], 1).double()
        pooled = (torch.zeros(n, 16, dtype=torch.float64).index_add_(0, s, hidden * w[:, None].double())
                  / torch.zeros(n, dtype=torch.float64).index_add_(0, s, w.double())[:, None]).numpy()
    a, b = fit_score_layer(pooled, targets, np.zeros((0, 16)), np.zeros(0), np.zeros(16), 1e-4, 0.0)
    layer_error = np.mean((pooled @ a + b - targets) ** 2)
    free = fit_score_head(heads, [(x, w, s)] * 2, targets, np.ones(n), ridge=1e-4)
    assert free["weighted_error_after"] < layer_error / 20
    with torch.no_grad():  # the heads changed in place and score as the record says
        cell = [h(x[:, :, None, None]).flatten() for h in heads]
        scores = sum(torch.zeros(n).index_add_(0, s, c * w) / torch.zeros(n).index_add_(0, s, w) for c in cell) / 2
    assert np.mean((scores.numpy() - targets) ** 2) == pytest.approx(free["weighted_error_after"], rel=1e-3)
    heads = [_head(0), _head(1)]
    held = fit_score_head(heads, [(x, w, s)] * 2, targets, np.ones(n), ridge=1e5)
    assert held["head_moved"] < free["head_moved"] / 100
    assert all(torch.allclose(p, q, atol=0.02) for h, st in zip(heads, start) for p, q in zip(h.parameters(), st))


def test_the_whole_heads_ridge_is_picked_on_scenes_its_fits_did_not_see():
    """Six scenes, each with quiet and noisy slices (one target each, as above): the fits made without a
    group of scenes rank that group's slices; a hidden fit learns what carries over, a huge ridge stays
    with the layer as it was, and every scene is left out once, whole."""
    rng = np.random.default_rng(1)
    n, per = 48, 16
    spread = np.tile([0.2, 2.0], n // 2)
    x = torch.from_numpy(rng.normal(0, 1, (n * per, 4)) * np.repeat(spread, per)[:, None]).float()
    w = torch.from_numpy(rng.uniform(0.2, 1.0, n * per)).float()
    s = torch.arange(n).repeat_interleave(per)
    targets = np.where(spread > 1, 1.0, 3.0)
    scenes = np.repeat([f"S{i}" for i in range(6)], n // 6)
    left_out = []

    def start(out):
        left_out.append(out.copy())
        return [_head(0), _head(1)]

    def weights(keep):
        return keep.astype(np.float64)

    cells = [(x, w, s)] * 2
    ridge, found = pick_head_ridge(start, cells, targets, weights, scenes, [1e-4])
    # Two targets, 24 slices each: every noisy slice below every quiet one, whatever the order within.
    perfect = spearmanr(targets + np.arange(n) * 1e-6, targets).correlation
    assert ridge == 1e-4 and found["0.0001"] == pytest.approx(perfect) and found["layer"] < perfect - 0.1
    outs = np.array(left_out[:3])
    assert (outs.sum(0) == 1).all()  # each picture left out once, by exactly one group
    assert all(len(set(scenes[o])) == 2 and not set(scenes[o]) & set(scenes[~o]) for o in outs)
    assert all(np.array_equal(a, b) for a, b in zip(left_out[:3], left_out[3:6]))  # the same groups per ridge
    _, held = pick_head_ridge(start, cells, targets, weights, scenes, [1e6])
    assert held["1000000.0"] == pytest.approx(held["layer"], abs=0.02)


def test_scanner_made_faults_are_held_at_most_at_their_clean_versions_score_less_their_drop():
    held = np.array([3.0, 2.9, 2.0, 1.0, 3.4, 3.3, 2.5])
    # A group of a clean version and three faulted ones at slices 1-4, a lone clean slice (6) in no group.
    out = _at_most_label(held, [(1, np.array([0.0, 0.5, 0.2, 1.0]))])
    assert out.tolist() == pytest.approx([3.0, 2.9, 2.0, 1.0, 1.9, 3.3, 2.5])
    # never raised: a version the network already scores lower than its label keeps its score
    assert np.all(out <= held)
    assert held.tolist() == [3.0, 2.9, 2.0, 1.0, 3.4, 3.3, 2.5]  # the network's scores are not touched


def test_scanner_made_groups_carry_the_label_drop_they_are_named_by():
    from msiqa.training.train import TrainConfig

    recipe = TrainConfig(phantom_anatomies=[1], phantom_noise_seeds=[1], physical_anatomies=[1])
    config = RefitConfig(trials_per_patient=0, physical_noise_seeds=[7], physical_slices=1)
    groups = [b for b in refit_slices.training_slices(recipe, config, None, log=lambda m: None) if b.drops is not None]
    assert groups and all(b.source.startswith("scanner-made") for b in groups)
    for b in groups:
        assert len(b.drops) == len(b.causes) == len(b.pictures) and b.drops[0] == 0.0 and b.causes[0] == "none"
        assert all((d >= NAMED_FROM) == (c != "none") for d, c in zip(b.drops[1:], b.causes[1:]))
        assert b.drops[1:] == sorted(b.drops[1:])  # five severities, mildest first


def test_real_petct_is_shown_again_with_an_attenuation_cts_noise_held_clean_and_named_by_the_rule():
    """clean_ct_noise_hu: each real PET/CT slice shown clean comes a second time with that much CT grain
    added before fusion, held as clean and named as the label rule names that noise; the rule may not
    score that noise below the floor it is held at."""
    from msiqa.render import RenderSettings
    from msiqa.sample_data import load_sample_study
    from msiqa.training.train import TrainConfig

    study = load_sample_study()
    recipe = TrainConfig(phantom_anatomies=[], physical_anatomies=[])
    entry = {"ct": study.ct_path.name, "pet": study.pet_path.name}

    def shown(**extra):
        config = RefitConfig(physical_noise_seeds=[], clean_volumes=[entry], clinical_every=50, **extra)
        return list(refit_slices.training_slices(recipe, config, study.ct_path.parent, log=lambda m: None))

    plain, noisy = shown(), shown(clean_ct_noise_hu=40.0, score_clinical_floor=2.5)
    assert len(plain) == 6 and len(noisy) == 9  # 3 slices as PET/CT and CT alone, and each PET/CT again
    assert all(b.source == refit_slices.CLINICAL_CLEAN for b in plain + noisy)
    assert [b.causes for b in plain] == [["none"]] * 6
    assert [b.causes for b in noisy] == [["none"], ["ct_low_dose"], ["none"]] * 3
    grey_per_hu = 255 / RenderSettings().window
    for i, (clean, grainy, ct) in enumerate(zip(noisy[0::3], noisy[1::3], noisy[2::3])):
        assert np.array_equal(clean.pictures, plain[2 * i].pictures)
        assert np.array_equal(ct.pictures, plain[2 * i + 1].pictures)
        a, b = clean.pictures[0].astype(float), grainy.pictures[0].astype(float)
        inside = (a.min(axis=-1) > 20) & (a.max(axis=-1) < 235)  # grey the window does not clip
        change = np.median(np.abs(b - a)[inside]) / 0.6745  # a robust SD, in grey levels
        # PET/CT shows the CT's grey at 1 - pet_alpha of its strength, under the PET's colour
        assert 0.35 * 40 * grey_per_hu < change < (1 - RenderSettings().pet_alpha) * 40 * grey_per_hu
    with pytest.raises(ValueError, match="scores 60 HU of added CT noise at 1.90, below score_clinical_floor 2.5"):
        RefitConfig(clean_ct_noise_hu=60, score_clinical_floor=2.5)
    with pytest.raises(ValueError, match="give a positive HU and the floor"):
        RefitConfig(clean_ct_noise_hu=40)


def test_the_weight_head_learns_to_peak_on_the_faulted_cells_and_holds_the_other_maps():
    """Grids where one feature marks the faulted cells, but the trained head looks at another: the
    fit must move each grid's peak into its fault while the held grids' logits stay near theirs."""
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Conv2d(6, 4, 1), torch.nn.GELU(), torch.nn.Conv2d(4, 1, 1), torch.nn.Sigmoid())
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
        head[0].weight[0, 1] = 1.0  # the trained head peaks where feature 1 is high
        head[2].weight[0, 0] = 1.0
    faulted, rng = [], np.random.default_rng(0)
    for _ in range(40):
        f = torch.from_numpy(rng.normal(0, 0.3, (6, 5, 5))).float()
        m = torch.zeros(5, 5, dtype=torch.bool)
        y, x = rng.integers(0, 4, 2)
        m[y : y + 2, x : x + 2] = True
        f[0][m] += 2.0  # the fault shows in feature 0
        f[1][~m] += float(rng.uniform(0.5, 1.5))  # and a bright structure elsewhere draws the trained head
        faulted.append((f, m))
    held = [torch.from_numpy(rng.normal(0, 0.3, (6, 4, 4))).float() for _ in range(20)]
    before = [head[:3](f[None]).detach() for f in held]
    got = fit_weight_head(head, faulted, held, hold=1.0, ridge=1e-3)
    assert got["peak_in_fault_before"] < 0.2 and got["peak_in_fault_after"] > 0.9
    assert got["local_faults"] == 40 and got["held_grids"] == 20
    with torch.no_grad():
        moved = max(float((head[:3](f[None]) - b).abs().mean()) for f, b in zip(held, before))
    assert moved < 0.5 and got["held_logits_moved_mean"] < 0.5


SMALL = functools.partial(RefitConfig, trials_per_patient=12, physical_noise_seeds=[7], physical_slices=1,
                          score_ridges=[0.1, 10.0], pointing_picture_trials=1, pointing_simulated_trials=12)


@pytest.fixture(scope="module")
def small_recipe_model(tmp_path_factory, bundled_network):
    """The bundled network with a card whose recipe names one simulated patient and no real volumes,
    and a folder of labelled pictures, so that a refit runs in seconds (same code, smaller budget)."""
    from msiqa.render import SliceRenderer
    from msiqa.sample_data import load_sample_study
    from msiqa.weights import card_of_source, save_model

    folder = tmp_path_factory.mktemp("refit")
    src = folder / "net.safetensors"
    card = json.loads(json.dumps(card_of_source(bundled_network.card)))
    card["train_config"].update(phantom_anatomies=[1], phantom_noise_seeds=[1], physical_anatomies=[1],
                                clinical_volumes=[])
    save_model(bundled_network.net, src, card)
    study = load_sample_study()
    (folder / "images").mkdir()
    rows = ["image,mos,scene"]
    for i, p in enumerate(SliceRenderer(ct=study.ct_path, pet=study.pet_path).render(12, 18)):
        for q, mos in ((95, 3.5), (30, 2.5), (8, 1.0)):
            Image.fromarray(p).save(folder / "images" / f"{i}_{q}.jpg", quality=q)
            rows.append(f"{i}_{q}.jpg,{mos},S{i % 3}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return src


def _refitted(small_recipe_model, tmp_path, monkeypatch, *extra):
    from msiqa import cli

    monkeypatch.setattr(refit_slices, "RefitConfig", SMALL)
    out = tmp_path / "refit.safetensors"
    before = small_recipe_model.read_bytes()
    assert cli.main(["refit", str(small_recipe_model), "--out", str(out), *extra]) == 0
    assert small_recipe_model.read_bytes() == before
    return load_model(out)  # through the checksum


def _changed(new, old) -> set[str]:
    old = old.net.state_dict()
    return {k for k, v in new.net.state_dict().items() if not torch.equal(v, old[k])}


def _scored(*models):
    from msiqa.assess import Scorer
    from msiqa.training.phantom_bank import render_layers, simulate_slices

    pictures = np.stack([render_layers(s.layers("petct")) for s in simulate_slices(3, 2)[40:43]])
    return [Scorer(m, "cpu")(pictures) for m in models]


def test_refit_command_changes_the_cause_head_and_nothing_else(small_recipe_model, tmp_path, monkeypatch):
    source = load_model(small_recipe_model)
    new = _refitted(small_recipe_model, tmp_path, monkeypatch)
    assert _changed(new, source) == {"cause.weight", "cause.bias"}
    r = new.card["refit"]
    assert r["network"]["sha256"] == source.card["sha256"]
    assert r["command"] == "msiqa refit net.safetensors --out refit.safetensors"
    assert r["environment"]["torch"] == torch.__version__ and r["environment"]["cpu_threads"] == torch.get_num_threads()
    assert r["score"] is None and r["weight"] is None
    assert r["trials_per_patient"] == 12 and r["unseen_left_out"] == ["misregistration", "pet_respiratory_motion"]
    assert "misregistration" not in r["cause_examples"] and r["cause_examples"]["none"] > 0
    assert new.card["train_config"] == json.loads(small_recipe_model.with_suffix(".json").read_text())["train_config"]
    a, b = _scored(source, new)
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.maps, b.maps)
    assert not np.allclose(a.causes, b.causes)


def test_refit_with_the_score_layer_changes_it_too_and_keeps_the_maps(small_recipe_model, tmp_path, monkeypatch):
    folder = small_recipe_model.parent
    labelled = [str(folder / "images"), str(folder / "labels.csv")]
    source = load_model(small_recipe_model)
    new = _refitted(small_recipe_model, tmp_path, monkeypatch, "--score-layer", *labelled)
    assert _changed(new, source) == {"cause.weight", "cause.bias", "score.2.weight", "score.2.bias"}
    r = new.card["refit"]
    assert r["command"] == f"msiqa refit net.safetensors --out refit.safetensors --score-layer {' '.join(labelled)}"
    assert r["score"]["labelled_pictures"] == 18 and r["score"]["ridge"] in (0.1, 10.0)
    a, b = _scored(source, new)
    assert np.array_equal(a.maps, b.maps)  # the heatmap is the trained network's
    assert not np.array_equal(a.scores, b.scores)


def test_refit_with_the_whole_score_head_changes_both_its_layers_and_keeps_the_maps(small_recipe_model, tmp_path,
                                                                                   monkeypatch):
    folder = small_recipe_model.parent
    labelled = ["--score-layer", str(folder / "images"), str(folder / "labels.csv")]
    layer = _refitted(small_recipe_model, tmp_path / "layer", monkeypatch, *labelled)
    head = _refitted(small_recipe_model, tmp_path / "head", monkeypatch, *labelled,
                     "--refit-options", json.dumps({"score_hidden": True}))
    assert _changed(head, load_model(small_recipe_model)) == {"cause.weight", "cause.bias", "score.0.weight",
                                                              "score.0.bias", "score.2.weight", "score.2.bias"}
    record = head.card["refit"]["score"]["hidden"]
    assert record["slices"] == 18 + head.card["refit"]["score"]["held_slices"]
    assert record["weighted_error_after"] < record["weighted_error_before"]
    assert record["ridge"] == head.card["refit"]["score"]["ridge"] == layer.card["refit"]["score"]["ridge"]
    assert layer.card["refit"]["score"].get("hidden") is None
    a, b = _scored(layer, head)
    assert np.array_equal(a.maps, b.maps) and not np.allclose(a.scores, b.scores)
    # With candidate ridges the head's is picked on left-out scene groups, the layer alone among them.
    picked = _refitted(small_recipe_model, tmp_path / "picked", monkeypatch, *labelled, "--refit-options",
                       json.dumps({"score_hidden": True, "score_hidden_ridges": [1.0]}))
    record = picked.card["refit"]["score"]["hidden"]
    found = record["left_out_scene_groups_srocc"]
    assert set(found) == {"layer", "1.0"} and record["ridge"] == (None if max(found, key=found.get) == "layer" else 1.0)
    assert picked.card["refit"]["score_hidden_ridges"] == [1.0]


def test_refit_with_the_weight_head_moves_the_maps_onto_local_faults(small_recipe_model, tmp_path, monkeypatch):
    folder = small_recipe_model.parent
    labelled = [str(folder / "images"), str(folder / "labels.csv")]
    source = load_model(small_recipe_model)
    new = _refitted(small_recipe_model, tmp_path, monkeypatch, "--weight-head", "--score-layer", *labelled)
    assert _changed(new, source) == {"weight.0.weight", "weight.0.bias", "weight.2.weight", "weight.2.bias",
                                     "cause.weight", "cause.bias", "score.2.weight", "score.2.bias"}
    r = new.card["refit"]
    assert r["command"].startswith("msiqa refit net.safetensors --out refit.safetensors --weight-head --score-layer")
    w = r["weight"]
    assert w["local_faults"] >= 8 and w["peak_in_fault_after"] > w["peak_in_fault_before"]
    a, b = _scored(source, new)
    assert not np.array_equal(a.maps, b.maps)


def test_refit_with_weight_context_widens_the_weight_head_and_the_card_rebuilds_it(small_recipe_model, tmp_path,
                                                                                  monkeypatch):
    source = load_model(small_recipe_model)
    new = _refitted(small_recipe_model, tmp_path, monkeypatch, "--weight-head", "--weight-context", "3")
    assert new.net.config.weight_context == 3 and new.card["config"]["weight_context"] == 3
    assert new.card["refit"]["weight_context"] == 3
    assert new.card["refit"]["command"] == "msiqa refit net.safetensors --out refit.safetensors --weight-head --weight-context 3"
    trained = source.net.weight[0].weight
    widened = new.net.weight[0].weight
    assert widened.shape[1] == 2 * trained.shape[1] and widened[:, trained.shape[1]:].abs().sum() > 0
    w = new.card["refit"]["weight"]
    assert w["peak_in_fault_after"] > w["peak_in_fault_before"]
    a, b = _scored(source, new)
    assert not np.array_equal(a.maps, b.maps)


def test_refit_options_reach_the_fit_and_the_card_records_them(small_recipe_model, tmp_path, monkeypatch):
    source = load_model(small_recipe_model)
    new = _refitted(small_recipe_model, tmp_path, monkeypatch, "--weight-head",
                    "--refit-options", '{"pointing_mirror": true, "pointing_simulated_trials": 20}')
    r = new.card["refit"]
    assert r["pointing_mirror"] is True and r["pointing_simulated_trials"] == 20
    assert r["command"] == ("msiqa refit net.safetensors --out refit.safetensors --weight-head --refit-options "
                            "'{\"pointing_mirror\": true, \"pointing_simulated_trials\": 20}'")
    # SMALL's one picture per scene, mirrored, and 20 regions on the simulated patient instead of 12
    plain = _refitted(small_recipe_model, tmp_path / "plain", monkeypatch, "--weight-head")
    assert r["weight"]["local_faults"] > plain.card["refit"]["weight"]["local_faults"]
    assert _changed(new, source) >= {"weight.0.weight", "cause.weight"}


def test_a_clinical_floor_lifts_real_clean_slices_the_network_scored_low(small_recipe_model, tmp_path, monkeypatch):
    """The sample study's CT, shown alone as a study of diagnostic quality: with the floor its slices,
    held no lower than 3.9 while the layer is fitted, score higher than when held where the network
    put them, those it put lowest the most; the rest of the fit is the same. (Not its PET alone: the
    bundled network already scores that near the top of the scale, leaving the floor nothing to lift.)"""
    from msiqa.assess import Scorer
    from msiqa.render import SliceRenderer
    from msiqa.sample_data import load_sample_study

    study = load_sample_study()
    folder = small_recipe_model.parent
    shown = {"clean_volumes": [{"ct": study.ct_path.name}]}
    common = ["--score-layer", str(folder / "images"), str(folder / "labels.csv"),
              "--clinical-root", str(study.ct_path.parent)]
    held = _refitted(small_recipe_model, tmp_path / "held", monkeypatch, *common, "--refit-options", json.dumps(shown))
    floored = _refitted(small_recipe_model, tmp_path / "floor", monkeypatch, *common,
                        "--refit-options", json.dumps({**shown, "score_clinical_floor": 3.9}))
    assert floored.card["refit"]["score_clinical_floor"] == 3.9
    assert floored.card["refit"]["clean_volumes"] == held.card["refit"]["clean_volumes"] == shown["clean_volumes"]
    ct = SliceRenderer(ct=study.ct_path)
    pictures = ct.render(0, len(ct))[::4]
    before, after = (Scorer(m, "cpu")(pictures).scores for m in (held, floored))
    lift, low = after - before, before < 3.0  # far under the floor: where it pulls hardest
    assert low.any() and (~low).any()
    assert after.mean() > before.mean() + 0.1 and lift[low].mean() > 3 * lift[~low].mean()


def test_refit_command_refuses_what_it_cannot_refit_and_writes_nothing(small_recipe_model, bundled_model, tmp_path, capsys):
    from msiqa import cli

    folder = small_recipe_model.parent
    labelled = [str(folder / "images"), str(folder / "labels.csv")]
    assert cli.main(["refit", str(small_recipe_model), "--out", str(small_recipe_model)]) == 2
    assert "write the refitted one to a new file" in capsys.readouterr().err
    assert cli.main(["refit", str(small_recipe_model), "--out", str(tmp_path / "r.safetensors"),
                     "--score-layer", *labelled, "extra.csv"]) == 2
    assert "at most LABELS" in capsys.readouterr().err
    assert cli.main(["refit", str(small_recipe_model), "--out", str(tmp_path / "r.safetensors"),
                     "--weight-context", "5"]) == 2
    assert "give --weight-head with it" in capsys.readouterr().err
    assert cli.main(["refit", str(small_recipe_model), "--out", str(tmp_path / "r.safetensors"),
                     "--weight-head", "--weight-context", "4"]) == 2
    assert "odd neighbourhood of at least 3 cells, not 4" in capsys.readouterr().err
    assert cli.main(["refit", str(small_recipe_model), "--out", str(tmp_path / "r.safetensors"),
                     "--refit-options", '{"pointing_mirorr": true}']) == 2
    assert "unexpected keyword argument 'pointing_mirorr'" in capsys.readouterr().err
    assert cli.main(["refit", str(small_recipe_model), "--out", str(tmp_path / "r.safetensors"),
                     "--weight-head", "--refit-options", '{"weight_context": 5}']) == 2
    assert "as --weight-context K" in capsys.readouterr().err
    assert cli.main(["refit", str(small_recipe_model), "--out", str(tmp_path / "r.safetensors"),
                     "--refit-options", "[5]"]) == 2
    assert "a JSON object of field names and values is needed" in capsys.readouterr().err
    assert cli.main(["refit", str(small_recipe_model), "--out", str(tmp_path / "r.safetensors"),
                     "--refit-options", '{"score_clinical_floor": 2.5}']) == 2
    assert "give --score-layer" in capsys.readouterr().err
    assert cli.main(["refit", str(small_recipe_model), "--out", str(tmp_path / "r.safetensors"),
                     "--refit-options", '{"clean_ct_noise_hu": 60, "score_clinical_floor": 2.5}']) == 2
    assert "the label rule scores 60 HU of added CT noise at 1.90" in capsys.readouterr().err
    for entry, said in (({"pet": "nowhere.nrrd"}, "nowhere.nrrd is not in --clinical-root"),
                        ({"mr": "x.nrrd"}, "maps 'ct' and / or 'pet' to paths"),
                        ({"pet": ["a.nrrd"], "ct": "b.nrrd"}, "one role with a list of volumes")):
        options = json.dumps({"clean_volumes": [entry]})
        assert cli.main(["refit", str(small_recipe_model), "--out", str(tmp_path / "r.safetensors"),
                         "--clinical-root", str(tmp_path), "--refit-options", options]) == 2
        assert said in capsys.readouterr().err
    # The bundled recipe shows real volumes as clean: without their folder the refit stops first.
    assert cli.main(["refit", str(bundled_model.path), "--out", str(tmp_path / "r.safetensors")]) == 2
    assert "--clinical-root" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_ensemble_of_copies_of_a_network_refits_as_that_network(small_recipe_model):
    """The ensemble's cause logits and score are the members' means of linear layers: one joint fit, whose
    penalties weigh the members' mean. Two copies of a network must refit to what the network refits to."""
    from msiqa.models import MSIQAEnsemble
    from msiqa.training.datasets import load_dataset
    from msiqa.training.refit import refit
    from msiqa.training.train import TrainConfig
    from msiqa.weights import LoadedModel

    single = load_model(small_recipe_model)
    pair = LoadedModel(MSIQAEnsemble.of([single.net, single.net]), single.card, single.path)
    recipe = TrainConfig(**single.card["train_config"])
    folder = small_recipe_model.parent
    samples = load_dataset(str(folder / "images"), str(folder / "labels.csv"))
    got = [refit(m.net, samples, recipe, SMALL(), log=lambda _: None, weight_head=True) for m in (single, pair)]
    assert got[1]["weight"] == [got[0]["weight"]] * 2 and got[1]["score"]["ridge"] == got[0]["score"]["ridge"]
    a, b = _scored(single, pair)
    np.testing.assert_allclose(b.scores, a.scores, atol=1e-4)
    np.testing.assert_allclose(b.causes, a.causes, atol=1e-3)
    np.testing.assert_allclose(b.maps, a.maps, atol=1e-6)
    # ... and the members' layers are their halves of the joint fit, not copies of the single one.
    assert not torch.allclose(pair.net.members[0].cause.weight, single.net.cause.weight)


def test_refit_command_refits_an_ensemble_as_one_model(small_recipe_model, tmp_path, monkeypatch, capsys):
    from msiqa import cli

    other = tmp_path / "seed3.safetensors"
    shutil.copy(small_recipe_model, other)
    card = json.loads(small_recipe_model.with_suffix(".json").read_text())
    card["train_config"]["seed"] = 3
    other.with_suffix(".json").write_text(json.dumps(card))
    pair = tmp_path / "pair.safetensors"
    assert cli.main(["ensemble", str(small_recipe_model), str(other), "--out", str(pair)]) == 0
    new = _refitted(pair, tmp_path, monkeypatch)
    old = load_model(pair)
    assert _changed(new, old) == {f"members.{i}.cause.{p}" for i in (0, 1) for p in ("weight", "bias")}
    assert new.card["members"] == old.card["members"] and new.card["refit"]["network"]["sha256"] == old.card["sha256"]
    # Members of other recipes share no training slices: refused, nothing written.
    card["train_config"]["phantom_noise_seeds"] = [2]
    other.with_suffix(".json").write_text(json.dumps(card))
    mixed = tmp_path / "mixed.safetensors"
    assert cli.main(["ensemble", str(small_recipe_model), str(other), "--out", str(mixed)]) == 0
    capsys.readouterr()
    assert cli.main(["refit", str(mixed), "--out", str(tmp_path / "never.safetensors")]) == 2
    assert "different recipes" in capsys.readouterr().err and not (tmp_path / "never.safetensors").exists()


def test_local_faults_are_pasted_on_each_scenes_best_pictures_and_their_mirrors():
    from msiqa.training.datasets import Sample, best_of_each_scene

    rng = np.random.default_rng(0)
    samples = [Sample(f"{scene}{i}", rng.integers(0, 255, (8, 6, 3), dtype=np.uint8), mos, scene)
               for i, (scene, mos) in enumerate([("B", 2.0), ("A", 3.5), ("B", 3.0), ("A", 1.0), ("A", 3.5), ("B", 3.5)])]
    by_name = {s.name: s.image for s in samples}

    default = list(refit_slices.pointing_pictures(samples, RefitConfig()))
    assert [p.tobytes() for p in default] == [s.image.tobytes() for s in best_of_each_scene(samples)]
    assert [p.tobytes() for p in default] == [by_name["B5"].tobytes(), by_name["A1"].tobytes()]

    more = list(refit_slices.pointing_pictures(samples, RefitConfig(pointing_pictures_per_scene=2, pointing_mirror=True)))
    expected = [by_name[n] for n in ("B5", "B2", "A1", "A4")]  # scene B first, as it comes; equals: the first
    assert len(more) == 8
    for k, image in enumerate(expected):
        assert np.array_equal(more[2 * k], image) and np.array_equal(more[2 * k + 1], image[:, ::-1])


def _ramp_grids(rng, n, size=6):
    """Grids whose feature 0 is a ramp of random direction and height, plus 1 on a 2x2 fault: its level
    tells nothing (the ramp reaches above it), only its difference from the cells around it does."""
    out = []
    for _ in range(n):
        yy, xx = np.mgrid[:size, :size] / (size - 1)
        a = rng.uniform(0, 2 * np.pi)
        f = np.zeros((4, size, size))
        f[0] = rng.uniform(3.0, 5.0) * (np.cos(a) * yy + np.sin(a) * xx)
        f[1:] = rng.normal(0, 0.05, (3, size, size))
        m = np.zeros((size, size), dtype=bool)
        y, x = rng.integers(1, size - 2, 2)
        m[y : y + 2, x : x + 2] = True
        f[0][m] += 1.0
        out.append((torch.from_numpy(f).float(), torch.from_numpy(m)))
    return out


def test_a_weight_head_with_neighbour_context_points_where_the_cells_alone_cannot():
    from msiqa.models.msiqa_net import NeighbourContrast

    rng = np.random.default_rng(0)
    faulted, held = _ramp_grids(rng, 60), [f for f, _ in _ramp_grids(rng, 10)]
    context = NeighbourContrast(3)
    got = {}
    for k, (grids, keep) in {"alone": (faulted, held),
                             "context": ([(context(f[None])[0], m) for f, m in faulted],
                                         [context(f[None])[0] for f in held])}.items():
        torch.manual_seed(0)
        head = torch.nn.Sequential(torch.nn.Conv2d(grids[0][0].shape[0], 8, 1), torch.nn.GELU(),
                                   torch.nn.Conv2d(8, 1, 1), torch.nn.Sigmoid())
        got[k] = fit_weight_head(head, grids, keep, hold=0.01, ridge=1e-4)["peak_in_fault_after"]
    assert got["alone"] < 0.5 and got["context"] > 0.9, got


def test_giving_a_network_weight_context_keeps_its_map_until_refitted(bundled_network, tmp_path):
    from msiqa.errors import InputError
    from msiqa.training.refit import give_weight_context
    from msiqa.weights import card_of_source, save_model

    net = copy.deepcopy(bundled_network.net)  # a copy of its own: the session's bundled network stays as it is
    x = torch.rand(2, 3, 192, 256)
    with torch.no_grad():
        before = net.eval()(x)
        give_weight_context(net, 5)
        after = net(x)
    assert net.config.weight_context == 5 and net.weight[0].in_channels == 2 * 4 * net.config.fusion_dim
    assert torch.equal(before.weight, after.weight) and torch.equal(before.score, after.score)
    with torch.no_grad():
        net.weight[0].weight[:, -1] += 1.0  # what a refit does: the new inputs get weights
    save_model(net, tmp_path / "c.safetensors", card_of_source(bundled_network.card))
    loaded = load_model(tmp_path / "c.safetensors")  # through the checksum, at the card's configuration
    assert loaded.net.config.weight_context == 5
    with torch.no_grad():
        assert torch.allclose(loaded.net.eval()(x).weight, net(x).weight, atol=1e-3)
    with pytest.raises(InputError, match="already reads a 5-cell"):
        give_weight_context(net, 3)
    untouched = copy.deepcopy(bundled_network.net)
    with pytest.raises(ValueError, match="odd neighbourhood"):
        give_weight_context(untouched, 4)
    assert untouched.config.weight_context == 0 and untouched.weight[0].in_channels == 4 * net.config.fusion_dim


def test_a_ridge_is_not_picked_from_one_scene():
    """Leaving a scene out needs another: one scene is refused by name, not fitted on nothing."""
    from msiqa.errors import InputError
    scenes = np.array(["S0"] * 4)
    with pytest.raises(InputError, match="at least two scenes .*leaving one out"):
        pick_ridge(np.ones((4, 2)), np.arange(4.0), scenes, np.ones((3, 2)), np.ones(3), np.zeros(2), [1.0], 10.0)
    with pytest.raises(InputError, match="at least two scenes .*leaving some out"):
        pick_head_ridge(lambda out: [], [], np.arange(4.0), lambda keep: keep, scenes, [1.0])
