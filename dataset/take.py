"""Analysis of one session take: measuring it, then checking what was measured.

A session take holds two recorded channels, ``[loopback, device]``, of the whole program. The
loopback is the program as the interface played and recorded it; its latency and clock drift
against the program are measured on the start and end sync markers. The device channel is
measured against the loopback (same recorder clock, so no drift between them):

* the loopback with the plain (matched-filter) correlation, the device with the
  phase-transform weighting (GCC-PHAT): a device's output is a filtered, distorted copy, and
  its plain correlation peak follows the low frequencies, where the tone stack and coupling
  capacitors shift the phase most, so it moves with the material; PHAT weighs every frequency
  alike and gives the same device latency on a sweep or on music, take after take;
* when the markers do not show the device (a sweep through a noise gate), it is found in the
  music by its coherent part (:mod:`.coherence`); without a usable loopback, against the
  program itself.

:func:`measure_take` gathers what was measured in one :class:`TakeMeasurement`;
:func:`check_take` turns it into a verdict, plain-language messages, the estimates written to
``alignment.json`` and the :class:`.render.ReadPlan` of the aligned pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ampcap.errors import AlignmentError
from ampcap.levels import FLOOR_DB, amplitude, dbfs
from ampcap.schema.session import TAKE_CHANNELS, Program, Section

from .coherence import track_coherent
from .delay import MIN_CONFIDENCE_DB, LatencyTrack, estimate_window, track_latency
from .quality import (
    REPEATABILITY_WARNING_ESR,
    ChannelQuality,
    channel_quality,
    peak,
    repeatability_esr,
)
from .render import DriftCorrection, ReadPlan, drift_correction

#: Latencies searched around each marker, seconds (interfaces: 2-50 ms; a DAW with big buffers
#: and plug-in delay compensation can reach a few hundred).
MAX_LATENCY_SECONDS = 1.0
#: Device latency searched against the loopback, seconds (a digital pedal: up to a few ms).
MAX_DEVICE_LATENCY_SECONDS = 0.05
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
#: Frames correlated at a time when the polarity is read from the reference segments.
CORRELATION_BLOCK_FRAMES = 1 << 16


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
    signed = sum(e.polarity * amplitude(e.gain_db) for e in estimates)
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
class LoopbackMatch:
    """Which recorded channel is the loopback, and how it matched the program.

    ``status`` is "ok", "silent" or "unrelated"; ``track`` the loopback's latency and drift
    (None when it is silent); ``swapped`` says the two inputs were recorded the other way round.
    """

    status: str
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
) -> LoopbackMatch:
    """Match the loopback channel to the program at the markers; detect swapped inputs."""
    if peaks[0] < SILENT_DBFS:
        return LoopbackMatch("silent", None, 0, 1, False)
    track = _track_or_none(program, columns[0], windows, reach)
    if track is None or not track.trusted:
        return LoopbackMatch("unrelated", track, 0, 1, False)
    if track.correlation >= LOOPBACK_MIN_CORRELATION:
        return LoopbackMatch("ok", track, 0, 1, False)
    # Either a processed signal reached the loopback input or the inputs are swapped.
    other = _track_or_none(program, columns[1], windows, reach)
    if (
        other is not None
        and other.trusted
        and other.correlation > max(0.98, track.correlation + 0.05)
    ):
        return LoopbackMatch("ok", other, 1, 0, True)
    return LoopbackMatch("unrelated", track, 0, 1, False)


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
class DeviceReading:
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
) -> DeviceReading | None:
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
    return DeviceReading(
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
) -> DeviceReading | None:
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
            return DeviceReading(latency, polarity, confidence, spread, "markers")
        stretch = _music_stretch(layout, loopback_track, step)
        # Both channels run on the recorder's clock: no drift between them.
        return _device_by_music(
            loopback[stretch], device[stretch], sample_rate_hz, device_reach, drift=False
        )
    track = _track_or_none(program, device, windows, reach, "phat")
    if track is not None and track.trusted:
        return DeviceReading(
            track.latency_samples,
            track.polarity,
            track.confidence_db,
            0.0,
            "markers",
            drift_ppm=track.drift_ppm,
        )
    return _device_by_music(program, device, sample_rate_hz, reach, drift=True)


def _marker_windows(layout: Program) -> list[tuple[int, int]]:
    """The sweeps of the start and end markers, (start, length) in program samples.

    A marker section is the sweep followed by silence; only the sweep is correlated.
    """
    return [
        (section.start, min(layout.marker.length, section.length))
        for section in (layout.section("marker_start"), layout.section("marker_end"))
    ]


_BOTH_SILENT = (
    "Both inputs are silent: nothing was recorded. Check the interface's input channels "
    "in the rig file, the cables, and that the outputs reached the device and the "
    "loopback; then record the take again."
)


def _device_silent(peak_dbfs: float) -> str:
    return (
        f"The device channel is silent (peak {peak_dbfs:.1f} dBFS): check that "
        "the device is on, its output is patched to the device input named in the rig file, "
        "and the input gain is up; then record the take again."
    )


def _not_following(swapped: bool, with_loopback: bool) -> TakeAnalysis:
    """The failure when neither the markers nor the music show the device."""
    where = "its input" if with_loopback else "the program"
    return _failed(
        f"The device output does not follow {where}: not at the sync markers, nor in the "
        "music (no coherent part). Was the device connected and audible, and no noise gate "
        "closing on the program? Check the patch and levels, then record the take again.",
        estimates={
            "channels_swapped": swapped,
            "input": "loopback" if with_loopback else "program",
        },
    )


@dataclass(frozen=True)
class TakeAxis:
    """Where a take's channels sit against the program, and how sure that is.

    Attributes
    ----------
    input_channel : int or None
        The recorded channel read as the aligned input; None when the program itself is.
    loopback_latency_samples : float
        Latency of the loopback against the program at program sample 0 (0 without one).
    loopback_polarity : int
        +1, or -1 for a loopback recorded inverted (+1 without one).
    latency_samples : float
        Latency of the device channel against the program at program sample 0.
    polarity : int
        Polarity of the device channel against the program, as the markers or music say.
    drift_ppm : float
        Recorder clock against the player's (positive: the latency grows).
    step : float
        ``1 + drift_ppm·1e-6``: recorder samples per program sample.
    confidence_db : float
        The lowest peak-to-sidelobe ratio behind the latencies (NaN: read from the music).
    """

    input_channel: int | None
    loopback_latency_samples: float
    loopback_polarity: int
    latency_samples: float
    polarity: int
    drift_ppm: float
    step: float
    confidence_db: float


def _loopback_axis(track: LatencyTrack, device: DeviceReading, loopback_col: int) -> TakeAxis:
    """The take's axis through its loopback: the device's latency adds to the loopback's."""
    return TakeAxis(
        input_channel=loopback_col,
        loopback_latency_samples=track.latency_samples,
        loopback_polarity=track.polarity,
        latency_samples=track.latency_samples + device.latency_samples,
        polarity=device.polarity * track.polarity,
        drift_ppm=track.drift_ppm,
        step=track.step,
        confidence_db=(
            min(track.confidence_db, device.confidence_db)
            if device.method == "markers"
            else track.confidence_db
        ),
    )


