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
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from scipy import fft, signal

from ampcap.errors import AudioFileError, CaptureError, UsageError
from ampcap.files import audio_info, read_audio
from ampcap.levels import amplitude
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


@dataclass(frozen=True)
class DiStream:
    """One DI source read a stretch at a time, so a long DI is never held in memory whole.

    Attributes
    ----------
    name, kind, origin : str
        As in :class:`DiSource`.
    frames : int
        Length, samples at the rig's rate.
    read : callable
        ``read(start, stop)`` -> float32 shape (stop - start,): the samples ``start:stop``,
        the same values a :class:`DiSource` of the whole DI holds there.
    """

    name: str
    kind: str
    frames: int
    origin: str
    read: Callable[[int, int], np.ndarray]


def stream_of(source: DiSource) -> DiStream:
    """A :class:`DiStream` over a DI already in memory."""
    samples = source.samples
    return DiStream(
        source.name, source.kind, len(samples), source.origin, lambda a, b: samples[a:b]
    )


def _open_spill(workdir: Path, prefix: str) -> tuple[Path, BinaryIO]:
    """A new raw sample file in ``workdir``, open for writing."""
    try:
        descriptor, name = tempfile.mkstemp(prefix=prefix, suffix=".raw", dir=workdir)
    except OSError as exc:
        raise _spill_error(workdir, exc) from exc
    return Path(name), os.fdopen(descriptor, "wb")


def _spill_error(workdir: Path, exc: OSError) -> CaptureError:
    return CaptureError(
        f"The DI could not be prepared in the working folder {workdir} ({exc}); nothing was "
        "played. Free some disk space there (or point TMPDIR at a disk with room) and run the "
        "command again."
    )


def _spill_reader(
    path: Path, dtype: str, scale: float | None = None
) -> Callable[[int, int], np.ndarray]:
    """``read(start, stop)`` of a raw sample file written by this module, as float32.

    With ``scale`` the float64 samples are multiplied by it before the one rounding to float32,
    exactly what scaling a float64 array in memory and casting it does.
    """
    size = np.dtype(dtype).itemsize

    def read(start: int, stop: int) -> np.ndarray:
        block = np.fromfile(path, dtype=dtype, count=max(stop - start, 0), offset=start * size)
        if scale is not None:
            block *= scale
        return block.astype(np.float32)

    return read


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


class _Mix:
    """The sum of the notes, kept only from the first sample not yet filtered and handed out.

    Notes are added in the order they are played, each onto zeros or onto the notes before it,
    so every sample is the same float64 sum, in the same order, as in one buffer holding the
    whole performance. Whole seconds are then filtered in order with the filter state carried
    over, as the whole buffer was filtered a second at a time.
    """

    def __init__(self, frames: int, fs: int, sos: np.ndarray) -> None:
        self.frames = frames
        self.fs = fs
        self.sos = sos
        self.state = np.zeros((sos.shape[0], 2))
        # Notes are cut one second past the end, as the whole buffer was that long.
        self.limit = frames + fs
        self.base = 0  # the sample that buffer[0] holds; everything before it was handed out
        self.buffer = np.zeros(0)

    def add(self, start: int, note: np.ndarray) -> None:
        note = note[: self.limit - start]
        stop = start + len(note) - self.base
        if stop > len(self.buffer):
            self.buffer = np.concatenate([self.buffer, np.zeros(stop - len(self.buffer))])
        self.buffer[start - self.base : stop] += note

    def filtered(self, ready: int) -> Iterator[np.ndarray]:
        """The filtered seconds that lie before ``ready``; at ``ready == frames`` all the rest.

        Yields float64 blocks of ``fs`` samples (the last one cut at ``frames``).
        """
        final = ready >= self.frames
        while self.base < self.frames and (final or self.base + self.fs <= ready):
            chunk = self.buffer[: self.fs]
            if len(chunk) < self.fs:
                chunk = np.concatenate([chunk, np.zeros(self.fs - len(chunk))])
            chunk, self.state = signal.sosfilt(self.sos, chunk, zi=self.state)
            yield chunk[: self.frames - self.base]
            self.buffer = self.buffer[self.fs :]
            self.base += self.fs


