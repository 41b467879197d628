"""Latency, polarity and clock drift between a reference signal and its recording.

Sign convention everywhere: a **positive latency means the recording lags** the reference:
``recorded[n] ≈ gain · reference[n - latency_samples]``. A **positive drift** means the
recorder's clock runs fast against the player's, so the latency grows during a take:
``latency(m) = latency_samples + drift_ppm·1e-6·m`` at reference sample ``m``.

Method. The delay is the peak of the cross-correlation, computed with one FFT. Two weightings:
plain (matched filter) for a delayed copy in noise such as the loopback, since for a delay in
white noise its peak is the maximum-likelihood estimate and, on a wired rig, there is no
reverberation for GCC-PHAT's whitening to suppress; and PHAT (every frequency weighted alike)
for a device's output, whose plain correlation peak follows the low frequencies where the tone
stack and coupling capacitors turn the phase most, and so moves with the material played. The
integer peak is refined to a fraction of a sample on the **band-limited** correlation itself:
the correlation of band-limited signals is band-limited, so windowed-sinc interpolation of its
samples (:mod:`.resample`, -80 dB) gives its value at any lag; two zooms (1/64, then 1/4096 of
a sample) each finished by a parabola through three points of the interpolated curve find the
maximum to well under 0.001 samples. A parabola through three *integer* lags, the usual shortcut,
is biased by up to a tenth of a sample on wideband signals.

Drift is measured as the change of latency between two windows far apart (the start and end
sync markers of a take, or the start and end of a file). At a few hundred ppm the latency
moves by several samples *within* a one-second marker, which smears the correlation peak, so
the estimate is refined by reading the recording through the current latency-and-drift model
(band-limited resampling) and measuring the small residual delay again, until the model stops
changing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import fft as sfft

from ampcap.errors import AlignmentError
from ampcap.levels import amplitude, dbfs, ratio_db

from .resample import KERNEL_TAPS, interpolate_at, resample_linear

#: Below this peak-to-sidelobe ratio (dB) a correlation peak is not distinguishable from chance:
#: between unrelated noises the highest peak exceeds the next ones by 0 to 3 dB.
MIN_CONFIDENCE_DB = 10.0
#: Correlation weightings: "plain" (matched filter) or "phat" (every frequency weighted alike).
WEIGHTINGS = ("plain", "phat")
#: Half-width of the residual search when refining for drift, in samples.
REFINE_GUARD_SAMPLES = 512


@dataclass(frozen=True)
class DelayEstimate:
    """How much ``recorded`` lags ``reference``, with how much certainty.

    Attributes
    ----------
    latency_samples : float
        Delay of the recording, in samples; positive means the recording lags.
    polarity : int
        +1, or -1 when the recording is inverted.
    confidence_db : float
        Peak-to-sidelobe ratio of the correlation, dB: the peak over the largest value farther
        than ``exclusion_samples`` from it within the searched lags. Below
        :data:`MIN_CONFIDENCE_DB` the estimate is not trusted.
    correlation : float
        Normalised correlation at the peak, 0..1 (1: the recording is a scaled, delayed copy).
    gain_db : float
        Least-squares gain of the recording against the reference at the peak, dB.
    search_min_samples, search_max_samples : int
        The range of latencies searched.
    """

    latency_samples: float
    polarity: int
    confidence_db: float
    correlation: float
    gain_db: float
    search_min_samples: int
    search_max_samples: int

    @property
    def trusted(self) -> bool:
        return self.confidence_db >= MIN_CONFIDENCE_DB


@dataclass(frozen=True)
class LatencyTrack:
    """Latency and clock drift of a recording, measured in several windows.

    Attributes
    ----------
    latency_samples : float
        Latency at reference sample 0, in recorder samples (positive: the recording lags).
    drift_ppm : float
        Clock drift, parts per million; reference sample ``m`` is found at recorder position
        ``latency_samples + (1 + drift_ppm·1e-6)·m``.
    polarity : int
        +1 or -1, from the sum of the windows' signed peaks.
    confidence_db : float
        The lowest peak-to-sidelobe ratio of the windows, dB.
    correlation : float
        The lowest normalised correlation of the windows.
    gain_db : float
        Mean least-squares gain of the windows, dB.
    windows : tuple of DelayEstimate
        One estimate per window, after refinement; each ``latency_samples`` is the latency at
        the window's centre.
    window_centres : tuple of float
        Centre of each window, in reference samples.
    iterations : int
        Refinement passes run.
    """

    latency_samples: float
    drift_ppm: float
    polarity: int
    confidence_db: float
    correlation: float
    gain_db: float
    windows: tuple[DelayEstimate, ...]
    window_centres: tuple[float, ...]
    iterations: int

    @property
    def step(self) -> float:
        """Recorder samples per reference sample, ``1 + drift_ppm·1e-6``."""
        return 1.0 + self.drift_ppm * 1e-6

    def latency_at(self, reference_sample: float) -> float:
        """Latency (recorder samples) at a reference sample."""
        return self.latency_samples + self.drift_ppm * 1e-6 * reference_sample

    @property
    def trusted(self) -> bool:
        return self.confidence_db >= MIN_CONFIDENCE_DB


def _as_signal(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise AlignmentError(
            f"The {name} must be one channel, shape (frames,); got shape {x.shape}."
        )
    if x.size == 0:
        raise AlignmentError(f"The {name} is empty: nothing to correlate.")
    if not np.isfinite(x).all():
        raise AlignmentError(f"The {name} contains NaN or infinite samples.")
    return x


class _BandLimitedCorrelation:
    """The cross-correlation of two signals, at integer lags and as a band-limited function.

    ``samples[τ mod n]`` is ``Σ_k recorded[k]·reference[k - τ]``; :meth:`value` reads it at
    fractional lags by windowed-sinc interpolation (the correlation of band-limited signals is
    band-limited, so this is its exact value up to the kernel's -85 dB error). ``whitened``
    is the same correlation with every frequency given equal weight (GCC-PHAT). It judges how
    distinct the peak is (its peak is a few samples wide whatever the spectrum, where the plain
    correlation of a sweep rings for thousands of samples at 20 Hz), and with ``weighting=
    "phat"`` it is also the correlation whose peak is searched.
    """

    def __init__(
        self, reference: np.ndarray, recorded: np.ndarray, weighting: str = "plain"
    ) -> None:
        if weighting not in WEIGHTINGS:
            raise AlignmentError(
                f"Unknown correlation weighting {weighting!r}; use one of {WEIGHTINGS}."
            )
        self.n = sfft.next_fast_len(len(reference) + len(recorded), real=True)
        # Temporaries are released as soon as they are used: with a one-second search the
        # spectra are a sizeable part of the memory an alignment needs.
        reference_spectrum = sfft.rfft(reference, self.n)
        spectrum = sfft.rfft(recorded, self.n)
        spectrum *= np.conj(reference_spectrum)
        power = reference_spectrum.real**2 + reference_spectrum.imag**2
        del reference_spectrum
        self.plain = sfft.irfft(spectrum, self.n)
        self.samples = self.plain
        # Bins where the reference has no energy (beyond the sweep's band) carry only noise.
        magnitude = np.abs(spectrum)
        keep = (power > 1e-6 * power.max()) & (magnitude > 0)
        del power
        spectrum[keep] /= magnitude[keep]
        spectrum[~keep] = 0
        del magnitude, keep
        self.whitened = sfft.irfft(spectrum, self.n)
        if weighting == "phat":
            self.samples = self.whitened

    def at_integer(self, lags: np.ndarray) -> np.ndarray:
        return self.samples[np.mod(lags, self.n)]

    def value(self, lags: np.ndarray, around: int, plain: bool = False) -> np.ndarray:
        """Correlation at fractional ``lags`` near the integer lag ``around``.

        ``plain`` reads the unweighted correlation whatever the weighting (for gains).
        """
        lags = np.asarray(lags, dtype=np.float64)
        reach = int(np.ceil(np.max(np.abs(lags - around)))) + KERNEL_TAPS // 2 + 2
        index = np.mod(np.arange(around - reach, around + reach + 1), self.n)
        local = (self.plain if plain else self.samples)[index]
        return interpolate_at(local, lags - around + reach)

    def refine(self, peak: int, polarity: int) -> float:
        """Lag of the maximum of ``polarity·correlation`` within one sample of the integer peak.

        Two zooms of the interpolated correlation (steps of 1/64, then 1/4096 sample), each
        finished with a parabola through the best three points: at these steps the parabola's
        own error is far below a thousandth of a sample.
        """
        centre = float(peak)
        for half_width, points in ((1.0, 129), (2.0 / 64, 65)):
            lags = centre + np.linspace(-half_width, half_width, points)
            values = polarity * self.value(lags, peak)
            best = int(np.clip(np.argmax(values), 1, points - 2))
            offset = parabola_offset(*values[best - 1 : best + 2])
            centre = float(lags[best] + np.clip(offset, -1, 1) * (lags[1] - lags[0]))
        return self._newton(centre, polarity)

    def _newton(self, lag: float, polarity: int, steps: int = 3) -> float:
        """``lag`` moved to where the correlation's slope is zero, from its exact spectrum.

        The interpolated correlation is exact to about -85 dB of its peak; where the peak is
        broad (a bass note's correlation curves over hundreds of samples) an error that small
        still moves its maximum by a tenth of a sample or more. The correlation's slope and
        curvature at any lag are sums over its spectrum, so Newton's method on the slope finds
        the maximum exactly. A step that would leave the half-sample found by the zoom, or a
        curvature of the wrong sign, keeps the zoom's answer.
        """
        # The spectrum is made again from the correlation (exact: one is the other's inverse
        # transform), and the sums run a block of bins at a time: an alignment's memory peaks
        # in this search, and whole-spectrum temporaries would raise it.
        spectrum = sfft.rfft(self.samples)
        found = lag
        block = 1 << 13
        for _ in range(steps):
            slope = curvature = 0.0
            for first in range(0, len(spectrum), block):
                k = np.arange(first, min(first + block, len(spectrum)), dtype=np.float64)
                omega = 2.0 * np.pi * k / self.n
                # irfft counts every bin twice but DC and (n even) Nyquist.
                weight = np.where((k == 0) | (2 * k == self.n), 1.0, 2.0) * polarity
                turned = spectrum[first : first + len(k)] * np.exp(1j * omega * found)
                slope -= float(np.dot(weight * omega, turned.imag))
                curvature -= float(np.dot(weight * omega * omega, turned.real))
            if curvature >= 0:
                return lag
            found -= slope / curvature
            if abs(found - lag) > 0.5:
                return lag
        return found


def parabola_offset(left: float, middle: float, right: float) -> float:
    """Where the parabola through three equally spaced values peaks, in steps from the middle
    one; 0 where it does not open downwards (no peak between them)."""
    curvature = left - 2 * middle + right
    return 0.5 * (left - right) / curvature if curvature < 0 else 0.0


def estimate_delay(
    reference: np.ndarray,
    recorded: np.ndarray,
    *,
    min_latency_samples: int | None = None,
    max_latency_samples: int | None = None,
    exclusion_samples: int = 32,
    weighting: str = "plain",
) -> DelayEstimate:
    """Estimate how much ``recorded`` lags ``reference``, to a fraction of a sample.

    Parameters
    ----------
    reference : numpy.ndarray, shape (n,)
        What was played (a sync marker, a DI), on its own time axis; sample 0 is time 0.
    recorded : numpy.ndarray, shape (m,)
        What was recorded, on the same time axis (its sample 0 at the reference's sample 0).
    min_latency_samples, max_latency_samples : int, optional
        Range of latencies to search, inclusive. Default: every lag where the signals overlap,
        ``-(n - 1) .. m - 1``.
    exclusion_samples : int, default 32
        Half-width of the main lobe left out when looking for the largest sidelobe. A device's
        own impulse response (tone stack, transformer) spreads over a few samples; at 44.1-96
        kHz 32 samples keeps it out of the sidelobe measure.
    weighting : {"plain", "phat"}, default "plain"
        "plain" is the matched filter, best for a delayed copy in noise (the loopback).
        "phat" divides the cross-spectrum by its magnitude, so that low frequencies, where a
        device's tone stack and coupling capacitors shift the phase most, do not dominate: use
        it for a device's output against music (no sweep), whose plain correlation peak moves
        with the notes played.

    Returns
    -------
    DelayEstimate
        ``latency_samples`` positive when the recording lags; see :class:`DelayEstimate`.

    Raises
    ------
    AlignmentError
        Empty, multi-channel or non-finite input, a search range outside the overlap, or a
        silent reference or recording.
    """
    reference = _as_signal(reference, "reference")
    recorded = _as_signal(recorded, "recording")
    low, high = _search_range(reference, recorded, min_latency_samples, max_latency_samples)
    reference_energy = float(np.einsum("i,i->", reference, reference))
    recorded_energy = float(np.einsum("i,i->", recorded, recorded))
    if reference_energy <= 1e-20:
        raise AlignmentError("The reference is silent: there is nothing to find in the recording.")
    if recorded_energy <= 1e-20:
        raise AlignmentError("The recording is silent: nothing came back.")

    correlation = _BandLimitedCorrelation(reference, recorded, weighting)
    lags = np.arange(low, high + 1)
    values = correlation.at_integer(lags)
    best = int(np.argmax(np.abs(values)))
    peak_lag = int(lags[best])
    polarity = 1 if values[best] >= 0 else -1
    latency = correlation.refine(peak_lag, polarity) if len(lags) > 2 else float(peak_lag)
    peak_value = abs(float(correlation.value(np.array([latency]), peak_lag, plain=True)[0]))
    confidence_db = _peak_to_sidelobe_db(correlation, lags, peak_lag, exclusion_samples)
    gain = peak_value / reference_energy
    return DelayEstimate(
        latency_samples=latency,
        polarity=polarity,
        confidence_db=min(confidence_db, 120.0),
        correlation=_normalised_peak(
            peak_value, reference_energy, recorded, peak_lag, len(reference)
        ),
        gain_db=dbfs(max(gain, 1e-12)),
        search_min_samples=low,
        search_max_samples=high,
    )


def _search_range(
    reference: np.ndarray,
    recorded: np.ndarray,
    min_latency_samples: int | None,
    max_latency_samples: int | None,
) -> tuple[int, int]:
    """The lags searched, inclusive: the range asked for, cut to where the signals overlap."""
    low = -(len(reference) - 1) if min_latency_samples is None else int(min_latency_samples)
    high = len(recorded) - 1 if max_latency_samples is None else int(max_latency_samples)
    low = max(low, -(len(reference) - 1))
    high = min(high, len(recorded) - 1)
    if high < low:
        raise AlignmentError(
            f"The latency search range {min_latency_samples}..{max_latency_samples} samples "
            f"does not overlap the signals ({len(reference)} and {len(recorded)} samples)."
        )
    return low, high


def _peak_to_sidelobe_db(
    correlation: _BandLimitedCorrelation, lags: np.ndarray, peak_lag: int, exclusion_samples: int
) -> float:
    """The whitened correlation's peak over its largest sidelobe, in dB (120 when none)."""
    whitened = np.abs(correlation.whitened[np.mod(lags, correlation.n)])
    near = np.abs(lags - peak_lag) <= 1
    outside = np.abs(lags - peak_lag) > exclusion_samples
    sidelobe = float(np.max(whitened[outside])) if outside.any() else 0.0
    main = float(np.max(whitened[near]))
    return ratio_db(main, sidelobe) if sidelobe > 0 and main > 0 else 120.0


def _normalised_peak(
    peak_value: float,
    reference_energy: float,
    recorded: np.ndarray,
    peak_lag: int,
    reference_frames: int,
) -> float:
    """The peak over the energies of the reference and of the recording where it lands (<= 1)."""
    start = max(peak_lag, 0)
    stop = min(peak_lag + reference_frames, len(recorded))
    overlap_energy = (
        float(np.einsum("i,i->", recorded[start:stop], recorded[start:stop]))
        if stop > start
        else 0.0
    )
    denominator = math.sqrt(reference_energy * max(overlap_energy, 1e-30))
    return min(peak_value / denominator, 1.0)


def correlation_curve(
    reference: np.ndarray,
    recorded: np.ndarray,
    centre_lag: float,
    half_width_samples: float = 16.0,
    points: int = 257,
    weighting: str = "plain",
) -> tuple[np.ndarray, np.ndarray]:
    """The band-limited cross-correlation around a lag, normalised to its peak, for plotting.

    Parameters
    ----------
    reference, recorded : numpy.ndarray, shape (n,), (m,)
        As for :func:`estimate_delay`.
    centre_lag : float
        Lag to centre on (usually the estimated latency), in samples.
    half_width_samples : float, default 16
        Lags ``centre ± half_width`` are evaluated.
    points : int, default 257
        Number of lags evaluated.
    weighting : {"plain", "phat"}, default "plain"
        The correlation the latency was estimated on (see :func:`estimate_delay`).

    Returns
    -------
    lags : numpy.ndarray, float64, shape (points,)
    values : numpy.ndarray, float64, shape (points,)
        Correlation divided by its largest absolute value in the range (-1..1).
    """
    correlation = _BandLimitedCorrelation(
        _as_signal(reference, "reference"),
        _as_signal(recorded, "recording"),
        weighting,
    )
    lags = np.linspace(centre_lag - half_width_samples, centre_lag + half_width_samples, points)
    values = correlation.value(lags, int(round(centre_lag)))
    scale = float(np.max(np.abs(values))) or 1.0
    return lags, values / scale


def estimate_window(
    reference: np.ndarray,
    recorded: np.ndarray,
    start: int,
    length: int,
    low: int,
    high: int,
    exclusion_samples: int = 32,
    weighting: str = "plain",
) -> DelayEstimate:
    """Latency of the reference window ``[start, start + length)`` found in the recording.

    Parameters
    ----------
    reference, recorded : numpy.ndarray, shape (n,), (m,)
        On the same time axis (see :func:`estimate_delay`).
    start, length : int
        The window of ``reference``, in samples.
    low, high : int
        Latencies searched, inclusive, in samples; the part of the recording read is
        ``[start + low, start + length + high)``, cut to its ends.
    exclusion_samples : int
        Main-lobe half-width for the confidence.
    weighting : {"plain", "phat"}
        See :func:`estimate_delay`.

    Returns
    -------
    DelayEstimate
        ``latency_samples`` on the common axis (positive: the recording lags).
    """
    first = max(start + low, 0)
    last = min(start + length + high, len(recorded))
    if last - first < 1:
        raise AlignmentError(
            f"The recording ({len(recorded)} samples) ends before the window at sample {start}; "
            "it is too short for this reference."
        )
    estimate = estimate_delay(
        reference[start : start + length],
        recorded[first:last],
        min_latency_samples=low - (first - start),
        max_latency_samples=high - (first - start),
        exclusion_samples=exclusion_samples,
        weighting=weighting,
    )
    return _shifted(estimate, first - start)


def _shifted(estimate: DelayEstimate, offset: float) -> DelayEstimate:
    return DelayEstimate(
        latency_samples=estimate.latency_samples + offset,
        polarity=estimate.polarity,
        confidence_db=estimate.confidence_db,
        correlation=estimate.correlation,
        gain_db=estimate.gain_db,
        search_min_samples=int(estimate.search_min_samples + offset),
        search_max_samples=int(estimate.search_max_samples + offset),
    )


def _fit(latencies: Sequence[float], centres: Sequence[float]) -> tuple[float, float]:
    """Least-squares line ``latency = intercept + slope·centre``; one point gives slope 0."""
    latencies = np.asarray(latencies, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    if len(latencies) < 2 or np.ptp(centres) == 0:
        return float(np.mean(latencies)), 0.0
    # Closed form (np.polyfit goes through a threaded LAPACK call, slow for two points).
    dx = centres - centres.mean()
    slope = float(np.sum(dx * (latencies - latencies.mean())) / np.sum(dx * dx))
    return float(latencies.mean() - slope * centres.mean()), slope


def track_latency(
    reference: np.ndarray,
    recorded: np.ndarray,
    windows: Sequence[tuple[int, int]],
    *,
    min_latency_samples: int,
    max_latency_samples: int,
    exclusion_samples: int = 32,
    max_iterations: int = 6,
    weighting: str = "plain",
    initial: tuple[float, float] | None = None,
) -> LatencyTrack:
    """Latency and clock drift of a recording from several windows of the reference.

    Parameters
    ----------
    reference : numpy.ndarray, shape (n,)
        What was played (the program, or a DI file).
    recorded : numpy.ndarray, shape (m,)
        What was recorded, starting at the same instant as the reference.
    windows : sequence of (start, length)
        Windows of the reference to find in the recording, in reference samples (the start and
        end sync markers). Two or more far apart give the drift; one gives drift 0.
    min_latency_samples, max_latency_samples : int
        Range of latencies to search around each window, in samples.
    exclusion_samples : int, default 32
        Main-lobe half-width for the confidence (see :func:`estimate_delay`).
    max_iterations : int, default 6
        Refinement passes at most; they stop once the drift changes by less than 0.01 ppm and
        the latency by less than 0.002 samples.
    weighting : {"plain", "phat"}, default "plain"
        See :func:`estimate_delay`.
    initial : (latency_samples, drift_ppm), optional
        A first estimate from elsewhere (:mod:`.coherence`, on music). The windows are then
        not searched over the whole range, which a drift of a few hundred ppm smears over a
        window of several seconds; they are read through this estimate and refined.

    Returns
    -------
    LatencyTrack
        Latency at reference sample 0 and drift; recorder position of reference sample ``m``
        is ``latency_samples + (1 + drift_ppm·1e-6)·m``.

    Raises
    ------
    AlignmentError
        No window, a window outside the reference, or silent input.
    """
    # Only the windows are converted and checked (estimate_delay does it): a take is long.
    reference, recorded = np.asarray(reference), np.asarray(recorded)
    _check_windows(reference, recorded, windows)
    search = _WindowSearch(reference, recorded, tuple(windows), exclusion_samples, weighting)
    intercept, slope, estimates = search.first_line(
        min_latency_samples, max_latency_samples, initial
    )
    iterations = 0
    for iteration in range(1, max_iterations + 1):
        iterations = iteration
        new_intercept, new_slope, refined = search.refine(intercept, slope, estimates)
        # Far below the targets (0.5 ppm, 0.02 samples), above the estimates' jitter.
        converged = abs(new_slope - slope) * 1e6 < 0.01 and abs(new_intercept - intercept) < 0.002
        intercept, slope, estimates = new_intercept, new_slope, refined
        if converged:
            break
    return _latency_track(intercept, slope, estimates, search.centres, iterations)


@dataclass(frozen=True)
class _WindowSearch:
    """Windows of a reference found in a recording, along a line ``intercept + slope·m``."""

    reference: np.ndarray
    recorded: np.ndarray
    windows: tuple[tuple[int, int], ...]
    exclusion_samples: int
    weighting: str

    @property
    def centres(self) -> list[float]:
        """Latency measured at a window applies at its centre (the correlation is symmetric)."""
        return [start + length / 2 for start, length in self.windows]

    def first_line(
        self,
        min_latency_samples: int,
        max_latency_samples: int,
        initial: tuple[float, float] | None,
    ) -> tuple[float, float, list[DelayEstimate]]:
        """The first line (intercept, slope per sample) and the window estimates behind it.

        Without ``initial`` each window is searched over the latency range; with it the
        windows are only placed on the line it gives, for the refinement to measure.
        """
        centres = self.centres
        if initial is not None:
            intercept, slope = initial[0], initial[1] * 1e-6
            placed = [
                DelayEstimate(
                    intercept + slope * c,
                    1,
                    0.0,
                    0.0,
                    0.0,
                    min_latency_samples,
                    max_latency_samples,
                )
                for c in centres
            ]
            return intercept, slope, placed
        estimates = [
            estimate_window(
                self.reference,
                self.recorded,
                start,
                length,
                min_latency_samples,
                max_latency_samples,
                self.exclusion_samples,
                self.weighting,
            )
            for start, length in self.windows
        ]
        intercept, slope = _fit([e.latency_samples for e in estimates], centres)
        return intercept, slope, estimates

    def refine(
        self, intercept: float, slope: float, estimates: Sequence[DelayEstimate]
    ) -> tuple[float, float, list[DelayEstimate]]:
        """Every window measured again through the line, and the line fitted to them again.

        Even one window is refined: the first search reads the reference window against a
        longer stretch of the recording, which the refinement's symmetric reading does not.
        """
        centres = self.centres
        refined = [
            self._refined_window(window, centre, previous, intercept, slope)
            for window, centre, previous in zip(self.windows, centres, estimates, strict=True)
        ]
        if len(self.windows) > 1:
            new_intercept, new_slope = _fit([e.latency_samples for e in refined], centres)
        else:  # one window: it places the line, the drift stays the one given
            new_slope = slope
            new_intercept = refined[0].latency_samples - slope * centres[0]
        return new_intercept, new_slope, refined

    def _refined_window(
        self,
        window: tuple[int, int],
        centre: float,
        previous: DelayEstimate,
        intercept: float,
        slope: float,
    ) -> DelayEstimate:
        """One window measured again through the line ``latency = intercept + slope·m``.

        The recording is read through the line over exactly the window: at the right line the
        two are the same signal, whose correlation is symmetric about lag 0. Against a longer
        stretch of the recording, the correlation's slope at lag 0 is the difference of the
        signal's energy at the window's two edges, which pulls a low-pitched window (a bass
        note rings across the edge) a tenth of a sample or more.
        """
        start, length = window
        # The residual search spans ±guard: wide enough for a peak-to-sidelobe ratio that means
        # something, and for a first estimate smeared by drift to be pulled in.
        guard = max(2 * self.exclusion_samples + 8, REFINE_GUARD_SAMPLES)
        # Read in chunks: the window's samples at once would hold the interpolator's six
        # polynomial rows for the whole window, more memory than the take's own audio.
        residual = estimate_delay(
            self.reference[start : start + length],
            resample_linear(self.recorded, intercept + (1.0 + slope) * start, 1.0 + slope, length),
            min_latency_samples=-guard,
            max_latency_samples=guard,
            exclusion_samples=self.exclusion_samples,
            weighting=self.weighting,
        )
        # A residual shift r on the reference axis is r·(1 + drift) recorder samples.
        # Confidence, correlation and gain are measured again here: in the first search a
        # drift of a few hundred ppm smears the peak over many samples.
        shift = residual.latency_samples * (1.0 + slope)
        return replace(
            residual,
            latency_samples=intercept + slope * centre + shift,
            search_min_samples=previous.search_min_samples,
            search_max_samples=previous.search_max_samples,
        )


def _check_windows(
    reference: np.ndarray, recorded: np.ndarray, windows: Sequence[tuple[int, int]]
) -> None:
    if reference.ndim != 1 or recorded.ndim != 1:
        raise AlignmentError(
            f"The reference and the recording must be one channel each, shape (frames,); got "
            f"{reference.shape} and {recorded.shape}."
        )
    if not windows:
        raise AlignmentError("No reference window was given to measure the latency in.")
    for start, length in windows:
        if start < 0 or length < 1 or start + length > len(reference):
            raise AlignmentError(
                f"The window [{start}, {start + length}) lies outside the reference "
                f"({len(reference)} samples)."
            )


def _latency_track(
    intercept: float,
    slope: float,
    estimates: Sequence[DelayEstimate],
    centres: Sequence[float],
    iterations: int,
) -> LatencyTrack:
    """The track of a fitted line; polarity from the windows' signed gains."""
    signed = sum(e.polarity * amplitude(e.gain_db) for e in estimates)
    return LatencyTrack(
        latency_samples=intercept,
        drift_ppm=slope * 1e6,
        polarity=1 if signed >= 0 else -1,
        confidence_db=min(e.confidence_db for e in estimates),
        correlation=min(e.correlation for e in estimates),
        gain_db=float(np.mean([e.gain_db for e in estimates])),
        windows=tuple(estimates),
        window_centres=tuple(centres),
        iterations=iterations,
    )
