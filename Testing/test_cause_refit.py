"""The cause head refitted on whole slices (`msiqa refit-causes`): only the head changes."""

from __future__ import annotations

import functools
import json
import shutil

import numpy as np
import pytest
import torch

from msiqa.causes import CAUSES
from msiqa.training import cause_refit
from msiqa.training.cause_refit import RefitConfig, fit_head


def test_fit_head_separates_the_causes_it_has_examples_of_and_never_names_the_others():
    rng = np.random.default_rng(0)
    centres = {0: rng.normal(0, 3, 16), 1: rng.normal(0, 3, 16), 8: rng.normal(0, 3, 16)}
    counts = {0: 300, 1: 12, 8: 40}  # far fewer compressed than clean examples
    x = np.concatenate([centres[c] + rng.normal(0, 1, (n, 16)) for c, n in counts.items()]).astype(np.float32)
    y = np.concatenate([[c] * n for c, n in counts.items()])
    w, b = fit_head(x, y, len(CAUSES), l2=1e-3, none_weight=1.0)
    assert w.shape == (len(CAUSES), 16) and b.shape == (len(CAUSES),)
    fresh = {c: centres[c] + rng.normal(0, 1, (50, 16)) for c in counts}
    for c, pts in fresh.items():
        named = (torch.from_numpy(pts).float() @ w.T + b).argmax(1).numpy()
        assert (named == c).mean() > 0.9, CAUSES[c]
    anywhere = (torch.from_numpy(rng.normal(0, 6, (500, 16))).float() @ w.T + b).argmax(1).numpy()
    assert set(anywhere) <= set(counts)


def test_fit_head_needs_clean_examples_and_a_fault():
    from msiqa.errors import InputError

    x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    with pytest.raises(InputError, match="clean slices and at least one fault"):
        fit_head(x, np.full(20, 8), len(CAUSES), 1e-3, 1.0)


SMALL = functools.partial(RefitConfig, trials_per_patient=12, physical_noise_seeds=[7], physical_slices=1)


@pytest.fixture(scope="module")
def small_recipe_model(tmp_path_factory, bundled_model):
    """The bundled network with a card whose recipe names one simulated patient and no real volumes,
    so that a refit runs in seconds (same code, smaller budget)."""
    folder = tmp_path_factory.mktemp("refit")
    src = folder / "net.safetensors"
    shutil.copy(bundled_model.path, src)
    card = json.loads(bundled_model.path.with_suffix(".json").read_text())
    card["train_config"].update(phantom_anatomies=[1], phantom_noise_seeds=[1], physical_anatomies=[1],
                                clinical_volumes=[])
    src.with_suffix(".json").write_text(json.dumps(card))
    return src


def test_refit_command_changes_the_cause_head_and_nothing_else(small_recipe_model, bundled_model, tmp_path, monkeypatch):
    from msiqa import cli
    from msiqa.assess import Scorer
    from msiqa.training.phantom_bank import render_layers, simulate_slices
    from msiqa.weights import load_model

    monkeypatch.setattr(cause_refit, "RefitConfig", SMALL)
    out = tmp_path / "refit.safetensors"
    before = small_recipe_model.read_bytes()
    assert cli.main(["refit-causes", str(small_recipe_model), "--out", str(out)]) == 0
    assert small_recipe_model.read_bytes() == before
    new = load_model(out)  # through the checksum
    old = bundled_model.net.state_dict()
    changed = {k for k, v in new.net.state_dict().items() if not torch.equal(v, old[k])}
    assert changed == {"cause.weight", "cause.bias"}
    refit = new.card["cause_refit"]
    assert refit["network"]["sha256"] == bundled_model.card["sha256"]
    assert refit["command"] == f"msiqa refit-causes net.safetensors --out {out.name}"
    assert refit["trials_per_patient"] == 12 and refit["unseen_left_out"] == ["misregistration", "pet_respiratory_motion"]
    assert "misregistration" not in refit["examples"] and refit["examples"]["none"] > 0
    assert new.card["train_config"] == json.loads(small_recipe_model.with_suffix(".json").read_text())["train_config"]

    pictures = np.stack([render_layers(s.layers("petct")) for s in simulate_slices(3, 2)[40:43]])
    a, b = Scorer(bundled_model, "cpu")(pictures), Scorer(new, "cpu")(pictures)
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.maps, b.maps)
    assert not np.allclose(a.causes, b.causes)


def test_refit_command_refuses_what_it_cannot_refit_and_writes_nothing(small_recipe_model, bundled_model, tmp_path, capsys):
    from msiqa import cli

    assert cli.main(["refit-causes", str(small_recipe_model), "--out", str(small_recipe_model)]) == 2
    assert "write the refitted one to a new file" in capsys.readouterr().err
    # The bundled recipe shows real volumes as clean: without their folder the refit stops first.
    assert cli.main(["refit-causes", str(bundled_model.path), "--out", str(tmp_path / "r.safetensors")]) == 2
    assert "--clinical-root" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

