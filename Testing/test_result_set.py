"""Reading a result folder back (what the Slicer module does after the child's run)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from msiqa.errors import MSIQAError
from msiqa.result_set import read_result_dir
from msiqa.results import Assessment, Geometry


def write_set(folder, scores, causes=None, confidence=None, threshold=2.0):
    k = len(scores)
    heat = sitk.GetImageFromArray(np.linspace(0, 1, k * 12, dtype=np.float32).reshape(k, 3, 4))
    heat.SetSpacing((0.5, 0.7, 2.0))
    heat.SetOrigin((1.0, -2.0, 3.0))
    sitk.WriteImage(heat, str(folder / "heatmap.nrrd"), True)
    with open(folder / "scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["slice", "score", "flagged", "cause", "cause_confidence"])
        for i, s in enumerate(scores):
            w.writerow([i, f"{s:.4f}", int(s < threshold), causes[i] if causes else "",
                        f"{confidence[i]:.3f}" if confidence else ""])
    summary = {"slices": k, "threshold": threshold, "complete": True, "model": {"name": "m"}, "rendering": {"x": 1}}
    (folder / "summary.json").write_text(json.dumps(summary))
    return heat


def test_scores_heatmap_geometry_and_summary(tmp_path):
    heat = write_set(tmp_path, [3.5, 1.25, 2.0])
    a = read_result_dir(tmp_path)
    assert np.allclose(a.scores, [3.5, 1.25, 2.0]) and a.threshold == 2.0
    assert np.array_equal(a.flagged, [False, True, False])
    assert np.array_equal(a.heatmap, sitk.GetArrayFromImage(heat))
    assert a.geometry.spacing == (0.5, 0.7, 2.0) and a.geometry.origin == (1.0, -2.0, 3.0)
    assert a.model == {"name": "m"} and a.rendering == {"x": 1} and a.complete
    assert a.causes == ["", "", ""] and a.cause_names == ()


def test_named_causes_and_confidences_come_back(tmp_path):
    write_set(tmp_path, [3.5, 1.25, 0.5], causes=["none", "compression", "noise"], confidence=[0.9, 0.62, 0.4])
    a = read_result_dir(tmp_path)
    assert a.causes == ["none", "compression", "noise"]
    assert np.allclose(a.cause_confidence, [0.9, 0.62, 0.4], atol=1e-6)
    assert np.allclose(a.cause_probs.sum(axis=1), 1.0, atol=1e-6)


def test_inconsistent_or_missing_sets_are_refused(tmp_path):
    write_set(tmp_path, [3.0, 2.0])
    (tmp_path / "summary.json").write_text(json.dumps({"slices": 5, "threshold": 2.0}))
    with pytest.raises(MSIQAError, match="inconsistent"):
        read_result_dir(tmp_path)
    (tmp_path / "heatmap.nrrd").unlink()
    with pytest.raises(MSIQAError, match="cannot be read back"):
        read_result_dir(tmp_path)


def test_a_flagged_slice_is_named_after_its_most_likely_fault():
    # The head finds "none" likeliest on slices 0 and 1; slice 1 is flagged, so it is named after
    # the fault the head ranks first, with the head's probability of that fault.
    names = ("none", "compression", "noise", "pet_low_counts")
    probs = np.array([[0.5, 0.1, 0.3, 0.1], [0.5, 0.1, 0.3, 0.1], [0.2, 0.1, 0.1, 0.6]], dtype=np.float32)
    heat = np.zeros((3, 2, 2), np.float32)
    geometry = Geometry((2, 2, 3), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    a = Assessment(np.array([3.0, 1.5, 1.0]), heat, geometry, cause_names=names, cause_probs=probs)
    assert a.causes == ["none", "noise", "pet_low_counts"]
    assert np.allclose(a.cause_confidence, [0.5, 0.3, 0.6])
    assert a.summary()["flagged_causes"] == {1: "noise", 2: "pet_low_counts"}
    assert a.with_threshold(1.2).causes == ["none", "none", "pet_low_counts"]


def test_a_flagged_slice_stored_as_none_is_not_given_a_made_up_fault(tmp_path):
    # A result written before flagged slices were named after a fault: its file holds "none" and
    # one confidence, so every fault is equally likely on reading it back and none is picked.
    write_set(tmp_path, [1.0, 1.5], causes=["none", "noise"], confidence=[0.55, 0.7])
    a = read_result_dir(tmp_path)
    assert a.causes == ["none", "noise"]
    assert np.allclose(a.cause_confidence, [0.55, 0.7], atol=1e-6)
