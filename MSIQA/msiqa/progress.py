"""What a run reports while it works: for a person (lines and a bar on stderr) or for a program
(one JSON object per line, ``msiqa assess --progress jsonl``).

The JSON lines, in order (``stage`` events may repeat, ``progress`` counts up):

    {"event": "stage", "stage": "reading", "inputs": ["CT", "PET"]}
    {"event": "stage", "stage": "loading"}                    the model is being loaded (imports torch)
    {"event": "stage", "stage": "resampling"}                 PET onto the CT grid, slab by slab as it is scored
    {"event": "start", "total": N, "device": "cpu"}
    {"event": "progress", "done": n, "total": N}
    {"event": "stage", "stage": "rendering"}                  the report's pictures
    {"event": "stage", "stage": "writing"}                    the outputs, moved into place once complete
    {"event": "done", "out": DIR}        or        {"event": "error", "message": ..., "exit_code": 2}

Nothing else is written on the event stream (see :func:`event_channel`).
"""

from __future__ import annotations

import io
import json
import os
import sys
from contextlib import contextmanager
from typing import IO, Any, Iterator

STAGES = {  # in the order a run goes through them
    "reading": "reading {inputs}",
    "loading": "loading the model",
    "resampling": "PET is resampled onto the CT grid slab by slab as the slices are scored",
    "rendering": "rendering the report",
    "writing": "writing the outputs",
}


class Reporter:
    """Says nothing; the base of the two reporters below."""

    def stage(self, stage: str, **detail: Any) -> None:
        pass

    def start(self, total: int, device: str) -> None:
        pass

    def progress(self, done: int, total: int) -> None:
        pass

    def done(self, out: str) -> None:
        pass

    def error(self, message: str, exit_code: int) -> None:
        pass

    def close(self) -> None:
        pass


class BarReporter(Reporter):
    """A line on stderr per stage from the first second, then a progress bar over the slices."""

    def __init__(self, quiet: bool = False, stream: IO[str] | None = None):
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self._bar = None

    def stage(self, stage: str, **detail: Any) -> None:
        if self.quiet:
            return
        self.close()
        text = STAGES.get(stage, stage).format(inputs=", ".join(detail.get("inputs", ())) or "the inputs")
        print(f"msiqa: {text}...", file=self.stream, flush=True)

    def start(self, total: int, device: str) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=f"assessing on {device}", unit="slice", file=self.stream, leave=False,
                         dynamic_ncols=True)

    def progress(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class JsonlReporter(Reporter):
    """One JSON object per line on ``stream``, flushed at once so a reader sees it live."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def _emit(self, event: str, **fields: Any) -> None:
        self.stream.write(json.dumps({"event": event, **fields}) + "\n")
        self.stream.flush()

    def stage(self, stage: str, **detail: Any) -> None:
        self._emit("stage", stage=stage, **detail)

    def start(self, total: int, device: str) -> None:
        self._emit("start", total=int(total), device=str(device))

    def progress(self, done: int, total: int) -> None:
        self._emit("progress", done=int(done), total=int(total))

    def done(self, out: str) -> None:
        self._emit("done", out=str(out))

    def error(self, message: str, exit_code: int) -> None:
        self._emit("error", message=str(message), exit_code=int(exit_code))


@contextmanager
def event_channel() -> Iterator[IO[str]]:
    """A stream for the events that is the process's stdout, while everything else that would
    go to stdout (print, a library writing to file descriptor 1) goes to stderr instead."""
    sys.stdout.flush()
    saved = sys.stdout
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd = None
    if fd is None:  # stdout is no file (an embedding or a test replaced it): swap the objects only
        sys.stdout = sys.stderr
        try:
            yield saved
        finally:
            sys.stdout = saved
        return
    events = os.fdopen(os.dup(fd), "w", encoding="utf-8", buffering=1)
    sys.stderr.flush()
    os.dup2(sys.stderr.fileno(), fd)
    try:
        yield events
    finally:
        sys.stdout.flush()
        events.flush()
        os.dup2(events.fileno(), fd)
        events.close()
