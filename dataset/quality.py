"""Quality measures of a recorded take: levels, noise, clipping, DC and repeatability.

Pure numpy functions over one channel; levels are in dBFS (0 dBFS = a full-scale sample, RMS
of a full-scale square wave), never below :data:`ampcap.levels.FLOOR_DB` so they stay finite
in JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ampcap.levels import FLOOR_DB, dbfs

#: A sample at or above this magnitude counts as full scale.
CLIP_LEVEL = 0.999
#: Consecutive full-scale samples that make a clipped run. One sample touching 1.0 is what peak
#: normalisation produces; a converter or a device that clips holds full scale for several.
MIN_CLIP_RUN_SAMPLES = 3
#: Repeatability ESR above which the two reference segments are "not the same device".
REPEATABILITY_WARNING_ESR = 0.01


def rms(x: np.ndarray) -> float:
    """Root mean square of a signal (0 for an empty one), accumulated in float64.

    No squared copy of the signal is made: a take's DI section is most of the take.
    """
    x = np.asarray(x)
    if not x.size:
        return 0.0
    return math.sqrt(float(np.einsum("i,i->", x, x, dtype=np.float64)) / x.size)


def peak(x: np.ndarray) -> float:
    """Largest magnitude of a signal (0 for an empty one), without an ``abs`` copy."""
    x = np.asarray(x)
    return max(float(np.max(x)), -float(np.min(x))) if x.size else 0.0


@dataclass(frozen=True)
class ClipRuns:
    """Runs of consecutive samples at full scale.

    Attributes
    ----------
    runs : int
        Runs of at least ``min_run_samples`` samples at or above ``level``.
    samples : int
        Samples inside those runs.
    longest_samples : int
        Longest run, in samples (shorter touches included).
    """

    runs: int
    samples: int
    longest_samples: int


def clipped_runs(
    x: np.ndarray, level: float = CLIP_LEVEL, min_run_samples: int = MIN_CLIP_RUN_SAMPLES
) -> ClipRuns:
    """Find runs of consecutive samples with ``|x| >= level``.

    Parameters
    ----------
    x : numpy.ndarray, shape (frames,)
    level : float, default :data:`CLIP_LEVEL`
        Magnitude that counts as full scale.
    min_run_samples : int, default :data:`MIN_CLIP_RUN_SAMPLES`
        Shorter runs (a single sample touching 1.0 after normalisation) are not clipping.

    Returns
    -------
    ClipRuns
    """
    x = np.asarray(x)
    hot = (x >= level) | (x <= -level)
    if not hot.any():
        return ClipRuns(0, 0, 0)
    # int8 edges: +1 where a run starts, -1 after it ends (no int64 copy of a long take).
    edges = np.diff(hot.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    long_runs = lengths[lengths >= min_run_samples]
    return ClipRuns(int(long_runs.size), int(long_runs.sum()), int(lengths.max()))


@dataclass(frozen=True)
class ChannelQuality:
    """Levels of one recorded channel.

    Attributes
    ----------
    peak_dbfs : float
        Largest magnitude over the whole take.
    signal_rms_dbfs : float
        RMS over the part that carries the played material (the DI section).
    noise_floor_dbfs : float
        RMS over the part where nothing was played (the pre-roll).
    snr_db : float
        ``signal_rms_dbfs - noise_floor_dbfs``.
    dc_offset : float
        Mean over the whole take, linear (full scale 1.0).
    clipping : ClipRuns
    """

    peak_dbfs: float
    signal_rms_dbfs: float
    noise_floor_dbfs: float
    snr_db: float
    dc_offset: float
    clipping: ClipRuns


def channel_quality(x: np.ndarray, noise: slice, signal: slice) -> ChannelQuality:
    """Measure one channel: peak, signal RMS, noise floor, SNR, DC offset and clipping.

    Parameters
    ----------
    x : numpy.ndarray, shape (frames,)
        The recorded channel.
    noise : slice
        Frames where only the noise of the chain is recorded (the pre-roll).
    signal : slice
        Frames that carry the played material.

    Returns
    -------
    ChannelQuality
    """
    x = np.asarray(x)
    noise_floor = dbfs(rms(x[noise]), FLOOR_DB)
    signal_level = dbfs(rms(x[signal]), FLOOR_DB)
    top = peak(x)
    return ChannelQuality(
        peak_dbfs=dbfs(top, FLOOR_DB),
        signal_rms_dbfs=signal_level,
        noise_floor_dbfs=noise_floor,
        snr_db=signal_level - noise_floor,
        dc_offset=float(np.mean(x, dtype=np.float64)) if x.size else 0.0,
        # Nothing reaches full scale in most takes: no need to look for runs.
        clipping=clipped_runs(x) if top >= CLIP_LEVEL else ClipRuns(0, 0, 0),
    )


def esr(target: np.ndarray, estimate: np.ndarray) -> float:
    """Error-to-signal ratio ``Σ(target - estimate)² / Σ target²`` (0: identical).

    Parameters
    ----------
    target, estimate : numpy.ndarray, shape (frames,)
        Same length. A silent target gives ``inf`` when the estimate is not silent too.
    """
    target = np.asarray(target, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    error = float(np.sum((target - estimate) ** 2))
    energy = float(np.sum(target**2))
    if energy == 0:
        return 0.0 if error == 0 else math.inf
    return error / energy


def repeatability_esr(first: np.ndarray, second: np.ndarray) -> float:
    """ESR between the device's output for the two identical reference segments.

    A device that sounds the same twice scores near its noise floor (-40 dB SNR gives 2e-4);
    above :data:`REPEATABILITY_WARNING_ESR` something changed between the two: a noise gate
    opening differently, a time-based effect (delay, reverb, modulation) whose state differs, a
    knob moved during the take, or an amp still warming up.
    """
    length = min(len(first), len(second))
    return esr(np.asarray(first)[:length], np.asarray(second)[:length])
