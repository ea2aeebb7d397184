"""Model 3's scanner-made faults: the severity -> measure table, the bank, its labels and batches."""

import shutil

import numpy as np
import pytest
import torch

from msiqa.causes import CAUSES
from msiqa.render import PET_DISPLAY_MM
from msiqa.sample_data import load_sample_study
from msiqa.training.datasets import Sample
from msiqa.training.labels import CLEAN_MOS
from msiqa.training.physical_faults import (
    ANCHOR_OF, SEVERITIES, SHOWN_IN, SLICE_DEPENDENT, _where, build_bank, drop_of, measure_of, pick_slices, visibility,
)
from msiqa.training.train import IGNORE, BatchMaker, TrainConfig, focus_bank, train


def test_the_measure_table_agrees_with_the_grading_of_the_sample_study():
    """Every anchored range of the sample study was measured by phantom.grading on simulated
    slices; the table the training labels come from must give the same measure (10 %)."""
    checked = 0
    for r in load_sample_study().info["degraded_ranges"]:
        if r["fault"] not in ANCHOR_OF:
            continue
        measured = r["measured"]["value"]
        assert measure_of(r["fault"], r["severity"]["value"]) == pytest.approx(measured, rel=0.10), r["name"]
        checked += 1
    assert checked == 16


@pytest.mark.parametrize("family", sorted(SHOWN_IN))
def test_drops_grow_with_severity_and_reach_the_flag(family):
    lo, hi = SEVERITIES[family]
    drops = [drop_of(family, s) for s in np.geomspace(lo, hi, 30)]
    assert np.all(np.diff(drops) >= 0) and drops[0] < 1.0
    assert CLEAN_MOS - drops[-1] < 2.0, "the worst severity trained on must be flagged"


@pytest.fixture(scope="module")
def bank():
    return build_bank([1], noise_seed=7, slices_per_family=1, severities=2)


def test_each_fault_hits_its_own_layer_only(bank):
    assert sorted(g.family for g in bank) == sorted(SHOWN_IN)
    for g in bank:
        assert g.anatomy == 1 and _where(g.family)[0] <= g.k <= _where(g.family)[1]
        assert [f.severity for f in g.faulted] == sorted(f.severity for f in g.faulted)
        assert g.faulted[0].drop <= g.faulted[1].drop and g.faulted[0].cause in CAUSES
        for f in g.faulted:
            ct_changed = not np.array_equal(f.slice.ct_hu, g.clean.ct_hu)
            pet_changed = not np.array_equal(f.slice.pet_native, g.clean.pet_native)
            if g.family.startswith("pet_") or g.family == "misregistration":
                assert pet_changed and not ct_changed, g.family
            else:
                assert ct_changed and not pet_changed, g.family


def test_physical_groups_in_a_batch_keep_the_clean_version_first_and_label_the_rest(bank):
    dev = np.zeros((64, 64, 3), np.uint8)
    samples = [Sample(str(i), dev, 3.0, f"S{i}", 0) for i in range(2)]
    cfg = TrainConfig(batch_scenes=1, per_scene=3, crop=64, physical_scenes=2, physical_slices=1)
    make = BatchMaker(samples, cfg, physical=bank)
    for step in range(8):
        b = make(step)
        assert b["x"].shape == (3 + 2 * 3, 3, 64, 64)
        for g in (1, 2):
            mos, cause = b["mos"][b["group"] == g], b["cause"][b["group"] == g]
            assert float(mos[0]) == pytest.approx(CLEAN_MOS) and CAUSES[int(cause[0])] == "none"
            assert bool((mos[1:] <= CLEAN_MOS).all()) and bool((cause[1:] != IGNORE).all())


def test_a_lone_pet_is_trained_at_the_display_pixel_size(bank):
    slice_ = bank[0].clean
    for voxel in (None, 5.0):
        layers = slice_.layers("pet", voxel)
        assert layers.px_mm == PET_DISPLAY_MM and layers.ct_hu is None
        assert layers.pet_suv.shape[0] == round(slice_.pet_native.shape[0] * slice_.pet_px_mm / PET_DISPLAY_MM)
    coarse, fine = slice_.layers("pet", 5.5).pet_suv, slice_.layers("pet").pet_suv
    # Bigger voxels: the same activity, smoother noise.
    assert coarse.mean() == pytest.approx(fine.mean(), rel=0.05)
    assert np.abs(np.diff(coarse, axis=1)).mean() < 0.8 * np.abs(np.diff(fine, axis=1)).mean()


