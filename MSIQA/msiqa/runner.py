"""The engine in a child process, driven without Qt and without blocking.

Inside 3D Slicer the main thread holds Python's GIL while it idles in the Qt event loop, so an
engine thread would run only while Slicer runs Python (measured: 209 s for a 0.6 s job). A
child Python has a GIL of its own: the module starts ``python -m msiqa assess ... --progress
jsonl`` (:class:`AssessmentRun`) and calls :meth:`AssessmentRun.poll` from a timer; poll reads
whatever JSON lines have arrived and never waits. Cancel kills the child's whole process group
at once; a child that dies (a signal, out of memory, an exit code) becomes an
:class:`~msiqa.errors.EngineError` that says what happened. The run owns a temporary folder
(inputs, outputs, the child's stderr) and removes it however the run ends.

The child runs the ``msiqa`` that ships beside this file: :func:`engine_env` puts this
package's parent folder first on the child's PYTHONPATH, and the child starts in the run's
own folder, so neither a ``msiqa`` installed in site-packages nor one in the working folder
can stand in for it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import SimpleITK as sitk

from .errors import Cancelled, EngineError, InputError, MSIQAError
from .results import Assessment

ENGINE_ROOT = Path(__file__).resolve().parents[1]  # the folder that holds this msiqa package
ROLES = ("ct", "pet", "rgb")
STDERR_KEPT = 4000  # characters of the child's stderr quoted in an error

Event = dict[str, Any]
Input = Union[str, os.PathLike, sitk.Image]


def engine_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with :data:`ENGINE_ROOT` first on PYTHONPATH."""
    env = dict(os.environ if base is None else base)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p) != ENGINE_ROOT]
    env["PYTHONPATH"] = os.pathsep.join([str(ENGINE_ROOT), *rest])
    return env


def describe_exit(code: int) -> str:
    """What an exit status means, in words: "killed by signal 9 (SIGKILL)", "exit code 1", ..."""
    if code < 0:  # POSIX: ended by a signal
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-code} ({name})"
    windows = {0xC0000005: "an access violation (a crash)", 0xC00000FD: "a stack overflow",
               0xC0000017: "lack of memory", 0xC0000409: "a fatal runtime error", 0xC000013A: "Ctrl-C"}
    if code in windows:
        return f"exit status 0x{code:08X}: {windows[code]}"
    return f"exit code {code}"


def _hint(code: int) -> str:
    if code == -getattr(signal, "SIGKILL", 9) or code == 0xC0000017:
        return (" This is most often the operating system stopping a process that ran out of memory: close other "
                "programs, lower the batch size, or assess a smaller volume.")
    if code in (-getattr(signal, "SIGSEGV", 11), -getattr(signal, "SIGBUS", 7), 0xC0000005):
        return " The engine crashed; your scene is unchanged. Please report this with the messages below."
    return ""