def _program_axis(device: DeviceReading) -> TakeAxis:
    """The take's axis without a usable loopback: the device measured against the program."""
    drift_ppm = device.drift_ppm or 0.0
    return TakeAxis(
        input_channel=None,
        loopback_latency_samples=0.0,
        loopback_polarity=1,
        latency_samples=device.latency_samples,
        polarity=device.polarity,
        drift_ppm=drift_ppm,
        step=1.0 + drift_ppm * 1e-6,
        confidence_db=device.confidence_db,
    )


@dataclass(frozen=True)
class TakeMeasurement:
    """Everything measured on one take whose device channel was found; no verdict yet.

    Attributes
    ----------
    channels_swapped : bool
        The loopback and device inputs were recorded the other way round (and swapped back).
    loopback_status : {"ok", "silent", "unrelated"}
        How the loopback matched the program at the markers.
    loopback_track : LatencyTrack or None
        The loopback's latency and drift; None when the program is the input.
    device_channel : int
        The recorded channel holding the device's output.
    device : DeviceReading
        The device channel's latency, polarity and confidence, and how they were read.
    axis : TakeAxis
        Both channels' latencies and polarities against the program, and the drift.
    polarity_correlation : float or None
        Correlation over the reference segments that settled the polarity (markers only).
    drift : DriftCorrection
        How the drift applies over the program's length.
    device_quality, loopback_quality : ChannelQuality
        Levels, noise, clipping and DC of the two channels.
    """

    channels_swapped: bool
    loopback_status: str
    loopback_track: LatencyTrack | None
    device_channel: int
    device: DeviceReading
    axis: TakeAxis
    polarity_correlation: float | None
    drift: DriftCorrection
    device_quality: ChannelQuality
    loopback_quality: ChannelQuality


