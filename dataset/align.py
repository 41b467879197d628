"""Alignment of capture sessions.

A session take holds two recorded channels, ``[loopback, device]``, of the whole program. The
loopback is the program as the interface played and recorded it; its latency and clock drift
against the program are measured on the start and end sync markers. The device channel is
measured against the loopback (same recorder clock, so no drift between them). Each take then
gets an aligned pair ``aligned/<stem>.wav``, ``[input, target]`` on the program's time axis:

* ``input``: the loopback read at ``loopback_latency + (1 + drift)·m`` (the program itself when
  the loopback is missing or unusable);
* ``target``: the device channel read at ``loopback_latency + device_latency + (1 + drift)·m``,
  its polarity undone.

The loopback is measured with the plain (matched-filter) correlation, the device with the
phase-transform weighting (GCC-PHAT): a device's output is a filtered, distorted copy, and its
plain correlation peak follows the low frequencies, where the tone stack and coupling
capacitors shift the phase most, so it moves with the material; PHAT weighs every frequency
alike and gives the same device latency on a sweep or on music, take after take.

Reading "at" a fractional position is band-limited interpolation (:mod:`.resample`). The raw
takes are only read. Recordings made elsewhere, without markers, are aligned by :mod:`.pairs`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ampcap import __version__
from ampcap.errors import AlignmentError, AudioFileError, SessionError
from ampcap.files import check_sha256, read_audio, sha256_array, sha256_file
from ampcap.outputs import atomic_output
from ampcap.schema.alignment import (
    ALIGNED_DIR,
    AlignedTake,
    AlignmentManifest,
    save_alignment,
)
from ampcap.schema.session import (
    MANIFEST_NAME,
    PROGRAM_NAME,
    TAKE_CHANNELS,
    Program,
    Section,
    Take,
    load_session,
)
from ampcap.wavstream import WavStreamWriter

from .coherence import track_coherent
from .delay import MIN_CONFIDENCE_DB, LatencyTrack, estimate_window, track_latency
from .quality import (
    REPEATABILITY_WARNING_ESR,
    ChannelQuality,
    channel_quality,
    peak,
    repeatability_esr,
    to_dbfs,
)
from .resample import CHUNK_FRAMES, interpolate_channels

#: Latencies searched around each marker, seconds (interfaces: 2-50 ms; a DAW with big buffers
#: and plug-in delay compensation can reach a few hundred).
MAX_LATENCY_SECONDS = 1.0
#: Device latency searched against the loopback, seconds (a digital pedal: up to a few ms).
MAX_DEVICE_LATENCY_SECONDS = 0.05
#: Drift is corrected when it moves the end of the take by more than this many samples against
#: its start. Below it, the mid-take latency is used for the whole take, so no sample is off by
#: more than half of it (0.025 samples: a phase error of 0.3 degrees at 10 kHz at 48 kHz), which
#: is also the size of the drift estimate's own error on a short take.
DRIFT_THRESHOLD_SAMPLES = 0.05
#: A channel whose peak stays below this is silent (an unplugged input records -90 dBFS or less).
SILENT_DBFS = -70.0
#: Below this SNR the target's noise becomes a visible part of what a model learns.
LOW_SNR_DB = 40.0
#: DC offset (linear) worth a warning: -40 dBFS, far above any healthy converter's.
DC_WARNING = 0.01
#: Drift beyond what two crystal clocks differ by: the interface's input and output are likely
#: separate devices without a shared clock.
HIGH_DRIFT_PPM = 200.0
#: A loopback whose normalised correlation with the program is below this is not a plain cable.
LOOPBACK_MIN_CORRELATION = 0.9
#: Below this normalised correlation over the reference segments the music says nothing about
#: polarity (an extreme filter or fuzz), and the markers' sign is kept.
POLARITY_MIN_CORRELATION = 0.05
#: Takes whose loopback latencies spread more than this (samples) have a rig that changed.
LATENCY_SPREAD_WARNING_SAMPLES = 1.0
#: Frames correlated at a time when the polarity is read from the reference segments.
CORRELATION_BLOCK_FRAMES = 1 << 16
#: Output frames rendered at a time when writing an aligned pair (see resample.CHUNK_FRAMES).
RENDER_CHUNK_FRAMES = CHUNK_FRAMES

ProgressCallback = Callable[[int, int, str], None]
"""Called with (takes done, takes in all, stem of the take just done)."""


@dataclass(frozen=True)
class ReadPlan:
    """Where each aligned channel is read in the raw take: ``offset + step·m`` for frame ``m``.

    ``input_channel`` is None when the input is the program itself. Polarities multiply.
    """

    input_channel: int | None
    input_offset_samples: float
    input_polarity: int
    target_channel: int
    target_offset_samples: float
    target_polarity: int
    step: float


@dataclass(frozen=True)
class TakeAnalysis:
    """Everything measured on one take and the verdict on it.

    ``plan`` is None for a failed take (nothing is written). ``estimates`` holds JSON-ready
    numbers with units in their names (see :data:`ampcap.schema.alignment.AlignedTake`).
    """

    verdict: str
    messages: tuple[str, ...]
    estimates: dict[str, Any]
    plan: ReadPlan | None


def _failed(*messages: str, estimates: dict[str, Any] | None = None) -> TakeAnalysis:
    return TakeAnalysis("failed", tuple(messages), estimates or {}, None)


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def _track_or_none(
    reference: np.ndarray,
    recorded: np.ndarray,
    windows: list[tuple[int, int]],
    reach: int,
    weighting: str = "plain",
) -> LatencyTrack | None:
    try:
        track = track_latency(
            reference,
            recorded,
            windows,
            min_latency_samples=-reach,
            max_latency_samples=reach,
            weighting=weighting,
        )
    except AlignmentError:
        return None
    return track


def _device_against_loopback(
    loopback: np.ndarray, device: np.ndarray, windows: list[tuple[int, int]], reach: int
) -> tuple[float, int, float, float]:
    """Device latency against the loopback (same clock): mean over the windows.

    Returns latency (samples), polarity, lowest confidence (dB), spread between windows.
    """
    estimates = []
    for start, length in windows:
        try:
            estimates.append(
                estimate_window(loopback, device, start, length, -reach, reach, weighting="phat")
            )
        except AlignmentError:
            continue
    if not estimates:
        return 0.0, 1, 0.0, 0.0
    latencies = [e.latency_samples for e in estimates]
    signed = sum(e.polarity * 10 ** (e.gain_db / 20) for e in estimates)
    return (
        float(np.mean(latencies)),
        1 if signed >= 0 else -1,
        min(e.confidence_db for e in estimates),
        float(np.ptp(latencies)),
    )


def _correlation_at(
    program: np.ndarray,
    recorded: np.ndarray,
    sections: list[Section],
    latency_samples: float,
    step: float,
) -> float:
    """Normalised correlation of ``program`` over ``sections`` with ``recorded`` read at the
    given latency (nearest sample; recorded index = latency + step * program index).

    Returns a value in [-1, 1]; its sign is the polarity of the recording against the program.
    """
    dot = energy_program = energy_recorded = 0.0
    for section in sections:
        # A block at a time: the temporaries stay small whatever the sections' length.
        for start in range(section.start, section.stop, CORRELATION_BLOCK_FRAMES):
            index = np.arange(start, min(start + CORRELATION_BLOCK_FRAMES, section.stop))
            position = np.rint(latency_samples + step * index).astype(np.int64)
            valid = (position >= 0) & (position < len(recorded))
            x = program[index[valid]].astype(np.float64)
            y = recorded[position[valid]].astype(np.float64)
            dot += float(np.dot(x, y))
            energy_program += float(np.dot(x, x))
            energy_recorded += float(np.dot(y, y))
    denominator = math.sqrt(energy_program * energy_recorded)
    return dot / denominator if denominator > 0 else 0.0


@dataclass(frozen=True)
class _Loopback:
    """Which recorded channel is the loopback, and how it matched the program."""

    status: str  # "ok", "silent" or "unrelated"
    track: LatencyTrack | None
    loopback_col: int
    device_col: int
    swapped: bool


def _find_loopback(
    program: np.ndarray,
    columns: list[np.ndarray],
    peaks: list[float],
    windows: list[tuple[int, int]],
    reach: int,
) -> _Loopback:
    """Match the loopback channel to the program at the markers; detect swapped inputs."""
    if peaks[0] < SILENT_DBFS:
        return _Loopback("silent", None, 0, 1, False)
    track = _track_or_none(program, columns[0], windows, reach)
    if track is None or not track.trusted:
        return _Loopback("unrelated", track, 0, 1, False)
    if track.correlation >= LOOPBACK_MIN_CORRELATION:
        return _Loopback("ok", track, 0, 1, False)
    # Either a processed signal reached the loopback input or the inputs are swapped.
    other = _track_or_none(program, columns[1], windows, reach)
    if (
        other is not None
        and other.trusted
        and other.correlation > max(0.98, track.correlation + 0.05)
    ):
        return _Loopback("ok", other, 1, 0, True)
    return _Loopback("unrelated", track, 0, 1, False)


_LOOPBACK_MESSAGES = {
    "silent": (
        "The loopback channel is silent: the program itself is used as the input, so "
        "converter colour and the output's exact level are not in the data. Patch the "
        "loopback output straight to the loopback input named in the rig file."
    ),
    "unrelated": (
        "The loopback does not match the program (no clear correlation peak at the sync "
        "markers): is a cable patched from the loopback output to the loopback input, "
        "with nothing in between? The program itself is used as the input."
    ),
}
_SWAPPED_MESSAGE = (
    "The loopback and device inputs look swapped (the 'device' channel is a clean copy "
    "of the program, the 'loopback' one is not). They were swapped back for alignment; "
    "fix input_device / input_loopback in the rig file before the next session."
)


@dataclass(frozen=True)
class _DeviceReading:
    """Latency (recorder samples), polarity and confidence of the device channel, and how."""

    latency_samples: float
    polarity: int
    confidence_db: float
    spread_samples: float
    method: str  # "markers" or "music"
    coherence: float | None = None
    drift_ppm: float | None = None


def _music_stretch(layout: Program, track: LatencyTrack | None, step: float) -> slice:
    """The recorder's stretch holding the references and the DI (where the music plays)."""
    first, last = layout.section("reference_1"), layout.section("reference_2")
    offset = track.latency_samples if track is not None else 0.0
    return slice(max(int(offset + step * first.start), 0), max(int(offset + step * last.stop), 0))


