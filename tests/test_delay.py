"""Latency, polarity, drift and band-limited resampling against signals with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from align_helpers import Rig, fractional_delay, lowpass_noise, record, sweep

from ampcap.dataset.delay import (
    MIN_CONFIDENCE_DB,
    correlation_curve,
    estimate_delay,
    track_latency,
)
from ampcap.dataset.resample import interpolate_at, interpolate_channels, resample_linear
from ampcap.errors import AlignmentError


def _embedded(seed: int, frames: int = 4096, offset: int = 2000, total: int = 8192) -> np.ndarray:
    out = np.zeros(total)
    out[offset : offset + frames] = lowpass_noise(frames, 48000, seed)
    return out


# Noise-free band-limited delays are found to well under a thousandth of a sample; 0.002
# leaves room for the fades' tiny out-of-band leakage.
@pytest.mark.parametrize(
    "delay", [0.0, 0.5, 1.0, 3.25, -0.37, -7.9, 123.456, -1234.75, 1999.01, 0.999]
)
def test_estimate_delay_finds_known_fractional_delays(delay: float) -> None:
    reference = _embedded(seed=1)
    recorded = fractional_delay(reference, delay)
    estimate = estimate_delay(reference, recorded)
    assert estimate.latency_samples == pytest.approx(delay, abs=0.002)
    assert estimate.polarity == 1
    assert estimate.correlation == pytest.approx(1.0, abs=1e-3)
    assert estimate.gain_db == pytest.approx(0.0, abs=0.01)
    assert estimate.confidence_db > 30


@pytest.mark.parametrize("delay", [0.0, 17.3, -42.61])
def test_estimate_delay_polarity_and_gain(delay: float) -> None:
    reference = _embedded(seed=2)
    recorded = -0.25 * fractional_delay(reference, delay)
    estimate = estimate_delay(reference, recorded)
    assert estimate.polarity == -1
    assert estimate.latency_samples == pytest.approx(delay, abs=0.002)
    assert estimate.gain_db == pytest.approx(20 * math.log10(0.25), abs=0.01)


def test_estimate_delay_with_noise_stays_within_a_fiftieth_of_a_sample() -> None:
    # SNR 40 dB on the recording: the target the benchmark holds the estimator to.
    rng = np.random.default_rng(0)
    errors = []
    for trial in range(20):
        delay = rng.uniform(-100, 100)
        reference = _embedded(seed=10 + trial)
        recorded = fractional_delay(reference, delay)
        noise = rng.standard_normal(len(recorded)) * np.std(reference[2000:6096]) * 10 ** (-40 / 20)
        errors.append(estimate_delay(reference, recorded + noise).latency_samples - delay)
    assert np.median(np.abs(errors)) <= 0.02
    assert np.max(np.abs(errors)) <= 0.1


def test_search_range_limits_the_latencies_considered() -> None:
    reference = _embedded(seed=3)
    recorded = fractional_delay(reference, 50.5) + 0.5 * fractional_delay(reference, -300.0)
    found = estimate_delay(reference, recorded, min_latency_samples=-500, max_latency_samples=500)
    assert found.latency_samples == pytest.approx(50.5, abs=0.01)
    limited = estimate_delay(reference, recorded, min_latency_samples=-500, max_latency_samples=0)
    # The stronger copy's correlation tail still leans on this peak: a few hundredths.
    assert limited.latency_samples == pytest.approx(-300.0, abs=0.05)
    assert (limited.search_min_samples, limited.search_max_samples) == (-500, 0)


def test_unrelated_signals_have_low_confidence() -> None:
    rng = np.random.default_rng(5)
    reference = rng.standard_normal(20000)
    recorded = rng.standard_normal(30000)
    estimate = estimate_delay(reference, recorded)
    assert estimate.confidence_db < MIN_CONFIDENCE_DB
    assert not estimate.trusted
    assert estimate.correlation < 0.1


@pytest.mark.parametrize(
    ("reference", "recorded", "match"),
    [
        (np.zeros(0), np.ones(10), "empty"),
        (np.ones((10, 2)), np.ones(10), "one channel"),
        (np.array([1.0, np.nan, 0.0]), np.ones(10), "NaN"),
        (np.zeros(100), np.ones(100), "reference is silent"),
        (np.ones(100), np.zeros(100), "recording is silent"),
    ],
)
def test_estimate_delay_refuses_unusable_input(
    reference: np.ndarray, recorded: np.ndarray, match: str
) -> None:
    with pytest.raises(AlignmentError, match=match):
        estimate_delay(reference, recorded)


def test_estimate_delay_refuses_a_range_outside_the_signals() -> None:
    with pytest.raises(AlignmentError, match="does not overlap"):
        estimate_delay(np.ones(100), np.ones(100), min_latency_samples=500, max_latency_samples=600)


def test_estimate_delay_refuses_an_unknown_weighting() -> None:
    with pytest.raises(AlignmentError, match="weighting"):
        estimate_delay(np.ones(100), np.ones(100), weighting="scot")


def test_correlation_curve_peaks_at_the_latency() -> None:
    reference = _embedded(seed=4)
    recorded = fractional_delay(reference, 12.3)
    lags, values = correlation_curve(reference, recorded, 12.0, half_width_samples=4, points=801)
    assert lags[np.argmax(values)] == pytest.approx(12.3, abs=0.01)
    assert values.max() == pytest.approx(1.0)


def _two_marker_take(rate: int, rig: Rig) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    marker = sweep(rate // 4, rate)
    program = np.zeros(3 * rate)
    program[rate // 10 : rate // 10 + len(marker)] = marker
    end = len(program) - rate // 2
    program[end : end + len(marker)] = marker
    recorded = record(program, program, rig, rate)[:, 0].astype(np.float64)
    return program, recorded, [(rate // 10, len(marker)), (end, len(marker))]


# Through the virtual interface (its own 32-tap sinc): latency within 0.01 samples, drift within
# 0.05 ppm, noise at -90 dBFS.
@pytest.mark.parametrize("rate", [44100, 48000, 96000])
@pytest.mark.parametrize(
    ("latency", "drift"),
    [(0.0, 0.0), (183.37, 0.0), (2047.61, 300.0), (5.5, -300.0), (999.9, 37.5)],
)
def test_track_latency_measures_latency_and_drift(rate: int, latency: float, drift: float) -> None:
    rig = Rig(latency_samples=latency, drift_ppm=drift, noise_dbfs=-90.0, seed=1)
    program, recorded, windows = _two_marker_take(rate, rig)
    track = track_latency(
        program, recorded, windows, min_latency_samples=-rate // 20, max_latency_samples=rate // 5
    )
    assert track.latency_samples == pytest.approx(rig.latency_at_zero(), abs=0.01)
    assert track.drift_ppm == pytest.approx(drift, abs=0.05)
    assert track.polarity == 1
    assert track.trusted
    assert track.latency_at(1000) == pytest.approx(
        track.latency_samples + drift * 1e-6 * 1000, abs=1e-3
    )


def test_track_latency_finds_an_inverted_quiet_noisy_recording() -> None:
    rig = Rig(
        latency_samples=321.123,
        drift_ppm=-150.0,
        polarity=-1,
        gain_db=-20.0,
        noise_dbfs=-50.0,
        seed=2,
    )
    rate = 48000
    marker = sweep(rate // 4, rate)
    program = np.zeros(3 * rate)
    program[4800 : 4800 + len(marker)] = marker
    program[-rate // 2 : -rate // 2 + len(marker)] = marker
    take = record(program, program, rig, rate)
    track = track_latency(
        program,
        take[:, 1].astype(np.float64),
        [(4800, len(marker)), (len(program) - rate // 2, len(marker))],
        min_latency_samples=-1000,
        max_latency_samples=4000,
    )
    assert track.polarity == -1
    assert track.gain_db == pytest.approx(-20.0, abs=0.1)
    assert track.latency_samples == pytest.approx(rig.latency_at_zero(), abs=0.05)
    assert track.drift_ppm == pytest.approx(-150.0, abs=0.5)


def test_track_latency_refuses_windows_outside_the_reference() -> None:
    with pytest.raises(AlignmentError, match="outside the reference"):
        track_latency(
            np.ones(100), np.ones(100), [(50, 100)], min_latency_samples=0, max_latency_samples=10
        )
    with pytest.raises(AlignmentError, match="No reference window"):
        track_latency(np.ones(100), np.ones(100), [], min_latency_samples=0, max_latency_samples=1)


# --- band-limited resampling ---------------------------------------------------------------


def _bandlimited(frames: int, band: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A periodic band-limited signal and its spectrum, so exact shifts are known."""
    rng = np.random.default_rng(seed)
    spectrum = rng.standard_normal(frames // 2 + 1) + 1j * rng.standard_normal(frames // 2 + 1)
    spectrum[np.fft.rfftfreq(frames) > band] = 0
    return np.fft.irfft(spectrum, frames), spectrum


def _error_db(estimate: np.ndarray, truth: np.ndarray) -> float:
    return 10 * math.log10(np.sum((estimate - truth) ** 2) / np.sum(truth**2))


@pytest.mark.parametrize("shift", [0.25, 0.5, 123.37, -5.81])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_interpolate_at_matches_an_exact_shift(shift: float, dtype: type) -> None:
    # Content up to 0.45 of the rate: error below -80 dB (float32 rounding allows -80 too).
    frames = 32768
    x, spectrum = _bandlimited(frames, 0.45, seed=1)
    truth = np.fft.irfft(spectrum * np.exp(2j * np.pi * np.fft.rfftfreq(frames) * shift), frames)
    inner = np.arange(2000, frames - 2000)
    got = interpolate_at(x.astype(dtype), inner + shift)
    assert got.dtype == dtype
    assert _error_db(got, truth[inner]) < -80


def test_interpolate_at_integer_positions_returns_the_samples() -> None:
    x = np.random.default_rng(0).standard_normal(1000)
    assert np.allclose(interpolate_at(x, np.arange(100, 900, dtype=float)), x[100:900], atol=1e-12)


def test_interpolate_at_reads_silence_outside_the_signal() -> None:
    x = np.ones(100)
    out = interpolate_at(x, np.array([-500.0, 1000.0]))
    assert np.allclose(out, 0.0)


def test_resample_linear_follows_a_drift_exactly() -> None:
    # Read at 1.5 + (1 + 250 ppm)·m; compare with the DFT evaluated at those positions.
    frames = 16384
    x, spectrum = _bandlimited(frames, 0.4, seed=2)
    step = 1 + 250e-6
    out = resample_linear(x, 1000.5, step, 12000, chunk_frames=4096)
    positions = 1000.5 + step * np.arange(0, 12000, 97)
    assert _error_db(out[::97], _read_exactly(spectrum, frames, positions)) < -85


def _read_exactly(spectrum: np.ndarray, frames: int, positions: np.ndarray) -> np.ndarray:
    """The periodic band-limited signal of ``spectrum`` evaluated at arbitrary positions."""
    k = np.arange(len(spectrum))
    weight = np.where((k == 0) | (k == frames // 2), 1.0, 2.0)
    return (
        np.real(np.exp(2j * np.pi * np.outer(positions, k) / frames) @ (spectrum * weight)) / frames
    )


@pytest.mark.parametrize("count", [1, 2, 3])
def test_interpolate_channels_reads_each_signal_at_its_own_positions(count: int) -> None:
    # Batched reads (one, two, three signals; an odd count halves the last one) each match the
    # exact band-limited value: a drift, a plain shift and a drift the other way.
    frames = 16384
    signals, spectra = zip(
        *(_bandlimited(frames, 0.4, seed=10 + i) for i in range(count)), strict=True
    )
    plans = [(1000.25, 1 + 250e-6), (2000.5, 1.0), (1500.75, 1 - 300e-6)][:count]
    positions = [first + step * np.arange(6000) for first, step in plans]
    got = interpolate_channels(list(signals), positions)
    for out, spectrum, where in zip(got, spectra, positions, strict=True):
        assert out.shape == where.shape
        assert _error_db(out[::41], _read_exactly(spectrum, frames, where[::41])) < -85
