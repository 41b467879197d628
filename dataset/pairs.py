"""Alignment of recordings made elsewhere: a DI and its reamp through the device (a DAW pair).

There are no sync markers. The device's output is found in the whole signal by its coherent
part (:mod:`.coherence`): latency, clock drift and polarity, with the band coherence as the
confidence, so a distorting device is aligned and an unrelated file refused. With a loopback
(the DI recorded back through a cable in the same pass) the latency splits in two: the
interface's, from the loopback against the DI (a matched filter: the loopback is a clean
copy, and its drift is exact), and the device's, the rest of the output's latency read against
the DI along that drift.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ampcap.errors import AlignmentError, AudioFileError
from ampcap.files import audio_info, read_audio
from ampcap.levels import FLOOR_DB, dbfs
from ampcap.outputs import check_output_file
from ampcap.threads import one_blas_thread

from .coherence import (
    COHERENCE_BAND_HZ,
    MIN_COHERENCE,
    MIN_COHERENCE_OVER_FLOOR,
    CoherentTrack,
    track_coherent,
)
from .delay import MIN_CONFIDENCE_DB, REFINE_GUARD_SAMPLES, LatencyTrack, track_latency
from .quality import peak
from .render import DriftCorrection, ReadPlan, drift_correction, render_aligned
from .take import MAX_LATENCY_SECONDS, SILENT_DBFS

#: A note says how uncertain the drift is when two standard errors of it move the pair's ends
#: by more than this, samples.
DRIFT_NOTE_SAMPLES = 0.5
#: What the confidence of a pair means, for people reading ``--json``.
CONFIDENCE_MEANING = (
    "magnitude-squared coherence between the input and the output read at the measured "
    f"latency, {COHERENCE_BAND_HZ[0]:.0f} Hz-{COHERENCE_BAND_HZ[1] / 1000:.0f} kHz, weighted by "
    "the input's power: the share of the output that follows the input linearly where the "
    "input plays (1: a clean copy; a distorting device keeps 0.15-0.95; an unrelated file "
    "scores at the floor, about 1 / segments)"
)


@dataclass(frozen=True)
class FileAlignment:
    """The alignment of a DI file and its recording through the device (a DAW reamp).

    Attributes
    ----------
    latency_samples : float
        Latency of the output file against the input at input sample 0 (positive: it lags);
        with a loopback, loopback latency plus device latency.
    drift_ppm : float
        Clock drift of the recording against the input (see :mod:`.delay`).
    drift_error_ppm : float or None
        Standard error of ``drift_ppm`` read from the music (see
        :attr:`.coherence.CoherentTrack.drift_error_ppm`); None with a loopback, whose clean
        copy of the DI gives the drift to a few thousandths of a ppm.
    drift_corrected : bool
        Whether the drift was above :data:`.render.DRIFT_THRESHOLD_SAMPLES` over the file and
        undone.
    polarity : int
        +1, or -1 when the device output is inverted (undone in the aligned pair).
    coherence : float
        The confidence: band coherence of the output with its input (see
        :data:`CONFIDENCE_MEANING`); with a loopback, of the output with the loopback.
    coherence_floor : float
        What an unrelated recording scores with as many segments.
    loopback_latency_samples, device_latency_samples : float or None
        The two parts of the latency, with a loopback file.
    loopback_confidence_db : float or None
        Peak-to-sidelobe ratio of the loopback's matched filter, dB (trusted from 10).
    sample_rate_hz, input_frames, output_frames : int
    pair_frames : int
        Frames in the aligned pair: the input's, less what the output does not cover.
    uncovered_frames : int
        Input frames past the end of a short output, left out of the pair.
    trimmed_frames : int
        Output frames past the end of the input (a render tail), left out.
    out_path : Path
        The aligned pair written, ``[input, target]`` float32.
    notes : tuple of str
        Plain-language notes on what was done.
    """

    latency_samples: float
    drift_ppm: float
    drift_corrected: bool
    polarity: int
    coherence: float
    coherence_floor: float
    loopback_latency_samples: float | None
    device_latency_samples: float | None
    loopback_confidence_db: float | None
    sample_rate_hz: int
    input_frames: int
    output_frames: int
    pair_frames: int
    uncovered_frames: int
    trimmed_frames: int
    out_path: Path
    notes: tuple[str, ...] = field(default_factory=tuple)
    drift_error_ppm: float | None = None

    @property
    def trusted_from(self) -> float:
        """The least coherence trusted with this many segments."""
        return max(MIN_COHERENCE, MIN_COHERENCE_OVER_FLOOR * self.coherence_floor)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document; ``confidence`` says what it measures and what is trusted."""
        return {
            "latency_samples": _rounded(self.latency_samples, 5),
            "drift_ppm": _rounded(self.drift_ppm, 4),
            "drift_error_ppm": _rounded(self.drift_error_ppm, 4),
            "polarity": self.polarity,
            "confidence": {
                "measure": "coherence",
                "value": _rounded(self.coherence, 4),
                "trusted_from": _rounded(self.trusted_from, 4),
                "unrelated_floor": _rounded(self.coherence_floor, 4),
                "meaning": CONFIDENCE_MEANING,
            },
            "drift_corrected": self.drift_corrected,
            "loopback_latency_samples": _rounded(self.loopback_latency_samples, 5),
            "device_latency_samples": _rounded(self.device_latency_samples, 5),
            "loopback_confidence_db": _rounded(self.loopback_confidence_db, 2),
            "sample_rate_hz": self.sample_rate_hz,
            "input_frames": self.input_frames,
            "output_frames": self.output_frames,
            "pair_frames": self.pair_frames,
            "uncovered_frames": self.uncovered_frames,
            "trimmed_frames": self.trimmed_frames,
            "out": str(self.out_path),
            "notes": list(self.notes),
        }


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def _read_mono(path: Path, role: str, rate: int | None, reference: Path | None) -> np.ndarray:
    """A mono file as float32 (frames,), refused with a message naming the file and why."""
    try:
        info = audio_info(path)
    except AudioFileError as exc:
        raise AlignmentError(f"The {role} file cannot be used: {exc}") from exc
    if rate is not None and info.sample_rate_hz != rate:
        raise AlignmentError(
            f"The {role} file {path} is at {info.sample_rate_hz} Hz but the input {reference} "
            f"is at {rate} Hz. Export both at the same rate (resampling one changes the "
            "latency you are measuring), then run `ampcap align` again."
        )
    if info.channels != 1:
        raise AlignmentError(
            f"The {role} file {path} has {info.channels} channels; ampcap aligns mono files. "
            "Export the track as mono (a reamped guitar is one channel), then try again."
        )
    try:
        audio, _ = read_audio(path, allow_silence=True)
    except AudioFileError as exc:
        raise AlignmentError(f"The {role} file cannot be used: {exc}") from exc
    samples = audio[:, 0]
    if dbfs(peak(samples), FLOOR_DB) < SILENT_DBFS:
        raise AlignmentError(
            f"The {role} file {path} is silent (peak below {SILENT_DBFS:.0f} dBFS): is it the "
            "right file, and was the track armed?"
        )
    return samples