def _device_by_music(
    reference: np.ndarray,
    device: np.ndarray,
    sample_rate_hz: int,
    reach: int,
    drift: bool,
) -> _DeviceReading | None:
    """The device channel found in the music by its coherent part (:mod:`.coherence`).

    Used when the sync markers did not show it clearly (a sweep through a gate or a very
    high-gain amp); None when the music does not either.
    """
    try:
        track = track_coherent(
            reference,
            device,
            sample_rate_hz,
            min_latency_samples=-reach,
            max_latency_samples=reach,
            drift=drift,
        )
    except AlignmentError:
        return None
    if not track.trusted:
        return None
    return _DeviceReading(
        latency_samples=track.latency_samples,
        polarity=track.polarity,
        confidence_db=float("nan"),
        spread_samples=0.0,
        method="music",
        coherence=track.coherence,
        drift_ppm=track.drift_ppm,
    )


def _measure_device(
    loopback: np.ndarray | None,
    program: np.ndarray,
    device: np.ndarray,
    layout: Program,
    windows: list[tuple[int, int]],
    loopback_track: LatencyTrack | None,
    sample_rate_hz: int,
    reach: int,
    device_reach: int,
) -> _DeviceReading | None:
    """The device channel's latency: at the markers, else in the music; None if neither."""
    if loopback is not None and loopback_track is not None:
        step = loopback_track.step
        # The markers on the recorder's axis, where both recorded channels are compared.
        recorder_windows = [
            (max(int(math.floor(loopback_track.latency_samples + step * s)), 0), n)
            for s, n in windows
        ]
        latency, polarity, confidence, spread = _device_against_loopback(
            loopback, device, recorder_windows, device_reach
        )
        if confidence >= MIN_CONFIDENCE_DB:
            return _DeviceReading(latency, polarity, confidence, spread, "markers")
        stretch = _music_stretch(layout, loopback_track, step)
        # Both channels run on the recorder's clock: no drift between them.
        return _device_by_music(
            loopback[stretch], device[stretch], sample_rate_hz, device_reach, drift=False
        )
    track = _track_or_none(program, device, windows, reach, "phat")
    if track is not None and track.trusted:
        return _DeviceReading(
            track.latency_samples,
            track.polarity,
            track.confidence_db,
            0.0,
            "markers",
            drift_ppm=track.drift_ppm,
        )
    return _device_by_music(program, device, sample_rate_hz, reach, drift=True)


