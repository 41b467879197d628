"""Helpers for the capture tests: record arguments, small rigs, scripted engines."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ampcap.capture.engine import TakeResult
from ampcap.capture.virtual import VirtualEngine
from ampcap.schema.session import Take


def record_args(out: Path, *extra: str, seconds: str = "3") -> list[str]:
    """``record`` arguments for a quick virtual session (3 s of built-in DI, 3 steps)."""
    return [
        "record",
        "--rig",
        "virtual",
        "--knob",
        "isf",
        "--steps",
        "3",
        "--out",
        str(out),
        "--di-seconds",
        seconds,
        "--yes",
        *extra,
    ]


def write_rig(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


class SignalAt:
    """A session monitor that sends ``signum`` to this process once take ``step`` has recorded
    ``frames`` frames (the way Ctrl-C or ``kill`` reaches ampcap)."""

    def __init__(self, step: int, frames: int, signum: int = signal.SIGINT) -> None:
        self.step = step
        self.frames = frames
        self.signum = signum
        self.current = 0
        self.sent = False

    def take_started(self, take: Take, step: int, total: int, frames: int) -> None:
        self.current = step

    def take_progress(self, frames_done: int, block: np.ndarray) -> None:
        if self.current == self.step and frames_done >= self.frames and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)

    def take_finished(self, take: Take) -> None:
        pass


class DropoutEngine(VirtualEngine):
    """The virtual engine, but the takes for which ``bad_calls(n)`` is true (n counts calls of
    ``run_take`` from 1) report PortAudio's underflow and overflow flags."""

    def __init__(self, bad_calls: Callable[[int], bool], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.bad_calls = bad_calls
        self.calls = 0

    def run_take(self, program, sink, progress=None) -> TakeResult:  # type: ignore[override]
        self.calls += 1
        result = super().run_take(program, sink, progress)
        if self.bad_calls(self.calls):
            return TakeResult(frames=result.frames, underflows=1, overflows=2)
        return result
