"""What a run tells a person (stage lines, then a bar) and a program (JSON lines); device menu labels."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import pytest

from msiqa import devices, runner
from msiqa.progress import STAGES, BarReporter, JsonlReporter, event_channel


def test_jsonl_reporter_writes_one_object_a_line():
    stream = io.StringIO()
    r = JsonlReporter(stream)
    r.stage("reading", inputs=["CT"])
    r.start(3, "cpu")
    r.progress(2, 3)
    r.done("/tmp/x")
    r.error("bad", 2)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines == [
        {"event": "stage", "stage": "reading", "inputs": ["CT"]},
        {"event": "start", "total": 3, "device": "cpu"},
        {"event": "progress", "done": 2, "total": 3},
        {"event": "done", "out": "/tmp/x"},
        {"event": "error", "message": "bad", "exit_code": 2},
    ]


def test_bar_reporter_says_each_stage():
    stream = io.StringIO()
    r = BarReporter(stream=stream)
    for stage in STAGES:
        r.stage(stage, inputs=["CT", "PET"])
    r.close()
    said = stream.getvalue().splitlines()
    assert said[0] == "msiqa: reading CT, PET..." and said[1] == "msiqa: loading the model..."
    assert len(said) == len(STAGES)
    quiet = io.StringIO()
    BarReporter(quiet=True, stream=quiet).stage("reading", inputs=["CT"])
    assert quiet.getvalue() == ""


def test_event_channel_keeps_prints_off_the_events(capsys):
    with event_channel() as events:
        print("a stray line")
        events.write('{"event": "done"}\n')
    out, err = capsys.readouterr()
    assert out == '{"event": "done"}\n' and "a stray line" in err


def test_the_first_words_come_before_torch_is_imported(tmp_path):
    """From the first second: the reading line is printed before the model (and torch) load."""
    from msiqa.sample_data import load_sample_study

    study = load_sample_study()
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "msiqa", "assess", "--ct", str(study.ct_path), "--out",
         str(tmp_path / "out"), "--device", "cpu"],
        env=runner.engine_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    reading = lines.index("msiqa: reading CT...")
    loading = lines.index("msiqa: loading the model...")
    torch_import = next(i for i, line in enumerate(lines) if re.match(r"import time:.*\|\s+torch$", line))
    assert reading < loading < torch_import


def test_device_menu_labels():
    assert devices.choices(None) == [("auto", "Auto"), ("cuda", "CUDA"), ("mps", "MPS (Apple GPU)"), ("cpu", "CPU")]
    gpu = {"devices": [{"key": "cuda", "index": 0, "name": "NVIDIA H200"}, {"key": "cpu", "name": "CPU"}], "auto": "cuda"}
    assert dict(devices.choices(gpu)) == {"auto": "Auto (NVIDIA H200)", "cuda": "CUDA: NVIDIA H200",
                                          "mps": "MPS (Apple GPU) (not found)", "cpu": "CPU"}
    cpu_only = {"devices": [{"key": "cpu", "name": "CPU"}], "auto": "cpu"}
    assert dict(devices.choices(cpu_only))["cuda"] == "CUDA (not found)"
    assert [k for k, _ in devices.choices(cpu_only)] == list(devices.KEYS)


def test_devices_command_answers_in_json():
    result = subprocess.run([sys.executable, "-m", "msiqa", "devices", "--json"], env=runner.engine_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["auto"] in {d["key"] for d in info["devices"]} and info["devices"][-1]["key"] == "cpu"


@pytest.mark.parametrize("argv", [["devices"], ["devices", "--json"]])
def test_devices_without_torch_is_a_clear_error(argv):
    code = "import sys; sys.modules['torch'] = None; from msiqa.cli import main; sys.exit(main(%r))" % (argv,)
    result = subprocess.run([sys.executable, "-c", code], env=runner.engine_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "PyTorch is not installed" in result.stderr
