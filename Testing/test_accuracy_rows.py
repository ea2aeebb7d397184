"""The CV benchmark's rows: what recipe each one trains (benchmarks/accuracy.py)."""

import argparse
import json
from pathlib import Path

import pytest

from msiqa.training.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_RECIPE = ROOT / "MSIQA/msiqa/weights/msiqa-compact.train.json"


@pytest.fixture(scope="module")
def accuracy(benchmark_script):
    return benchmark_script("accuracy")


def args_for(recipe: dict, seed_offset: int = 0) -> argparse.Namespace:
    """What accuracy.py's main() puts into args: the recipe as read from its file."""
    return argparse.Namespace(base_recipe=recipe, seed_offset=seed_offset)


def test_a_rows_network_change_keeps_the_recipes_own(accuracy):
    # A ResNet-only recipe's "no AGCA" ablation must stay ResNet-only: replacing the recipe's
    # overrides with the row's would silently cross-validate the two-branch network instead.
    args = args_for({"preset": "compact", "overrides": {"branches": "cnn"}, "steps": 10})
    assert accuracy.row_recipe("ablation: no AGCA", args)["overrides"] == {"branches": "cnn", "agca": False}
    assert accuracy.row_recipe("ablation: both branches (fusion)", args)["overrides"] == {"branches": "both"}


def test_a_row_that_changes_nothing_is_the_recipe_itself(accuracy):
    cnn = args_for({"preset": "compact", "overrides": {"branches": "cnn"}})
    assert accuracy.same_as_recipe("ablation: ResNet branch only", cnn)
    assert not accuracy.same_as_recipe("ablation: both branches (fusion)", cnn)
    both = args_for({"preset": "compact"})
    assert accuracy.same_as_recipe("ablation: both branches (fusion)", both)  # the preset's default, spelt out
    assert not accuracy.same_as_recipe("ablation: ResNet branch only", both)


def test_every_row_of_the_bundled_recipe_is_a_valid_training_recipe(accuracy):
    args = args_for(json.loads(BUNDLED_RECIPE.read_text()), seed_offset=3)
    for row in accuracy.ROWS:
        config = TrainConfig(**{**accuracy.row_recipe(row, args), "seed": accuracy.seed_of(1, args)})
        assert config.seed == 4
        assert config.overrides.get("branches", "both") in ("both", "cnn", "swin"), row


def test_another_seed_offset_never_resumes_the_first_ones_checkpoints(accuracy, tmp_path):
    common = dict(checkpoints=str(tmp_path), recipe_sha="r", code_sha="c", steps=10, folds=3)
    first = accuracy.checkpoint_dir("compact (bundled configuration)", 0, argparse.Namespace(**common, seed_offset=0))
    again = accuracy.checkpoint_dir("compact (bundled configuration)", 0, argparse.Namespace(**common, seed_offset=3))
    assert first != again


def test_a_kept_fold_network_loads_and_names_the_scenes_it_never_saw(accuracy, tmp_path):
    from msiqa.models.msiqa_net import create_model
    from msiqa.weights import load_model

    args = argparse.Namespace(checkpoints=str(tmp_path), recipe_sha="r", code_sha="c", steps=10, folds=3,
                              seed_offset=3, keep_networks=str(tmp_path / "kept"))
    net = create_model("compact", branches="cnn").eval()
    path = accuracy.keep_network(net, "compact (bundled configuration)", 1, ["S02", "S05"], args)
    kept = load_model(path)  # checksum verified against the card
    assert kept.card["held_out_scenes"] == ["S02", "S05"] and kept.card["seed"] == 4
    assert kept.net.config == net.config
    assert path.stem == accuracy.checkpoint_dir("compact (bundled configuration)", 1, args).name
