"""Material ampcap did not make, for the benchmarks: realistic DI and third-party devices.

**DI.** A guitar part and a bass part are written here as MIDI (``mido``) and rendered by
FluidSynth with the FluidR3 General MIDI soundfont (Debian ``fluidsynth`` and
``fluid-soundfont-gm``), reverb and chorus off, so the result is a dry, sampled instrument,
not ampcap's own plucked-string synthesis. The guitar part mixes single notes, strummed open
and power chords, palm-muted eighths (the soundfont's muted-guitar patch), bends (pitch wheel),
let-ring notes, rests, and picking from soft (velocity 25) to hard (127); the bass part plays
roots and fifths, octave jumps, slides and ghost notes. Parts are seeded, so the same arguments
give the same audio; renders are cached.

**Devices.** Guitarix LV2 plug-ins (Debian ``guitarix-lv2``) run offline with ``lv2apply``
(Debian ``lilv-utils``): a clean preamp, a small tube amp, an overdrive, a distortion, two
fuzzes and two high-gain amps, each with one control that acts as its gain. A device's own
delay is the lag of its response to a low-level impulse (see :func:`device_delay`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
CACHE = Path(os.environ.get("AMPCAP_BENCH_CACHE", Path(tempfile.gettempdir()) / "ampcap-bench"))
#: Peak level of a rendered DI part, dBFS: a humbucker into a good interface peaks near here.
DI_PEAK_DBFS = -3.0

# General MIDI programs, 0-based.
CLEAN_GUITAR, MUTED_GUITAR, FINGER_BASS, PICK_BASS = 27, 28, 33, 34
E_MINOR_PENTATONIC = (40, 43, 45, 47, 50, 52, 55, 57, 59, 62, 64, 67, 69, 71, 74, 76)
CHORDS = (
    (40, 47, 52, 55, 59, 64),  # E minor, open
    (45, 52, 57, 60, 64),  # A minor
    (43, 47, 50, 55, 59, 67),  # G major
    (48, 52, 55, 60, 64),  # C major
    (50, 57, 62, 66),  # D major
    (40, 47, 52),  # E5 power chord
    (45, 52, 57),  # A5
    (43, 50, 55),  # G5
)


def require_tools(*names: str) -> None:
    """Stop with the install command if a Debian tool the benchmark needs is missing."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing or ("fluidsynth" in names and not SOUNDFONT.exists()):
        raise SystemExit(
            f"missing {', '.join(missing) or SOUNDFONT}: run `make bench-deps` "
            "(fluidsynth fluid-soundfont-gm guitarix-lv2 lilv-utils)."
        )


# --- realistic DI ----------------------------------------------------------------------------


@dataclass
class _Part:
    """Absolute-time MIDI events (seconds) for one instrument, turned into a file at the end."""

    events: list[tuple[float, int, object]] = field(default_factory=list)

    def note(self, channel: int, pitch: int, start: float, length: float, velocity: int) -> None:
        self.events.append((start, 1, ("note_on", channel, pitch, velocity)))
        self.events.append((start + length, 0, ("note_off", channel, pitch, 0)))

    def bend(self, channel: int, start: float, length: float, semitones: float) -> None:
        """A bend up and back over ``length`` seconds (pitch-wheel range ±2 semitones)."""
        steps = 24
        for k in range(steps + 1):
            shape = np.sin(np.pi * k / steps)
            value = int(np.clip(round(8191 * shape * semitones / 2), -8192, 8191))
            self.events.append((start + length * k / steps, 2, ("pitchwheel", channel, value)))

    def write(self, path: Path, programs: dict[int, int]) -> None:
        import mido

        ticks_per_beat, tempo = 960, 500_000  # 120 bpm: 1920 ticks a second
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
        for channel, program in programs.items():
            track.append(mido.Message("program_change", channel=channel, program=program, time=0))
            # Sustain off, full volume, no reverb or chorus send: a dry DI.
            for control, value in ((64, 0), (7, 127), (91, 0), (93, 0)):
                track.append(
                    mido.Message("control_change", channel=channel, control=control, value=value)
                )
        now = 0
        for seconds, _, (kind, *args) in sorted(self.events, key=lambda e: (e[0], e[1])):
            tick = int(round(seconds * 1920))
            delta, now = tick - now, tick
            if kind == "pitchwheel":
                channel, value = args
                track.append(mido.Message(kind, channel=channel, pitch=value, time=delta))
            else:
                channel, pitch, velocity = args
                track.append(
                    mido.Message(kind, channel=channel, note=pitch, velocity=velocity, time=delta)
                )
        track.append(mido.MetaMessage("end_of_track", time=1920))
        midi = mido.MidiFile(ticks_per_beat=ticks_per_beat)
        midi.tracks.append(track)
        midi.save(str(path))