def _music_polarity(
    program: np.ndarray, device: np.ndarray, layout: Program, axis: TakeAxis
) -> tuple[int, float]:
    """The device's polarity from the reference segments, and the correlation that says so.

    Polarity from the music, not the markers: through a fuzz with its tone control at an
    extreme, the whitened marker correlation can peak with the wrong sign, while the plain
    correlation over the reference segments (real playing) keeps the true sign.
    """
    references = [layout.section("reference_1"), layout.section("reference_2")]
    correlation = _correlation_at(program, device, references, axis.latency_samples, axis.step)
    polarity = axis.polarity
    if abs(correlation) >= POLARITY_MIN_CORRELATION:
        polarity = 1 if correlation > 0 else -1
    return polarity, correlation


def measure_take(
    program: np.ndarray,
    columns: list[np.ndarray],
    layout: Program,
    found: LoopbackMatch,
    device: DeviceReading,
) -> TakeMeasurement:
    """Put the loopback and device readings on one axis, settle the polarity, read levels."""
    track = found.track if found.status == "ok" else None
    if track is not None:
        axis = _loopback_axis(track, device, found.loopback_col)
    else:
        axis = _program_axis(device)
    correlation = None
    if device.method == "markers":
        polarity, correlation = _music_polarity(program, columns[found.device_col], layout, axis)
        axis = replace(axis, polarity=polarity)
    device_quality, loopback_quality = _take_levels(
        columns, found, layout, axis.loopback_latency_samples, axis.latency_samples, axis.step
    )
    return TakeMeasurement(
        channels_swapped=found.swapped,
        loopback_status=found.status,
        loopback_track=track,
        device_channel=found.device_col,
        device=device,
        axis=axis,
        polarity_correlation=correlation,
        drift=drift_correction(axis.drift_ppm, axis.step, len(program)),
        device_quality=device_quality,
        loopback_quality=loopback_quality,
    )


def _take_messages(measured: TakeMeasurement) -> tuple[list[str], int]:
    """Plain-language messages on a measured take, and how many of them are warnings."""
    messages = [_SWAPPED_MESSAGE] if measured.channels_swapped else []
    if measured.loopback_status in _LOOPBACK_MESSAGES:
        messages.append(_LOOPBACK_MESSAGES[measured.loopback_status])
    warnings = len(messages)
    if measured.device.method == "music":
        warnings += 1
        messages.append(
            "The sync markers did not show the device clearly (a sweep through a noise gate or "
            "a very high-gain amp); its latency was read from the music instead "
            f"(coherence {measured.device.coherence:.2f}). Nothing to do unless it fails again."
        )
    if measured.axis.loopback_polarity < 0:
        # A note, not a warning: the inversion is undone.
        messages.append(
            "The loopback is recorded inverted (polarity -1); corrected. A cable or an input "
            "setting flips it; nothing to do unless it should not."
        )
    drift_ppm = measured.axis.drift_ppm
    if abs(drift_ppm) > HIGH_DRIFT_PPM:
        warnings += 1
        messages.append(
            f"Clock drift is {drift_ppm:+.1f} ppm, more than two crystal clocks differ by: "
            "playback and recording seem to run on separate devices. It was corrected, but "
            "use one interface (or clock-sync the two) for the best data."
        )
    warnings += _level_messages(
        measured.device_quality,
        measured.loopback_quality,
        measured.axis.input_channel is not None,
        messages,
    )
    return messages, warnings


def _input_estimates(measured: TakeMeasurement) -> dict[str, Any]:
    """The estimates that say what the input is and how each channel's latency was read."""
    track, device = measured.loopback_track, measured.device
    if track is None:
        return {
            "input": "program",
            "loopback_latency_samples": None,
            "device_latency_samples": None,
            "device_confidence_db": _rounded(device.confidence_db, 2),
        }
    return {
        "input": "loopback",
        "loopback_latency_samples": _rounded(measured.axis.loopback_latency_samples),
        "device_latency_samples": _rounded(device.latency_samples),
        "device_latency_spread_samples": _rounded(device.spread_samples),
        "loopback_polarity": measured.axis.loopback_polarity,
        "loopback_confidence_db": _rounded(track.confidence_db, 2),
        "loopback_correlation": _rounded(track.correlation, 5),
        "loopback_gain_db": _rounded(track.gain_db, 3),
        "device_confidence_db": _rounded(device.confidence_db, 2),
    }