class ChildProcess:
    """``python -m msiqa ARGS`` in its own process group, in ``workdir``; stdout read as JSON
    objects, one a line, without blocking; stderr kept in ``workdir/stderr.log``."""

    def __init__(self, args: list[str], workdir: Path, python: str | None = None):
        self.argv = [python or sys.executable, "-m", "msiqa", *args]
        self.workdir = Path(workdir)
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self.killed = False
        self.noise: list[str] = []  # stdout lines that were not JSON objects (none by the protocol)
        self._pending = b""
        self._eof = False

    def start(self) -> None:
        kwargs: dict[str, Any] = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        else:
            kwargs["start_new_session"] = True  # its own process group: one kill ends it and its children
        with open(self.workdir / "stderr.log", "wb") as stderr:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                         cwd=self.workdir, env=engine_env(), bufsize=0, **kwargs)
        try:
            os.set_blocking(self.proc.stdout.fileno(), False)  # Windows pipes: Python 3.12 and later
        except (AttributeError, OSError) as e:
            self.kill()
            raise MSIQAError(f"cannot read the engine's output without blocking on this Python ({e}); "
                             "MS-IQA needs Python 3.12 or later here (Slicer 5.10 or later).") from None

    def read(self) -> list[dict[str, Any]]:
        """The JSON objects that arrived since the last call; sets :attr:`returncode` once the
        child has exited and its output is drained."""
        if self.proc is None or self.returncode is not None:
            return []
        fd = self.proc.stdout.fileno()
        chunks = []
        while not self._eof:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                self._eof = True
            chunks.append(chunk)
        *lines, self._pending = (self._pending + b"".join(chunks)).split(b"\n")
        objects = []
        for line in lines:
            text = line.decode("utf-8", "replace").strip()
            if not text:
                continue
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            if isinstance(value, dict):
                objects.append(value)
            else:
                self.noise.append(text)
        code = self.proc.poll()
        if code is not None and (self._eof or not chunks):
            self.returncode = code
            self.proc.stdout.close()
        return objects

    def kill(self) -> None:
        """End the child and everything it started, now."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.killed = True
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.proc.pid)], capture_output=True)
        else:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()

    def stderr_tail(self) -> str:
        try:
            text = (self.workdir / "stderr.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return text[-STDERR_KEPT:].strip()


class AssessmentRun:
    """One assessment in a child process.

    ``inputs`` maps "ct", "pet", "rgb" (as :func:`msiqa.mrml.input_images` returns them) to
    SimpleITK images, which are written to the run's folder on their exact geometry (no
    resampling, no compression), or to files the child reads directly. Call :meth:`start`,
    then :meth:`poll` until :attr:`finished`; then :attr:`result` holds the assessment, or
    :attr:`error` says why there is none. Events go to ``on_event`` as they are polled.
    """

    def __init__(self, inputs: Mapping[str, Input], *, device: str = "auto", batch_size: int = 8,
                 threshold: float = 2.0, model: str | None = None, python: str | None = None,
                 on_event: Callable[[Event], None] | None = None):
        unknown = set(inputs) - set(ROLES)
        if unknown or not inputs:
            raise InputError(f"inputs must be some of {', '.join(ROLES)}; got {', '.join(inputs) or 'none'}.")
        self.inputs = dict(inputs)
        self.options = ["--device", device, "--batch-size", str(int(batch_size)), "--threshold", repr(float(threshold))]
        if model:
            self.options += ["--model", str(model)]
        self.python = python
        self.on_event = on_event
        self.folder: Path | None = None
        self.child: ChildProcess | None = None
        self.result: Assessment | None = None
        self.error: MSIQAError | None = None
        self.events: list[Event] = []
        self.times: dict[str, float] = {}  # seconds since start of: "first", each stage, "start", "done"

    # ---------------------------------------------------------------- life cycle
    def start(self) -> None:
        if self.folder is not None:
            raise RuntimeError("this run was already started")
        self.folder = Path(tempfile.mkdtemp(prefix="msiqa-run-"))
        self._t0 = time.perf_counter()
        try:
            args = ["assess", *self._write_inputs(), "--out", str(self.folder / "out"), *self.options,
                    "--progress", "jsonl"]
            self.child = ChildProcess(args, self.folder, self.python)
            self.child.start()
        except BaseException:
            self.close()
            raise
        self.times["launched"] = time.perf_counter() - self._t0

    def _write_inputs(self) -> list[str]:
        """Images to files in the run's folder (then only the paths are kept: no copy of a
        volume stays in this process for the length of the run)."""
        args = []
        for role, source in list(self.inputs.items()):
            if isinstance(source, sitk.Image):
                path = self.folder / f"{role}.nrrd"
                try:
                    sitk.WriteImage(source, str(path), False)
                except RuntimeError as e:
                    raise MSIQAError(f"cannot write the {role.upper()} volume for the engine to {path}: "
                                     f"{str(e).strip()[-300:]}") from None
            else:
                path = Path(source).absolute()
            self.inputs[role] = path
            args += [f"--{role}", str(path)]
        return args

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None

    def poll(self) -> list[Event]:
        """New events (never waits); when the child has ended, reads the result back or sets the error."""
        if self.child is None or self.finished:
            return []
        events = [e for e in self.child.read() if "event" in e]
        now = time.perf_counter() - self._t0
        for event in events:
            self.times.setdefault("first", now)
            key = event.get("stage") if event.get("event") == "stage" else event.get("event")
            self.times.setdefault(str(key), now)
            self.events.append(event)
            if self.on_event is not None:
                self.on_event(event)
        if self.child.returncode is not None:
            self._finish(self.child.returncode)
        return events

    def _finish(self, code: int) -> None:
        last = next((e for e in reversed(self.events) if e.get("event") in ("done", "error")), None)
        try:
            if code == 0 and last is not None and last["event"] == "done":
                self.result = self._read_result(Path(last["out"]))
            elif code == 2 and last is not None and last["event"] == "error":
                self.error = InputError(last["message"])  # our own, specific message
            else:
                self.error = self._crash(code, last)
        except MSIQAError as e:
            self.error = e
        finally:
            self.close()

    def _read_result(self, out: Path) -> Assessment:
        from .result_set import read_result_dir

        if out != self.folder / "out":
            raise EngineError(f"the engine wrote its results to {out}, not to the run's folder.")
        return read_result_dir(out)

    def _crash(self, code: int, last: Event | None) -> MSIQAError:
        said = f" It said: {last['message']}" if last is not None and last["event"] == "error" else ""
        if code == 0:
            what = "The engine ended without reporting a result."
        elif code == 130:
            what = "The engine was interrupted."
        else:
            what = f"The engine's process ended with {describe_exit(code)}.{_hint(code)}"
        details = self.child.stderr_tail() + ("\n" + "\n".join(self.child.noise[-20:]) if self.child.noise else "")
        error = EngineError(what + said)
        error.details = details  # the child's last messages, for a "details" box
        return error

    def cancel(self) -> None:
        """Stop the child at once (its whole process group); no result is kept."""
        if self.finished:
            return
        if self.child is not None:
            self.child.kill()
        self.error = Cancelled("cancelled; no result was kept.")
        self.close()

    def close(self) -> None:
        """Remove the run's folder (inputs, outputs, logs). Safe to call more than once."""
        if self.child is not None and self.child.proc is not None and self.child.proc.poll() is None:
            self.child.kill()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> Assessment:
        """Poll until the run ends (for scripts and tests); returns the result or raises the error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise EngineError(f"the engine did not finish within {timeout:g} s; it was stopped.")
            self.poll()
            if not self.finished:
                time.sleep(interval)
        if self.error is not None:
            raise self.error
        return self.result

    def __enter__(self) -> "AssessmentRun":
        return self

    def __exit__(self, *exc) -> None:
        self.cancel()
        self.close()


class DeviceQuery:
    """``msiqa devices --json`` in a child, so torch is never imported by the caller.
    :attr:`info` is the probe's answer once :meth:`poll` returns True (None if the child failed)."""

    def __init__(self, python: str | None = None):
        self.folder = Path(tempfile.mkdtemp(prefix="msiqa-devices-"))
        self.child = ChildProcess(["devices", "--json"], self.folder, python)
        self.answers: list[dict[str, Any]] = []
        self.info: dict[str, Any] | None = None
        self.error: str | None = None
        try:
            self.child.start()
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise

    def poll(self) -> bool:
        """True once the child has ended (then :attr:`info` or :attr:`error` is set)."""
        if self.child.returncode is not None:
            return True
        self.answers += self.child.read()
        if self.child.returncode is None:
            return False
        if self.child.returncode == 0 and self.answers:
            self.info = self.answers[-1]
        else:
            self.error = f"{describe_exit(self.child.returncode)}: {self.child.stderr_tail()[-500:]}"
        shutil.rmtree(self.folder, ignore_errors=True)
        return True

    def cancel(self) -> None:
        self.child.kill()
        shutil.rmtree(self.folder, ignore_errors=True)