def analyse_take(
    program: np.ndarray,
    take: np.ndarray,
    layout: Program,
    sample_rate_hz: int,
    *,
    max_latency_seconds: float = MAX_LATENCY_SECONDS,
    max_device_latency_seconds: float = MAX_DEVICE_LATENCY_SECONDS,
) -> TakeAnalysis:
    """Measure one take against the program and decide how to align it.

    Parameters
    ----------
    program : numpy.ndarray, shape (frames,)
        ``program.wav``.
    take : numpy.ndarray, shape (take_frames, 2)
        The raw take, channels ``[loopback, device]``.
    layout : Program
        The program's sections (preroll, markers, references, DI), from the session manifest.
    sample_rate_hz : int
    max_latency_seconds, max_device_latency_seconds : float
        Search ranges: latency of the loopback against the program, and of the device against
        the loopback (both signs).

    Returns
    -------
    TakeAnalysis
        Verdict ``ok``/``warning``/``failed``, plain-language messages that say what to do, the
        estimates, and the read plan for :func:`render_aligned`. The repeatability check needs
        the aligned target and is added by :func:`with_repeatability`.

    Notes
    -----
    The device is measured at the sync markers (a sweep: exact and repeatable). When a sweep
    does not show it clearly (a noise gate closing on it, a very high-gain amp), it is found in
    the music instead by its coherent part (:mod:`.coherence`), and the estimates say so
    (``device_method``: ``"music"``, with ``device_coherence``).
    """
    program = np.asarray(program).reshape(-1)
    if take.ndim != 2 or take.shape[1] != len(TAKE_CHANNELS):
        return _failed(f"The take has shape {take.shape}; expected (frames, 2) [loopback, device].")
    # A marker section is the sweep followed by silence; correlate the sweep only.
    windows = [
        (section.start, min(layout.marker.length, section.length))
        for section in (layout.section("marker_start"), layout.section("marker_end"))
    ]
    reach = int(round(max_latency_seconds * sample_rate_hz))
    device_reach = int(round(max_device_latency_seconds * sample_rate_hz))

    columns = [take[:, c] for c in range(2)]
    peaks = [to_dbfs(peak(c)) for c in columns]
    if peaks[0] < SILENT_DBFS and peaks[1] < SILENT_DBFS:
        return _failed(
            "Both inputs are silent: nothing was recorded. Check the interface's input channels "
            "in the rig file, the cables, and that the outputs reached the device and the "
            "loopback; then record the take again."
        )
    found = _find_loopback(program, columns, peaks, windows, reach)
    device = columns[found.device_col]
    if peaks[found.device_col] < SILENT_DBFS:
        return _failed(
            f"The device channel is silent (peak {peaks[found.device_col]:.1f} dBFS): check that "
            "the device is on, its output is patched to the device input named in the rig file, "
            "and the input gain is up; then record the take again."
        )
    messages = [_SWAPPED_MESSAGE] if found.swapped else []
    if found.status in _LOOPBACK_MESSAGES:
        messages.append(_LOOPBACK_MESSAGES[found.status])
    warnings = len(messages)
    estimates: dict[str, Any] = {"channels_swapped": found.swapped}
    with_loopback = found.status == "ok" and found.track is not None
    loopback = columns[found.loopback_col] if with_loopback else None
    reading = _measure_device(
        loopback,
        program,
        device,
        layout,
        windows,
        found.track if with_loopback else None,
        sample_rate_hz,
        reach,
        device_reach,
    )
    if reading is None:
        estimates.update(input="loopback" if with_loopback else "program")
        where = "its input" if with_loopback else "the program"
        return _failed(
            f"The device output does not follow {where}: not at the sync markers, nor in the "
            "music (no coherent part). Was the device connected and audible, and no noise gate "
            "closing on the program? Check the patch and levels, then record the take again.",
            estimates=estimates,
        )
    if reading.method == "music":
        warnings += 1
        messages.append(
            "The sync markers did not show the device clearly (a sweep through a noise gate or "
            "a very high-gain amp); its latency was read from the music instead "
            f"(coherence {reading.coherence:.2f}). Nothing to do unless it fails again."
        )

    if with_loopback:
        assert found.track is not None
        track = found.track
        drift_ppm, step = track.drift_ppm, track.step
        loopback_latency = track.latency_samples
        loopback_polarity = track.polarity
        total_latency = loopback_latency + reading.latency_samples
        target_polarity = reading.polarity * loopback_polarity
        input_channel: int | None = found.loopback_col
        confidence = (
            min(track.confidence_db, reading.confidence_db)
            if reading.method == "markers"
            else track.confidence_db
        )
        estimates.update(
            input="loopback",
            loopback_latency_samples=_rounded(loopback_latency),
            device_latency_samples=_rounded(reading.latency_samples),
            device_latency_spread_samples=_rounded(reading.spread_samples),
            loopback_polarity=loopback_polarity,
            loopback_confidence_db=_rounded(track.confidence_db, 2),
            loopback_correlation=_rounded(track.correlation, 5),
            loopback_gain_db=_rounded(track.gain_db, 3),
            device_confidence_db=_rounded(reading.confidence_db, 2),
        )
        if loopback_polarity < 0:
            messages.append(
                "The loopback is recorded inverted (polarity -1); corrected. A cable or an input "
                "setting flips it; nothing to do unless it should not."
            )
    else:
        drift_ppm = reading.drift_ppm or 0.0
        step = 1.0 + drift_ppm * 1e-6
        total_latency = reading.latency_samples
        target_polarity = reading.polarity
        input_channel = None
        loopback_polarity = 1
        loopback_latency = 0.0
        confidence = reading.confidence_db
        estimates.update(
            input="program",
            loopback_latency_samples=None,
            device_latency_samples=None,
            device_confidence_db=_rounded(reading.confidence_db, 2),
        )
    estimates["device_method"] = reading.method
    if reading.coherence is not None:
        estimates["device_coherence"] = _rounded(reading.coherence, 4)

    if reading.method == "markers":
        # Polarity from the music, not the markers: through a fuzz with its tone control at an
        # extreme, the whitened marker correlation can peak with the wrong sign, while the
        # plain correlation over the reference segments (real playing) keeps the true sign.
        references = [layout.section("reference_1"), layout.section("reference_2")]
        music_correlation = _correlation_at(program, device, references, total_latency, step)
        if abs(music_correlation) >= POLARITY_MIN_CORRELATION:
            target_polarity = 1 if music_correlation > 0 else -1
        estimates["polarity_correlation"] = _rounded(music_correlation, 4)

    frames = len(program)
    drift_shift = abs(drift_ppm) * 1e-6 * frames
    drift_corrected = drift_shift > DRIFT_THRESHOLD_SAMPLES
    # Below the threshold the mid-take latency applies throughout: the ends are off by half
    # the drift at most.
    read_step, mid = (step, 0.0) if drift_corrected else (1.0, drift_ppm * 1e-6 * frames / 2)
    plan = ReadPlan(
        input_channel=input_channel,
        input_offset_samples=loopback_latency + mid,
        input_polarity=loopback_polarity,
        target_channel=found.device_col,
        target_offset_samples=total_latency + mid,
        target_polarity=target_polarity,
        step=read_step,
    )
    if abs(drift_ppm) > HIGH_DRIFT_PPM:
        warnings += 1
        messages.append(
            f"Clock drift is {drift_ppm:+.1f} ppm, more than two crystal clocks differ by: "
            "playback and recording seem to run on separate devices. It was corrected, but "
            "use one interface (or clock-sync the two) for the best data."
        )
    device_quality, loopback_quality = _take_levels(
        columns, found, layout, loopback_latency, total_latency, step
    )
    warnings += _level_messages(
        device_quality, loopback_quality, input_channel is not None, messages
    )
    estimates.update(
        latency_samples=_rounded(total_latency),
        drift_ppm=_rounded(drift_ppm, 4),
        drift_corrected=drift_corrected,
        drift_end_shift_samples=_rounded(drift_shift, 4),
        polarity=target_polarity,
        confidence_db=_rounded(confidence, 2),
        noise_floor_dbfs=_rounded(device_quality.noise_floor_dbfs, 2),
        loopback_noise_floor_dbfs=_rounded(loopback_quality.noise_floor_dbfs, 2),
        output_rms_dbfs=_rounded(device_quality.signal_rms_dbfs, 3),
        snr_db=_rounded(device_quality.snr_db, 2),
        peak_dbfs=_rounded(device_quality.peak_dbfs, 3),
        loopback_peak_dbfs=_rounded(loopback_quality.peak_dbfs, 3),
        clipped_runs=device_quality.clipping.runs,
        clipped_samples=device_quality.clipping.samples,
        loopback_clipped_runs=loopback_quality.clipping.runs,
        dc_offset=_rounded(device_quality.dc_offset, 6),
        loopback_dc_offset=_rounded(loopback_quality.dc_offset, 6),
        repeatability_esr=None,
    )
    return TakeAnalysis("warning" if warnings else "ok", tuple(messages), estimates, plan)