def test_visible_pick_trains_breathing_and_misregistration_on_the_slices_that_show_them():
    """Away from the liver dome a misregistered PET looks like the registered one; picked
    'visible', the bank takes those families from the half of their range where they show,
    and every other family exactly as the random pick does."""
    lo, hi = _where("misregistration")
    ks = np.arange(lo, hi + 1)
    shown = visibility("misregistration", 1, ks)
    assert shown.min() >= 0 and shown.max() > 3 * shown.min()  # why the pick matters
    for seed in range(5):
        picked = pick_slices("misregistration", 1, 3, np.random.default_rng(seed), "visible")
        assert len(set(picked)) == 3 and np.all(shown[picked - lo] >= np.median(shown))
    assert "ct_low_dose" not in SLICE_DEPENDENT
    assert np.array_equal(pick_slices("ct_low_dose", 1, 3, np.random.default_rng(4), "visible"),
                          pick_slices("ct_low_dose", 1, 3, np.random.default_rng(4), "random"))
    with pytest.raises(ValueError, match="pick must be one of"):
        pick_slices("misregistration", 1, 3, np.random.default_rng(0), "best")


def test_family_weights_make_the_rare_faults_frequent(bank):
    dev = np.zeros((64, 64, 3), np.uint8)
    samples = [Sample("0", dev, 3.0, "S0", 0)]
    rng = np.random.default_rng(0)
    uniform = BatchMaker(samples, TrainConfig(physical_scenes=1), physical=bank)
    weighted = BatchMaker(samples, TrainConfig(physical_scenes=1, physical_weights={"misregistration": 10.0}),
                          physical=bank)
    seen = [uniform._physical_group(rng).family for _ in range(600)]
    assert set(seen) == set(SHOWN_IN) and seen.count("misregistration") < 150  # 1 in 6
    seen = [weighted._physical_group(rng).family for _ in range(600)]
    assert set(seen) == set(SHOWN_IN) and seen.count("misregistration") > 350  # 10 in 15
    with pytest.raises(ValueError, match="names no fault family"):
        BatchMaker(samples, TrainConfig(physical_weights={"misregistation": 2.0}), physical=bank)


def test_focus_steps_train_the_named_families_alone_and_leave_the_other_steps_as_they_were(bank):
    dev = np.zeros((64, 64, 3), np.uint8)
    samples = [Sample(str(i), dev, 3.0, f"S{i}", 0) for i in range(2)]
    base = dict(batch_scenes=1, per_scene=3, crop=64, physical_scenes=1, physical_slices=1)
    plain = BatchMaker(samples, TrainConfig(**base), physical=bank)
    focused = BatchMaker(samples, TrainConfig(**base, focus_families=["misregistration"], focus_steps=[2, 4],
                                              focus_groups=3), physical=bank)
    for step in (0, 1, 4, 5):  # outside the focus: the very same batch
        a, b = plain(step), focused(step)
        assert all(torch.equal(a[k], b[k]) for k in a)
    for step in (2, 3):
        b = focused(step)
        # three misregistration groups and nothing else: no development crop, every cause
        # none (the clean first version) or misregistration
        assert b["group"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
        assert {CAUSES[int(c)] for c in b["cause"]} <= {"none", "misregistration"}
        assert "misregistration" in {CAUSES[int(c)] for c in b["cause"]}
        assert b["mos"][::3].tolist() == pytest.approx([CLEAN_MOS] * 3)
    every_other = BatchMaker(samples, TrainConfig(**base, focus_families=["misregistration"], focus_steps=[2, 6],
                                                  focus_groups=3, focus_every=2), physical=bank)
    for step in range(8):  # a focus batch at steps 2 and 4, the plain batch at the others
        a, b = plain(step), every_other(step)
        assert (step in (2, 4)) == (b["group"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2])
        assert (step in (2, 4)) != all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="focus_every must be"):
        BatchMaker(samples, TrainConfig(**base, focus_families=["misregistration"], focus_steps=[0, 4],
                                        focus_every=0), physical=bank)
    with pytest.raises(ValueError, match="focus_families names no fault family"):
        BatchMaker(samples, TrainConfig(**base, focus_families=["misreg"], focus_steps=[0, 1]), physical=bank)
    with pytest.raises(ValueError, match="focus_steps must be"):
        BatchMaker(samples, TrainConfig(**base, focus_families=["misregistration"], focus_steps=[5]), physical=bank)
    with pytest.raises(ValueError, match="have no scanner-made groups"):
        BatchMaker(samples, TrainConfig(**base, focus_families=["misregistration"], focus_steps=[0, 1]))


