"""Marker-free latency, drift and polarity of a device's recording, from its coherent part.

Sign conventions as in :mod:`.delay`: a positive latency means the recording lags, and
reference sample ``m`` is found at recorder position ``latency + (1 + drift_ppm·1e-6)·m``.

Why not a plain or phase-transform correlation peak. A distorting device turns most of its
output into harmonics and intermodulation that are not a linear function of the input. In a
single cross-spectrum every frequency bin then carries a random phase besides the device's own,
and GCC-PHAT, which gives each bin the same weight, sums mostly noise: through a high-gain amp
its peak stands a few dB above chance. The established answer is the generalized
cross-correlation with the maximum-likelihood weighting of Hannan and Thomson (C. H. Knapp and
G. C. Carter, "The generalized correlation method for estimation of time delay", IEEE Trans.
ASSP 24(4), 1976, eq. 15 and Table I): each frequency is weighted by

    ψ(f) = γ²(f) / (|Gxy(f)| · (1 - γ²(f)))

where γ² is the magnitude-squared coherence between input and output. A distorted recording
of the same input keeps a clear coherence where the input has its energy (the fundamentals);
its harmonics, hum and noise have almost none and drop out. γ² needs averaged spectra, so it is
measured here by Welch's method (Hann segments, half overlap) on segments of the input and of
the recording read where the current estimate of the latency and drift puts them.

The three steps:

1. **Coarse.** Both signals are decimated to about 12 kHz (the fundamental band). Up to
   :data:`COARSE_WINDOWS` short windows of the input, the most energetic of equal stretches of
   the file, are each searched over the whole latency range with a smoothed coherence
   transform (SCOT: the cross-spectrum over the geometric mean of the two auto-spectra, both
   smoothed over neighbouring bins), and the three highest peaks of each window are kept.
   Windows are short, so a clock drift of a few hundred ppm moves the latency by a few samples
   within one; the latency across windows is a straight line (latency and drift), found by a
   consensus fit (RANSAC): the line most windows agree on. Wrong peaks of windows the
   distortion or a quiet passage spoiled fall off the line.
2. **Coherence.** Welch cross-spectra along that line give γ²(f) and the device's best linear
   approximation. The **confidence** is the band coherence: γ² averaged over 60 Hz–4 kHz,
   weighted by the input's power, so it says how much of the recording, where the input plays,
   is a linear function of it. An unrelated recording scores at the estimator's own floor,
   about one over the number of segments; a distorting device scores far above it.
3. **Fine.** The line is first turned about the middle of the file to the slope at which the
   segments' phases, all of them alike, add up best (:meth:`_FineFit.tilted`): the windows
   below are each read within a few samples of the line, and bass notes through a fuzz can
   place it tens of ppm off. In several windows along the file, the averaged cross-spectrum is
   compared with the ML weighting ψ (the phase of each bin weighted by γ²/(1-γ²)); each window's
   residual delay against the whole file's is found to a fraction of a sample by a dense search
   and a parabola, and a straight line through them gives the drift. The delay itself, and the
   polarity, are those of the device's response: the impulse response of its best linear
   approximation Sxy/Sxx over all segments (see :meth:`_Spectra.response`). Unlike the
   ML-weighted correlation, whose weights follow the coherence and so the recording's noise
   and hum, the response depends on the device and the input alone: through a dispersive
   device with a bass DI the ML weights gather in the bass band, where the device's phase
   turns most, and the correlation's hump moved by dozens of samples between a clean and a
   noisy recording of the same take. The segments are read again along the line until it
   stops changing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from ampcap.errors import AlignmentError

from .delay import parabola_offset

#: Rate the coarse search runs at (the fundamental band of a guitar or bass is far below it).
COARSE_RATE_HZ = 8000
#: Length of a coarse window, seconds: long enough for a few notes, short enough that a drift
#: of 300 ppm moves the latency by under 0.2 samples at the coarse rate within it.
COARSE_WINDOW_SECONDS = 1.5
#: Coarse windows at most, one per equal stretch of the file.
COARSE_WINDOWS = 10
#: Decimated lags at either end of the coarse search that are not taken as peaks.
EDGE_SAMPLES = 8
#: Peaks kept per coarse window.
COARSE_PEAKS = 3
#: Coarse peaks within this many decimated samples of a line agree with it: the peak of a
#: window smeared by a drift of 300 ppm wanders by about two.
COARSE_TOLERANCE = 3
#: Welch segment length, seconds (4096 samples at 44.1-48 kHz): resolves 12 Hz, and a
#: residual latency of a few samples costs it nothing.
SEGMENT_SECONDS = 0.085
#: Segments averaged at most (evenly spread over the file, for speed).
MAX_SEGMENTS = 192
#: The device's response is searched this far either side of the fine line, seconds. Through
#: a dispersive device the response's peak and the coherent correlation's hump can stand a few
#: dozen samples apart (Guitarix chump and fuzz with a bass DI, up to 80 at 48 kHz).
RESPONSE_REACH_SECONDS = 0.003
#: Half-width of the kernel whose centre of energy is the response's delay, seconds (16
#: samples at 48 kHz): wide enough to hold the two or three main lobes a tone stack leaves,
#: narrow enough to leave out the slow tail of a coupling capacitor.
RESPONSE_KERNEL_SECONDS = 0.00033
#: The response's delay is searched from its earliest peak at least this fraction of its
#: highest: high enough that a side lobe of the main one seldom qualifies, low enough that of
#: a doublet's two lobes the first always does.
RESPONSE_FIRST_PEAK = 0.8
#: A window's own band, when its drift reading uses it: the bins where its input is within
#: 40 dB of its loudest.
WINDOW_FLOOR = 1e-4
#: The drift is read from each window's own band only when the windows scatter about that
#: line by under this fraction of their scatter with the file's weights (through a guitar
#: overdrive, 0.2-0.35; between 0.6 and 0.9 the two readings are about as good, and the
#: file's weights, which use more bins, are kept).
OWN_BAND_SCATTER = 0.6
#: Regularisation of the best linear approximation Sxy / (Sxx + floor·max Sxx): bins where the
#: input is more than 40 dB under its loudest carry too little to measure the response, and
#: the floor keeps their noise from the impulse response.
RESPONSE_FLOOR = 1e-4
#: How far past the search range a hump of the envelope may reach, samples.
HUMP_REACH = 24.0
#: Segments transformed at a time (memory: a few hundred kB a batch).
SEGMENT_BATCH = 32
#: Lines the coarse windows agree on that are compared by their coherence: repetitive music
#: (a bass riff on one note) lets a line one period off gather as many windows as the true one.
CANDIDATE_LINES = 3
#: Highest frequency analysed in the fine stage, Hz.
TOP_FREQUENCY_HZ = 8000.0
#: Band over which the confidence is measured, Hz: where a guitar's and a bass's fundamentals
#: and first harmonics put a DI's energy.
COHERENCE_BAND_HZ = (60.0, 4000.0)
#: Band coherence below which a recording is not trusted to be the device's output of this
#: input. Through the most distorting devices measured (fuzzes, high-gain amps) it stays above
#: 0.15; between unrelated signals it is at the floor (below 0.03 for a few hundred segments).
MIN_COHERENCE = 0.08
#: The band coherence must also stand this many times above the floor of the segments used.
MIN_COHERENCE_OVER_FLOOR = 4.0
#: Largest clock drift searched, ppm (two crystals differ by under 100; unlocked devices by
#: a few hundred).
MAX_DRIFT_PPM = 1000.0
#: Fine-stage windows at most.
FINE_WINDOWS = 8
#: Cross-spectra along a line are turned, not cut and transformed again, for a new line
#: within this many samples of it at every segment: a shift that small changes what the
#: Hann window holds by a negligible sliver, and turns the phases.
TURN_REACH = 1.0
#: The same for the slope scan, which reads the sum over all segments to a sample or so:
#: the placed line is within a few samples of the coarse one, along which the spectra were cut.
SCAN_TURN_REACH = 16.0
#: Newton steps refining each window's correlation peak from the half-sample grid (each
#: squares the error: three leave under 1e-6 samples).
NEWTON_STEPS = 3
#: The placed line's slope is corrected by a scan wide enough to move its first and last
#: segments this many samples. Through a fuzz at full drive with a bass DI the windows' own
#: readings can place the line 35 samples off there (60 ppm over 30 s), and the fine passes,
#: which read each window within a few samples of the line, then settle 20-60 ppm off.
SLOPE_SCAN_SAMPLES = 64.0
#: Steps of that scan turn the highest analysed frequency by this many cycles at the first
#: and last segments: the scanned sum's peak is then several steps wide, and a parabola through
#: the best three places it well within the fine passes' reach.
SLOPE_SCAN_TURN = 0.25
#: The scan runs first over the bins below the top frequency over this factor, in steps this
#: many times as long, then over all bins within two of those steps of the best.
SLOPE_SCAN_COARSE = 4
#: Coherence above this counts as this in the ML weighting, so every bin whose output is at
#: least a tenth linear in the input weighs the same (ψ = 1/9). ψ grows without bound as
#: γ² → 1 because the ML weighting assumes a pure delay in noise, so that a bin's phase error
#: is its noise alone. A device's phase is not a pure delay (tone stacks, coupling capacitors
#: turn it with frequency), so the weights decide which delay is read; weights that follow
#: the SNR bin by bin make the reading move with the noise and hum of each recording (through
#: Guitarix studiopre and chump, by 5 to 15 samples between two recordings of the same take
#: uncapped, under 1 capped here), while bins below the cap, where the output is mostly
#: distortion or noise, still count in proportion to their coherence.
MAX_GAMMA2 = 0.1


@dataclass(frozen=True)
class CoherentTrack:
    """Latency, drift and polarity of a recording, read from its coherent part.

    Attributes
    ----------
    latency_samples : float
        Latency at reference sample 0, recorder samples (positive: the recording lags).
    drift_ppm : float
        Clock drift; reference sample ``m`` is at recorder position
        ``latency_samples + (1 + drift_ppm·1e-6)·m``.
    polarity : int
        +1, or -1 when the recording is inverted.
    coherence : float
        Band coherence, 0..1: the magnitude-squared coherence between the reference and the
        recording read along the track, averaged over :data:`COHERENCE_BAND_HZ` weighted by the
        reference's power. 1 is a linear, noiseless copy; a distorting device keeps 0.15-0.9;
        an unrelated recording sits at ``coherence_floor``.
    coherence_floor : float
        What two unrelated signals score with the same number of segments (1 / segments).
    segments : int
        Welch segments averaged.
    windows : int
        Fine-stage windows the latency and drift were fitted to.
    agreeing_windows, coarse_windows : int
        Coarse windows whose peak lies on the fitted line, and coarse windows searched.
    drift_error_ppm : float
        Standard error of ``drift_ppm``, from the windows' scatter about the fitted line: what
        noise, and a device whose delay follows the notes, leave uncertain. 0 when the drift is
        not measured (given, or one clock).
    """

    latency_samples: float
    drift_ppm: float
    polarity: int
    coherence: float
    coherence_floor: float
    segments: int
    windows: int
    agreeing_windows: int
    coarse_windows: int
    drift_error_ppm: float = 0.0

    @property
    def step(self) -> float:
        """Recorder samples per reference sample, ``1 + drift_ppm·1e-6``."""
        return 1.0 + self.drift_ppm * 1e-6

    def latency_at(self, reference_sample: float) -> float:
        """Latency (recorder samples) at a reference sample."""
        return self.latency_samples + self.drift_ppm * 1e-6 * reference_sample

    @property
    def trusted(self) -> bool:
        """Whether the coherence says the recording is this reference through a device."""
        return self.coherence >= max(MIN_COHERENCE, MIN_COHERENCE_OVER_FLOOR * self.coherence_floor)


@dataclass(frozen=True)
class _Line:
    intercept: float
    slope: float

    def at(self, m: np.ndarray | float) -> np.ndarray | float:
        return self.intercept + self.slope * m

    def turned(self, about: float, slope: float) -> _Line:
        """The line with ``slope`` through this one's point at ``about``."""
        return _Line(float(self.at(about)) - slope * about, slope)