def _take_levels(
    columns: list[np.ndarray],
    found: _Loopback,
    layout: Program,
    loopback_latency: float,
    total_latency: float,
    step: float,
) -> tuple[ChannelQuality, ChannelQuality]:
    """Levels on the recorder's axis: the pre-roll for the noise, the DI for the signal."""

    def recorder(sample: int, offset: float) -> int:
        return max(int(round(offset + step * sample)), 0)

    preroll, di = layout.section("preroll"), layout.section("di")
    marker_start = layout.section("marker_start")
    noise = slice(0, max(min(preroll.stop, recorder(marker_start.start, loopback_latency) - 16), 0))
    device_quality = channel_quality(
        columns[found.device_col],
        noise,
        slice(recorder(di.start, total_latency), recorder(di.stop, total_latency)),
    )
    loopback_quality = channel_quality(
        columns[found.loopback_col],
        noise,
        slice(recorder(di.start, loopback_latency), recorder(di.stop, loopback_latency)),
    )
    return device_quality, loopback_quality


def with_repeatability(
    analysis: TakeAnalysis, first: np.ndarray, second: np.ndarray
) -> TakeAnalysis:
    """Add the repeatability check: the aligned target over the two reference segments.

    The segments come out of :func:`render_aligned` (``keep``), so the device's output is
    resampled once for the pair and the check alike.
    """
    repeatability = repeatability_esr(first, second)
    messages, verdict = analysis.messages, analysis.verdict
    if repeatability > REPEATABILITY_WARNING_ESR:
        verdict = "warning" if verdict == "ok" else verdict
        messages += (
            f"The device did not sound the same twice: ESR {repeatability:.3f} between the "
            f"two reference segments (above {REPEATABILITY_WARNING_ESR}). Usual causes: a "
            "noise gate, a time-based effect (delay, reverb, modulation) left on, a knob "
            "moved during the take, or an amp not warmed up. Fix it and record the take "
            "again.",
        )
    estimates = {**analysis.estimates, "repeatability_esr": _rounded(repeatability, 6)}
    return TakeAnalysis(verdict, messages, estimates, analysis.plan)


