"""benchmarks/clinical.py: which patients a studies folder yields, and the totals it closes with."""

import pytest


@pytest.fixture(scope="module")
def clinical(benchmark_script):
    return benchmark_script("clinical")


def make_patients(root, names):
    for name in names:
        (root / name).mkdir()


def test_studies_pairs_each_patients_ct_and_pet_and_splits_by_number(clinical, tmp_path):
    make_patients(tmp_path, ["STS_004_CT", "STS_004_PET", "STS_005_CT", "STS_005_PET", "STS_006_PET",
                             "STS_007_CT", "STS_007_PET_rtstruct", "STS_008_CT_rtstruct", "README"])
    (tmp_path / "STS_010_PET").write_text("a file, not a DICOM folder")
    (tmp_path / "STS_010_CT").mkdir()
    pairs = clinical.studies_in(tmp_path)
    assert [(c.name, p.name) for c, p in pairs] == [("STS_004_CT", "STS_004_PET"), ("STS_005_CT", "STS_005_PET")]
    assert [c.name for c, _ in clinical.studies_in(tmp_path, "even")] == ["STS_004_CT"]
    assert [c.name for c, _ in clinical.studies_in(tmp_path, "odd")] == ["STS_005_CT"]


def test_studies_read_the_ibsi_repositorys_own_layout_and_leave_out_excluded_patients(clinical, tmp_path):
    # github.com/theibsi/data_sets keeps each patient as dicom/<ID>/<modality>/image (beside a mask).
    for patient, modalities in {"STS_001": ("CT", "PET", "MR_T1"), "STS_004": ("CT", "PET"),
                                "STS_005": ("CT", "PET"), "STS_006": ("PET",)}.items():
        for modality in modalities:
            (tmp_path / "dicom" / patient / modality / "image").mkdir(parents=True)
            (tmp_path / "dicom" / patient / modality / "mask").mkdir()
    pairs = clinical.studies_in(tmp_path)
    assert [(c.parts[-3:], p.parts[-3:]) for c, p in pairs] == [
        (("STS_001", "CT", "image"), ("STS_001", "PET", "image")),
        (("STS_004", "CT", "image"), ("STS_004", "PET", "image")),
        (("STS_005", "CT", "image"), ("STS_005", "PET", "image"))]
    assert [c.parts[-3] for c, _ in clinical.studies_in(tmp_path, "odd", ("STS_001",))] == ["STS_005"]
    with pytest.raises(SystemExit, match="exclude.*STS_004"):
        clinical.studies_in(tmp_path, "even", ("STS_004",))


def test_a_folder_without_pairs_is_refused_with_its_name(clinical, tmp_path):
    make_patients(tmp_path, ["STS_004_CT"])
    with pytest.raises(SystemExit, match=f"{tmp_path}.*no <ID>_CT / <ID>_PET"):
        clinical.studies_in(tmp_path)


def test_totals_count_volumes_over_the_limit_per_kind(clinical):
    rows = [{"kind": "PET alone", "input": "/d/STS_004_PET", "slices": 10, "flagged": 2, "flagged_pct": 20.0},
            {"kind": "PET alone", "input": "/d/STS_005_PET", "slices": 20, "flagged": 2, "flagged_pct": 10.0},
            {"kind": "PET/CT", "input": "/d/STS_004_CT + /d/STS_004_PET", "slices": 10, "flagged": 0,
             "flagged_pct": 0.0}]
    assert clinical.totals(rows) == [
        "PET alone: 2 volumes, 4 of 30 slices flagged; over 10 %: 1 (/d/STS_004_PET)",
        "PET/CT: 1 volumes, 0 of 10 slices flagged; over 10 %: 0",
    ]
