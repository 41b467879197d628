"""The marker-free estimator reads a device's delay and polarity from its response: known
responses, the same reading whatever noise and hum the recording carries, and the same drift
wherever its first stage left the line."""

from __future__ import annotations

import numpy as np
import pytest
from align_helpers import fractional_delay, plucks
from scipy import signal

from ampcap.dataset import coherence
from ampcap.dataset.coherence import track_coherent
from ampcap.dataset.resample import resample_linear

RATE = 48000


def _bass_di(seconds: float, seed: int) -> np.ndarray:
    """A DI whose energy sits below 1 kHz, as a bass's does, with silence at both ends."""
    notes = plucks(int(seconds * RATE), RATE, np.random.default_rng(seed))
    low = signal.sosfilt(signal.butter(4, 800, fs=RATE, output="sos"), notes)
    return np.concatenate([np.zeros(RATE // 10), low, np.zeros(RATE // 10)])


def _recorded(device_output: np.ndarray, latency: float, noise_db: float, seed: int) -> np.ndarray:
    """The device's output delayed by ``latency`` samples, with white noise and 50 Hz hum
    ``noise_db`` below its RMS (none at -inf)."""
    out = fractional_delay(device_output, latency, len(device_output) + int(latency) + 64)
    if np.isfinite(noise_db):
        rms = float(np.sqrt(np.mean(device_output**2)))
        t = np.arange(len(out)) / RATE
        rng = np.random.default_rng(seed)
        level = rms * 10 ** (noise_db / 20)
        out += level * (rng.standard_normal(len(out)) + np.sin(2 * np.pi * 50 * t))
    return out


def _search(di: np.ndarray, recorded: np.ndarray, **options):
    """:func:`track_coherent` over latencies within 0.1 s."""
    return track_coherent(
        di,
        recorded,
        RATE,
        min_latency_samples=-RATE // 10,
        max_latency_samples=RATE // 10,
        **options,
    )


def _track(di: np.ndarray, recorded: np.ndarray):
    # No drift is recorded, and none is measured: a few seconds of bass leave the drift's
    # own error (a few ppm) larger than what these tests look at.
    return _search(di, recorded, drift=False)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_doublet_response_is_read_at_its_first_lobe(seed: int) -> None:
    # Two copies of opposite sign 18 samples apart: through the DI's band (below 800 Hz) the
    # response is two lobes of equal height and opposite sign, crossing zero at 19 samples
    # (what a bass DI shows of a clean preamp). The reading must stay in the first lobe, with
    # its sign, whatever the noise.
    di = _bass_di(6.0, seed=7)
    device = np.zeros_like(di)
    device[10:] += di[:-10]
    device[28:] -= di[:-28]
    latency = 1234.5
    readings = []
    for noise_seed in range(3):
        track = _track(di, _recorded(device, latency, -40.0, seed * 10 + noise_seed))
        assert track.polarity == 1
        readings.append(track.latency_samples - latency)
    assert np.ptp(readings) < 0.1
    assert 0.0 < readings[0] < 19.0


def test_noise_and_hum_do_not_move_the_reading_through_a_distorting_device() -> None:
    # A crude fuzz with coupling capacitors: its phase turns most in the bass, where a bass
    # DI's energy is. Noise and hum change the coherence bin by bin; the response does not
    # depend on them. 0.25 samples is the benchmark's median target.
    di = _bass_di(8.0, seed=3)
    coupled = signal.sosfilt(signal.butter(2, 120, "highpass", fs=RATE, output="sos"), di)
    device = signal.sosfilt(
        signal.butter(2, 2500, fs=RATE, output="sos"), np.tanh(8.0 * coupled / np.abs(di).max())
    )
    latency = 2345.75
    clean = _track(di, _recorded(device, latency, -np.inf, 0))
    for noise_db, seed in ((-30.0, 1), (-45.0, 2)):
        noisy = _track(di, _recorded(device, latency, noise_db, seed))
        assert noisy.latency_samples == pytest.approx(clean.latency_samples, abs=0.25)
        assert noisy.polarity == clean.polarity


LATENCY = 1234.37


def _overdrive() -> tuple[np.ndarray, np.ndarray]:
    """A guitar-like DI and its output through a soft-clipping overdrive (20 s)."""
    di = plucks(20 * RATE, RATE, np.random.default_rng(1))
    device = signal.sosfilt(
        signal.butter(2, 4000, fs=RATE, output="sos"), np.tanh(6 * di / np.abs(di).max())
    )
    return di, device


def _drifted(device: np.ndarray, drift_ppm: float) -> np.ndarray:
    """``device`` recorded :data:`LATENCY` samples late on a clock ``drift_ppm`` fast, with
    noise 60 dB down."""
    step = 1 / (1 + drift_ppm * 1e-6)
    recorded = resample_linear(device, -LATENCY * step, step, len(device))
    return recorded + 1e-3 * np.random.default_rng(2).standard_normal(len(recorded))


@pytest.mark.parametrize("misplaced_ppm", [60.0, -90.0])
def test_the_drift_does_not_depend_on_where_the_windows_first_place_the_line(
    monkeypatch: pytest.MonkeyPatch, misplaced_ppm: float
) -> None:
    # Bass notes through a fuzz at full drive (Guitarix gx_fuzz, FluidSynth bass) make each
    # window read its own delay a few samples off, which placed the first line 50-70 ppm off;
    # the fine passes then settled 20-60 ppm away from the drift, and the latency 25-40
    # samples off. Here the first line is tilted that far on purpose: the drift and latency
    # must come out as from a well-placed line.
    di, device = _overdrive()
    recorded = _drifted(device, 150.0)
    placed = _search(di, recorded)
    assert placed.drift_ppm == pytest.approx(150.0, abs=0.5)
    well_placed = coherence._FineFit.placed

    def misplaced(fit, line):
        found = well_placed(fit, line)
        return found.turned(float(np.mean(fit.centres)), found.slope + misplaced_ppm * 1e-6)

    monkeypatch.setattr(coherence._FineFit, "placed", misplaced)
    tilted = _search(di, recorded)
    assert tilted.drift_ppm == pytest.approx(placed.drift_ppm, abs=0.05)
    assert tilted.latency_samples == pytest.approx(placed.latency_samples, abs=0.05)


def test_the_drift_says_how_sure_it_is() -> None:
    # The windows' scatter about the line gives the drift's standard error: it covers the
    # drift's error, it grows as the music to read it from shrinks (a slope over a quarter
    # of the time, from a quarter of the windows' music, is several times less sure), and it
    # is 0 where the drift is not measured.
    di, device = _overdrive()
    recorded = _drifted(device, 150.0)
    whole = _search(di, recorded)
    assert 0 < whole.drift_error_ppm < 0.5
    assert abs(whole.drift_ppm - 150.0) <= 4 * whole.drift_error_ppm
    quarter = len(di) // 4
    short = _search(di[:quarter], recorded[:quarter])
    assert short.drift_error_ppm > 3 * whole.drift_error_ppm
    assert abs(short.drift_ppm - 150.0) <= 4 * short.drift_error_ppm
    assert _search(di, recorded, drift_ppm=150.0).drift_error_ppm == 0.0
    assert _search(di, device, drift=False).drift_error_ppm == 0.0


@pytest.mark.parametrize("drift_ppm", [150.0, -250.0])
def test_a_known_drift_is_kept_and_the_latency_read_along_it(drift_ppm: float) -> None:
    # A loopback measures the drift exactly; the device's output is then read along it, so
    # the drift's own error no longer moves the latency at the file's start.
    di, device = _overdrive()
    own = _search(di, device, drift=False)
    known = _search(di, _drifted(device, drift_ppm), drift_ppm=drift_ppm)
    assert known.drift_ppm == drift_ppm
    truth = LATENCY + own.latency_samples * (1 + drift_ppm * 1e-6)
    assert known.latency_samples == pytest.approx(truth, abs=0.05)
    assert known.polarity == own.polarity