def _level_estimates(device: ChannelQuality, loopback: ChannelQuality) -> dict[str, Any]:
    return {
        "noise_floor_dbfs": _rounded(device.noise_floor_dbfs, 2),
        "loopback_noise_floor_dbfs": _rounded(loopback.noise_floor_dbfs, 2),
        "output_rms_dbfs": _rounded(device.signal_rms_dbfs, 3),
        "snr_db": _rounded(device.snr_db, 2),
        "peak_dbfs": _rounded(device.peak_dbfs, 3),
        "loopback_peak_dbfs": _rounded(loopback.peak_dbfs, 3),
        "clipped_runs": device.clipping.runs,
        "clipped_samples": device.clipping.samples,
        "loopback_clipped_runs": loopback.clipping.runs,
        "dc_offset": _rounded(device.dc_offset, 6),
        "loopback_dc_offset": _rounded(loopback.dc_offset, 6),
    }


def _estimates(measured: TakeMeasurement) -> dict[str, Any]:
    """The JSON-ready estimates of a measured take (see :class:`AlignedTake`)."""
    axis = measured.axis
    estimates: dict[str, Any] = {"channels_swapped": measured.channels_swapped}
    estimates.update(_input_estimates(measured))
    estimates["device_method"] = measured.device.method
    if measured.device.coherence is not None:
        estimates["device_coherence"] = _rounded(measured.device.coherence, 4)
    if measured.polarity_correlation is not None:
        estimates["polarity_correlation"] = _rounded(measured.polarity_correlation, 4)
    estimates.update(
        latency_samples=_rounded(axis.latency_samples),
        drift_ppm=_rounded(axis.drift_ppm, 4),
        drift_corrected=measured.drift.corrected,
        drift_end_shift_samples=_rounded(measured.drift.end_shift_samples, 4),
        polarity=axis.polarity,
        confidence_db=_rounded(axis.confidence_db, 2),
    )
    estimates.update(_level_estimates(measured.device_quality, measured.loopback_quality))
    estimates["repeatability_esr"] = None
    return estimates


def read_plan(measured: TakeMeasurement) -> ReadPlan:
    """Where :func:`.render.render_aligned` reads each channel of a measured take."""
    axis, mid = measured.axis, measured.drift.mid_samples
    return ReadPlan(
        input_channel=axis.input_channel,
        input_offset_samples=axis.loopback_latency_samples + mid,
        input_polarity=axis.loopback_polarity,
        target_channel=measured.device_channel,
        target_offset_samples=axis.latency_samples + mid,
        target_polarity=axis.polarity,
        step=measured.drift.step,
    )


def check_take(measured: TakeMeasurement) -> TakeAnalysis:
    """The verdict on a measured take, its messages, estimates and read plan."""
    messages, warnings = _take_messages(measured)
    return TakeAnalysis(
        "warning" if warnings else "ok",
        tuple(messages),
        _estimates(measured),
        read_plan(measured),
    )


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
        estimates, and the read plan for :func:`.render.render_aligned`. The repeatability
        check needs the aligned target and is added by :func:`with_repeatability`.

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
    windows = _marker_windows(layout)
    reach = int(round(max_latency_seconds * sample_rate_hz))
    device_reach = int(round(max_device_latency_seconds * sample_rate_hz))
    columns = [take[:, c] for c in range(2)]
    peaks = [dbfs(peak(c), FLOOR_DB) for c in columns]
    if peaks[0] < SILENT_DBFS and peaks[1] < SILENT_DBFS:
        return _failed(_BOTH_SILENT)
    found = _find_loopback(program, columns, peaks, windows, reach)
    if peaks[found.device_col] < SILENT_DBFS:
        return _failed(_device_silent(peaks[found.device_col]))
    track = found.track if found.status == "ok" else None
    device = _measure_device(
        columns[found.loopback_col] if track is not None else None,
        program,
        columns[found.device_col],
        layout,
        windows,
        track,
        sample_rate_hz,
        reach,
        device_reach,
    )
    if device is None:
        return _not_following(found.swapped, with_loopback=track is not None)
    return check_take(measure_take(program, columns, layout, found, device))


def with_repeatability(
    analysis: TakeAnalysis, first: np.ndarray, second: np.ndarray
) -> TakeAnalysis:
    """Add the repeatability check: the aligned target over the two reference segments.

    The segments come out of :func:`.render.render_aligned` (``keep``), so the device's output is
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


def _take_levels(
    columns: list[np.ndarray],
    found: LoopbackMatch,
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
