"""Alignment of capture sessions and of recordings made elsewhere.

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
takes are only read. Recordings made elsewhere (:func:`align_files`) have no markers: windows of
the whole signal near its start and its end play their part.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ampcap import __version__
from ampcap.errors import AlignmentError, AmpcapError, AudioFileError, SessionError, UsageError
from ampcap.files import audio_info, read_audio, sha256_array, sha256_file
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

from .delay import MIN_CONFIDENCE_DB, LatencyTrack, estimate_window, track_latency
from .quality import (
    REPEATABILITY_WARNING_ESR,
    ChannelQuality,
    channel_quality,
    peak,
    repeatability_esr,
    to_dbfs,
)
from .resample import CHUNK_FRAMES, interpolate_at, interpolate_channels

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
    """
    program = np.asarray(program).reshape(-1)
    if take.ndim != 2 or take.shape[1] != len(TAKE_CHANNELS):
        return _failed(f"The take has shape {take.shape}; expected (frames, 2) [loopback, device].")
    frames = len(program)
    preroll = layout.section("preroll")
    marker_start = layout.section("marker_start")
    marker_end = layout.section("marker_end")
    di = layout.section("di")
    # A marker section is the sweep followed by silence; correlate the sweep only.
    windows = [
        (section.start, min(layout.marker.length, section.length))
        for section in (marker_start, marker_end)
    ]
    reach = int(round(max_latency_seconds * sample_rate_hz))
    device_reach = int(round(max_device_latency_seconds * sample_rate_hz))

    columns = [take[:, c] for c in range(2)]
    peaks = [to_dbfs(peak(c)) for c in columns]
    loopback_col, device_col = 0, 1
    if peaks[0] < SILENT_DBFS and peaks[1] < SILENT_DBFS:
        return _failed(
            "Both inputs are silent: nothing was recorded. Check the interface's input channels "
            "in the rig file, the cables, and that the outputs reached the device and the "
            "loopback; then record the take again."
        )

    messages: list[str] = []
    warnings = 0
    swapped = False
    loopback_track: LatencyTrack | None = None
    loopback_status = "ok"
    if peaks[0] < SILENT_DBFS:
        loopback_status = "silent"
    else:
        loopback_track = _track_or_none(program, columns[0], windows, reach)
        if loopback_track is None or not loopback_track.trusted:
            loopback_status = "unrelated"
        elif loopback_track.correlation < LOOPBACK_MIN_CORRELATION:
            # Either a processed signal reached the loopback input or the inputs are swapped.
            device_track = _track_or_none(program, columns[1], windows, reach)
            if (
                device_track is not None
                and device_track.trusted
                and device_track.correlation > max(0.98, loopback_track.correlation + 0.05)
            ):
                swapped = True
                loopback_col, device_col = 1, 0
                loopback_track = device_track
            else:
                loopback_status = "unrelated"
    device = columns[device_col]
    if peaks[device_col] < SILENT_DBFS:
        return _failed(
            f"The device channel is silent (peak {peaks[device_col]:.1f} dBFS): check that the "
            "device is on, its output is patched to the device input named in the rig file, and "
            "the input gain is up; then record the take again."
        )

    estimates: dict[str, Any] = {"channels_swapped": swapped}
    if swapped:
        warnings += 1
        messages.append(
            "The loopback and device inputs look swapped (the 'device' channel is a clean copy "
            "of the program, the 'loopback' one is not). They were swapped back for alignment; "
            "fix input_device / input_loopback in the rig file before the next session."
        )
    if loopback_status == "silent":
        warnings += 1
        messages.append(
            "The loopback channel is silent: the program itself is used as the input, so "
            "converter colour and the output's exact level are not in the data. Patch the "
            "loopback output straight to the loopback input named in the rig file."
        )
    elif loopback_status == "unrelated":
        warnings += 1
        messages.append(
            "The loopback does not match the program (no clear correlation peak at the sync "
            "markers): is a cable patched from the loopback output to the loopback input, "
            "with nothing in between? The program itself is used as the input."
        )

    if loopback_status == "ok" and loopback_track is not None:
        drift_ppm = loopback_track.drift_ppm
        step = loopback_track.step
        loopback_latency = loopback_track.latency_samples
        # The markers on the recorder's axis, where both recorded channels are compared.
        recorder_windows = [
            (max(int(math.floor(loopback_track.latency_samples + step * s)), 0), n)
            for s, n in windows
        ]
        device_latency, device_polarity, device_confidence, device_spread = (
            _device_against_loopback(columns[loopback_col], device, recorder_windows, device_reach)
        )
        loopback_polarity = loopback_track.polarity
        target_polarity = device_polarity * loopback_polarity
        input_channel: int | None = loopback_col
        confidence = min(loopback_track.confidence_db, device_confidence)
        estimates.update(
            input="loopback",
            loopback_latency_samples=_rounded(loopback_latency),
            device_latency_samples=_rounded(device_latency),
            device_latency_spread_samples=_rounded(device_spread),
            loopback_polarity=loopback_polarity,
            loopback_confidence_db=_rounded(loopback_track.confidence_db, 2),
            loopback_correlation=_rounded(loopback_track.correlation, 5),
            loopback_gain_db=_rounded(loopback_track.gain_db, 3),
            device_confidence_db=_rounded(device_confidence, 2),
        )
        if device_confidence < MIN_CONFIDENCE_DB:
            return _failed(
                f"The device output does not follow its input at the sync markers (confidence "
                f"{device_confidence:.1f} dB, {MIN_CONFIDENCE_DB:.0f} dB needed). A noise gate "
                "closed on the marker, or the device is not connected to the device input. "
                "Check the patch and the gate, then record the take again.",
                estimates=estimates,
            )
        if loopback_polarity < 0:
            messages.append(
                "The loopback is recorded inverted (polarity -1); corrected. A cable or an input "
                "setting flips it; nothing to do unless it should not."
            )
        total_latency = loopback_latency + device_latency
    else:
        track = _track_or_none(program, device, windows, reach, "phat")
        if track is None or not track.trusted:
            return _failed(
                "The sync markers were not found in the device channel either, so the take "
                "cannot be aligned: was the device connected and the program audible through "
                "it? Check the patch and levels, then record the take again.",
                estimates=estimates,
            )
        drift_ppm = track.drift_ppm
        step = track.step
        total_latency = track.latency_samples
        target_polarity = track.polarity
        input_channel = None
        loopback_polarity = 1
        loopback_latency = 0.0
        confidence = track.confidence_db
        estimates.update(
            input="program",
            loopback_latency_samples=None,
            device_latency_samples=None,
            device_confidence_db=_rounded(track.confidence_db, 2),
        )

    # Polarity from the music, not the markers: through a fuzz with its tone control at an
    # extreme, the whitened marker correlation can peak with the wrong sign, while the plain
    # correlation over the reference segments (real playing) keeps the device's true sign.
    references = [layout.section("reference_1"), layout.section("reference_2")]
    music_correlation = _correlation_at(program, device, references, total_latency, step)
    if abs(music_correlation) >= POLARITY_MIN_CORRELATION:
        target_polarity = 1 if music_correlation > 0 else -1
    estimates["polarity_correlation"] = _rounded(music_correlation, 4)

    drift_shift = abs(drift_ppm) * 1e-6 * frames
    drift_corrected = drift_shift > DRIFT_THRESHOLD_SAMPLES
    if drift_corrected:
        read_step, mid = step, 0.0
    else:
        # Apply the mid-take latency throughout: the ends are off by half the drift at most.
        read_step, mid = 1.0, drift_ppm * 1e-6 * frames / 2
    plan = ReadPlan(
        input_channel=input_channel,
        input_offset_samples=loopback_latency + mid,
        input_polarity=loopback_polarity,
        target_channel=device_col,
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

    # Levels, on the recorder's axis: pre-roll for the noise, the DI section for the signal.
    def recorder(sample: int, offset: float) -> int:
        return int(round(offset + step * sample))

    noise = slice(0, max(min(preroll.stop, recorder(marker_start.start, loopback_latency) - 16), 0))
    device_quality = channel_quality(
        device,
        noise,
        slice(max(recorder(di.start, total_latency), 0), max(recorder(di.stop, total_latency), 0)),
    )
    loopback_quality = channel_quality(
        columns[loopback_col],
        noise,
        slice(
            max(recorder(di.start, loopback_latency), 0),
            max(recorder(di.stop, loopback_latency), 0),
        ),
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
    take: np.ndarray,
    plan: ReadPlan,
    sample_rate_hz: int,
    *,
    frames: int | None = None,
    chunk_frames: int = RENDER_CHUNK_FRAMES,
    keep: tuple[tuple[int, int], ...] = (),
) -> list[np.ndarray]:
    """Write the aligned pair ``[input, target]`` (float32 WAV) chunk by chunk, atomically.

    Parameters
    ----------
    path : path-like
        The aligned WAV to write; replaced if it exists, never half-written.
    program : numpy.ndarray, shape (frames,)
        The played signal; the input channel when ``plan.input_channel`` is None.
    take : numpy.ndarray, shape (take_frames, channels)
        The raw recording, read only.
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
    list of numpy.ndarray, float32
        The target over each ``keep`` range.
    """
    path = Path(path)
    frames = len(program) if frames is None else frames
    tmp = path.with_name(f".{path.name}.tmp")
    kept = [np.zeros(length, dtype=np.float32) for _, length in keep]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # No hash of the samples: nothing reads it, and it costs a few percent of the time.
        with WavStreamWriter(tmp, sample_rate_hz, 2, sha256=False) as writer:
            for start in range(0, frames, chunk_frames):
                stop = min(start + chunk_frames, frames)
                m = np.arange(start, stop, dtype=np.float64)
                target_at = plan.target_offset_samples + plan.step * m
                if plan.input_channel is None:
                    source = np.zeros(stop - start, dtype=np.float32)
                    part = np.asarray(program[start:stop], dtype=np.float32)
                    source[: len(part)] = part
                    target = interpolate_at(take[:, plan.target_channel], target_at)
                else:
                    source, target = interpolate_channels(
                        [take[:, plan.input_channel], take[:, plan.target_channel]],
                        [plan.input_offset_samples + plan.step * m, target_at],
                    )
                target = plan.target_polarity * target
                writer.write(np.column_stack([plan.input_polarity * source, target]))
                for (first, length), out in zip(keep, kept, strict=True):
                    lo, hi = max(first, start), min(first + length, stop)
                    if hi > lo:
                        out[lo - first : hi - first] = target[lo - start : hi - start]
        os.replace(tmp, path)
    except OSError as exc:
        raise AmpcapError(
            f"Could not write {path}: {exc.strerror or exc}. Check the disk has room and the "
            "folder is writable, then run `ampcap align` again; raw takes are untouched."
        ) from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return kept


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
    segments = render_aligned(
        folder / out_name,
        program,
        audio,
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
    )


# --- recordings made elsewhere -------------------------------------------------------------


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
    drift_corrected : bool
        Whether the drift was above :data:`DRIFT_THRESHOLD_SAMPLES` over the file and undone.
    polarity : int
        +1, or -1 when the device output is inverted (undone in the aligned pair).
    confidence_db : float
        Lowest peak-to-sidelobe ratio of the estimates, dB.
    correlation : float
        Normalised correlation of the output with the input, 0..1 (a distorting device is well
        below 1; an unrelated file is near 0).
    loopback_latency_samples, device_latency_samples : float or None
        The two parts of the latency, with a loopback file.
    sample_rate_hz, input_frames, output_frames : int
    padded_frames, trimmed_frames : int
        Silence added after a short output; render tail cut from a long one.
    out_path : Path
        The aligned pair written, ``[input, target]`` float32, as long as the input.
    notes : tuple of str
        Plain-language notes on what was done.
    """

    latency_samples: float
    drift_ppm: float
    drift_corrected: bool
    polarity: int
    confidence_db: float
    correlation: float
    loopback_latency_samples: float | None
    device_latency_samples: float | None
    sample_rate_hz: int
    input_frames: int
    output_frames: int
    padded_frames: int
    trimmed_frames: int
    out_path: Path
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document: ``confidence`` is the peak-to-sidelobe ratio in dB."""
        return {
            "latency_samples": _rounded(self.latency_samples, 5),
            "drift_ppm": _rounded(self.drift_ppm, 4),
            "polarity": self.polarity,
            "confidence": _rounded(self.confidence_db, 2),
            "correlation": _rounded(self.correlation, 5),
            "drift_corrected": self.drift_corrected,
            "loopback_latency_samples": _rounded(self.loopback_latency_samples, 5),
            "device_latency_samples": _rounded(self.device_latency_samples, 5),
            "sample_rate_hz": self.sample_rate_hz,
            "input_frames": self.input_frames,
            "output_frames": self.output_frames,
            "padded_frames": self.padded_frames,
            "trimmed_frames": self.trimmed_frames,
            "out": str(self.out_path),
            "notes": list(self.notes),
        }


def _read_mono(path: Path, role: str, rate: int | None, reference: Path | None) -> np.ndarray:
    info = audio_info(path)
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
        audio, _ = read_audio(path)
    except AudioFileError as exc:
        raise AlignmentError(f"The {role} file cannot be used: {exc}") from exc
    if to_dbfs(peak(audio)) < SILENT_DBFS:
        raise AlignmentError(
            f"The {role} file {path} is silent (peak below {SILENT_DBFS:.0f} dBFS): is it the "
            "right file, and was the track armed?"
        )
    return np.asarray(audio[:, 0], dtype=np.float64)


def _file_windows(signal: np.ndarray, sample_rate_hz: int) -> list[tuple[int, int]]:
    """Two windows with the most energy, one in the first and one in the last 40 % of a file.

    Windows are 1/5 of the file, between 1 and 10 seconds; a file shorter than 3 seconds gets
    one window over all of it (no drift measured).
    """
    frames = len(signal)
    if frames < 3 * sample_rate_hz:
        return [(0, frames)]
    length = int(min(max(frames // 5, sample_rate_hz), 10 * sample_rate_hz))
    energy = np.concatenate(([0.0], np.cumsum(signal * signal)))
    hop = max(length // 4, 1)
    starts = np.arange(0, frames - length + 1, hop)
    window_energy = energy[starts + length] - energy[starts]
    early = starts + length <= int(0.4 * frames) + length // 2
    late = starts >= int(0.6 * frames) - length // 2
    chosen = []
    for mask in (early, late):
        if mask.any():
            candidates = starts[mask]
            chosen.append((int(candidates[np.argmax(window_energy[mask])]), length))
    return chosen if len(chosen) == 2 else [(0, frames)]


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
        The device's output as recorded (mono, same sample rate). A render tail or a few missing
        samples at the end are fine: the aligned target is trimmed or padded to the input's
        length, with a note.
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
        Mismatched sample rates, multi-channel or silent files, or an output (or loopback) that
        is not a recording of the input; each message names the file and why.
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
    for given in (input_path, output_path, loopback):
        if given is not None and out.resolve() == given.resolve():
            raise UsageError(
                f"--out {out} would overwrite {given}, one of the recordings being aligned. "
                "Choose another file name."
            )
    rate = audio_info(input_path).sample_rate_hz
    source = _read_mono(input_path, "input", None, None)
    recorded = _read_mono(output_path, "output", rate, input_path)
    recorded_loopback = (
        _read_mono(loopback, "loopback", rate, input_path) if loopback is not None else None
    )
    frames = len(source)
    windows = _file_windows(source, rate)
    reach = int(round(max_latency_seconds * rate))

    def unrelated(track: LatencyTrack | None, path: Path, role: str) -> AlignmentError:
        detail = (
            f"its best correlation peak stands only {track.confidence_db:.1f} dB above the "
            f"rest ({MIN_CONFIDENCE_DB:.0f} dB needed)"
            if track is not None
            else "no correlation peak was found"
        )
        return AlignmentError(
            f"The {role} file {path} does not look like a recording of the input {input_path}: "
            f"{detail}. Check you picked the matching files, and that the latency is under "
            f"{max_latency_seconds:g} s."
        )

    notes: list[str] = []
    if loopback is not None and recorded_loopback is not None:
        track = _track_or_none(source, recorded_loopback, windows, reach)
        if track is None or not track.trusted:
            raise unrelated(track, loopback, "loopback")
        recorder_windows = [
            (max(int(math.floor(track.latency_samples + track.step * s)), 0), n) for s, n in windows
        ]
        device_latency, device_polarity, device_confidence, _ = _device_against_loopback(
            recorded_loopback,
            recorded,
            recorder_windows,
            int(round(MAX_DEVICE_LATENCY_SECONDS * rate)),
        )
        if device_confidence < MIN_CONFIDENCE_DB:
            raise AlignmentError(
                f"The output file {output_path} does not follow the loopback {loopback} "
                f"(confidence {device_confidence:.1f} dB, {MIN_CONFIDENCE_DB:.0f} dB needed): "
                "were they recorded together, from the same pass?"
            )
        loopback_latency = track.latency_samples
        polarity = device_polarity * track.polarity
        total = loopback_latency + device_latency
        confidence = min(track.confidence_db, device_confidence)
        if track.polarity < 0:
            notes.append("The loopback was recorded inverted; corrected.")
    else:
        track = _track_or_none(source, recorded, windows, reach, "phat")
        if track is None or not track.trusted:
            raise unrelated(track, output_path, "output")
        loopback_latency = device_latency = None
        total = track.latency_samples
        polarity = track.polarity
        confidence = track.confidence_db
    if len(windows) < 2:
        notes.append("The input is under 3 s: drift was not measured.")

    drift_shift = abs(track.drift_ppm) * 1e-6 * frames
    drift_corrected = drift_shift > DRIFT_THRESHOLD_SAMPLES
    step, mid = (track.step, 0.0) if drift_corrected else (1.0, track.drift_ppm * 1e-6 * frames / 2)
    if polarity < 0:
        notes.append("The output is inverted against the input (polarity -1); corrected.")
    end_position = total + mid + step * (frames - 1)
    padded = max(int(math.ceil(end_position)) + 1 - len(recorded), 0)
    trimmed = max(len(recorded) - (int(math.floor(end_position)) + 1), 0)
    if padded:
        notes.append(
            f"The output ends {padded} samples before the input (after alignment); "
            "the aligned target was padded with silence."
        )
    if trimmed:
        notes.append(f"The output runs {trimmed} samples past the input (render tail); trimmed.")

    # The two recordings as one take, [loopback, device]; a shorter one reads as silence.
    take = np.zeros(
        (max(len(recorded), 0 if recorded_loopback is None else len(recorded_loopback)), 2),
        dtype=np.float32,
    )
    take[: len(recorded), 1] = recorded
    if recorded_loopback is not None:
        take[: len(recorded_loopback), 0] = recorded_loopback
    plan = ReadPlan(
        input_channel=0 if recorded_loopback is not None else None,
        input_offset_samples=(loopback_latency or 0.0) + mid,
        input_polarity=track.polarity if recorded_loopback is not None else 1,
        target_channel=1,
        target_offset_samples=total + mid,
        target_polarity=polarity,
        step=step,
    )
    render_aligned(out, source, take, plan, rate, frames=frames)
    return FileAlignment(
        latency_samples=total,
        drift_ppm=track.drift_ppm,
        drift_corrected=drift_corrected,
        polarity=polarity,
        confidence_db=confidence,
        correlation=track.correlation,
        loopback_latency_samples=loopback_latency,
        device_latency_samples=device_latency,
        sample_rate_hz=rate,
        input_frames=frames,
        output_frames=len(recorded),
        padded_frames=padded,
        trimmed_frames=trimmed,
        out_path=out,
        notes=tuple(notes),
    )
