"""benchmarks/picture_noise.py: the CT's soft-tissue noise and the development grid's noise levels,
on data whose noise is known."""

import csv

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def picture_noise(benchmark_script):
    return benchmark_script("picture_noise")


def body(sd: float, seed: int = 0) -> np.ndarray:
    """Soft tissue (40 HU) with white noise of ``sd`` HU in air, a bone ring and fat beside it."""
    rng = np.random.default_rng(seed)
    j, i = np.mgrid[:96, :96]
    r = np.hypot(j - 48, i - 48)
    hu = np.where(r < 44, 40.0, -1000.0)
    hu[(r > 20) & (r < 24)] = 700.0
    hu[(r < 44) & (i > 70)] = -100.0
    return np.stack([hu + rng.normal(0.0, sd, hu.shape) * (r < 44) for _ in range(4)])


@pytest.mark.parametrize("sd", [15.0, 40.0])
def test_soft_tissue_sd_is_the_noise_not_the_edges(picture_noise, sd):
    assert picture_noise.soft_tissue_sd(body(sd)) == pytest.approx(sd, rel=0.1)


def test_a_ct_without_soft_tissue_is_refused(picture_noise):
    with pytest.raises(ValueError, match="no flat soft tissue"):
        picture_noise.soft_tissue_sd(np.full((2, 64, 64), -1000.0))


def test_development_levels_sort_each_scene_by_noise_and_skip_compressed_and_impulse_versions(picture_noise, tmp_path):
    """Two scenes, three noise strengths each with the score falling as the noise grows; versions with
    impulse pixels or saved at a lower JPEG quality must not count."""
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    j, i = np.mgrid[:128, :128]
    grey = np.where(np.hypot(j - 64, i - 64) < 56, 120.0, 0.0)
    rows = []

    def save(name, scene, noise, mos, impulses=0, quality=100):
        img = grey + rng.normal(0.0, noise, grey.shape) * (grey > 0)
        flat = img.reshape(-1)
        flat[rng.choice(flat.size, impulses, replace=False)] = 255.0
        rgb = np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
        Image.fromarray(rgb).save(tmp_path / "images" / name, quality=quality)
        rows.append({"image": name, "scene": scene, "mos": mos})

    for scene in ("S01", "S02"):
        for noise, mos in ((2.0, 3.6), (4.0, 3.0), (8.0, 2.0)):
            save(f"{scene}_n{noise:g}.jpg", scene, noise, mos)
            save(f"{scene}_n{noise:g}_imp.jpg", scene, noise, 0.5, impulses=400)
        save(f"{scene}_q40.jpg", scene, 2.0, 0.1, quality=40)
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "scene", "mos"])
        w.writeheader()
        w.writerows(rows)

    samples = picture_noise.load_labelled_folder(tmp_path / "images", tmp_path / "labels.csv")
    levels = picture_noise.development_noise_levels(samples)
    assert [n for _, _, n in levels] == [2, 2, 2]
    assert [mos for _, mos, _ in levels] == pytest.approx([3.6, 3.0, 2.0])
    sigmas = [s for s, _, _ in levels]
    assert sigmas[0] < sigmas[1] < sigmas[2]


def test_the_sample_studys_ct_low_dose_ranges_rise_on_the_noise_axis(picture_noise, capsys):
    picture_noise.sample_study_noise()
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    table = {r[0].strip(): (float(r[2]), float(r[3])) for r in rows[1:]}
    names = ["clean (every 5th)", "ct_low_dose_x3", "ct_low_dose_x15", "ct_low_dose_x50"]
    assert list(table) == names
    for column in (0, 1):  # PET/CT, CT alone
        assert [table[n][column] for n in names] == sorted(table[n][column] for n in names)
    # The PET over the CT hides part of its noise: CT alone is the noisier picture.
    assert all(table[n][1] > table[n][0] for n in names)