def _loopback_windows(source: np.ndarray, stop: int, rate: int) -> list[tuple[int, int]]:
    """Two windows with the most energy, in the first and the last 40 % of ``source[:stop]``.

    Windows are one second long: a clean copy needs no more for a peak to a thousandth of a
    sample (3 s windows moved the loopback latency by less than 1e-4 samples and took three
    times as long to refine); under 3 seconds one window covers all of it.
    """
    frames = min(len(source), stop)
    if frames < 3 * rate:
        return [(0, max(frames, 1))]
    length = rate
    hop = max(length // 4, 1)
    starts = np.arange(0, frames - length + 1, hop)
    # The running energy is needed only at the windows' edges: summed a stretch between two
    # edges at a time, it never holds a float64 copy of the whole take (which, squared and
    # summed at once, took more memory than the take's audio).
    edges = np.unique(np.concatenate((starts, starts + length)))
    energy = np.zeros(len(edges))
    total, previous = 0.0, 0
    for k, edge in enumerate(edges):
        stretch = source[previous:edge].astype(np.float64)
        total += float(np.dot(stretch, stretch))
        energy[k], previous = total, int(edge)
    window_energy = (
        energy[np.searchsorted(edges, starts + length)] - energy[np.searchsorted(edges, starts)]
    )
    early = starts + length <= int(0.4 * frames) + length // 2
    late = starts >= int(0.6 * frames) - length // 2
    chosen = []
    for mask in (early, late):
        if mask.any():
            candidates = starts[mask]
            chosen.append((int(candidates[np.argmax(window_energy[mask])]), length))
    return chosen if len(chosen) == 2 else [(0, frames)]


def _refined_loopback(
    source: np.ndarray, loopback: np.ndarray, rate: int, reach: int, hint: CoherentTrack
) -> LatencyTrack | None:
    """The loopback's latency and drift: matched-filter refinement from a first estimate.

    The first estimate is the output's own (``hint``): the loopback differs from it only by
    the device's delay, which the refinement's residual search spans for almost every device.
    Where it does not (the refined track is not trusted, or lands more than half that search
    from the output's estimate), the loopback is found in the music from scratch, as the
    output was.
    """
    windows = _loopback_windows(source, len(loopback), rate)
    hinted = _refined_from(source, loopback, windows, reach, hint)
    if (
        hinted is not None
        and hinted.trusted
        and abs(hinted.latency_samples - hint.latency_samples) < REFINE_GUARD_SAMPLES / 2
    ):
        return hinted
    coarse = _coherent_or_none(source, loopback, rate, reach, drift=True)
    if coarse is None or not coarse.trusted:
        return None
    return _refined_from(source, loopback, windows, reach, coarse)


def _refined_from(
    source: np.ndarray,
    loopback: np.ndarray,
    windows: list[tuple[int, int]],
    reach: int,
    first: CoherentTrack,
) -> LatencyTrack | None:
    try:
        return track_latency(
            source,
            loopback,
            windows,
            min_latency_samples=-reach,
            max_latency_samples=reach,
            initial=(first.latency_samples, first.drift_ppm),
        )
    except AlignmentError:
        return None


def _unrelated(
    path: Path, role: str, against: Path, track: CoherentTrack | None, max_latency_seconds: float
) -> AlignmentError:
    if track is None:
        detail = "no part of it overlaps the input within the latency searched"
    else:
        trusted = max(MIN_COHERENCE, MIN_COHERENCE_OVER_FLOOR * track.coherence_floor)
        detail = (
            f"its coherence with it is {track.coherence:.3f} where {trusted:.2f} is the least "
            f"trusted (an unrelated file scores about {track.coherence_floor:.3f}; a recording "
            "through even the most distorting device keeps 0.15 or more)"
        )
    return AlignmentError(
        f"The {role} file {path} does not look like a recording of {against}: {detail}. Check "
        "you picked the matching files, that both play at the rate their headers say, and that "
        f"the latency is under {max_latency_seconds:g} s (--max-latency)."
    )


def _coherent_or_none(
    reference: np.ndarray,
    recorded: np.ndarray,
    rate: int,
    reach: int,
    drift: bool,
    drift_ppm: float | None = None,
    near: CoherentTrack | None = None,
) -> CoherentTrack | None:
    try:
        return track_coherent(
            reference,
            recorded,
            rate,
            min_latency_samples=-reach,
            max_latency_samples=reach,
            drift=drift,
            drift_ppm=drift_ppm,
            near=None if near is None else (near.latency_samples, near.drift_ppm),
        )
    except AlignmentError:
        return None


@one_blas_thread
def align_files(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    loopback_path: str | os.PathLike[str] | None = None,
    *,
    out_path: str | os.PathLike[str] | None = None,
    max_latency_seconds: float = MAX_LATENCY_SECONDS,
) -> FileAlignment:
    """Align a recording made elsewhere (DAW reamp) to the DI it was made from.

    Parameters
    ----------
    input_path : path-like
        The DI that was played (mono).
    output_path : path-like
        The device's output as recorded (mono, same sample rate). A render tail is left out
        of the pair; an output that stops early (a bounce of part of the DI) gives a pair as
        long as the part it covers. Each gets a note.
    loopback_path : path-like, optional
        The DI as recorded back through a cable, at the same time as the output (mono, same
        rate). With it the latency is split into interface and device parts, and the aligned
        input is the loopback.
    out_path : path-like, optional
        Where to write the aligned pair; default ``<output stem>.aligned.wav`` beside the output.
    max_latency_seconds : float, default 1.0
        Latencies searched, both signs.

    Returns
    -------
    FileAlignment

    Raises
    ------
    AlignmentError
        Mismatched sample rates, multi-channel, truncated or silent files, or an output (or
        loopback) that is not a recording of the input; each message names the file and why.
    UsageError
        ``out_path`` would overwrite one of the given files.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    loopback = Path(loopback_path) if loopback_path is not None else None
    out = (
        Path(out_path)
        if out_path is not None
        else output_path.with_name(f"{output_path.stem}.aligned.wav")
    )
    check_output_file(out, (input_path, output_path, loopback), option="--out")
    files = (input_path, output_path, loopback)
    source, rate, recorded, recorded_loopback = _read_pair(files)
    axis = _measure_pair(source, recorded, recorded_loopback, rate, max_latency_seconds, files)
    frames = len(source)
    drift = drift_correction(axis.drift_ppm, axis.step, frames)
    pair_frames, trimmed = _coverage(axis, drift, frames, recorded, recorded_loopback)
    notes = _inversion_notes(axis)
    notes += _coverage_notes(frames, pair_frames, trimmed, rate, output_path, input_path)
    notes += _drift_notes(axis.drift_error_ppm, pair_frames)
    channels = [recorded_loopback if recorded_loopback is not None else source, recorded]
    render_aligned(out, source, channels, _pair_plan(axis, drift), rate, frames=pair_frames)
    return FileAlignment(
        latency_samples=axis.latency_samples,
        drift_ppm=axis.drift_ppm,
        drift_corrected=drift.corrected,
        polarity=axis.track.polarity,
        coherence=axis.track.coherence,
        coherence_floor=axis.track.coherence_floor,
        loopback_latency_samples=axis.loopback_latency_samples,
        device_latency_samples=axis.device_latency_samples,
        loopback_confidence_db=axis.loopback.confidence_db if axis.loopback else None,
        sample_rate_hz=rate,
        input_frames=frames,
        output_frames=len(recorded),
        pair_frames=pair_frames,
        uncovered_frames=frames - pair_frames,
        trimmed_frames=trimmed,
        out_path=out,
        notes=tuple(notes),
        drift_error_ppm=axis.drift_error_ppm,
    )


def _read_pair(
    files: tuple[Path, Path, Path | None],
) -> tuple[np.ndarray, int, np.ndarray, np.ndarray | None]:
    """The input, its sample rate, the output and the loopback (None without one file)."""
    input_path, output_path, loopback = files
    source = _read_mono(input_path, "input", None, None)
    rate = audio_info(input_path).sample_rate_hz
    recorded = _read_mono(output_path, "output", rate, input_path)
    recorded_loopback = (
        _read_mono(loopback, "loopback", rate, input_path) if loopback is not None else None
    )
    return source, rate, recorded, recorded_loopback


def _measure_pair(
    source: np.ndarray,
    recorded: np.ndarray,
    recorded_loopback: np.ndarray | None,
    rate: int,
    max_latency_seconds: float,
    files: tuple[Path, Path, Path | None],
) -> _PairAxis:
    """The output's latency, drift and polarity against the input, split by the loopback.

    ``files`` are the input, output and loopback paths, for the messages.
    """
    input_path, output_path, loopback = files
    reach = int(round(max_latency_seconds * rate))
    # The device's output against the DI: latency (interface and device together), drift,
    # polarity, and the coherence that says it is a recording of this DI at all.
    track = _coherent_or_none(source, recorded, rate, reach, drift=True)
    if track is None or not track.trusted:
        raise _unrelated(output_path, "output", input_path, track, max_latency_seconds)
    if loopback is None or recorded_loopback is None:
        return _PairAxis(
            track,
            None,
            track.latency_samples,
            None,
            None,
            track.drift_ppm,
            track.step,
            track.drift_error_ppm,
        )
    return _through_loopback(
        track, source, recorded, recorded_loopback, rate, reach, loopback, input_path
    )


@dataclass(frozen=True)
class _PairAxis:
    """Where the output (and loopback) of a pair sit against the input.

    ``latency_samples`` is the output's, loopback and device parts together; the parts and
    ``loopback`` are None without a loopback file. Drift is the loopback's when there is one:
    measured on a clean copy, it is the more precise.
    """

    track: CoherentTrack
    loopback: LatencyTrack | None
    latency_samples: float
    loopback_latency_samples: float | None
    device_latency_samples: float | None
    drift_ppm: float
    step: float
    drift_error_ppm: float | None = None


def _through_loopback(
    track: CoherentTrack,
    source: np.ndarray,
    recorded: np.ndarray,
    recorded_loopback: np.ndarray,
    rate: int,
    reach: int,
    loopback: Path,
    input_path: Path,
) -> _PairAxis:
    """Split the output's latency into the interface's part (the loopback's) and the device's.

    The loopback is a clean copy: placed where the output's estimate puts it (or found in the
    music, as the output was), then refined on it with a matched filter, through the drift, to
    a small fraction of a sample. The output is then read again along the loopback's drift:
    its own drift reading, a few ppm off with a bass DI through a fuzz, moves its latency at
    the file's start by as many samples.
    """
    loopback_track = _refined_loopback(source, recorded_loopback, rate, reach, track)
    if loopback_track is None or not loopback_track.trusted:
        detail = (
            f"its correlation peak stands {loopback_track.confidence_db:.1f} dB above the "
            f"rest ({MIN_CONFIDENCE_DB:.0f} dB needed)"
            if loopback_track is not None
            else "no part of it follows the input"
        )
        raise AlignmentError(
            f"The loopback file {loopback} does not look like a recording of the input "
            f"{input_path}: {detail}. A loopback is the DI recorded back through a plain "
            "cable in the same pass; check the files and the patch."
        )
    loopback_latency = loopback_track.latency_samples
    along = _coherent_or_none(
        source, recorded, rate, reach, drift=True, drift_ppm=loopback_track.drift_ppm, near=track
    )
    latency = (
        along.latency_samples if along is not None and along.trusted else track.latency_samples
    )
    device_latency = latency - loopback_latency
    return _PairAxis(
        track,
        loopback_track,
        loopback_latency + device_latency,
        loopback_latency,
        device_latency,
        loopback_track.drift_ppm,
        loopback_track.step,
    )


def _inversion_notes(axis: _PairAxis) -> list[str]:
    notes = []
    if axis.loopback is not None and axis.loopback.polarity < 0:
        notes.append("The loopback was recorded inverted; corrected.")
    if axis.track.polarity < 0:
        notes.append("The output is inverted against the input (polarity -1); corrected.")
    return notes


def _coverage(
    axis: _PairAxis,
    drift: DriftCorrection,
    frames: int,
    recorded: np.ndarray,
    recorded_loopback: np.ndarray | None,
) -> tuple[int, int]:
    """Input frames the pair covers, and output frames past the input's end (a render tail).

    The pair covers the input frames whose output was recorded (and, with a loopback, whose
    loopback was): past a recording's end the pair would teach silence for music.
    """
    mid, read_step = drift.mid_samples, drift.step
    covered = [(axis.latency_samples + mid, recorded)]
    if recorded_loopback is not None:
        covered.append(((axis.loopback_latency_samples or 0.0) + mid, recorded_loopback))
    pair_frames = frames
    for offset, signal in covered:
        last_input = int(math.floor((len(signal) - 1 - offset) / read_step))
        pair_frames = min(pair_frames, max(last_input + 1, 0))
    end_position = axis.latency_samples + mid + read_step * (frames - 1)
    trimmed = max(len(recorded) - (int(math.floor(end_position)) + 1), 0)
    return pair_frames, trimmed


def _coverage_notes(
    frames: int, pair_frames: int, trimmed: int, rate: int, output_path: Path, input_path: Path
) -> list[str]:
    """Notes on what the pair leaves out; an error when too little of the input is covered."""
    notes = []
    uncovered = frames - pair_frames
    if uncovered:
        notes.append(
            f"The recording stops {uncovered} samples ({uncovered / rate:.2f} s, "
            f"{100 * uncovered / frames:.0f} % of the input) before the input does: the aligned "
            f"pair holds the {pair_frames / rate:.2f} s it covers."
        )
    if pair_frames < rate // 10:
        raise AlignmentError(
            f"The output file {output_path} covers only {pair_frames} samples of the input "
            f"{input_path} once aligned: too little to use. Is it the whole bounce?"
        )
    if trimmed:
        notes.append(f"The output runs {trimmed} samples past the input (render tail); left out.")
    return notes


def _drift_notes(drift_error_ppm: float | None, pair_frames: int) -> list[str]:
    """A note when the drift's uncertainty could move the pair's ends by half a sample."""
    if drift_error_ppm is None:
        return []
    # The line is fitted about the pair's middle, half the pair from either end: two standard
    # errors of its slope (nine in ten recordings fall within two, see the README) move the
    # ends by 2 · error · pair_frames / 2.
    ends = drift_error_ppm * 1e-6 * pair_frames
    if ends <= DRIFT_NOTE_SAMPLES:
        return []
    return [
        f"The drift is read to ±{drift_error_ppm:.2f} ppm (one standard error): the delay read "
        "from the music moves from note to note through this device, and with the recording's "
        f"noise. The middle of the pair is right; its ends may be off by up to {ends:.1f} "
        "samples. A loopback of the DI recorded in the same pass (--loopback) gives the drift "
        "exactly."
    ]


def _pair_plan(axis: _PairAxis, drift: DriftCorrection) -> ReadPlan:
    """Read channel 0, the loopback (else the input itself), and channel 1, the output."""
    return ReadPlan(
        input_channel=0 if axis.loopback is not None else None,
        input_offset_samples=(axis.loopback_latency_samples or 0.0) + drift.mid_samples,
        input_polarity=axis.loopback.polarity if axis.loopback is not None else 1,
        target_channel=1,
        target_offset_samples=axis.latency_samples + drift.mid_samples,
        target_polarity=axis.track.polarity,
        step=drift.step,
    )
