"""Model 2's training signal: the label rule, the clinical layer faults, and the batches made of them."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from msiqa.causes import CAUSES
from msiqa.errors import InputError
from msiqa.sample_data import load_sample_study
from msiqa.render import SliceRenderer
from msiqa.training.datasets import Sample
from msiqa.training.labels import ANCHORS, CLEAN_MOS, FLAG_AT, NAMED_FROM, faulted_score
from msiqa.training.layer_faults import FAULTS, LIVER_SUV, Layers, applicable, apply_fault
from msiqa.training.phantom_bank import MODES, PhantomSlice, clinical_slices, render_layers, vary
from msiqa.training.train import IGNORE, BatchMaker, TrainConfig, train

# --- the label rule -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ANCHORS))
def test_each_anchor_is_monotone_and_places_its_limits_on_the_scale(name):
    a = ANCHORS[name]
    assert a.ok < a.bad < a.worst and a.why and a.unit
    measures = np.linspace(0, 2 * a.worst, 400)
    drops = np.array([a.drop(m) for m in measures])
    assert np.all(np.diff(drops) >= 0), "a stronger fault never scores better"
    assert a.drop(a.ok) == 0.0
    # At the limit of acceptability a clean picture is flagged, just; beyond 'worst' it is unusable.
    assert faulted_score(CLEAN_MOS, a.drop(a.bad)) < FLAG_AT < faulted_score(CLEAN_MOS, a.drop(0.9 * a.bad) - 0.3)
    assert faulted_score(CLEAN_MOS, a.drop(a.worst)) == pytest.approx(0.2)


def test_a_degradation_never_raises_the_score():
    for source in np.linspace(0, 4, 17):
        for drop in np.linspace(-1, 5, 25):
            assert 0.0 <= faulted_score(source, drop) <= source


# --- layer faults ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def layers():
    """A smooth body: CT soft tissue (40 HU) in air, PET at liver level inside it, 2 mm pixels."""
    yy, xx = np.mgrid[:128, :128]
    body = ((yy - 64) / 50.0) ** 2 + ((xx - 64) / 58.0) ** 2 < 1
    ct = np.where(body, 40.0, -1000.0).astype(np.float32)
    pet = np.where(body, LIVER_SUV, 0.0).astype(np.float32)
    return Layers(ct, pet, 2.0)


def _cov(pet, where):
    return float(pet[where].std() / pet[where].mean())


ROI = (slice(44, 84), slice(44, 84))  # inside the body, away from its edge


def test_pet_low_counts_reach_the_liver_cov_they_claim(layers):
    covs = []
    for s in (0.0, 0.3, 0.6, 1.0):
        out, applied = apply_fault(layers, "pet_low_counts", s, np.random.default_rng(1))
        measured = _cov(out.pet_suv, ROI)
        # The uniform phantom had no noise: all of it is the added part, sqrt(COV^2 - 0.10^2).
        assert measured == pytest.approx(np.sqrt(applied.measure**2 - 0.10**2), rel=0.25, abs=0.01)
        assert np.array_equal(out.ct_hu, layers.ct_hu), "low counts leave the CT alone"
        covs.append(measured)
    assert np.all(np.diff(covs) > 0)


def test_ct_low_dose_adds_the_noise_sd_it_claims(layers):
    sds = []
    for s in (0.0, 0.3, 0.6):  # below the photon-starvation streaks
        out, applied = apply_fault(layers, "ct_low_dose", s, np.random.default_rng(2))
        sd = float(out.ct_hu[ROI].std())
        assert sd == pytest.approx(applied.measure, rel=0.2)
        assert np.array_equal(out.pet_suv, layers.pet_suv)
        sds.append(sd)
    assert np.all(np.diff(sds) > 0)


def test_misregistration_shifts_the_pet_by_the_claimed_distance(layers):
    for s in (0.2, 0.8):
        out, applied = apply_fault(layers, "misregistration", s, np.random.default_rng(3))
        c0 = np.array(ndimage.center_of_mass(layers.pet_suv))
        c1 = np.array(ndimage.center_of_mass(out.pet_suv))
        assert np.hypot(*(c1 - c0)) * layers.px_mm == pytest.approx(applied.measure, abs=layers.px_mm)
        assert np.array_equal(out.ct_hu, layers.ct_hu)


def test_pet_motion_blurs_more_when_stronger():
    pet = np.zeros((96, 96), np.float32)
    pet[48, 48] = 100.0  # a point source: its peak falls as the blur widens
    peaks = []
    for s in (0.1, 0.5, 1.0):
        out, applied = apply_fault(Layers(None, pet, 2.0), "motion", s, np.random.default_rng(4))
        assert applied.anchor == "pet_motion"
        peaks.append(float(out.pet_suv.max()))
    assert peaks[0] > peaks[1] > peaks[2]


def test_metal_streaks_grow_with_strength(layers):
    dev = []
    for s in (0.1, 0.5, 1.0):
        out, applied = apply_fault(layers, "streaks", s, np.random.default_rng(5))
        body = layers.ct_hu > -300
        dev.append(float(np.percentile(np.abs(out.ct_hu - layers.ct_hu)[body], 95)))
        assert out.ct_hu.max() == 3000.0, "the metal itself"
    assert dev[0] < dev[1] < dev[2]


@pytest.mark.parametrize("family", sorted(FAULTS))
def test_each_fault_scores_lower_when_stronger(layers, family):
    drops = [apply_fault(layers, family, s, np.random.default_rng(6))[1].drop for s in np.linspace(0, 1, 6)]
    assert np.all(np.diff(drops) >= 0) and drops[-1] > NAMED_FROM


def test_a_local_fault_stays_in_its_region(layers):
    region = (slice(0, 64), slice(64, 128))
    out, _ = apply_fault(layers, "streaks", 1.0, np.random.default_rng(7), region)
    changed = out.ct_hu != layers.ct_hu
    assert changed[region].any()
    changed[region] = False
    assert not changed.any()


def test_faults_only_touch_the_layers_a_display_has(layers):
    assert set(applicable(Layers(layers.ct_hu, None, 2.0))) == {"ct_low_dose", "motion", "streaks"}
    assert set(applicable(Layers(None, layers.pet_suv, 2.0))) == {"pet_low_counts", "motion"}
    assert set(applicable(layers)) == set(FAULTS)


# --- batches --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phantom_slices():
    """Clean slices of the shipped sample study, with their layers, as the phantom bank gives them."""
    study = load_sample_study()
    ct, pet = sitk.ReadImage(str(study.ct_path)), sitk.ReadImage(str(study.pet_path))
    pet_on_ct = sitk.Resample(pet, ct, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    suv = study.info["pet_suv_factor"]["suv_per_bqml"]
    ks = study.clean_slices()[:4]
    hu = sitk.GetArrayFromImage(ct).astype(np.float32)
    on_ct, native = sitk.GetArrayFromImage(pet_on_ct) * suv, sitk.GetArrayFromImage(pet).astype(np.float32) * suv
    return [PhantomSlice(f"s{k}", hu[k], on_ct[k], native[k], ct.GetSpacing()[0], pet.GetSpacing()[0]) for k in ks]


def test_every_display_mode_renders_like_the_engine(phantom_slices):
    study = load_sample_study()
    k = study.clean_slices()[0]
    engine = SliceRenderer(ct=study.ct_path).render(k, k + 1)[0]
    ours = render_layers(phantom_slices[0].layers("ct"))
    assert np.abs(ours.astype(int) - engine.astype(int)).max() <= 1
    for mode in MODES:
        pic = render_layers(vary(phantom_slices[0].layers(mode), np.random.default_rng(0)))
        assert pic.dtype == np.uint8 and pic.ndim == 3


def test_batches_label_every_crop_and_never_reward_a_fault(phantom_slices):
    pics = SliceRenderer(ct=load_sample_study().ct_path, pet=load_sample_study().pet_path).render(12, 16)
    samples = [Sample(f"{i}", pics[i], 3.5 - i * 0.5, f"S{i % 2}", 0) for i in range(4)]
    cfg = TrainConfig(batch_scenes=2, per_scene=4, crop=64, synthetic=0.8, layer_faults=0.5, local=0.5,
                      phantom_scenes=2, clinical_scenes=1, clean_share=0.3, cause_weight=1.0, attention_weight=1.0)
    # A PET read alone, as a real study is read: its own grid and SUV scaling, one display mode.
    study = load_sample_study()
    clinical = clinical_slices(pet=study.pet_path, every=10)
    assert len(clinical) == len(range(0, study.info["n_slices"], 10)) and all(c.modes == ("pet",) for c in clinical)
    engine = SliceRenderer(pet=study.pet_path).render(10, 11)[0]
    assert np.abs(render_layers(clinical[1].layers("pet")).astype(int) - engine.astype(int)).max() <= 1
    make = BatchMaker(samples, cfg, [phantom_slices], [clinical])
    seen_causes = set()
    for step in range(6):
        b = make(step)
        n = b["x"].shape[0]
        assert b["x"].shape == (n, 3, 64, 64) and n == (2 + 2 + 1) * 4
        assert float(b["mos"].min()) >= 0 and float(b["mos"].max()) <= 4
        named = b["cause"] != IGNORE
        assert bool(((b["cause"][named] >= 0) & (b["cause"][named] < len(CAUSES))).all())
        seen_causes |= {CAUSES[int(c)] for c in b["cause"][named]}
        # A region is marked only where a named fault is, and then covers some but not all cells.
        cells = b["region"].flatten(1).sum(1)
        assert bool(((cells == 0) | ((cells > 0) & (cells < 4))).all())
        assert bool((b["cause"][cells > 0] != CAUSES.index("none")).all())
        # Simulated then real groups come last: the clean version first, every other no higher.
        for g in (2, 3, 4):
            mos = b["mos"][b["group"] == g]
            assert float(mos[0]) == pytest.approx(CLEAN_MOS) and bool((mos[1:] <= mos[0]).all())
    assert "none" in seen_causes and len(seen_causes) >= 3


def test_a_tail_adds_real_studies_without_changing_the_steps_before_it():
    """Real studies named for the tail only: the recipe's first ``steps`` draw exactly what the recipe
    without them draws (so the tail can resume from its checkpoint), the tail draws from both."""
    study = load_sample_study()
    pics = SliceRenderer(ct=study.ct_path, pet=study.pet_path).render(12, 14)
    samples = [Sample(f"{i}", pics[i], 3.5 - i * 0.5, f"S{i}", 0) for i in range(2)]
    pet_alone, ct_alone = clinical_slices(pet=study.pet_path, every=20), clinical_slices(ct=study.ct_path, every=20)
    base = dict(batch_scenes=2, per_scene=3, crop=64, synthetic=0.0, clinical_scenes=1, steps=4)
    cfg = TrainConfig(**base, tail_steps=20, tail_lr=1e-4, tail_clinical_volumes=[{"ct": "ct"}])
    make = BatchMaker(samples, cfg, clinical=[pet_alone], tail_clinical=[ct_alone])
    plain = BatchMaker(samples, TrainConfig(**base), clinical=[pet_alone])
    for step in range(4):
        assert torch.equal(make(step)["x"], plain(step)["x"])

    def real_group_is_grey(b):  # a CT alone renders grey, a PET alone in colour
        x = b["x"][b["group"] == 2]
        return bool((x[:, 0] == x[:, 1]).all() and (x[:, 1] == x[:, 2]).all())

    assert not any(real_group_is_grey(make(step)) for step in range(4))
    assert any(real_group_is_grey(make(step)) for step in range(4, 24))
    for bad in (dict(tail_clinical_volumes=[{"ct": "ct"}]), dict(tail_steps=2, tail_lr=1e-4, clinical_scenes=0,
                                                                 tail_clinical_volumes=[{"ct": "ct"}])):
        with pytest.raises(ValueError, match="needs tail_steps and clinical_scenes > 0"):
            TrainConfig(**{**base, **bad})


def test_a_recipe_with_real_studies_and_no_folder_for_them_names_its_key_and_the_option():
    samples = [Sample("0", np.zeros((64, 64, 3), np.uint8), 3.0, "S0", 0)]
    cfg = TrainConfig(batch_scenes=1, per_scene=1, crop=64, synthetic=0.0, phantom_scenes=0, physical_scenes=0,
                      clinical_scenes=1, steps=1, tail_steps=1, tail_lr=1e-4, tail_clinical_volumes=[{"ct": "ct"}])
    with pytest.raises(InputError, match=r"\(tail_clinical_volumes\): give the folder .* \(--clinical-root\)"):
        train(samples, cfg, progress=False, log=lambda m: None)


def test_a_pooled_clinical_entry_is_one_study_of_all_its_volumes():
    """A role holding a list (many short crops) is drawn as one study, its slices those of every volume."""
    from msiqa.training.phantom_bank import clinical_study

    study = load_sample_study()
    root, name = study.pet_path.parent, study.pet_path.name
    one = clinical_study({"pet": name}, root, every=20)
    pooled = clinical_study({"pet": [name, name]}, root, every=20)
    assert len(one) == len(clinical_slices(pet=study.pet_path, every=20)) and len(pooled) == 2 * len(one)
    assert all(np.array_equal(a.pet_native, b.pet_native) for a, b in zip(pooled, one + one))
    with pytest.raises(ValueError, match="one role with a list"):
        clinical_study({"pet": [name], "ct": study.ct_path.name}, root)


def test_a_recipe_that_pools_volumes_beside_another_role_is_refused_when_read():
    with pytest.raises(ValueError, match="one role with a list"):
        TrainConfig(clinical_scenes=1, clinical_volumes=[{"pet": ["a", "b"], "ct": "c"}])
    # A role the renderer does not know is refused as early, not when the volumes are read.
    with pytest.raises(ValueError, match="maps 'ct' and / or 'pet' to paths"):
        TrainConfig(clinical_scenes=1, clinical_volumes=[{"mr": "a"}])
