"""benchmarks/heatmap.py: development pictures asked for by name never silently become a simulated-only table;
a trial is judged by where the map peaks and whether the score drops."""

import dataclasses
import re
from argparse import Namespace

import numpy as np
import pytest


@pytest.fixture(scope="module")
def heatmap(benchmark_script):
    return benchmark_script("heatmap")


@pytest.mark.parametrize("asked", [{"scenes": ["S01", "S05"], "sources": None},
                                   {"scenes": None, "sources": ["development"]}])
def test_development_pictures_asked_for_without_the_data_is_an_error_that_names_the_folder(heatmap, tmp_path, asked):
    args = Namespace(data=str(tmp_path), noise_seeds=[11], anatomies=[101], **asked)
    with pytest.raises(SystemExit, match=f"no development data at {re.escape(str(tmp_path))}.*give --data"):
        next(heatmap.sources(args))


def test_a_trial_is_judged_by_the_maps_peak_and_the_score_and_pointing_is_also_given_where_it_dropped(heatmap,
                                                                                                         bundled_model):
    """A real trial, made as the benchmark makes them: impulse pixels in one square of a sample-study slice,
    scored by the bundled model, whose map peaks there (its held-out pointing for impulse is 94-100 %)."""
    from msiqa.assess import Scorer
    from msiqa.render import SliceRenderer
    from msiqa.sample_data import load_sample_study
    from msiqa.training.layer_faults import Layers

    study = load_sample_study()
    clean = SliceRenderer(ct=study.ct_path, pet=study.pet_path).render(20, 21)[0]
    trial = heatmap.make_trial(Layers.of_picture(clean, 1.0), "impulse", np.random.default_rng(0), local=True,
                               region_px=64, source="sample", picture=clean)
    scorer = Scorer(bundled_model, "cpu")
    assert heatmap.judge(scorer, trial) == (True, True)
    in_the_air = dataclasses.replace(trial, region=(slice(0, 32), slice(0, 32)))  # the map's peak is elsewhere
    assert heatmap.judge(scorer, in_the_air) == (False, True)

    got = heatmap.cell([(True, True), (False, True), (True, False), (False, False)])
    assert got == {"pointing": 0.5, "score_dropped": 0.5, "trials": 4, "pointing_when_dropped": 0.5}
    assert heatmap.cell([(True, False)])["pointing_when_dropped"] is None