def test_focus_batches_draw_from_slices_that_show_the_fault_whatever_the_mixed_batches_draw(bank):
    lo, hi = _where("misregistration")
    shown = visibility("misregistration", 1, np.arange(lo, hi + 1))
    focus = dict(physical_scenes=1, physical_anatomies=[1], physical_slices=3, focus_families=["misregistration"],
                 focus_steps=[0, 1])
    assert focus_bank(TrainConfig(**focus, physical_pick="visible"), bank) is bank  # visible already
    random_mixed = TrainConfig(**focus)
    groups = focus_bank(random_mixed, bank)
    assert len(groups) == 3 and {g.family for g in groups} == {"misregistration"}
    assert all(shown[g.k - lo] >= np.median(shown) for g in groups)
    samples = [Sample("0", np.zeros((64, 64, 3), np.uint8), 3.0, "S0", 0)]
    maker = BatchMaker(samples, random_mixed, physical=bank, focus=groups[:1])
    rng = np.random.default_rng(0)
    assert all(maker._physical_group(rng, focus=True) is groups[0] for _ in range(5))
    assert {maker._physical_group(rng).family for _ in range(60)} == set(SHOWN_IN)  # mixed: the whole bank


def test_a_focus_step_leaves_the_normalisation_statistics_and_if_asked_the_weight_map_alone(tmp_path):
    dev = np.full((96, 96, 3), 90, np.uint8)
    dev[20:70, 30:60] = 200
    samples = [Sample(f"{s}{v}", dev // (v + 1), 3.0 - v, f"S{s}", v) for s in range(2) for v in range(2)]
    cfg = dict(steps=1, batch_scenes=2, per_scene=2, crop=64, warmup=1, synthetic=0.0, physical_scenes=1,
               physical_anatomies=[1], physical_slices=1, physical_pick="visible",
               focus_families=["misregistration"], focus_steps=[1, 2], focus_groups=2)
    quiet = dict(progress=False, log=lambda m: None)
    run, fixed_run = tmp_path / "run", tmp_path / "fixed-attention"
    before = {k: v.clone() for k, v in train(samples, TrainConfig(**cfg), out_dir=run, **quiet).state_dict().items()}
    shutil.copytree(run, fixed_run)  # both resume from the same step-1 checkpoint
    net = train(samples, TrainConfig(**{**cfg, "steps": 2}), out_dir=run, **quiet)  # step 1: focus
    assert all(m.momentum == 0.1 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))  # as created
    after = net.state_dict()
    stats = [k for k in after if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(after[k], before[k]) for k in stats)
    assert any(not torch.equal(after[k], before[k]) for k in after if k.endswith("weight") and after[k].ndim == 4)
    head = [k for k in after if k.startswith("weight.")]
    assert head and any(not torch.equal(after[k], before[k]) for k in head)

    # focus_attention False: the same focus step leaves the weight map's head as it was (the
    # scores still learn), since a global fault says nothing about where to look.
    fixed = train(samples, TrainConfig(**{**cfg, "steps": 2, "focus_attention": False}),
                  out_dir=fixed_run, **quiet).state_dict()
    assert all(torch.equal(fixed[k], before[k]) for k in head)
    assert any(not torch.equal(fixed[k], before[k]) for k in fixed if k.startswith("score."))