def _energetic_windows(x: np.ndarray, length: int, count: int, stop: int) -> list[int]:
    """Start of the most energetic ``length``-window in each of ``count`` stretches of x[:stop]."""
    stop = min(stop, len(x))
    if stop < length:
        return [0] if stop > 0 else []
    energy = np.concatenate(([0.0], np.cumsum(np.square(x[:stop], dtype=np.float64))))
    starts = np.arange(0, stop - length + 1, max(length // 4, 1))
    window_energy = energy[starts + length] - energy[starts]
    if window_energy.max() <= 0:
        return []
    edges = np.linspace(0, stop - length + 1, min(count, len(starts)) + 1)
    chosen = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (starts >= lo) & (starts < hi)
        if mask.any():
            best = int(np.argmax(np.where(mask, window_energy, -1.0)))
            if window_energy[best] > 1e-4 * window_energy.max():
                chosen.append(int(starts[best]))
    return sorted(set(chosen))


def _decimate(x: np.ndarray, q: int) -> np.ndarray:
    """Means of ``q`` consecutive samples: a crude low-pass, but the same for both signals, and
    only the coarse search (the fundamental band, far below the first null at rate/q) uses it."""
    if q == 1:
        return x
    rows = x[: len(x) // q * q].reshape(-1, q)
    # Column by column: a strided add per column is several times faster than a mean over
    # rows of q (numpy's reduction over a short inner axis).
    total = rows[:, 0].astype(np.float32)
    for column in range(1, q):
        total += rows[:, column]
    total *= np.float32(1.0 / q)
    return total


def _smooth(power: np.ndarray, bins: int) -> np.ndarray:
    """Moving average over ``2·bins + 1`` bins (shorter at the ends)."""
    total = np.concatenate(([0.0], np.cumsum(power, dtype=np.float64)))
    index = np.arange(len(power))
    lo, hi = np.maximum(index - bins, 0), np.minimum(index + bins + 1, len(power))
    return (total[hi] - total[lo]) / (hi - lo)


def _coarse_candidates(
    x: np.ndarray, y: np.ndarray, starts: list[int], length: int, low: int, high: int
) -> list[tuple[float, float, float]]:
    """(time, latency, weight) of the highest SCOT peaks of each window (decimated samples).

    A peak's time is the window's centre of energy: with drift the latency changes across the
    window, and the peak lands where the window's energy is.
    """
    candidates = []
    for start in starts:
        window = x[start : start + length]
        power = np.square(window, dtype=np.float64)
        centre = start + float(np.dot(power, np.arange(len(window))) / max(power.sum(), 1e-30))
        first, last = start + low, start + length + high
        part = np.zeros(last - first, dtype=np.float32)
        lo, hi = max(first, 0), min(last, len(y))
        if hi <= lo:
            continue
        part[lo - first : hi - first] = y[lo:hi]
        if not np.any(part):
            continue
        # The lags wanted, 0 .. high - low, never reach round the circle past the part's end:
        # a transform as long as the part serves.
        n = sfft.next_fast_len(len(part), real=True)
        spectrum_x = sfft.rfft(window, n)
        spectrum_y = sfft.rfft(part, n)
        smoothing = max(n // 2048, 2)
        power_x = _smooth(spectrum_x.real**2 + spectrum_x.imag**2, smoothing)
        power_y = _smooth(spectrum_y.real**2 + spectrum_y.imag**2, smoothing)
        scale = np.sqrt(np.maximum(power_x * power_y, 0.0))
        floor = 1e-9 * scale.max()
        if floor <= 0:
            continue
        spectrum_y *= np.conj(spectrum_x)
        spectrum_y /= np.maximum(scale, floor)
        correlation = np.abs(sfft.irfft(spectrum_y, n)[: high - low + 1])
        # Near the ends of the range the window barely overlaps the recording, and the
        # normalisation lifts whatever little is there: no peak is taken from them.
        edge = min(EDGE_SAMPLES, len(correlation) // 4)
        if edge:
            correlation[:edge] = 0.0
            correlation[-edge:] = 0.0
        # The highest local maxima, at least 4 samples apart.
        keep = min(64 * COARSE_PEAKS, len(correlation))
        top = np.argpartition(correlation, -keep)[-keep:]
        top = top[np.argsort(correlation[top])[::-1]]
        taken: list[int] = []
        for lag in top:
            if all(abs(int(lag) - t) > 4 for t in taken):
                taken.append(int(lag))
                if len(taken) == COARSE_PEAKS:
                    break
        best = correlation[taken[0]]
        for lag in taken:
            offset = 0.0
            if 0 < lag < len(correlation) - 1:
                offset = float(np.clip(parabola_offset(*correlation[lag - 1 : lag + 2]), -0.5, 0.5))
            candidates.append((centre, lag + offset + low, float(correlation[lag] / best)))
    return candidates


def _consensus(
    candidates: list[tuple[float, float, float]], tolerance: float, max_slope: float
) -> list[tuple[_Line, int, float]]:
    """The lines through most windows' peaks (RANSAC over pairs and single points).

    Returns up to :data:`CANDIDATE_LINES` distinct lines, best first, each the least-squares
    line through its agreeing peaks, with how many windows agree and its score (the sum of
    the agreeing peaks' heights relative to each window's highest).
    """
    t = np.array([c[0] for c in candidates])
    lag = np.array([c[1] for c in candidates])
    weight = np.array([c[2] for c in candidates])
    window_of = np.unique(t, return_inverse=True)[1]
    anchors_i, anchors_j = np.triu_indices(len(t), 1)
    apart = t[anchors_j] != t[anchors_i]
    anchors_i, anchors_j = anchors_i[apart], anchors_j[apart]
    slopes = (lag[anchors_j] - lag[anchors_i]) / (t[anchors_j] - t[anchors_i])
    fine = np.abs(slopes) <= max_slope
    # Hypotheses: every pair of peaks of two windows, and every peak with no drift.
    anchor = np.concatenate((np.arange(len(t)), anchors_i[fine]))
    slope = np.concatenate((np.zeros(len(t)), slopes[fine]))
    predicted = lag[anchor, None] + slope[:, None] * (t[None, :] - t[anchor, None])
    inlier = np.abs(lag[None, :] - predicted) <= tolerance
    # One vote per window: its best agreeing peak.
    votes = np.zeros((len(anchor), window_of.max() + 1))
    for k in range(len(t)):
        column = np.where(inlier[:, k], weight[k], 0.0)
        votes[:, window_of[k]] = np.maximum(votes[:, window_of[k]], column)
    score = votes.sum(axis=1)
    middle = float(np.median(t))
    lines: list[tuple[_Line, int, float]] = []
    fitted: set[bytes] = set()  # hypotheses agreeing with the same peaks give the same line
    for best in np.argsort(score)[::-1]:
        chosen = inlier[best]
        if chosen.tobytes() in fitted:
            continue
        fitted.add(chosen.tobytes())
        tt, ll = t[chosen], lag[chosen]
        if np.ptp(tt) > 0 and max_slope > 0:
            fitted_slope, intercept = np.polyfit(tt, ll, 1)
        else:
            fitted_slope, intercept = 0.0, float(np.mean(ll))
        line = _Line(float(intercept), float(fitted_slope))
        if all(abs(line.at(middle) - other.at(middle)) > tolerance for other, _, _ in lines):
            lines.append((line, int(np.count_nonzero(votes[best])), float(score[best])))
            if len(lines) == CANDIDATE_LINES:
                break
    return lines


class _Segments:
    """Welch segments of the reference, and of the recording read along a latency line.

    Only the bins up to :data:`TOP_FREQUENCY_HZ` are kept: above it a DI has little energy
    and a distorting device's output almost no coherence.
    """

    def __init__(
        self, x: np.ndarray, y: np.ndarray, starts: np.ndarray, length: int, rate: int
    ) -> None:
        self.starts, self.length = starts, length
        self.window = np.hanning(length + 2)[1:-1].astype(np.float32)
        self.top = int(min(TOP_FREQUENCY_HZ, 0.45 * rate) * length / rate) + 1
        self.frames = np.lib.stride_tricks.sliding_window_view(y, length)
        spectrum_x = self._spectra(np.lib.stride_tricks.sliding_window_view(x, length), starts)
        self.conj_x = np.conj(spectrum_x, out=spectrum_x)
        self.cycles = (np.arange(self.top) / length).astype(np.float32)  # cycles per sample
        # (where each segment of the recording was cut, where its spectra are turned to, the
        # cross-spectra and the powers)
        self._kept: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    @classmethod
    def along(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        line: _Line,
        length: int,
        margin: float,
        rate: int,
        decimated: np.ndarray,
    ) -> _Segments:
        """Segments where the reference plays and the recording holds it (±margin samples).

        ``decimated`` is the reference decimated by an integer factor: its energy, cheaper to
        sum, tells the silent segments apart.
        """
        first = max(0, int(math.ceil((margin - line.intercept) / (1 + line.slope))))
        last_y = (len(y) - length - 1 - margin - line.intercept) / (1 + line.slope)
        last = int(min(len(x) - length, last_y))
        starts = np.arange(first, last + 1, length // 2) if last >= first else np.zeros(0, int)
        if len(starts):
            # Drop segments where the reference is silent: they carry no information.
            q = len(x) // max(len(decimated), 1)
            square = np.concatenate(([0.0], np.cumsum(np.square(decimated, dtype=np.float64))))
            ends = np.minimum((starts + length) // q, len(decimated))
            energy = square[ends] - square[np.minimum(starts // q, len(decimated))]
            starts = starts[energy > 1e-6 * max(float(energy.max()), 1e-30)]
        if len(starts) > MAX_SEGMENTS:
            starts = starts[np.linspace(0, len(starts) - 1, MAX_SEGMENTS).round().astype(int)]
        return cls(x, y, starts, length, rate)

    def forget(self) -> None:
        """Drop the spectra kept from the last :meth:`cross` (their memory)."""
        self._kept = None

    def power_x(self, members: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The reference's mean power per bin over some segments."""
        spectra = self.conj_x[members]
        return np.mean(spectra.real**2 + spectra.imag**2, axis=0)

    def _spectra(self, frames: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Spectra (bins below the top) of the Hann-windowed ``frames[starts]``, a batch of
        segments at a time so the full spectra never all sit in memory at once."""
        out = np.empty((len(starts), self.top), dtype=np.complex64)
        for first in range(0, len(starts), SEGMENT_BATCH):
            rows = starts[first : first + SEGMENT_BATCH]
            out[first : first + len(rows)] = sfft.rfft(frames[rows] * self.window, axis=1)[
                :, : self.top
            ]
        return out

    def cross(
        self, line: _Line, *, keep: bool = True, reach: float = TURN_REACH
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-segment cross-spectra ``conj(X)·Y`` along ``line``, and the recording's powers.

        The recording is cut at the integer part of its position at each segment's centre and
        the fractional part undone by a phase rotation (the drift within one segment moves it
        by well under a sample). The spectra of the last line kept are turned instead of cut
        again when ``line`` puts every segment within ``reach`` samples of the middle of the
        sample where it was cut (a fine pass moves the line by a fraction of a sample; a fresh
        cut is within half a sample). The arrays returned are the segments' own while kept:
        read them, do not change them.
        """
        position = self.starts + line.at(self.starts + self.length / 2)
        kept, self._kept = self._kept, None
        if kept is not None and float(np.max(np.abs(position - kept[0] - 0.5))) <= reach:
            cut, turned_to, spectrum_y, power_y = kept
        else:
            del kept
            cut = np.clip(np.floor(position), 0, len(self.frames) - 1)
            turned_to = cut
            spectrum_y = self._spectra(self.frames, cut.astype(np.int64))
            power_y = spectrum_y.real**2 + spectrum_y.imag**2
            spectrum_y *= self.conj_x
        turn = (2 * np.pi) * (position - turned_to).astype(np.float32)[:, None] * self.cycles
        spectrum_y *= _phasor(turn)
        if keep:
            self._kept = (cut, position, spectrum_y, power_y)
        return spectrum_y, power_y


@dataclass(frozen=True)
class _Spectra:
    """Welch averages over some segments: coherence, the ML weights and the phase they weigh."""

    coherence: float
    cross: np.ndarray
    power_x: np.ndarray
    bins: np.ndarray
    psi: np.ndarray
    phase: np.ndarray

    @classmethod
    def of(
        cls, power_x: np.ndarray, power_y: np.ndarray, cross: np.ndarray, frequencies_hz: np.ndarray
    ) -> _Spectra:
        gamma2 = (cross.real**2 + cross.imag**2) / np.maximum(power_x * power_y, 1e-30)
        gamma2 = np.clip(gamma2, 0.0, 1.0)
        band = (frequencies_hz >= COHERENCE_BAND_HZ[0]) & (frequencies_hz <= COHERENCE_BAND_HZ[1])
        weight = power_x * band
        total = float(weight.sum())
        coherence = float(np.dot(weight, gamma2) / total) if total > 0 else 0.0
        capped = np.minimum(gamma2, MAX_GAMMA2)
        psi = capped / (1.0 - capped)
        # DC, and bins where the reference has no energy, say nothing about the delay.
        useful = (power_x > 1e-8 * power_x.max()) & (psi > 1e-3 * max(float(psi.max()), 1e-30))
        useful[0] = False
        bins = np.flatnonzero(useful)
        return cls(coherence, cross, power_x, bins, psi[bins], _unit(cross[bins]))

    def envelope_centre(self, length: int, around: float, reach: float) -> float:
        """Centre (first moment of the energy) of the envelope's main hump, samples.

        The hump is the stretch around the envelope's highest point within ``reach`` of
        ``around`` where the envelope stays above half its peak; it may extend past
        ``reach`` as far as the envelope's width (one over the weights' bandwidth) asks.
        Through a dispersive device the hump can carry two crests of almost equal height, and
        its highest point jumps between them with the material; its centre does not.
        """
        if len(self.bins) == 0:
            return around
        cycles = self.bins / length
        weight = self.psi / max(float(self.psi.sum()), 1e-30)
        mean = float(np.dot(weight, cycles))
        bandwidth = math.sqrt(max(float(np.dot(weight, (cycles - mean) ** 2)), 1e-12))
        width = min(max(2.0 / bandwidth, reach + HUMP_REACH), length / 8)
        oversample = 4
        size = oversample * length
        spectrum = np.zeros(size, dtype=np.complex128)
        spectrum[self.bins] = self.psi * self.phase
        lags = np.arange(int((around - width) * oversample), int((around + width) * oversample) + 1)
        envelope = np.abs(sfft.ifft(spectrum)[np.mod(lags, size)])
        inside = np.abs(lags / oversample - around) <= reach
        peak = int(np.argmax(np.where(inside, envelope, -1.0)))
        above = envelope >= 0.5 * envelope[peak]
        lo = peak
        while lo > 0 and above[lo - 1]:
            lo -= 1
        hi = peak
        while hi < len(above) - 1 and above[hi + 1]:
            hi += 1
        energy = envelope[lo : hi + 1] ** 2
        return float(np.dot(energy, lags[lo : hi + 1]) / energy.sum()) / oversample

    def response(self, length: int, reach: float, kernel: float) -> tuple[float, int]:
        """Delay (samples, within about ``reach`` of 0) and polarity of the device's response.

        The response is the impulse response of the best linear approximation of the device,
        ``H = Sxy / (Sxx + floor)``: the H1 frequency-response estimate (J. S. Bendat and A. G.
        Piersol, "Random Data", 4th ed., 2010, ch. 6), with a floor of :data:`RESPONSE_FLOOR`
        of the input's largest power. Unlike the coherence weights, it does not depend on the
        noise, hum or level of the recording: noise and distortion products that do not
        correlate with the input average out of Sxy. Its delay is found by mean shift: from
        the earliest of the highest peaks of ``|h|`` within ``reach``, the centre of ``h²``
        under an Epanechnikov kernel of half-width ``kernel`` samples, moved there until it
        stays. When two lobes stand almost equally high (a tone
        stack's ringing), the kernel holds both, and the centre does not jump between them
        with the noise as the highest point does. The polarity is the sign of the response's
        energy under the kernel, ``Σ K·h·|h|``.
        """
        floor = RESPONSE_FLOOR * max(float(self.power_x.max()), 1e-30)
        transfer = self.cross / (self.power_x + floor)
        transfer[0] = 0.0
        oversample = 8
        size = oversample * length
        # irfft pads the bins above the analysed band with zeros: h band-limited to that band.
        impulse = sfft.irfft(transfer, size) * oversample
        lags = np.arange(
            -int((reach + kernel) * oversample), int((reach + kernel) * oversample) + 1
        )
        values = impulse[np.mod(lags, size)]
        lags = lags / oversample
        # The start: the earliest peak of |h| within reach that stands within
        # RESPONSE_FIRST_PEAK of the highest. With a bass DI the response can be a doublet, two
        # lobes of opposite sign and the same height a dozen samples apart, that the kernel
        # does not hold both of; its highest point then jumps between them with the noise,
        # its first does not.
        height = np.where(np.abs(lags) <= reach, np.abs(values), 0.0)
        peaks = (height[1:-1] >= height[:-2]) & (height[1:-1] >= height[2:])
        peaks &= height[1:-1] >= RESPONSE_FIRST_PEAK * height.max()
        centre = float(lags[int(np.flatnonzero(peaks)[0]) + 1]) if peaks.any() else 0.0
        energy = values**2
        weights = np.zeros_like(energy)
        for _ in range(50):
            weights = np.clip(1.0 - ((lags - centre) / kernel) ** 2, 0.0, None)
            moved = float(
                np.dot(weights, energy * lags) / max(float(np.dot(weights, energy)), 1e-300)
            )
            if abs(moved - centre) < 1e-4:
                centre = moved
                break
            centre = moved
        polarity = 1 if float(np.dot(weights, values * np.abs(values))) >= 0 else -1
        return centre, polarity


def _correlation_peaks(
    spectrum_phase: np.ndarray,
    psi: np.ndarray,
    bins: np.ndarray,
    length: int,
    reach: float,
) -> np.ndarray:
    """For each row, the lag (samples, within about ``reach``) where ``Re G(τ)`` peaks,
    ``G(τ) = Σ ψ·e^{j(φ + 2πfτ)}``.

    ``G`` is the analytic form of a generalized cross-correlation with weights ψ over the FFT
    ``bins`` of a ``length``-point segment, whose phases are φ = ``spectrum_phase`` (one row
    per window, shape (windows, bins); ``psi`` the same shape, or one row for all); its real
    part is the correlation. Sampled every half sample within ``reach``, then refined by
    Newton steps on its exact derivatives, all rows at once; a peak just past ``reach`` is
    followed up to a sample further.
    """
    weighted = np.atleast_2d(psi * spectrum_phase)
    omega = (2 * np.pi / length) * bins.astype(np.float64)  # radians per sample
    lags = np.arange(-int(2 * reach), int(2 * reach) + 1) / 2.0
    values = (weighted @ _phasor(np.outer(omega, lags).astype(np.float32))).real
    tau = lags[np.argmax(values, axis=1)]
    for _ in range(NEWTON_STEPS):
        turned = weighted * _phasor(np.outer(tau, omega).astype(np.float32))
        slope = -(turned.imag @ omega)
        curvature = -(turned.real @ omega**2)
        # Only towards a maximum, and never past the half-sample grid's spacing.
        step = np.where(curvature < 0, slope / np.where(curvature < 0, curvature, -1.0), 0.0)
        tau = np.clip(tau - np.clip(step, -0.5, 0.5), -reach - 1.0, reach + 1.0)
    return tau


def _phasor(angle: np.ndarray) -> np.ndarray:
    """``e^{j·angle}`` (complex64 for float32 angles, else complex128) from cos and sin,
    several times faster than numpy's complex exponential."""
    out = np.empty(angle.shape, dtype=np.complex64 if angle.dtype == np.float32 else np.complex128)
    np.cos(angle, out=out.real)
    np.sin(angle, out=out.imag)
    return out


def _unit(z: np.ndarray) -> np.ndarray:
    return z / np.maximum(np.abs(z), 1e-30)


def _robust_line(
    centres: np.ndarray, delays: np.ndarray, weights: np.ndarray, drift: bool
) -> _Line:
    """Weighted least-squares line, refitted without windows far off it (a wrong lobe)."""
    keep = np.ones(len(centres), dtype=bool)
    for _ in range(3):
        w = weights[keep]
        if drift and np.count_nonzero(keep) >= 2 and np.ptp(centres[keep]) > 0:
            slope, intercept = np.polyfit(centres[keep], delays[keep], 1, w=np.sqrt(w))
        else:
            slope, intercept = 0.0, float(np.average(delays[keep], weights=w))
        residual = np.abs(delays - (intercept + slope * centres))
        spread = max(3.0 * float(np.median(residual[keep])), 0.5)
        new = residual <= spread
        if new.sum() < max(2, len(centres) // 2) or np.array_equal(new, keep):
            break
        keep = new
    return _Line(float(intercept), float(slope))


def track_coherent(
    reference: np.ndarray,
    recorded: np.ndarray,
    sample_rate_hz: int,
    *,
    min_latency_samples: int,
    max_latency_samples: int,
    drift: bool = True,
    drift_ppm: float | None = None,
    near: tuple[float, float] | None = None,
    max_iterations: int = 3,
) -> CoherentTrack:
    """Latency, drift and polarity of ``recorded`` against ``reference``, without markers.

    Parameters
    ----------
    reference : numpy.ndarray, shape (n,)
        What was played (a DI), float32 or float64.
    recorded : numpy.ndarray, shape (m,)
        The device's output as recorded, starting at the same instant; it may be shorter or
        longer than the reference.
    sample_rate_hz : int
    min_latency_samples, max_latency_samples : int
        Latencies searched (inclusive), recorder samples.
    drift : bool, default True
        Measure clock drift; False when both signals share one clock (a device channel against
        its loopback), so the drift is 0 by construction.
    drift_ppm : float, optional
        A drift already known (a loopback recorded beside the output measures it exactly):
        the line keeps it, and only the latency and polarity are read. ``drift`` is then
        not used.
    near : (float, float), optional
        A track already found, (latency at reference sample 0, drift ppm), within a few
        samples: the coarse search is skipped and the fine stage starts from it (reading a
        recording again along a drift known better). ``agreeing_windows`` and
        ``coarse_windows`` are then 0.
    max_iterations : int, default 3
        Fine passes at most; they stop once the latency changes by under 0.01 samples and the
        drift by under 0.05 ppm.

    Returns
    -------
    CoherentTrack
        See :class:`CoherentTrack`; check ``trusted`` before using it.

    Raises
    ------
    AlignmentError
        Multi-channel, empty or non-finite input, or a recording that holds no sound where the
        reference plays within the latency range.
    """
    x = _as_float32(reference, "reference")
    y = _as_float32(recorded, "recording")
    rate = int(sample_rate_hz)
    max_slope = MAX_DRIFT_PPM * 1e-6 if drift or drift_ppm is not None else 0.0
    q = max(1, int(round(rate / COARSE_RATE_HZ)))
    xd = _decimate(x, q)
    if near is None:
        lines, coarse_windows = _coarse_lines(
            xd, y, q, rate, (min_latency_samples, max_latency_samples), max_slope
        )
    else:
        lines, coarse_windows = [(_Line(near[0] / q, near[1] * 1e-6), 0, 1.0)], 0
    segment = 1 << int(round(math.log2(SEGMENT_SECONDS * rate)))
    reach = (COARSE_TOLERANCE + 2) * q
    line, agreeing, segments = _most_coherent(x, y, xd, lines, q, segment, reach, rate)
    if drift_ppm is not None:
        # One window along the known slope, turned about the segments' middle.
        known = drift_ppm * 1e-6
        middle = float(np.mean(segments.starts)) + segment / 2
        line = line.turned(middle, known)
        fit = _FineFit.along(segments, segment, rate, False, reach, known)
    else:
        fit = _FineFit.along(segments, segment, rate, drift, reach)
    line = fit.placed(line)
    if drift and drift_ppm is None:
        line = fit.tilted(line)
    for iteration in range(max_iterations):
        new, whole, polarity, drift_error = fit.refined(line, first=iteration == 0)
        converged = (
            abs(new.intercept - line.intercept) < 0.01 and abs(new.slope - line.slope) * 1e6 < 0.05
        )
        line = new
        if converged:
            break
    return CoherentTrack(
        latency_samples=line.intercept,
        drift_ppm=line.slope * 1e6,
        polarity=polarity,
        coherence=whole.coherence,
        coherence_floor=1.0 / len(segments.starts),
        segments=len(segments.starts),
        windows=len(fit.groups),
        agreeing_windows=agreeing,
        coarse_windows=coarse_windows,
        drift_error_ppm=drift_error,
    )


def _coarse_lines(
    xd: np.ndarray,
    y: np.ndarray,
    q: int,
    rate: int,
    latency_range: tuple[int, int],
    max_slope: float,
) -> tuple[list[tuple[_Line, int, float]], int]:
    """Stage 1, coarse: windows of the decimated signals, and the lines most of them agree on.

    ``xd`` is the reference decimated by ``q``; ``latency_range`` is (min, max) in recorder
    samples. Returns the lines (decimated samples) as :func:`_consensus` ranks them, and how
    many windows were searched.
    """
    yd = _decimate(y, q)
    low = int(math.floor(latency_range[0] / q))
    high = int(math.ceil(latency_range[1] / q))
    length = int(min(COARSE_WINDOW_SECONDS * rate / q, len(xd)))
    # Only where the recording can hold the reference: past its end there is nothing to find.
    starts = _energetic_windows(xd, length, COARSE_WINDOWS, len(yd) - low)
    candidates = _coarse_candidates(xd, yd, starts, length, low, high)
    del yd
    if not candidates:
        raise AlignmentError(
            "The recording has no sound where the input plays, within the latency range searched."
        )
    return _consensus(candidates, COARSE_TOLERANCE, max_slope), len(starts)


def _most_coherent(
    x: np.ndarray,
    y: np.ndarray,
    xd: np.ndarray,
    lines: list[tuple[_Line, int, float]],
    q: int,
    segment: int,
    reach: int,
    rate: int,
) -> tuple[_Line, int, _Segments]:
    """Stage 2: of the lines most windows agree on, the one along which the recording is most
    coherent with the reference (Welch segments along each line).

    Returns the line (full-rate samples), how many coarse windows agreed on it, and its
    segments.
    """
    best: tuple[float, _Line, int, _Segments] | None = None
    for coarse, agreeing, score in lines:
        if score < 0.5 * lines[0][2]:
            break
        if best is not None:
            best[3].forget()  # one candidate's spectra at a time
        line = _Line(coarse.intercept * q, coarse.slope)
        candidate = _Segments.along(x, y, line, segment, reach, rate, xd)
        if len(candidate.starts) < 2:
            continue
        cross_each, power_y = candidate.cross(line)
        coherence = _Spectra.of(
            candidate.power_x(),
            power_y.mean(axis=0),
            cross_each.mean(axis=0),
            candidate.cycles * rate,
        ).coherence
        del cross_each, power_y
        if best is None or coherence > best[0]:
            best = (coherence, line, agreeing, candidate)
        del candidate
    if best is None:
        raise AlignmentError(
            "The recording overlaps the input for less than two analysis segments "
            f"({segment} samples each): too little to align."
        )
    _, line, agreeing, segments = best
    return line, agreeing, segments


def _slope_scores(
    phases: np.ndarray,
    psi: np.ndarray,
    cycles: np.ndarray,
    offsets: np.ndarray,
    first: float,
    step: float,
    count: int,
) -> np.ndarray:
    """``Σ_f ψ(f)·|Σ_s u_s(f)·e^{j·o_s·f·e}|²`` for slopes ``e = first + k·step``, k < count.

    ``phases`` are the segments' unit phasors u_s(f) (segments × bins; turned in place),
    ``cycles`` the bins' frequencies (cycles per sample) and ``offsets`` each segment's
    ``2π·(t_s - t̄)``. The turn of one step is built once, a batch of segments at a time
    (complex64: the scan's memory is the phasors and that turn).
    """
    rotation = np.empty_like(phases)
    for start in range(0, len(offsets), SEGMENT_BATCH):
        rows = slice(start, start + SEGMENT_BATCH)
        turn = offsets[rows].astype(np.float32)[:, None] * cycles
        phases[rows] *= _phasor(turn * np.float32(first))
        rotation[rows] = _phasor(turn * np.float32(step))
    scores = np.empty(count)
    for k in range(count):
        total = phases.sum(axis=0)
        scores[k] = float(np.dot(psi, total.real**2 + total.imag**2))
        phases *= rotation
    return scores


@dataclass(frozen=True)
class _FineFit:
    """Stage 3: the ML-weighted fine fit along a line, over groups of segments (windows).

    ``groups`` are the segment indices of each window, ``centres`` their centres (recorder
    samples) and ``sizes`` their segment counts; one window when the drift is not measured.
    ``slope`` is a drift already known (samples per sample), which every line keeps.
    """

    segments: _Segments
    segment: int
    frequencies_hz: np.ndarray
    groups: list[np.ndarray]
    centres: np.ndarray
    sizes: np.ndarray
    drift: bool
    reach: int
    rate: int
    slope: float | None = None

    @classmethod
    def along(
        cls,
        segments: _Segments,
        segment: int,
        rate: int,
        drift: bool,
        reach: int,
        slope: float | None = None,
    ) -> _FineFit:
        count = len(segments.starts)
        groups = np.array_split(np.arange(count), min(FINE_WINDOWS if drift else 1, count))
        centres = np.array([float(np.mean(segments.starts[g])) + segment / 2 for g in groups])
        sizes = np.array([len(g) for g in groups], dtype=np.float64)
        return cls(
            segments,
            segment,
            segments.cycles * rate,
            groups,
            centres,
            sizes,
            drift,
            reach,
            rate,
            slope,
        )

    def line_through(self, delays: np.ndarray, weights: np.ndarray) -> _Line:
        """The line through the windows' delays, with the known slope if there is one."""
        fitted = _robust_line(self.centres, delays, weights, self.drift)
        if self.slope is None:
            return fitted
        centre = float(np.average(self.centres, weights=weights))
        return fitted.turned(centre, self.slope)

    def spectra(
        self, members: np.ndarray | slice, cross_each: np.ndarray, power_y: np.ndarray
    ) -> _Spectra:
        """Welch averages over some segments (all of them with ``slice(None)``, no copy)."""
        return _Spectra.of(
            self.segments.power_x(members),
            power_y[members].mean(axis=0),
            cross_each[members].mean(axis=0),
            self.frequencies_hz,
        )

    def window_means(
        self, cross_each: np.ndarray, power_y: np.ndarray, bins: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each window's mean cross-spectrum, input power and recording power over ``bins``
        (windows × bins; the windows are consecutive runs of segments)."""
        shape = (len(self.groups), len(bins))
        means = np.empty(shape, dtype=np.complex128)
        power_x, own_power_y = np.empty(shape), np.empty(shape)
        for k, group in enumerate(self.groups):
            run = slice(int(group[0]), int(group[-1]) + 1)
            means[k] = cross_each[run].mean(axis=0)[bins]
            power_x[k] = self.segments.power_x(run)[bins]
            own_power_y[k] = power_y[run].mean(axis=0)[bins]
        return means, power_x, own_power_y

    def placed(self, line: _Line) -> _Line:
        """The line through each window placed on its own.

        The coarse line can be a dozen samples and as many ppm off, which would smear spectra
        averaged over the whole file: first each window is placed on its own (the envelope of
        its ML-weighted correlation, with its own coherence).
        """
        cross_each, power_y = self.segments.cross(line)
        delays = []
        for group, centre in zip(self.groups, self.centres, strict=True):
            own = self.spectra(group, cross_each, power_y)
            delays.append(
                float(line.at(centre)) + own.envelope_centre(self.segment, 0.0, self.reach)
            )
        return self.line_through(np.array(delays), self.sizes)

    def tilted(self, line: _Line) -> _Line:
        """The line turned about the segments' mean time to where they add up best.

        Each window read on its own can be a few samples off with bass notes through a fuzz
        (the device's phase follows the notes), enough to tilt the placed line by tens of ppm.
        A slope error ``e`` turns segment ``s``'s cross-spectrum by ``2π·f·e·t_s`` (``t_s`` its
        time from the mean), so the sum over all segments, phases only, adds up best at the
        right slope: ``Σ_f ψ(f)·|Σ_s e^{j(φ_s(f) + 2π·f·e·t_s)}|²`` is scanned over slopes that
        move the outer segments by up to :data:`SLOPE_SCAN_SAMPLES`, in steps of
        :data:`SLOPE_SCAN_TURN` cycles at the highest frequency (first over the lower bins in
        longer steps, see :data:`SLOPE_SCAN_COARSE`), and its peak refined by a parabola.
        Phases only: every segment counts alike, so the loudest notes do not set the slope. The
        steps are as many whatever the file's length (about 21 and 17).
        """
        # Its line moves by up to the scan's reach: nothing to keep for the next pass.
        cross_each, power_y = self.segments.cross(line, keep=False, reach=SCAN_TURN_REACH)
        whole = self.spectra(slice(None), cross_each, power_y)
        times = self.segments.starts + self.segment / 2
        middle = float(np.mean(times))
        reach = float(np.max(np.abs(times - middle)))
        if reach <= 0 or len(whole.bins) == 0:
            return line
        span = min(SLOPE_SCAN_SAMPLES / reach, MAX_DRIFT_PPM * 1e-6)
        cycles = (whole.bins / self.segment).astype(np.float32)
        offsets = (2 * np.pi) * (times - middle)
        phases = _unit(cross_each[:, whole.bins])
        del cross_each, power_y
        psi = whole.psi.astype(np.float32)
        # First over the bins below a quarter of the top, in steps four times as long, then
        # over all bins around the best of those: a sixth of the work of one full scan.
        low = cycles <= cycles[-1] / SLOPE_SCAN_COARSE
        low[0] = True
        step = SLOPE_SCAN_TURN / (float(cycles[low][-1]) * reach)
        count = int(2 * span / step) + 1
        scores = _slope_scores(phases[:, low], psi[low], cycles[low], offsets, -span, step, count)
        centre = -span + int(np.argmax(scores)) * step
        fine = SLOPE_SCAN_TURN / (float(cycles[-1]) * reach)
        side = int(math.ceil(2 * step / fine))
        scores = _slope_scores(
            phases, psi, cycles, offsets, centre - side * fine, fine, 2 * side + 1
        )
        best = int(np.argmax(scores))
        found = centre + (best - side) * fine
        if 0 < best < len(scores) - 1:
            found += parabola_offset(*scores[best - 1 : best + 2]) * fine
        return line.turned(middle, line.slope + found)

    def refined(self, line: _Line, first: bool) -> tuple[_Line, _Spectra, int, float]:
        """One fine pass: the new line, the spectra of all segments along ``line``, the
        polarity, and the standard error of the new line's slope (ppm; 0 when the slope is
        not measured)."""
        cross_each, power_y = self.segments.cross(line)
        whole = self.spectra(slice(None), cross_each, power_y)
        # The delay and polarity: those of the device's response (its best linear
        # approximation) over all segments. The first pass searches it around the line the
        # windows were placed on; later ones stay by the response found.
        delay, polarity = whole.response(
            self.segment,
            RESPONSE_REACH_SECONDS * self.rate if first else RESPONSE_KERNEL_SECONDS * self.rate,
            RESPONSE_KERNEL_SECONDS * self.rate,
        )
        # The drift is read two ways, and the line whose windows agree best is kept. With the
        # file's weights, each window weighs every bin where the file is coherent; with each
        # window's own band, only the bins where that window's input plays. Through an
        # overdrive a guitar window's strong notes put distortion products in bins where its
        # own input is weak, and their phase follows the notes, not the delay: each window
        # then reads its own band best (drift errors of 1 ppm fall to 0.1). A bass window's
        # own band is its fundamentals alone, where a delay of one sample turns the phase by
        # a hundredth of a radian, and the file's weights, which keep the harmonics, read it
        # better. The windows' scatter about each line tells which case holds; near a tie the
        # file's weights, which use more bins, serve.
        windows = self.window_means(cross_each, power_y, whole.bins)
        del cross_each, power_y
        fitted, error = self._windows_line(line, whole, windows, delay, False)
        if not self.drift or self.slope is not None or len(self.groups) <= 2:
            return fitted, whole, polarity, 0.0
        own, own_error = self._windows_line(line, whole, windows, delay, True)
        if own_error < OWN_BAND_SCATTER * error:
            fitted, error = own, own_error
        # The scatter is the windows' weighted rms residual over their weighted spread in
        # time; the slope's standard error divides it by the degrees of freedom left.
        return fitted, whole, polarity, error / math.sqrt(len(self.groups) - 2)

    def _windows_line(
        self,
        line: _Line,
        whole: _Spectra,
        windows: tuple[np.ndarray, np.ndarray, np.ndarray],
        delay: float,
        own_band: bool,
    ) -> tuple[_Line, float]:
        """The line through the windows' delays, and their scatter about it (ppm): the
        weighted rms residual over the weighted spread of the windows' times.

        Each window's delay is read against all segments' average, within a few samples of
        the line (:meth:`tilted` brings it that close): the device's own phase cancels in the
        difference, which leaves a clean correlation with one main lobe. Each window weighs by the
        precision of a delay read from phases (the Cramér-Rao bound: Σ ψ·f²·SNR(f), with
        SNR = γ²/(1 - γ²) from its own coherence above its floor, capped as in ψ so that one
        window with a few nearly noiseless bins does not decide the line alone). With
        ``own_band`` a window weighs only the bins where its own input plays. ``windows`` are
        :meth:`window_means` over the bins of ``whole``.
        """
        frequencies = whole.bins.astype(np.float64)
        means, power_x, power_y = windows
        psi = np.broadcast_to(whole.psi, means.shape)
        if own_band:
            loudest = np.maximum(power_x.max(axis=1, keepdims=True), 1e-30)
            psi = psi * power_x / (power_x + WINDOW_FLOOR * loudest)
        gamma2 = (means.real**2 + means.imag**2) / np.maximum(power_x * power_y, 1e-30)
        gamma2 = np.clip(gamma2 - 1.0 / self.sizes[:, None], 0.0, MAX_GAMMA2)
        precision = self.sizes * ((psi * gamma2 / (1.0 - gamma2)) @ frequencies**2)
        sizes = np.maximum(precision, 1e-30)
        offsets = _correlation_peaks(
            _unit(means) * np.conj(whole.phase),
            psi,
            whole.bins,
            self.segment,
            3.0,
        )
        delays = line.at(self.centres) + delay + offsets
        fitted = self.line_through(delays, sizes)
        w = sizes / sizes.sum()
        spread = float(np.dot(w, (self.centres - np.dot(w, self.centres)) ** 2))
        residual = delays - fitted.at(self.centres)
        error = math.sqrt(float(np.dot(w, residual**2)) / spread) * 1e6 if spread > 0 else 0.0
        return fitted, error


def _as_float32(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1:
        raise AlignmentError(f"The {name} must be one channel, shape (frames,); got {x.shape}.")
    if x.size == 0:
        raise AlignmentError(f"The {name} is empty: nothing to align.")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x.sum(dtype=np.float64)):
        raise AlignmentError(f"The {name} contains NaN or infinite samples.")
    return x