#: A note: start and length (s), MIDI note, velocity (0..1), palm damping (0..1), decay T60 (s).
_Event = tuple[float, float, float, float, float, float]


def _phrase_events(
    kind: str, spec: _Range, time_s: float, phrase_s: float, rng: np.random.Generator
) -> list[_Event]:
    """The notes of one phrase starting at ``time_s``: a tempo, a dynamic and a playing style
    (single notes, strummed chords, palm mutes or sustained notes) drawn for the phrase."""
    beat_s = 60.0 / rng.uniform(90, 140)
    dynamics = rng.uniform(0.15, 1.0)  # soft to hard picking, phrase by phrase
    style = rng.choice(
        ["single", "chords", "palm", "sustain"]
        if kind == "guitar"
        else ["single", "palm", "sustain", "single"]
    )
    events: list[_Event] = []
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
    return events


def _play_events(
    mix: _Mix, events: list[_Event], frames: int, fs: int, rng: np.random.Generator
) -> None:
    """Pluck every note that starts before ``frames`` into ``mix`` (at least 30 ms each)."""
    for start_s, length_s, note, velocity, damping, t60_s in events:
        start = int(start_s * fs)
        length = max(int(length_s * fs), int(0.03 * fs))
        if start >= frames:
            continue
        mix.add(
            start,
            _pluck(
                _midi_hz(note),
                length,
                t60_s,
                velocity,
                damping,
                rng.uniform(0.1, 0.3),
                fs,
                rng,
            ),
        )


