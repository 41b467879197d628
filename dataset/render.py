"""Writing an aligned pair: each channel read at ``offset + step·m`` by band-limited interpolation.

Both alignment modes end here: a session take (:mod:`.align`) and a pair of files recorded
elsewhere (:mod:`.pairs`) measure a latency, a drift and a polarity per channel, turn them into
a :class:`ReadPlan` with :func:`drift_correction`, and write ``[input, target]`` with
:func:`render_aligned`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ampcap.outputs import atomic_output
from ampcap.wavstream import WavStreamWriter

from .resample import CHUNK_FRAMES, interpolate_channels

#: Drift is corrected when it moves the end of the take by more than this many samples against
#: its start. Below it, the mid-take latency is used for the whole take, so no sample is off by
#: more than half of it (0.025 samples: a phase error of 0.3 degrees at 10 kHz at 48 kHz), which
#: is also the size of the drift estimate's own error on a short take.
DRIFT_THRESHOLD_SAMPLES = 0.05
#: Output frames rendered at a time when writing an aligned pair (see resample.CHUNK_FRAMES).
RENDER_CHUNK_FRAMES = CHUNK_FRAMES


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
class DriftCorrection:
    """How a measured drift is applied to a signal of ``frames`` samples.

    Attributes
    ----------
    end_shift_samples : float
        How far the drift moves the last sample against the first, in samples (0 or more).
    corrected : bool
        The shift exceeds :data:`DRIFT_THRESHOLD_SAMPLES`, so the channels are read with the
        drift's step.
    step : float
        The read step: the drift's ``1 + drift_ppm·1e-6`` when corrected, else exactly 1.
    mid_samples : float
        Added to every read offset: 0 when corrected, else the drift's shift at mid-signal, so
        the mid-take latency applies throughout and the ends are off by half the drift at most.
    """

    end_shift_samples: float
    corrected: bool
    step: float
    mid_samples: float


def drift_correction(drift_ppm: float, step: float, frames: int) -> DriftCorrection:
    """Decide whether a drift of ``drift_ppm`` (read step ``step``) over ``frames`` is corrected."""
    drift_shift = abs(drift_ppm) * 1e-6 * frames
    corrected = drift_shift > DRIFT_THRESHOLD_SAMPLES
    read_step, mid = (step, 0.0) if corrected else (1.0, drift_ppm * 1e-6 * frames / 2)
    return DriftCorrection(drift_shift, corrected, read_step, mid)


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