def _guitar_part(seconds: float, rng: np.random.Generator) -> _Part:
    part, t = _Part(), 0.25
    while t < seconds - 2.0:
        phrase = rng.choice(["single", "strum", "palm", "bend", "ring", "rest"])
        velocity = int(rng.integers(25, 128))
        if phrase == "single":
            for _ in range(int(rng.integers(4, 12))):
                length = float(rng.choice([0.125, 0.25, 0.375]))
                pitch = int(rng.choice(E_MINOR_PENTATONIC))
                part.note(
                    0,
                    pitch,
                    t,
                    length * 0.95,
                    int(np.clip(velocity + rng.integers(-15, 16), 20, 127)),
                )
                t += length
        elif phrase == "strum":
            for _ in range(int(rng.integers(2, 6))):
                chord = CHORDS[int(rng.integers(len(CHORDS)))]
                down = rng.random() < 0.7
                order = chord if down else chord[::-1]
                spread = float(rng.uniform(0.008, 0.025))
                length = float(rng.choice([0.5, 1.0]))
                for k, pitch in enumerate(order):
                    part.note(
                        0, pitch, t + k * spread, length, int(np.clip(velocity - 3 * k, 20, 127))
                    )
                t += length
        elif phrase == "palm":
            root = int(rng.choice([40, 45, 43]))
            for _ in range(int(rng.integers(8, 17))):
                for pitch in (root, root + 7):
                    part.note(
                        1, pitch, t, 0.11, int(np.clip(velocity + rng.integers(-10, 11), 20, 127))
                    )
                t += 0.125
        elif phrase == "bend":
            pitch = int(rng.choice(E_MINOR_PENTATONIC[6:]))
            length = float(rng.uniform(0.8, 1.6))
            part.note(0, pitch, t, length, velocity)
            part.bend(0, t + 0.1, length - 0.2, float(rng.choice([1.0, 2.0])))
            t += length + 0.05
        elif phrase == "ring":
            chord = CHORDS[int(rng.integers(len(CHORDS)))]
            for k, pitch in enumerate(chord):
                part.note(0, pitch, t + 0.25 * k, 2.5, velocity)
            t += 0.25 * len(chord) + 2.0
        else:
            t += float(rng.uniform(0.2, 0.8))
    return part


def _bass_part(seconds: float, rng: np.random.Generator) -> _Part:
    part, t = _Part(), 0.25
    roots = (28, 33, 31, 36, 38)  # E1, A1, G1, C2, D2
    while t < seconds - 2.0:
        root = int(rng.choice(roots))
        velocity = int(rng.integers(35, 128))
        pattern = rng.choice(["eighths", "root_fifth", "octaves", "slide", "rest"])
        if pattern == "eighths":
            for _ in range(8):
                part.note(0, root, t, 0.22, int(np.clip(velocity + rng.integers(-12, 13), 20, 127)))
                t += 0.25
        elif pattern == "root_fifth":
            for pitch in (root, root + 7, root + 12, root + 7):
                part.note(0, pitch, t, 0.45, velocity)
                t += 0.5
        elif pattern == "octaves":
            for k in range(8):
                ghost = rng.random() < 0.2
                part.note(0, root + 12 * (k % 2), t, 0.2, 25 if ghost else velocity)
                t += 0.25
        elif pattern == "slide":
            part.note(0, root, t, 1.0, velocity)
            part.bend(0, t + 0.3, 0.7, 2.0)
            t += 1.1
        else:
            t += float(rng.uniform(0.2, 0.6))
    return part