def _render_blocks(
    kind: str, frames: int, fs: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """A phrase-structured performance of ``frames`` samples on guitar or bass, float64, in
    blocks of one second (the last one shorter), made as it is played so that memory does not
    grow with its length."""
    spec = _GUITAR if kind == "guitar" else _BASS
    # The pickup's resonance rolls off the top; the input coupling removes DC.
    sos = np.vstack(
        [
            signal.butter(2, spec.pickup_hz, "lowpass", fs=fs, output="sos"),
            signal.butter(1, 20.0, "highpass", fs=fs, output="sos"),
        ]
    )
    mix = _Mix(frames, fs, sos)
    time_s = 0.2
    end_s = frames / fs - 0.3
    while time_s < end_s:
        phrase_s = min(rng.uniform(2.0, 4.0), end_s - time_s)
        _play_events(mix, _phrase_events(kind, spec, time_s, phrase_s, rng), frames, fs, rng)
        time_s += phrase_s + rng.uniform(0.0, 0.3)
        # Every later note starts at or after time_s: the mix before it is final.
        yield from mix.filtered(min(int(time_s * fs), frames))
    yield from mix.filtered(frames)


def _render(kind: str, frames: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """The whole performance of :func:`_render_blocks` in one float64 array, shape (frames,)."""
    return np.concatenate(list(_render_blocks(kind, frames, fs, rng)))


def _check_seconds(seconds: float) -> None:
    if not seconds >= 2.0:
        raise UsageError(
            f"--di-seconds {seconds:g} is too short; give at least 2 seconds "
            "(60 is a good start, the DAFx-19 paper used about 8 minutes)."
        )


def _builtin_parts(seconds: float, sample_rate_hz: int) -> tuple[tuple[str, int, int], ...]:
    """(kind, frames, seed offset) of each built-in source."""
    total = int(round(seconds * sample_rate_hz))
    guitar_frames = total // 2
    return (("guitar", guitar_frames, 0), ("bass", total - guitar_frames, 1))


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
        :func:`builtin_di_streams` gives the same samples without holding them.
    """
    _check_seconds(seconds)
    sources = []
    for kind, frames, offset in _builtin_parts(seconds, sample_rate_hz):
        rng = np.random.default_rng([seed, offset])
        audio = _render(kind, frames, sample_rate_hz, rng)
        audio *= amplitude(peak_dbfs) / max(float(np.max(np.abs(audio))), 1e-12)
        sources.append(DiSource(f"builtin-{kind}", kind, audio.astype(np.float32), "built-in"))
    return sources


def builtin_di_streams(
    seconds: float,
    sample_rate_hz: int,
    workdir: Path,
    seed: int = 0,
    peak_dbfs: float = BUILTIN_PEAK_DBFS,
) -> list[DiStream]:
    """The built-in DI of :func:`builtin_di`, sample for sample, made in bounded memory.

    Each source is synthesised a second at a time into a float64 file in ``workdir`` (8 bytes a
    sample) while its peak is tracked; reading a stretch scales it to ``peak_dbfs`` and rounds
    it to float32, the same two operations :func:`builtin_di` applies to the whole array.

    Parameters
    ----------
    seconds, sample_rate_hz, seed, peak_dbfs
        As in :func:`builtin_di`.
    workdir : Path
        An existing folder for the raw files; the caller removes it when done.

    Returns
    -------
    list of DiStream
    """
    _check_seconds(seconds)
    streams = []
    for kind, frames, offset in _builtin_parts(seconds, sample_rate_hz):
        rng = np.random.default_rng([seed, offset])
        path, handle = _open_spill(workdir, f"builtin-{kind}-")
        peak = 0.0
        try:
            with handle:
                for block in _render_blocks(kind, frames, sample_rate_hz, rng):
                    peak = max(peak, float(np.max(np.abs(block), initial=0.0)))
                    handle.write(block.astype("<f8").tobytes())
        except OSError as exc:
            raise _spill_error(workdir, exc) from exc
        scale = amplitude(peak_dbfs) / max(peak, 1e-12)
        streams.append(
            DiStream(f"builtin-{kind}", kind, frames, "built-in", _spill_reader(path, "<f8", scale))
        )
    return streams


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


def _check_di_exists(spec: str, path: Path) -> None:
    """A ``--di`` value that names no file gets a message about the ``KIND:PATH`` form."""
    if path.exists():
        return
    form = f"Give PATH or KIND:PATH, where KIND is {', '.join(SOURCE_KINDS[:-1])} or {SOURCE_KINDS[-1]}"
    prefix, sep, rest = spec.partition(":")
    if sep and prefix not in SOURCE_KINDS and len(prefix) > 1:
        found = (
            f"{rest} exists: --di guitar:{rest} (or other:{rest}) may be what you meant"
            if Path(rest).exists()
            else f"{rest} does not exist either"
        )
        raise UsageError(
            f"--di {spec}: no file is called {spec}, and {prefix!r} is not a kind of DI. "
            f"{form} (e.g. --di bass:{rest or 'bass.wav'}); {found}."
        )
    raise AudioFileError(f"--di {spec}: {path} does not exist. {form} (e.g. --di bass:di.wav).")


#: Frames read from a ``--di`` file at a time while checking it.
FILE_BLOCK_FRAMES = 1 << 17


def _unique_name(path: Path, used: set[str]) -> str:
    name = path.stem
    suffix = 2
    while name in used:
        name = f"{path.stem}-{suffix}"
        suffix += 1
    used.add(name)
    return name


def _different_channels(path: Path, channels: int) -> AudioFileError:
    return AudioFileError(
        f"{path} has {channels} different channels; a DI is one signal. "
        "Export the channel you want as a mono file (for example with sox: "
        f"`sox {path.name} di-mono.wav remix 1`) and give that file to --di."
    )


def _file_reader(path: Path) -> Callable[[int, int], np.ndarray]:
    """``read(start, stop)`` of a file's first channel, float32, validated as it is read."""

    def read(start: int, stop: int) -> np.ndarray:
        samples, _ = read_audio(path, start=start, frames=stop - start, allow_silence=True)
        return np.ascontiguousarray(samples[:, 0])

    return read


def di_file_streams(
    specs: list[str], sample_rate_hz: int, workdir: Path | None = None
) -> tuple[list[DiStream], list[str]]:
    """Open ``--di`` files as mono sources at the rig's rate, checked a block at a time.

    A file at the rig's rate is read a block of :data:`FILE_BLOCK_FRAMES` frames at a time,
    here to check it and later each time its samples are wanted, so it is never held whole.
    A file at another rate is read whole and resampled in one piece (the result is the same
    as :func:`load_di_files` gives), then kept as a float32 file in ``workdir`` (in memory when
    ``workdir`` is None): only that step's memory grows with the file's length.

    Parameters
    ----------
    specs : list of str
        ``PATH`` or ``KIND:PATH`` per file (see :func:`parse_di_spec`).
    sample_rate_hz : int
        The rig's rate.
    workdir : Path, optional
        An existing folder for resampled files; the caller removes it when done.

    Returns
    -------
    streams : list of DiStream
    notices : list of str
        One line per resampled or down-mixed file, for the console.

    Raises
    ------
    AudioFileError
        As :func:`load_di_files`.
    """
    streams: list[DiStream] = []
    notices: list[str] = []
    used: set[str] = set()
    for spec in specs:
        kind, path = parse_di_spec(spec)
        _check_di_exists(spec, path)
        info = audio_info(path)
        peak = 0.0
        spread = 0.0
        for start in range(0, info.frames, FILE_BLOCK_FRAMES):
            samples, _ = read_audio(path, start=start, frames=FILE_BLOCK_FRAMES, allow_silence=True)
            peak = max(peak, float(np.max(np.abs(samples), initial=0.0)))
            if samples.shape[1] > 1:
                spread = max(spread, float(np.max(np.abs(samples - samples[:, :1]), initial=0.0)))
        if peak < 1e-6:
            raise AudioFileError(
                f"{info.path} is silent (peak below -120 dBFS). Is it the right file?"
            )
        if info.channels > 1:
            if spread > 1e-4:
                raise _different_channels(path, info.channels)
            notices.append(f"{path} has {info.channels} identical channels; using the first.")
        name = _unique_name(path, used)
        if info.sample_rate_hz == sample_rate_hz:
            streams.append(DiStream(name, kind, info.frames, str(path), _file_reader(path)))
            continue
        samples, rate = read_audio(path)
        g = math.gcd(rate, sample_rate_hz)
        mono = signal.resample_poly(
            samples[:, 0].astype(np.float64), sample_rate_hz // g, rate // g
        ).astype(np.float32)
        del samples
        notices.append(f"{path} is at {rate} Hz; resampled to the rig's {sample_rate_hz} Hz.")
        if workdir is None:
            streams.append(stream_of(DiSource(name, kind, mono, str(path))))
            continue
        spill, handle = _open_spill(workdir, "di-")
        try:
            with handle:
                handle.write(mono.astype("<f4").tobytes())
        except OSError as exc:
            raise _spill_error(workdir, exc) from exc
        streams.append(DiStream(name, kind, len(mono), str(path), _spill_reader(spill, "<f4")))
    return streams, notices


def load_di_files(specs: list[str], sample_rate_hz: int) -> tuple[list[DiSource], list[str]]:
    """Read ``--di`` files as mono sources at the rig's rate.

    Stereo files are accepted only when both channels hold the same signal (a mono DI written
    twice; the first channel is used, with a notice). Different channels are refused: mixing
    them could cancel, and picking one is the user's call. Files at another rate are resampled
    (``scipy.signal.resample_poly``, a polyphase anti-aliased resampler) with a notice. Levels
    are never changed: the device must see the DI at its real level. :func:`di_file_streams`
    gives the same samples without holding them.

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
    streams, notices = di_file_streams(specs, sample_rate_hz)
    sources = [DiSource(s.name, s.kind, s.read(0, s.frames), s.origin) for s in streams]
    return sources, notices