def _level_messages(
    device: ChannelQuality, loopback: ChannelQuality, loopback_used: bool, messages: list[str]
) -> int:
    """Append warnings about levels; return how many were added."""
    before = len(messages)
    if device.clipping.runs:
        messages.append(
            f"The device channel clipped: {device.clipping.runs} run(s) of 3 or more samples at "
            f"full scale (longest {device.clipping.longest_samples}). Lower the interface's input "
            "gain (or the device's output level) and record the take again."
        )
    if loopback_used and loopback.clipping.runs:
        messages.append(
            f"The loopback clipped: {loopback.clipping.runs} run(s) at full scale. Lower the "
            "loopback input's gain, or the program level (safety.max_output_dbfs in the rig)."
        )
    if device.snr_db < LOW_SNR_DB:
        messages.append(
            f"The device channel's SNR is {device.snr_db:.1f} dB (signal "
            f"{device.signal_rms_dbfs:.1f} dBFS, noise floor {device.noise_floor_dbfs:.1f} dBFS "
            f"in the pre-roll), below {LOW_SNR_DB:.0f} dB: the model will learn the noise. Raise "
            "the input gain, or hunt the noise (ground loop, USB power, a noisy pedal)."
        )
    for name, quality in (("device", device), ("loopback", loopback)):
        if abs(quality.dc_offset) > DC_WARNING and (name == "device" or loopback_used):
            messages.append(
                f"The {name} channel carries a DC offset of {quality.dc_offset:+.4f} (full scale "
                "1.0). The interface or the device output is DC-coupled or faulty: use an "
                "AC-coupled input or check the device's output."
            )
    return len(messages) - before