def _render(
    part: _Part, programs: dict[int, int], rate: int, seconds: float, name: str
) -> np.ndarray:
    require_tools("fluidsynth")
    with tempfile.TemporaryDirectory(prefix="ampcap-di-") as tmp:
        midi, wav = Path(tmp) / f"{name}.mid", Path(tmp) / f"{name}.wav"
        part.write(midi, programs)
        subprocess.run(
            [
                "fluidsynth",
                "-ni",
                "-q",
                "-R",
                "0",
                "-C",
                "0",
                "-g",
                "0.6",
                "-r",
                str(rate),
                "-O",
                "float",
                "-T",
                "wav",
                "-F",
                str(wav),
                str(SOUNDFONT),
                str(midi),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        audio, got = sf.read(str(wav), dtype="float64", always_2d=True)
    assert got == rate, (got, rate)
    mono = audio.mean(axis=1)
    mono = (
        np.resize(mono, int(seconds * rate))
        if len(mono) < seconds * rate
        else mono[: int(seconds * rate)]
    )
    mono -= mono.mean()
    return (mono * 10 ** (DI_PEAK_DBFS / 20) / np.max(np.abs(mono))).astype(np.float32)


def realistic_di(
    seconds: float, rate: int, instrument: str = "guitar", seed: int = 0
) -> np.ndarray:
    """A dry DI of ``instrument`` ("guitar" or "bass"), float32 mono peaking at -3 dBFS.

    Parameters
    ----------
    seconds : float
        Length, seconds.
    rate : int
        Sample rate, Hz (FluidSynth renders at it directly).
    instrument : {"guitar", "bass"}
    seed : int
        Seeds the part: the same arguments give the same samples.
    """
    key = f"{instrument}-{seconds:g}-{rate}-{seed}-v1"
    cached = CACHE / f"di-{hashlib.sha1(key.encode()).hexdigest()[:16]}.wav"
    if cached.exists():
        audio, _ = sf.read(str(cached), dtype="float32")
        return audio
    rng = np.random.default_rng(seed)
    if instrument == "guitar":
        part = _guitar_part(seconds, rng)
        programs = {0: CLEAN_GUITAR, 1: MUTED_GUITAR}
    elif instrument == "bass":
        part = _bass_part(seconds, rng)
        programs = {0: int(rng.choice([FINGER_BASS, PICK_BASS]))}
    else:
        raise ValueError(f"instrument must be 'guitar' or 'bass', not {instrument!r}")
    audio = _render(part, programs, rate, seconds, instrument)
    CACHE.mkdir(parents=True, exist_ok=True)
    sf.write(str(cached), audio, rate, subtype="FLOAT")
    return audio


# --- third-party devices ---------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """A Guitarix LV2 plug-in with one control used as its gain.

    ``knob`` is the control's LV2 symbol; ``low``, ``high`` its range as used here (the
    plug-in's own range, or the part of it that matters); ``fixed`` sets other controls.
    """

    name: str
    kind: str
    uri: str
    knob: str
    low: float
    high: float
    fixed: tuple[tuple[str, float], ...] = ()

    def value(self, position: float) -> float:
        """The control's value at ``position`` in [0, 1] of the range."""
        return self.low + position * (self.high - self.low)


_GX = "http://guitarix.sourceforge.net/plugins/"
DEVICES = {
    d.name: d
    for d in (
        Device("studiopre", "clean preamp", _GX + "gx_studiopre#studiopre", "volume", 0.1, 1.0),
        Device("chump", "small tube amp", _GX + "gx_redeye#chump", "Gain", 0.1, 1.0),
        Device(
            "ts9", "overdrive", _GX + "gxts9#ts9sim", "fslider2_", 0.0, 1.0, (("fslider0_", -6.0),)
        ),
        Device(
            "ds1",
            "distortion",
            _GX + "gx_bossds1_#_bossds1_",
            "DRIVE",
            0.0,
            1.0,
            (("LEVEL", -8.0),),
        ),
        Device("hornet", "fuzz", _GX + "gx_hornet_#_hornet_", "FUZZ", 0.0, 1.0),
        Device("fuzz", "fuzz", _GX + "gx_fuzz_#fuzz_", "DRIVE", 0.0, 100.0, (("OUTPUT", 40.0),)),
        Device("metalhead", "high-gain amp", _GX + "gxmetal_head#metal_head", "DRIVE", 0.1, 1.0),
        Device("metalamp", "high-gain amp", _GX + "gxmetal_amp#metal_amp", "DRIVE", 1.0, 20.0),
    )
}


def run_device(
    device: Device, position: float, audio: np.ndarray, rate: int, tail_seconds: float = 0.0
) -> np.ndarray:
    """``audio`` (mono) through ``device`` with its gain at ``position`` in [0, 1], via lv2apply.

    Returns float64, as long as ``audio`` plus ``tail_seconds`` of the device ringing out.
    """
    if tail_seconds > 0:
        audio = np.concatenate([audio, np.zeros(int(tail_seconds * rate), dtype=np.float32)])
    require_tools("lv2apply")
    with tempfile.TemporaryDirectory(prefix="ampcap-lv2-") as tmp:
        source, out = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        sf.write(str(source), np.asarray(audio, dtype=np.float32), rate, subtype="FLOAT")
        controls = [*device.fixed, (device.knob, device.value(position))]
        args = ["lv2apply", "-i", str(source), "-o", str(out)]
        for symbol, value in controls:
            args += ["-c", symbol, f"{value:.6g}"]
        subprocess.run(
            [*args, device.uri], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        result, got = sf.read(str(out), dtype="float64", always_2d=True)
    assert got == rate
    return result[: len(audio), 0]


@dataclass(frozen=True)
class Interface:
    """A simulated recording path around a device: what a DAW reamp records of its output.

    Recorded frame ``n`` reads the device's output at ``n / (1 + drift) - latency`` (band-limited
    interpolation), scaled so its peak lands at ``peak_dbfs`` (a user setting the input trim),
    times ``polarity``, plus mains hum (the mains frequency and its odd harmonics) and white
    noise. The latency at input sample 0 is therefore ``(1 + drift)·latency`` recorder samples.
    """

    latency_samples: float
    drift_ppm: float
    polarity: int
    peak_dbfs: float
    noise_dbfs: float
    hum_dbfs: float
    mains_hz: float
    seed: int

    def latency_at_zero(self) -> float:
        return (1 + self.drift_ppm * 1e-6) * self.latency_samples

    def record(self, output: np.ndarray, frames: int, rate: int) -> np.ndarray:
        """``frames`` recorded frames of the device's ``output`` (float64), float32."""
        from ampcap.dataset.resample import resample_linear

        rng = np.random.default_rng(self.seed)
        step = 1.0 / (1.0 + self.drift_ppm * 1e-6)
        read = resample_linear(
            np.asarray(output, np.float64), -self.latency_samples * 1.0, step, frames
        )
        scale = 10 ** (self.peak_dbfs / 20) / max(float(np.max(np.abs(read))), 1e-12)
        t = np.arange(frames) / rate
        hum = sum(np.sin(2 * np.pi * k * self.mains_hz * t + k) / k for k in (1, 3, 5)) * 10 ** (
            self.hum_dbfs / 20
        )
        noise = rng.standard_normal(frames) * 10 ** (self.noise_dbfs / 20)
        return (self.polarity * scale * read + hum + noise).astype(np.float32)


@functools.cache
def device_delay(device: Device, position: float, rate: int) -> float:
    """The device's own delay, samples: the lag of its response to a low-level impulse.

    A -40 dBFS impulse after 0.2 s of silence (the plug-in settles), and the response read as a
    band-limited signal: the lag where its magnitude peaks, refined to a fraction of a sample
    by windowed-sinc interpolation (the response is band-limited, like any digital output).
    """
    from ampcap.dataset.resample import interpolate_at

    at = int(0.2 * rate)
    impulse = np.zeros(at + rate // 2, dtype=np.float32)
    impulse[at] = 0.01
    response = run_device(device, position, impulse, rate)
    settled = response - np.median(response[at - rate // 20 : at])
    head = settled[at - 64 : at + rate // 20]
    peak = int(np.argmax(np.abs(head)))
    lags = peak + np.linspace(-1.0, 1.0, 2001)
    values = np.abs(interpolate_at(head, lags))
    return float(lags[int(np.argmax(values))] - 64)
