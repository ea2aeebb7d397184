"""msiqa.runner with real child processes on the sample study: events in order, results read
back, cancel, a child killed by a signal, input errors, the engine beside the runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import msiqa
from msiqa import runner
from msiqa.assess import assess
from msiqa.errors import Cancelled, EngineError, InputError
from msiqa.sample_data import load_sample_study

pytestmark = pytest.mark.skipif(os.name == "nt", reason="process-group checks below are POSIX")
TIMEOUT = 300


@pytest.fixture(scope="module")
def study():
    return load_sample_study()


def wait_for(run: runner.AssessmentRun, event: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not any(e["event"] == event for e in run.events):
        assert not run.finished, f"the run ended before a {event!r} event: {run.error}"
        assert time.monotonic() < deadline, f"no {event!r} event within {timeout} s"
        run.poll()
        time.sleep(0.02)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_events_in_order_and_the_result_read_back(study, bundled_model):
    ct = sitk.ReadImage(str(study.ct_path))
    pet = sitk.ReadImage(str(study.pet_path))
    seen = []
    run = runner.AssessmentRun({"ct": ct, "pet": pet}, device="cpu", batch_size=8, threshold=2.5, on_event=seen.append)
    run.start()
    folder = run.folder
    assert sorted(p.name for p in folder.iterdir()) == ["ct.nrrd", "pet.nrrd", "stderr.log"]
    result = run.wait(TIMEOUT)
    assert seen == run.events
    kinds = [e["event"] for e in seen]
    assert kinds[-1] == "done" and kinds.count("start") == 1 and "error" not in kinds
    stages = [e["stage"] for e in seen if e["event"] == "stage"]
    assert stages == ["reading", "loading", "resampling", "rendering", "writing"]
    assert seen[0] == {"event": "stage", "stage": "reading", "inputs": ["CT", "PET"]}
    n = ct.GetSize()[2]
    start = next(e for e in seen if e["event"] == "start")
    assert start["total"] == n and start["device"] == "cpu"
    done = [e["done"] for e in seen if e["event"] == "progress"]
    assert done == list(range(8, n, 8)) + [n]  # one per batch, rising, ending at the total
    assert kinds.index("start") < kinds.index("progress") and kinds.index("progress") < kinds.index("done")

    # the result is the engine's, on the reference's exact grid
    expected = assess(ct=ct, pet=pet, model=bundled_model, device="cpu", batch_size=8, threshold=2.5)
    assert np.allclose(result.scores, expected.scores, atol=5e-5)
    assert result.threshold == 2.5 and np.array_equal(result.flagged, expected.flagged)
    assert result.causes == expected.causes
    assert np.allclose(result.cause_confidence, expected.cause_confidence, atol=5e-4, equal_nan=True)
    assert result.heatmap.shape == expected.heatmap.shape
    assert np.abs(result.heatmap - expected.heatmap).max() <= 1e-6 + 0.5 / 256  # the engine may round for storage
    assert result.geometry == expected.geometry
    assert not folder.exists()  # the run's folder went with it
    assert run.times["first"] <= run.times["start"] <= run.times["done"]


def test_cancel_mid_run_leaves_no_child_and_no_files(study):
    run = runner.AssessmentRun({"ct": str(study.ct_path), "pet": str(study.pet_path)}, device="cpu", batch_size=4)
    run.start()
    pgid, folder = run.child.proc.pid, run.folder
    wait_for(run, "progress")
    run.cancel()
    assert isinstance(run.error, Cancelled) and run.result is None
    assert not group_alive(pgid)
    assert not folder.exists()
    with pytest.raises(Cancelled):
        run.wait(1)


def test_context_manager_cancels_an_unfinished_run(study):
    with runner.AssessmentRun({"ct": str(study.ct_path)}, device="cpu") as run:
        run.start()
        pgid, folder = run.child.proc.pid, run.folder
        wait_for(run, "stage")
    assert not group_alive(pgid) and not folder.exists()


@pytest.mark.parametrize("sig, words", [(signal.SIGKILL, ["SIGKILL", "memory"]), (signal.SIGSEGV, ["SIGSEGV", "crashed"])])
def test_child_killed_by_a_signal_is_a_clear_error(study, sig, words):
    run = runner.AssessmentRun({"ct": str(study.ct_path)}, device="cpu", batch_size=4)
    run.start()
    folder = run.folder
    wait_for(run, "start")
    os.kill(run.child.proc.pid, sig)  # as the kernel's out-of-memory killer or a crash would
    with pytest.raises(EngineError) as caught:
        run.wait(TIMEOUT)
    message = str(caught.value)
    assert all(w in message for w in words), message
    assert f"signal {int(sig)}" in message
    assert not folder.exists()


def test_bad_input_is_the_engines_own_message(tmp_path):
    bad = tmp_path / "ct.nrrd"
    bad.write_bytes(b"NRRD0004\nthis is not a volume\n")
    run = runner.AssessmentRun({"ct": str(bad)}, device="cpu")
    run.start()
    with pytest.raises(InputError) as caught:
        run.wait(TIMEOUT)
    assert str(bad) in str(caught.value) and "cannot read" in str(caught.value)
    assert run.events[-1]["event"] == "error" and run.events[-1]["exit_code"] == 2


def test_unknown_roles_are_refused():
    with pytest.raises(InputError):
        runner.AssessmentRun({"CT_volume": "x.nrrd"})
    with pytest.raises(InputError):
        runner.AssessmentRun({})


def test_describe_exit():
    assert runner.describe_exit(-9) == "killed by signal 9 (SIGKILL)"
    assert runner.describe_exit(1) == "exit code 1"
    assert "access violation" in runner.describe_exit(0xC0000005)


def test_child_runs_the_engine_beside_the_runner(tmp_path, monkeypatch):
    """A msiqa earlier on the path (as one installed in Slicer's site-packages would be)
    does not stand in for the engine that ships beside the runner."""
    fake = tmp_path / "site" / "msiqa"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text("import sys; print('{\"engine\": \"impostor\"}'); sys.exit(3)\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    env = runner.engine_env()
    assert env["PYTHONPATH"].split(os.pathsep) == [str(runner.ENGINE_ROOT), str(fake.parent)]
    query = runner.DeviceQuery()
    deadline = time.monotonic() + TIMEOUT
    while not query.poll():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert query.error is None, query.error
    assert Path(query.info["engine"]) == Path(msiqa.__file__).resolve().parent
    assert any(d["key"] == "cpu" for d in query.info["devices"])
    assert not query.folder.exists()


def test_jsonl_stdout_holds_nothing_but_events(study, tmp_path):
    """Stray prints of the run (the summary lines) go to stderr, never between the events."""
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "msiqa", "assess", "--ct", str(study.ct_path), "--out", str(out), "--device", "cpu",
         "--progress", "jsonl"],
        env=runner.engine_env(), capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    import json

    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(isinstance(e, dict) and "event" in e for e in events)
    assert events[-1] == {"event": "done", "out": str(out)}
    assert "mean score" in result.stderr  # the human summary went to stderr


def test_module_flow_from_nodes_to_result_nodes(study):
    """What the Slicer module does, on real MRML classes: volume nodes (one under a linear
    transform) -> copies on their world geometry -> child run -> result nodes on the
    reference's own grid; the input nodes untouched."""
    slicer = pytest.importorskip("slicer")
    vtk = pytest.importorskip("vtk")
    from msiqa import mrml

    scene, app = mrml.create_scene()
    ct = mrml.volume_node_from_image(scene, sitk.ReadImage(str(study.ct_path)), "CT")
    pet = mrml.volume_node_from_image(scene, sitk.ReadImage(str(study.pet_path)), "PET")
    shift = slicer.vtkMRMLLinearTransformNode()
    scene.AddNode(shift)
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 12.5)  # both moved together: still overlapping, world geometry differs from IJKToRAS
    shift.SetMatrixTransformToParent(matrix)
    for node in (ct, pet):
        node.SetAndObserveTransformNodeID(shift.GetID())
    before = {n.GetName(): mrml.image_from_volume_node(n) for n in (ct, pet)}

    images, reference = mrml.input_images(ct, pet)
    assert reference is ct
    run = runner.AssessmentRun(images, device="cpu")
    del images
    run.start()
    assert all(isinstance(v, Path) for v in run.inputs.values())  # no volume copy kept in this process
    result = run.wait(TIMEOUT)
    assert result.geometry.size == tuple(before["CT"].GetSize())
    assert np.allclose(result.geometry.origin, before["CT"].GetOrigin())  # the world (transformed) grid
    results = mrml.show_results(scene, result, reference, app_logic=app)
    heatmap = scene.GetNodeByID(results.heatmap)
    assert heatmap.GetTransformNodeID() == shift.GetID()
    assert np.allclose(mrml.ijk_to_ras(heatmap), mrml.ijk_to_ras(ct))
    for node in (ct, pet):
        after = mrml.image_from_volume_node(node)
        assert np.array_equal(sitk.GetArrayViewFromImage(after), sitk.GetArrayViewFromImage(before[node.GetName()]))