def render_aligned(
    path: str | os.PathLike[str],
    program: np.ndarray,
    channels: Sequence[np.ndarray],
    plan: ReadPlan,
    sample_rate_hz: int,
    *,
    frames: int | None = None,
    chunk_frames: int = RENDER_CHUNK_FRAMES,
    keep: tuple[tuple[int, int], ...] = (),
) -> tuple[list[np.ndarray], str]:
    """Write the aligned pair ``[input, target]`` (float32 WAV) chunk by chunk, atomically.

    Parameters
    ----------
    path : path-like
        The aligned WAV to write; replaced if it exists, never half-written.
    program : numpy.ndarray, shape (frames,)
        The played signal; the input channel when ``plan.input_channel`` is None.
    channels : sequence of numpy.ndarray, each shape (frames,)
        The raw recorded channels (views of a take, or separate files; lengths may differ),
        read only.
    plan : ReadPlan
    sample_rate_hz : int
    frames : int, optional
        Output length; default ``len(program)``. Positions past the take's end read silence.
    chunk_frames : int
        Frames rendered at a time (memory stays at a few times this).
    keep : tuple of (start, length)
        Output ranges of the target channel to hand back (the reference segments).

    Returns
    -------
    kept : list of numpy.ndarray, float32
        The target over each ``keep`` range.
    sha256 : str
        :func:`ampcap.files.sha256_array` of the pair written, which ``ampcap split`` checks.
    """
    path = Path(path)
    frames = len(program) if frames is None else frames
    kept = [np.zeros(length, dtype=np.float32) for _, length in keep]
    # A unique temporary file: two alignments of one session never write the same one.
    with atomic_output(path, "raw takes are untouched") as tmp:
        # The hash runs on the writer's own thread, beside the rendering.
        with WavStreamWriter(tmp, sample_rate_hz, 2) as writer:
            for start, stop, source, target in _rendered_chunks(
                program, channels, plan, frames, chunk_frames
            ):
                target = plan.target_polarity * target
                writer.write(np.column_stack([plan.input_polarity * source, target]))
                for (first, length), out in zip(keep, kept, strict=True):
                    lo, hi = max(first, start), min(first + length, stop)
                    if hi > lo:
                        out[lo - first : hi - first] = target[lo - start : hi - start]
        digest = writer.close().sha256
    return kept, digest


