"""The CV benchmark's rows: what recipe each one trains (benchmarks/accuracy.py)."""

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

from msiqa.training.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_RECIPE = ROOT / "MSIQA/msiqa/weights/msiqa-compact.train.json"


@pytest.fixture(scope="module")
def accuracy():
    spec = importlib.util.spec_from_file_location("accuracy", ROOT / "benchmarks/accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def args_for(recipe: dict, tmp_path: Path, seed_offset: int = 0) -> argparse.Namespace:
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    return argparse.Namespace(recipe=str(path), seed_offset=seed_offset)


def test_a_rows_network_change_keeps_the_recipes_own(accuracy, tmp_path):
    # A ResNet-only recipe's "no AGCA" ablation must stay ResNet-only: replacing the recipe's
    # overrides with the row's would silently cross-validate the two-branch network instead.
    args = args_for({"preset": "compact", "overrides": {"branches": "cnn"}, "steps": 10}, tmp_path)
    assert accuracy.row_recipe("ablation: no AGCA", args)["overrides"] == {"branches": "cnn", "agca": False}
    assert accuracy.row_recipe("ablation: both branches (fusion)", args)["overrides"] == {"branches": "both"}


def test_a_row_that_changes_nothing_is_the_recipe_itself(accuracy, tmp_path):
    cnn = args_for({"preset": "compact", "overrides": {"branches": "cnn"}}, tmp_path)
    assert accuracy.same_as_recipe("ablation: ResNet branch only", cnn)
    assert not accuracy.same_as_recipe("ablation: both branches (fusion)", cnn)
    both = args_for({"preset": "compact"}, tmp_path)
    assert accuracy.same_as_recipe("ablation: both branches (fusion)", both)  # the preset's default, spelt out
    assert not accuracy.same_as_recipe("ablation: ResNet branch only", both)


def test_every_row_of_the_bundled_recipe_is_a_valid_training_recipe(accuracy, tmp_path):
    args = args_for(json.loads(BUNDLED_RECIPE.read_text()), tmp_path, seed_offset=3)
    for row in accuracy.ROWS:
        config = TrainConfig(**{**accuracy.row_recipe(row, args), "seed": accuracy.seed_of(1, args)})
        assert config.seed == 4
        assert config.overrides.get("branches", "both") in ("both", "cnn", "swin"), row


def test_another_seed_offset_never_resumes_the_first_ones_checkpoints(accuracy, tmp_path):
    common = dict(checkpoints=str(tmp_path), recipe_sha="r", code_sha="c", steps=10, folds=3)
    first = accuracy.checkpoint_dir("compact (bundled configuration)", 0, argparse.Namespace(**common, seed_offset=0))
    again = accuracy.checkpoint_dir("compact (bundled configuration)", 0, argparse.Namespace(**common, seed_offset=3))
    assert first != again
