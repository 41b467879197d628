"""DI material: the built-in synthetic guitar and bass program, and the user's ``--di`` files.

The built-in DI is plucked strings synthesised with the Karplus-Strong model (Karplus & Strong,
"Digital synthesis of plucked-string and drum timbres", CMJ 1983; Jaffe & Smith's extensions
for tuning and dynamics, CMJ 1983): a noise burst circulates in a delay loop of one period with
a low-pass loop filter and a loss per period. Each note's loop is evaluated in the frequency
domain, ``H(w) = 1 / (1 - rho L(w) e^{-jw(D - s)})``, over an FFT long enough for the note to
decay by 60 dB, so the fractional period ``D`` tunes exactly and nothing loops over samples in
Python. Phrases mix single-note lines, strummed chords, palm-muted chugs and let-ring notes,
from soft to hard picking, normalised to a realistic DI peak level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import fft, signal

from ampcap.errors import AudioFileError, UsageError
from ampcap.files import read_audio
from ampcap.schema.session import SOURCE_KINDS

#: Peak level of the built-in DI sources, dBFS (a humbucker DI peaks around -6..-3 dBFS).
BUILTIN_PEAK_DBFS = -3.0


@dataclass(frozen=True)
class DiSource:
    """One DI recording ready to play.

    Attributes
    ----------
    name : str
        Unique name within the program (file stem, or ``builtin-guitar``/``builtin-bass``).
    kind : str
        One of ``SOURCE_KINDS``: "guitar", "bass" or "other".
    samples : numpy.ndarray, float32, shape (frames,)
        Mono samples at the rig's rate, full scale 1.0.
    origin : str
        "built-in" or the file's path.
    """

    name: str
    kind: str
    samples: np.ndarray
    origin: str


# --- the plucked string ---------------------------------------------------------------------


def _pluck(
    f0_hz: float,
    frames: int,
    t60_s: float,
    velocity: float,
    damping: float,
    pick_position: float,
    fs: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """One plucked note, float64 shape (frames,), released with a 10 ms fade at the end.

    ``velocity`` 0..1 sets level and brightness of the pick; ``damping`` 0..1 darkens the loop
    filter (palm mute); ``pick_position`` is the pluck point as a fraction of the string, which
    notches the harmonics that have a node there.
    """
    period = fs / f0_hz
    burst = max(int(round(period)), 2)
    excitation = rng.uniform(-1.0, 1.0, burst)
    # Harder picking is brighter: a one-pole low-pass whose pole moves towards 0 with velocity.
    pole = 0.85 - 0.75 * velocity
    excitation = signal.lfilter([1 - pole], [1, -pole], excitation) * velocity
    length = fft.next_fast_len(max(frames, int(t60_s * fs)) + burst, real=True)
    w = 2 * np.pi * np.arange(length // 2 + 1) / length
    s = 0.5 + 0.45 * damping  # loop filter (1-s) + s z^-1: more weight on z^-1 is darker
    loop = (1 - s) + s * np.exp(-1j * w)
    rho = 10 ** (-3 * period / (t60_s * fs))
    spectrum = fft.rfft(excitation, length)
    spectrum *= 1 - np.exp(-1j * w * pick_position * period)
    spectrum /= 1 - rho * loop * np.exp(-1j * w * (period - s))
    note = fft.irfft(spectrum, length)[:frames]
    fade = min(int(0.01 * fs), frames)
    note[frames - fade :] *= 0.5 * (1 + np.cos(np.linspace(0, np.pi, fade)))
    return note


def _midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


@dataclass(frozen=True)
class _Range:
    low: int  # MIDI notes
    high: int
    t60_s: float
    pickup_hz: float


_GUITAR = _Range(low=40, high=76, t60_s=2.5, pickup_hz=4500.0)
_BASS = _Range(low=28, high=55, t60_s=3.5, pickup_hz=2500.0)
_CHORDS = ((0, 7, 12, 16, 19, 24), (0, 7, 12, 15, 19, 24), (0, 7, 12), (0, 4, 7, 12))


def _render(kind: str, frames: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """A phrase-structured performance of ``frames`` samples on guitar or bass, float64."""
    spec = _GUITAR if kind == "guitar" else _BASS
    out = np.zeros(frames + fs)  # room for notes that end past the last phrase
    time_s = 0.2
    end_s = frames / fs - 0.3
    while time_s < end_s:
        phrase_s = min(rng.uniform(2.0, 4.0), end_s - time_s)
        beat_s = 60.0 / rng.uniform(90, 140)
        dynamics = rng.uniform(0.15, 1.0)  # soft to hard picking, phrase by phrase
        style = rng.choice(
            ["single", "chords", "palm", "sustain"]
            if kind == "guitar"
            else ["single", "palm", "sustain", "single"]
        )
        events: list[tuple[float, float, float, float, float, float]] = []
        t = time_s
        while t < time_s + phrase_s - 0.05:
            velocity = float(np.clip(dynamics * rng.uniform(0.75, 1.15), 0.05, 1.0))
            root = int(rng.integers(spec.low, spec.high - 12))
            if style == "single":
                step = beat_s * rng.choice([0.5, 0.5, 1.0, 0.25])
                note = int(rng.integers(spec.low, spec.high))
                events.append((t, step * 1.1, note, velocity, 0.0, spec.t60_s))
            elif style == "chords":
                step = beat_s * rng.choice([1.0, 2.0, 0.5])
                shape = _CHORDS[int(rng.integers(len(_CHORDS)))]
                spread = rng.uniform(0.008, 0.04)
                order = list(shape) if rng.random() < 0.7 else list(shape)[::-1]
                for i, interval in enumerate(order):
                    events.append(
                        (
                            t + i * spread,
                            step,
                            min(root + interval, spec.high),
                            velocity * (1 - 0.04 * i),
                            0.0,
                            spec.t60_s,
                        )
                    )
            elif style == "palm":
                step = beat_s * 0.5
                note = min(root, spec.low + 7)
                for interval in (0, 7) if kind == "guitar" else (0,):
                    events.append((t, step * 0.9, note + interval, velocity, 0.9, 0.25))
            else:
                step = beat_s * rng.choice([2.0, 4.0])
                note = int(rng.integers(spec.low, spec.high))
                events.append((t, step, note, velocity, 0.0, spec.t60_s * 1.6))
            t += step
        for start_s, length_s, note, velocity, damping, t60_s in events:
            start = int(start_s * fs)
            length = max(int(length_s * fs), int(0.03 * fs))
            if start >= frames:
                continue
            out[start : start + length] += _pluck(
                _midi_hz(note),
                length,
                t60_s,
                velocity,
                damping,
                rng.uniform(0.1, 0.3),
                fs,
                rng,
            )[: len(out) - start]
        time_s += phrase_s + rng.uniform(0.0, 0.3)
    # The pickup's resonance rolls off the top; the input coupling removes DC.
    sos = np.vstack(
        [
            signal.butter(2, spec.pickup_hz, "lowpass", fs=fs, output="sos"),
            signal.butter(1, 20.0, "highpass", fs=fs, output="sos"),
        ]
    )
    # Filtered in place, a second at a time, so a long DI is never held twice.
    state = np.zeros((sos.shape[0], 2))
    for start in range(0, frames, fs):
        out[start : start + fs], state = signal.sosfilt(sos, out[start : start + fs], zi=state)
    return out[:frames]


def builtin_di(
    seconds: float, sample_rate_hz: int, seed: int = 0, peak_dbfs: float = BUILTIN_PEAK_DBFS
) -> list[DiSource]:
    """The built-in DI program: guitar for the first half, bass for the second.

    Parameters
    ----------
    seconds : float
        Total length of the two sources, at least 2 s.
    sample_rate_hz : int
        Rate of the returned samples, Hz.
    seed : int, default 0
        Same seed, same samples (bit for bit on the same numpy/scipy).
    peak_dbfs : float, default -3.0
        Peak level of each source.

    Returns
    -------
    list of DiSource
        ``builtin-guitar`` (kind guitar) and ``builtin-bass`` (kind bass), float32.
    """
    if not seconds >= 2.0:
        raise UsageError(
            f"--di-seconds {seconds:g} is too short; give at least 2 seconds "
            "(60 is a good start, the DAFx-19 paper used about 8 minutes)."
        )
    total = int(round(seconds * sample_rate_hz))
    guitar_frames = total // 2
    sources = []
    for kind, frames, offset in (("guitar", guitar_frames, 0), ("bass", total - guitar_frames, 1)):
        rng = np.random.default_rng([seed, offset])
        audio = _render(kind, frames, sample_rate_hz, rng)
        audio *= 10 ** (peak_dbfs / 20) / max(float(np.max(np.abs(audio))), 1e-12)
        sources.append(DiSource(f"builtin-{kind}", kind, audio.astype(np.float32), "built-in"))
    return sources


# --- the user's files -------------------------------------------------------------------------


def parse_di_spec(spec: str) -> tuple[str, Path]:
    """``"bass:take1.wav"`` -> ("bass", path); ``"my_bass_di.wav"`` -> ("bass", path).

    A ``kind:`` prefix (guitar, bass or other) wins; otherwise the kind is "bass" when the file
    name contains "bass" and "guitar" otherwise.
    """
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in SOURCE_KINDS:
        return prefix, Path(rest)
    path = Path(spec)
    return ("bass" if "bass" in path.name.lower() else "guitar"), path


def load_di_files(specs: list[str], sample_rate_hz: int) -> tuple[list[DiSource], list[str]]:
    """Read ``--di`` files as mono sources at the rig's rate.

    Stereo files are accepted only when both channels hold the same signal (a mono DI written
    twice; the first channel is used, with a notice). Different channels are refused: mixing
    them could cancel, and picking one is the user's call. Files at another rate are resampled
    (``scipy.signal.resample_poly``, a polyphase anti-aliased resampler) with a notice. Levels
    are never changed: the device must see the DI at its real level.

    Parameters
    ----------
    specs : list of str
        ``PATH`` or ``KIND:PATH`` per file (see :func:`parse_di_spec`).
    sample_rate_hz : int
        The rig's rate.

    Returns
    -------
    sources : list of DiSource
    notices : list of str
        One line per resampled or down-mixed file, for the console.

    Raises
    ------
    AudioFileError
        Missing, non-audio, corrupt or silent files, or stereo files with different channels.
    """
    sources: list[DiSource] = []
    notices: list[str] = []
    used: set[str] = set()
    for spec in specs:
        kind, path = parse_di_spec(spec)
        samples, rate = read_audio(path)
        if samples.shape[1] > 1:
            spread = float(np.max(np.abs(samples - samples[:, :1])))
            if spread > 1e-4:
                raise AudioFileError(
                    f"{path} has {samples.shape[1]} different channels; a DI is one signal. "
                    "Export the channel you want as a mono file (for example with sox: "
                    f"`sox {path.name} di-mono.wav remix 1`) and give that file to --di."
                )
            notices.append(f"{path} has {samples.shape[1]} identical channels; using the first.")
        mono = samples[:, 0].astype(np.float64)
        if rate != sample_rate_hz:
            g = math.gcd(rate, sample_rate_hz)
            mono = signal.resample_poly(mono, sample_rate_hz // g, rate // g)
            notices.append(f"{path} is at {rate} Hz; resampled to the rig's {sample_rate_hz} Hz.")
        name = path.stem
        suffix = 2
        while name in used:
            name = f"{path.stem}-{suffix}"
            suffix += 1
        used.add(name)
        sources.append(DiSource(name, kind, mono.astype(np.float32), str(path)))
    return sources, notices
