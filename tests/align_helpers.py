"""Synthetic programs, devices and sessions with known latency, drift and polarity.

Used by the alignment tests and ``benchmarks/alignment.py``. The program follows the session
layout (pre-roll, start marker, reference, DI, reference, end marker, tail); takes are recorded
through the virtual rig's interface (:class:`ampcap.capture.virtual.VirtualInterface`), whose
recorded frame ``n`` reads the played signal at ``n / (1 + drift) - latency``: the latency at
program sample 0, in recorder samples, is therefore ``(1 + drift)·latency``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal

from ampcap.capture.virtual import VirtualAmp, VirtualInterface
from ampcap.files import sha256_array, write_audio
from ampcap.schema.session import (
    SCHEMA_VERSION,
    Knob,
    Marker,
    Program,
    Section,
    SessionManifest,
    Source,
    Take,
    save_session,
    take_file_name,
)


def sweep(
    frames: int,
    sample_rate_hz: int,
    f_start_hz: float = 20.0,
    f_stop_hz: float | None = None,
    level_dbfs: float = -6.0,
    fade_samples: int | None = None,
) -> np.ndarray:
    """Exponential sine sweep with raised-cosine fades, float64 shape (frames,)."""
    f_stop_hz = f_stop_hz or 0.42 * sample_rate_hz
    t = np.arange(frames) / sample_rate_hz
    duration = frames / sample_rate_hz
    rate = math.log(f_stop_hz / f_start_hz)
    x = np.sin(2 * np.pi * f_start_hz * duration / rate * (np.exp(t / duration * rate) - 1))
    fade = fade_samples if fade_samples is not None else frames // 50
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    x[:fade] *= ramp
    x[frames - fade :] *= ramp[::-1]
    return 10 ** (level_dbfs / 20) * x


def plucks(
    frames: int, sample_rate_hz: int, rng: np.random.Generator, level: float = 0.3
) -> np.ndarray:
    """Guitar-like DI: decaying harmonic notes with noisy attacks, float64 shape (frames,)."""
    out = np.zeros(frames)
    t = np.arange(frames) / sample_rate_hz
    onset = 0
    while onset < frames:
        length = int(rng.uniform(0.15, 0.6) * sample_rate_hz)
        stop = min(onset + length, frames)
        tt = t[: stop - onset]
        f0 = 82.4 * 2 ** (rng.integers(0, 30) / 12)
        note = np.zeros(stop - onset)
        for h in range(1, 8):
            if h * f0 < 0.4 * sample_rate_hz:
                note += np.sin(2 * np.pi * h * f0 * tt + rng.uniform(0, 2 * np.pi)) / h
        note *= np.exp(-tt * rng.uniform(3, 9)) * rng.uniform(0.3, 1.0)
        attack = min(64, len(note))
        note[:attack] += rng.standard_normal(attack) * 0.3 * np.linspace(1, 0, attack)
        out[onset:stop] += note
        onset = stop
    return level * out / max(float(np.max(np.abs(out))), 1e-9)


@dataclass(frozen=True)
class SyntheticProgram:
    audio: np.ndarray
    layout: Program
    sample_rate_hz: int


def make_program(
    sample_rate_hz: int = 48000,
    di_seconds: float = 3.0,
    seed: int = 0,
    marker_seconds: float = 0.5,
    reference_seconds: float = 0.5,
    preroll_seconds: float = 0.3,
    tail_seconds: float = 0.6,
) -> SyntheticProgram:
    """A program laid out like ampcap's: sections and one guitar source, float32 audio."""
    rng = np.random.default_rng(seed)
    fs = sample_rate_hz
    lengths = {
        "preroll": int(preroll_seconds * fs),
        "marker_start": int(marker_seconds * fs),
        "reference_1": int(reference_seconds * fs),
        "di": int(di_seconds * fs),
        "reference_2": int(reference_seconds * fs),
        "marker_end": int(marker_seconds * fs),
        "tail": int(tail_seconds * fs),
    }
    sections, start = [], 0
    for name, length in lengths.items():
        sections.append(Section(name, start, length))
        start += length
    audio = np.zeros(start)
    marker = sweep(lengths["marker_start"], fs)
    reference = plucks(lengths["reference_1"], fs, rng)
    by_name = {s.name: s for s in sections}
    audio[by_name["marker_start"].start : by_name["marker_start"].stop] = marker
    audio[by_name["reference_1"].start : by_name["reference_1"].stop] = reference
    audio[by_name["di"].start : by_name["di"].stop] = plucks(lengths["di"], fs, rng)
    audio[by_name["reference_2"].start : by_name["reference_2"].stop] = reference
    audio[by_name["marker_end"].start : by_name["marker_end"].stop] = marker
    audio = audio.astype(np.float32)
    di = by_name["di"]
    layout = Program(
        file="program.wav",
        sample_rate_hz=fs,
        length=len(audio),
        sha256=sha256_array(audio),
        peak_dbfs=float(20 * np.log10(np.max(np.abs(audio)))),
        marker=Marker(
            20.0, 0.42 * fs, lengths["marker_start"], -6.0, lengths["marker_start"] // 50
        ),
        sections=tuple(sections),
        sources=(
            Source(
                "plucks", "guitar", di.start, di.length, sha256_array(audio[di.start : di.stop])
            ),
        ),
    )
    return SyntheticProgram(audio, layout, fs)


