"""Helpers for the real-audio tests: rig files, a short DI, running ampcap, checking takes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from ampcap.capture.jack_device import DEFAULT_CLIENT_NAME, simulate
from ampcap.schema.session import SessionManifest, Take

FS = 48000
#: Seconds a test waits for a command that records a few short takes in real time.
RECORD_TIMEOUT_S = 240


def write_rig(
    path: Path,
    *,
    device: str = DEFAULT_CLIENT_NAME,
    sample_rate_hz: int = FS,
    max_output_dbfs: float = -1.0,
    input_device: int = 1,
    input_loopback: int = 2,
) -> Path:
    """A JACK rig on ampcap's JACK device whose isf knob is set by the device's own command."""
    command = f"{sys.executable} -m ampcap.capture.jack_device set --name {device} isf {{value}}"
    path.write_text(
        f"""name = "jack-test"
description = "ampcap's JACK device on a private dummy server"
kind = "audio"

[audio]
device = "{device}"
host_api = "JACK"
sample_rate_hz = {sample_rate_hz}
blocksize = 1024
latency = "high"
output_device = 1
output_loopback = 2
input_device = {input_device}
input_loopback = {input_loopback}

[safety]
max_output_dbfs = {max_output_dbfs}
fade_ms = 20.0

[knobs.isf]
minimum = 0.0
maximum = 10.0
control = "command"
command = "{command}"
""",
        encoding="utf-8",
    )
    return path


def write_di(path: Path, seconds: float = 0.5, peak: float = 0.5) -> Path:
    """A short strummed E-major-ish chord at ``peak``: the shortest DI that makes a real program."""
    t = np.arange(int(seconds * FS)) / FS
    chord = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate((82.4, 123.5, 164.8)))
    chord *= np.exp(-3.0 * t)
    sf.write(
        str(path), (peak * chord / np.max(np.abs(chord))).astype(np.float32), FS, subtype="FLOAT"
    )
    return path


def ampcap_command() -> list[str]:
    """The installed ``ampcap`` script beside this Python, or ``python -m ampcap``."""
    script = Path(sys.executable).with_name("ampcap")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ampcap"]


def record_args(rig: Path, out: Path, di: Path, steps: int = 2, *extra: str) -> list[str]:
    return [
        "record",
        "--rig",
        str(rig),
        "--knob",
        "isf",
        "--steps",
        str(steps),
        "--out",
        str(out),
        "--di",
        str(di),
        "--yes",
        *extra,
    ]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def file_bytes(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes (to show nothing changed)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def copy_session(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def measured_latency(loopback: np.ndarray, program: np.ndarray, max_lag: int = FS) -> int:
    """Integer lag of ``program`` in ``loopback``: the cross-correlation peak (FFT)."""
    n = len(program)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(loopback, size) * np.conj(np.fft.rfft(program, size))
    correlation = np.fft.irfft(spectrum, size)[: max_lag + 1]
    return int(np.argmax(correlation))


def check_take(folder: Path, manifest: SessionManifest, take: Take) -> int:
    """Assert a complete JACK take is the program and the amp's output, sample for sample.

    The JACK round trip in synchronous mode is a whole number of samples, so after the measured
    latency the loopback must equal the program exactly (float32 passes through PortAudio and
    JACK untouched) and the device channel must equal the amp run on the whole program at once
    (to 1e-6: the amp computes in float64 per period, the reference in one call). Returns the
    latency in samples.
    """
    program, _ = sf.read(str(folder / "program.wav"), dtype="float32")
    recorded, rate = sf.read(str(folder / take.file), dtype="float32", always_2d=True)
    assert rate == manifest.sample_rate_hz
    assert recorded.shape == (len(program), 2), recorded.shape
    assert take.status == "complete", take
    assert take.underflows == 0 and take.overflows == 0, take
    n = len(program)
    latency = measured_latency(recorded[:, 0], program)
    assert 0 < latency < n // 4
    loopback, device = recorded[:, 0], recorded[:, 1]
    assert not np.any(loopback[:latency])
    assert np.array_equal(loopback[latency:], program[: n - latency])
    expected = simulate(program, manifest.sample_rate_hz, take.knobs)
    assert not np.any(device[:latency])
    np.testing.assert_allclose(device[latency:], expected[: n - latency], rtol=0, atol=1e-6)
    return latency


def cpu_hogs(count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` processes that each keep one core busy until killed."""
    return [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(count)
    ]


def stop_processes(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.kill()
    for process in processes:
        process.wait()