def _rendered_chunks(
    program: np.ndarray,
    channels: Sequence[np.ndarray],
    plan: ReadPlan,
    frames: int,
    chunk_frames: int,
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """``(start, stop, input, target)`` chunks of the aligned pair, before polarity.

    The resampler runs its FFTs for several signals as one batch, which is faster per signal
    (:func:`.resample.interpolate_channels`). With the loopback as input, a chunk's two
    channels make the batch; with the program as input (nothing to resample) two chunks of
    the target do.
    """

    def positions(offset: float, first: int, last: int) -> np.ndarray:
        return offset + plan.step * np.arange(first, last, dtype=np.float64)

    if plan.input_channel is not None:
        for start in range(0, frames, chunk_frames):
            stop = min(start + chunk_frames, frames)
            source, target = interpolate_channels(
                [channels[plan.input_channel], channels[plan.target_channel]],
                [
                    positions(plan.input_offset_samples, start, stop),
                    positions(plan.target_offset_samples, start, stop),
                ],
            )
            yield start, stop, source, target
        return
    target_channel = channels[plan.target_channel]
    for start in range(0, frames, 2 * chunk_frames):
        bounds = [(a, min(a + chunk_frames, frames)) for a in (start, start + chunk_frames)]
        bounds = [(a, b) for a, b in bounds if b > a]
        targets = interpolate_channels(
            [target_channel] * len(bounds),
            [positions(plan.target_offset_samples, a, b) for a, b in bounds],
        )
        for (a, b), target in zip(bounds, targets, strict=True):
            source = np.zeros(b - a, dtype=np.float32)
            part = np.asarray(program[a:b], dtype=np.float32)
            source[: len(part)] = part
            yield a, b, source, target


def _session_checks(takes: list[AlignedTake]) -> dict[str, Any]:
    """Across takes: consistent latency, and the output level per knob setting."""
    aligned = [t for t in takes if t.verdict != "failed" and t.estimates]
    latencies = [
        t.estimates["loopback_latency_samples"]
        for t in aligned
        if t.estimates.get("loopback_latency_samples") is not None
    ] or [t.estimates["latency_samples"] for t in aligned]
    messages = []
    spread = float(np.ptp(latencies)) if latencies else 0.0
    if spread > LATENCY_SPREAD_WARNING_SAMPLES:
        messages.append(
            f"The round-trip latency changed by {spread:.2f} samples between takes: the audio "
            "driver reopened with other buffer settings. Each take was aligned on its own, so "
            "the data is fine; for steadier captures fix the buffer size in the driver."
        )
    failed = [t for t in takes if t.verdict == "failed"]
    if failed:
        messages.append(
            f"{len(failed)} of {len(takes)} take(s) failed and were not aligned; see each "
            "take's message, then record them again."
        )
    curve = [
        {"knobs": t.knobs, "output_rms_dbfs": t.estimates.get("output_rms_dbfs")} for t in aligned
    ]
    return {
        "takes_aligned": len(aligned),
        "takes_failed": len(failed),
        "latency_spread_samples": round(spread, 4),
        "latency_consistent": spread <= LATENCY_SPREAD_WARNING_SAMPLES,
        "volume_curve": curve,
        "messages": messages,
    }


def _take_stem(take: Take) -> str:
    return Path(take.file).stem


def align_session(
    folder: str | os.PathLike[str],
    *,
    progress: ProgressCallback | None = None,
    max_latency_seconds: float = MAX_LATENCY_SECONDS,
) -> AlignmentManifest:
    """Align every complete take of a session and write ``aligned/``.

    Parameters
    ----------
    folder : path-like
        The session folder (``session.json``, ``program.wav``, ``takes/``).
    progress : callable, optional
        Called after each take with (done, total, take stem).
    max_latency_seconds : float, default :data:`MAX_LATENCY_SECONDS`
        Latencies searched around each marker (both signs).

    Returns
    -------
    AlignmentManifest
        Also written to ``aligned/alignment.json``. Takes that are pending, partial, failed,
        missing or unreadable get verdict ``failed``, a message, and no aligned file.

    Raises
    ------
    SessionError
        Not a session, or ``program.wav`` missing or not matching the manifest.
    """
    folder = Path(folder)
    session = load_session(folder)
    program_path = folder / PROGRAM_NAME
    program_audio, rate = read_audio(program_path)
    if program_audio.shape[1] != 1:
        raise SessionError(
            f"{program_path} has {program_audio.shape[1]} channels; a program is mono."
        )
    program = program_audio[:, 0]
    if (
        rate != session.sample_rate_hz
        or len(program) != session.program.length
        or sha256_array(program) != session.program.sha256
    ):
        raise SessionError(
            f"{program_path} ({len(program)} frames at {rate} Hz) does not match session.json "
            f"({session.program.length} frames at {session.sample_rate_hz} Hz, SHA-256 "
            f"{session.program.sha256[:12]}...). It was replaced or edited; record the session "
            "again."
        )
    aligned_dir = folder / ALIGNED_DIR
    results: list[AlignedTake] = []
    total = len(session.takes)
    for index, take in enumerate(session.takes):
        stem = _take_stem(take)
        results.append(
            _align_one(folder, take, program, session.program, rate, max_latency_seconds)
        )
        if results[-1].verdict == "failed":
            stale = aligned_dir / f"{stem}.wav"
            if stale.exists():
                stale.unlink()
        if progress is not None:
            progress(index + 1, total, stem)
    manifest = AlignmentManifest(
        schema_version=1,
        ampcap_version=__version__,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        session_sha256=sha256_file(folder / MANIFEST_NAME),
        program_sha256=session.program.sha256,
        sample_rate_hz=rate,
        takes=tuple(results),
        session_checks=_session_checks(results),
    )
    save_alignment(folder, manifest)
    return manifest


def _align_one(
    folder: Path,
    take: Take,
    program: np.ndarray,
    layout: Program,
    rate: int,
    max_latency_seconds: float,
) -> AlignedTake:
    stem = _take_stem(take)
    out_name = f"{ALIGNED_DIR}/{stem}.wav"

    def failed(message: str) -> AlignedTake:
        return AlignedTake(
            knobs=dict(take.knobs),
            raw_file=take.file,
            file="",
            verdict="failed",
            messages=(message,),
        )

    if take.status != "complete":
        return failed(
            f"The take is {take.status}, not complete: it was not aligned. Run the same "
            "`ampcap record` command again to record it (complete takes are kept)."
        )
    try:
        audio, _ = read_audio(
            folder / take.file, sample_rate_hz=rate, channels=len(TAKE_CHANNELS), allow_silence=True
        )
    except AudioFileError as exc:
        return failed(f"{exc} Record the take again (`ampcap record ... --retake`).")
    check_sha256(
        audio,
        take.sha256,
        folder / take.file,
        folder / MANIFEST_NAME,
        "Restore the original take, or record it again (`ampcap record ... --retake`).",
    )
    if take.frames and len(audio) < take.frames:
        return failed(
            f"{take.file} holds {len(audio)} frames but session.json says {take.frames} were "
            f"recorded: the file was cut short after recording ({len(audio) / rate:.1f} of "
            f"{take.frames / rate:.1f} s; an interrupted copy?). Copy it again from where it was "
            "recorded, or record the take again (`ampcap record ... --retake`)."
        )
    analysis = analyse_take(program, audio, layout, rate, max_latency_seconds=max_latency_seconds)
    if analysis.plan is None:
        return AlignedTake(
            knobs=dict(take.knobs),
            raw_file=take.file,
            file="",
            verdict="failed",
            messages=analysis.messages,
            estimates=analysis.estimates,
        )
    if len(audio) < len(program):
        analysis = TakeAnalysis(
            "warning",
            analysis.messages
            + (
                f"The take has {len(audio)} frames, fewer than the program's {len(program)}: "
                "its end was padded with silence. Record it again if the tail matters.",
            ),
            analysis.estimates,
            analysis.plan,
        )
    references = [s for s in layout.sections if s.name in ("reference_1", "reference_2")]
    segments, digest = render_aligned(
        folder / out_name,
        program,
        [audio[:, 0], audio[:, 1]],
        analysis.plan,
        rate,
        keep=tuple((s.start, s.length) for s in references),
    )
    if len(segments) == 2:
        analysis = with_repeatability(analysis, segments[0], segments[1])
    return AlignedTake(
        knobs=dict(take.knobs),
        raw_file=take.file,
        file=out_name,
        verdict=analysis.verdict,
        messages=analysis.messages,
        estimates=analysis.estimates,
        sha256=digest,
    )