@dataclass(frozen=True)
class Rig:
    """Known truth of a simulated recording."""

    latency_samples: float = 183.37
    drift_ppm: float = 0.0
    polarity: int = 1
    gain_db: float = 0.0
    noise_dbfs: float = -90.0
    seed: int = 0

    def latency_at_zero(self) -> float:
        """Latency at program sample 0 in recorder samples, ampcap's convention."""
        return (1 + self.drift_ppm * 1e-6) * self.latency_samples


def amp_output(program: np.ndarray, sample_rate_hz: int, knobs: dict[str, float]) -> np.ndarray:
    """The virtual amp's output for a program, float64 shape (frames,)."""
    amp = VirtualAmp(sample_rate_hz)
    amp.set_knobs(knobs)
    return amp.process(np.asarray(program, dtype=np.float64))


def record(
    program: np.ndarray, device_output: np.ndarray, rig: Rig, sample_rate_hz: int
) -> np.ndarray:
    """Record ``[loopback, device]`` through the virtual interface, float32 (frames, 2)."""
    interface = VirtualInterface(
        sample_rate_hz,
        rig.latency_samples,
        rig.noise_dbfs,
        rig.gain_db,
        rig.drift_ppm,
        rig.polarity,
        rig.seed,
    )
    frames = len(program)
    played = np.column_stack([program, device_output]).astype(np.float64)
    interface.push(played)
    needed = interface.needed(frames)
    if needed > frames:
        interface.push(np.zeros((needed - frames, 2)))
    # Pull in blocks: with drift the interface gathers 32 taps per frame and channel.
    block = 1 << 15
    out = np.empty((frames, 2), dtype=np.float32)
    for start in range(0, frames, block):
        out[start : start + block] = interface.pull(min(block, frames - start))
    return out


def write_session(
    folder: Path,
    program: SyntheticProgram,
    takes: dict[float, np.ndarray],
    knob: str = "isf",
    statuses: dict[float, str] | None = None,
) -> SessionManifest:
    """Write session.json, program.wav and takes/<knob>=<value>.wav for the given takes."""
    folder.mkdir(parents=True, exist_ok=True)
    write_audio(folder / "program.wav", program.audio, program.sample_rate_hz)
    entries = []
    for value, audio in takes.items():
        knobs = {knob: value}
        name = take_file_name(knobs)
        status = (statuses or {}).get(value, "complete")
        if audio is not None:
            write_audio(folder / name, audio, program.sample_rate_hz)
        entries.append(
            Take(
                knobs=knobs,
                file=name,
                status=status,
                attempts=1,
                frames=0 if audio is None else len(audio),
            )
        )
    manifest = SessionManifest(
        schema_version=SCHEMA_VERSION,
        ampcap_version="0.1.0",
        created_at="2026-01-01T00:00:00+00:00",
        rig={"name": "synthetic"},
        devices={},
        sample_rate_hz=program.sample_rate_hz,
        channels=("loopback", "device"),
        program=program.layout,
        knobs=(Knob(knob, 0.0, 10.0),),
        takes=tuple(entries),
    )
    save_session(folder, manifest)
    return manifest


def make_session(
    folder: Path,
    values: tuple[float, ...] = (0.0, 5.0, 10.0),
    rig: Rig | None = None,
    sample_rate_hz: int = 48000,
    di_seconds: float = 2.0,
) -> tuple[SessionManifest, SyntheticProgram]:
    """A complete session recorded through the virtual amp at each ``isf`` value."""
    rig = rig or Rig()
    program = make_program(sample_rate_hz, di_seconds)
    takes = {}
    for index, value in enumerate(values):
        device = amp_output(program.audio, sample_rate_hz, {"isf": value})
        takes[value] = record(
            program.audio, device, Rig(**{**rig.__dict__, "seed": rig.seed + index}), sample_rate_hz
        )
    return write_session(folder, program, takes), program


def fractional_delay(x: np.ndarray, delay_samples: float, frames: int | None = None) -> np.ndarray:
    """Exact band-limited delay by an FFT phase ramp (``x`` should start and end silent)."""
    frames = frames or len(x)
    n = 2 * max(len(x), frames) + int(abs(delay_samples)) + 64
    spectrum = np.fft.rfft(x, n) * np.exp(-2j * np.pi * np.fft.rfftfreq(n) * delay_samples)
    return np.fft.irfft(spectrum, n)[:frames]


def lowpass_noise(frames: int, sample_rate_hz: int, seed: int, cutoff: float = 0.4) -> np.ndarray:
    """White noise band-limited to ``cutoff`` of the sample rate, faded in and out."""
    rng = np.random.default_rng(seed)
    sos = signal.butter(8, cutoff * 2, output="sos")
    x = signal.sosfiltfilt(sos, rng.standard_normal(frames))
    fade = min(frames // 10, 256)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    x[:fade] *= ramp
    x[-fade:] *= ramp[::-1]
    return 0.25 * x / np.std(x)
