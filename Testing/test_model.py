"""The bundled, trained model: its card, its checksum, and what it says about real degradations."""

import json

import numpy as np
import pytest

from msiqa.assess import assess
from msiqa.sample_data import load_sample_study
from msiqa.weights import WEIGHTS_DIR, bundled_models, sha256_of


def test_bundled_card_describes_a_trained_model(bundled_model):
    card = bundled_model.card
    assert card["name"] == "msiqa-compact"
    assert card["sha256"] == sha256_of(WEIGHTS_DIR / "msiqa-compact.safetensors")
    assert card["training_data"]["scenes"] >= 12
    assert card["train_config"]["steps"] > 0
    assert "cross_validation" in card and card["cross_validation"]["srocc"]["mean"] > 0
    assert (WEIGHTS_DIR / "msiqa-compact.safetensors").stat().st_size <= 25 * 2**20
    assert [c["name"] for c in bundled_models()] == ["msiqa-compact"]
    # The description names the branches the weights were built with, not the full design.
    assert ("Swin" in card["architecture"].split(",")[0]) == (card["config"]["branches"] in ("both", "swin"))


def test_training_recipe_is_committed_beside_the_weights(bundled_model):
    recipe = json.loads((WEIGHTS_DIR / "msiqa-compact.train.json").read_text())
    assert recipe == bundled_model.card["train_config"]
    # An ensemble's members are that recipe at their own seeds.
    for member in bundled_model.card.get("members", []):
        assert {**member["train_config"], "seed": recipe["seed"]} == recipe
    # Every real study the recipe trains on is named where the card says where they come from.
    studies = bundled_model.card["training_data"]["clinical_studies"]
    assert studies["volumes"] == recipe["clinical_volumes"]
    assert studies.get("tail_volumes", []) == recipe.get("tail_clinical_volumes", [])


@pytest.fixture(scope="module")
def sample_assessment(bundled_model):
    study = load_sample_study()
    return study, assess(ct=study.ct_path, pet=study.pet_path, model=bundled_model, device="cpu")


def test_sample_study_degraded_slices_score_lower_than_clean(sample_assessment):
    study, a = sample_assessment
    degraded = a.scores[study.degraded_slices()]
    clean = a.scores[study.clean_slices()]
    assert degraded.mean() < clean.mean()
    # and the ranges a reader would reject lower than the ones a reader would accept
    accepted = {True: [], False: []}
    for r in study.info["degraded_ranges"]:
        accepted[r["clinically_acceptable"]].extend(range(r["first"], r["last"] + 1))
    assert a.scores[accepted[False]].mean() < a.scores[accepted[True]].mean()


def test_heavily_compressed_sample_slices_score_below_every_clean_neighbourhood(sample_assessment):
    study, a = sample_assessment
    ranges = {r["name"]: r for r in study.info["degraded_ranges"]}
    r = ranges["compression_q8"]
    compressed = a.scores[r["first"] : r["last"] + 1]
    assert compressed.max() < np.median(a.scores[study.clean_slices()])


def test_flagged_sample_slices_are_named_after_their_fault(sample_assessment):
    """Every flagged slice of a degraded range carries its range's cause (model 8's head, before the
    refit on whole slices, called the 15 mm CT motion streaks)."""
    study, a = sample_assessment
    checked = 0
    for r in study.info["degraded_ranges"]:
        for k in range(r["first"], r["last"] + 1):
            if a.flagged[k]:
                assert a.causes[k] == r["cause"], (r["name"], k, a.causes[k])
                checked += 1
    assert checked >= 20


def test_the_card_records_the_refit_and_the_network_it_started_from(bundled_model):
    refit = bundled_model.card["refit"]
    assert refit["command"].startswith("msiqa refit ") and len(refit["network"]["sha256"]) == 64
    assert refit["network"]["sha256"] != bundled_model.card["sha256"]
    assert set(refit["unseen_left_out"]) == {"misregistration", "pet_respiratory_motion"}
    assert refit["cause_examples"]["none"] > 0 and "misregistration" not in refit["cause_examples"]
    # The weight head was fitted to point at local faults, then the score layer on the development
    # pictures: the card says how and gives the refit's CV.
    assert "--weight-head" in refit["command"]
    # An ensemble's members keep a weight head each, each fitted to point.
    weights = refit["weight"] if isinstance(refit["weight"], list) else [refit["weight"]]
    assert len(weights) == len(bundled_model.card.get("members", [None]))
    for weight in weights:
        assert weight["peak_in_fault_after"] > weight["peak_in_fault_before"]
        assert weight["local_faults"] > 0 and weight["held_grids"] > weight["local_faults"]
    score = refit["score"]
    assert "--score-layer" in refit["command"] and score["labelled_pictures"] >= 12 * 27 and score["scenes"] >= 12
    assert score["ridge"] in refit["score_ridges"] and score["held_slices"] == sum(refit["cause_examples"].values())
    cv = refit["cross_validation"]
    assert len(cv["folds"]) >= 3 and cv["srocc"]["refitted"] > cv["srocc"]["trained"]
    # Real PETs shown alone and clean in the refit only, held no lower than the floor: the command
    # names them, and the card's data section says where they come from and that they are not here.
    shown = refit["clean_volumes"]
    options = {"clean_volumes": shown, "score_clinical_floor": 2.5, "clean_ct_noise_hu": refit["clean_ct_noise_hu"],
               "score_hidden": refit["score_hidden"], "score_hidden_ridges": refit["score_hidden_ridges"]}
    assert shown and f"--refit-options '{json.dumps(options, sort_keys=True)}'" in refit["command"]
    # The whole score head was fitted after its last layer on the same slices, its ridge the candidate
    # that ranked left-out scene groups best, better than the layer alone (refit.pick_head_ridge).
    hidden = score["hidden"]
    srocc = hidden["left_out_scene_groups_srocc"]
    assert hidden["ridge"] in refit["score_hidden_ridges"] and hidden["slices"] == score["held_slices"] + 324
    assert srocc[str(hidden["ridge"])] == max(srocc.values()) > srocc["layer"]
    assert hidden["weighted_error_after"] < hidden["weighted_error_before"]
    assert refit["score_clinical_floor"] > 2.0  # above the flag threshold
    clinical = bundled_model.card["training_data"]["clinical_studies"]
    assert clinical["refit_clean_volumes"]["volumes"] == shown and "Not distributed" in clinical["refit_clean_volumes"]["source"]


def test_a_weight_beyond_float16_is_refused_before_any_file_is_written(tmp_path):
    # A refit once fitted a cause weight past 65504: in float16 it became inf, every cause NaN, and
    # every slice, flagged or not, was named "none".
    import torch

    from msiqa.errors import WeightsError
    from msiqa.models import create_model
    from msiqa.weights import load_model, save_model

    net = create_model("compact", branches="cnn")
    name, weight = next((n, p) for n, p in net.named_parameters() if n.startswith("score."))
    with torch.no_grad():
        weight.view(-1)[0] = 1e6
    with pytest.raises(WeightsError, match=rf"{name} does not fit in float16.*float32"):
        save_model(net, tmp_path / "big.safetensors", {"name": "big"})
    assert list(tmp_path.iterdir()) == []
    save_model(net, tmp_path / "big.safetensors", {"name": "big"}, half=False)
    loaded = load_model(tmp_path / "big.safetensors")
    assert float(loaded.net.state_dict()[name].view(-1)[0]) == 1e6
