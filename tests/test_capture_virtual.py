"""The virtual rig: the amp and interface as stateful block processors with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from ampcap.capture.virtual import VirtualAmp, VirtualEngine, VirtualInterface
from ampcap.errors import UsageError

FS = 48000


def esr(output: np.ndarray, target: np.ndarray) -> float:
    return float(np.sum((output - target) ** 2) / np.sum(target**2))


def guitarish(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Decaying partials and noise bursts at DI level (peak about -6 dBFS)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    envelope = np.exp(-3 * (t % 0.5))
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((110, 220, 330, 587), 1))
    x = envelope * (tone + 0.1 * rng.standard_normal(len(t)))
    return 0.5 * x / np.max(np.abs(x))


def band_limited_noise(frames: int, seed: int = 1) -> np.ndarray:
    """White noise low-passed to 0.4 of the rate in the frequency domain (no energy near
    Nyquist, where a 32-tap interpolator is not exact), faded in and out over 1000 samples
    after 1000 of silence so that delays stay inside the array."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(frames))
    spectrum[np.fft.rfftfreq(frames) > 0.4] = 0
    x = np.fft.irfft(spectrum, frames)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, 1000))
    x[:1000] = 0
    x[1000:2000] *= ramp
    x[-2000:-1000] *= ramp[::-1]
    x[-1000:] = 0
    return x


def ideal_delay(x: np.ndarray, delay: float) -> np.ndarray:
    """``x`` delayed by ``delay`` samples by a linear phase in the frequency domain."""
    f = np.fft.rfftfreq(len(x))
    return np.fft.irfft(np.fft.rfft(x) * np.exp(-2j * np.pi * f * delay), len(x))


def run_in_blocks(amp: VirtualAmp, x: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    out, start = [], 0
    for size in sizes:
        out.append(amp.process(x[start : start + int(size)]))
        start += int(size)
    out.append(amp.process(x[start:]))
    return np.concatenate(out)


@pytest.mark.parametrize(
    ("blocksize", "frames"), [(1, 1500), (64, 8192), (1000, 8192), (1024, 8192), (4096, 24000)]
)
def test_amp_in_blocks_equals_amp_in_one_go(blocksize: int, frames: int) -> None:
    x = guitarish(0.5)[:frames]
    whole = VirtualAmp(FS)
    whole.set_knobs({"isf": 3.3})
    blocks = VirtualAmp(FS)
    blocks.set_knobs({"isf": 3.3})
    sizes = np.full(len(x) // blocksize, blocksize)
    # float64 throughout: the filters' state carries over exactly, so the error is rounding.
    np.testing.assert_allclose(run_in_blocks(blocks, x, sizes), whole.process(x), atol=1e-12)


def test_amp_in_random_blocks_including_empty_ones() -> None:
    x = guitarish(1.0)
    sizes = np.random.default_rng(5).integers(0, 3000, size=200)
    sizes = sizes[np.cumsum(sizes) < len(x)]
    np.testing.assert_allclose(
        run_in_blocks(VirtualAmp(FS), x, sizes), VirtualAmp(FS).process(x), atol=1e-12
    )


def test_amp_is_deterministic_and_reset_returns_to_silence() -> None:
    x = guitarish(0.5)
    amp = VirtualAmp(FS)
    first = amp.process(x)
    amp.reset()
    assert np.array_equal(amp.process(x), first)
    assert np.array_equal(VirtualAmp(FS).process(x), first)


def test_a_seed_is_another_unit_of_the_same_model() -> None:
    x = guitarish(0.5)
    nominal = VirtualAmp(FS, seed=0).process(x)
    other = VirtualAmp(FS, seed=7).process(x)
    # A few percent of component spread: clearly another amp, clearly the same model.
    assert 1e-5 < esr(other, nominal) < 0.05
    assert np.array_equal(VirtualAmp(FS, seed=7).process(x), other)


def test_the_isf_knob_matters_and_moves_continuously() -> None:
    x = guitarish(2.0)
    outputs = {}
    for value in (0.0, 2.5, 5.0, 5.1, 7.5, 10.0):
        amp = VirtualAmp(FS)
        amp.set_knobs({"isf": value})
        outputs[value] = amp.process(x)
    assert esr(outputs[0.0], outputs[10.0]) > 0.3
    # Neighbouring settings differ less than distant ones, and a tiny turn changes little.
    assert esr(outputs[2.5], outputs[5.0]) < esr(outputs[0.0], outputs[5.0])
    assert esr(outputs[5.1], outputs[5.0]) < 0.01 * esr(outputs[0.0], outputs[10.0])


def test_the_amp_is_nonlinear_but_not_a_fuzz() -> None:
    x = guitarish(2.0)
    quiet = VirtualAmp(FS).process(x * 0.01) / 0.01
    loud = VirtualAmp(FS).process(x)
    gain = np.sum(loud * quiet) / np.sum(quiet * quiet)
    distortion = esr(loud, gain * quiet)
    assert 0.01 < distortion < 0.25  # crunch: clearly nonlinear, mostly still the signal
    assert np.max(np.abs(loud)) < 1.0


def test_the_amp_has_memory() -> None:
    """A loud burst lowers the gain for a short note after it (sag and coupling recover)."""
    t = np.arange(int(0.05 * FS)) / FS
    probe = 0.2 * np.sin(2 * np.pi * 440 * t)
    burst = 0.7 * np.sin(2 * np.pi * 110 * np.arange(int(0.3 * FS)) / FS)
    alone = VirtualAmp(FS).process(probe)
    after = VirtualAmp(FS).process(np.concatenate([burst, probe]))[len(burst) :]
    assert esr(after, alone) > 1e-3


def test_unknown_knob_and_out_of_dial_values_are_refused() -> None:
    amp = VirtualAmp(FS)
    with pytest.raises(UsageError, match="no knob 'tone'; its knobs are isf, gain"):
        amp.set_knobs({"tone": 1.0})
    with pytest.raises(UsageError, match="outside the virtual amp's dial 0..10"):
        amp.set_knobs({"isf": 11.0})


@pytest.mark.parametrize("latency", [0.0, 1.0, 5.5, 183.37, 1000.91])
def test_interface_latency_is_a_fractional_delay(latency: float) -> None:
    x = band_limited_noise(20000)
    interface = VirtualInterface(FS, latency, noise_dbfs=-400.0)
    interface.push(np.column_stack([x, x]))
    interface.push(np.zeros((interface.needed(len(x)), 2)))
    recorded = interface.pull(len(x))
    expected = ideal_delay(x, latency)
    # The 32-tap Kaiser interpolator is accurate to about -60 dB below 0.4 of the rate.
    assert np.max(np.abs(recorded[:, 0] - expected)) < 2e-3 * np.max(np.abs(x))
    assert np.array_equal(recorded[:, 0], recorded[:, 1])


def test_interface_gain_polarity_and_noise() -> None:
    x = band_limited_noise(48000)
    interface = VirtualInterface(FS, 10.0, noise_dbfs=-60.0, gain_db=6.0, polarity=-1, seed=3)
    interface.push(np.column_stack([np.zeros_like(x), x]))
    interface.push(np.zeros((100, 2)))
    recorded = interface.pull(len(x))
    noise_dbfs = 20 * np.log10(np.std(recorded[:, 0]))
    assert noise_dbfs == pytest.approx(-60.0, abs=0.2)  # 48000 samples: the RMS is within 0.1 dB
    clean = ideal_delay(x, 10.0)
    scale = np.sum(recorded[:, 1] * clean) / np.sum(clean * clean)
    assert scale == pytest.approx(-(10 ** (6 / 20)), rel=1e-3)


@pytest.mark.parametrize("drift_ppm", [-300.0, 120.0])
def test_interface_drift_stretches_time(drift_ppm: float) -> None:
    """Recorded frame n is the band-limited played signal at n / (1 + drift) - latency.

    The reference is the ideal (unwindowed) sinc interpolation summed over the whole signal;
    over 200000 frames the drift moves the last frames by 24-60 samples, so a wrong clock
    model fails by far more than the tolerance.
    """
    frames = 200000
    x = band_limited_noise(frames, seed=4)
    latency = 40.25
    interface = VirtualInterface(FS, latency, noise_dbfs=-400.0, drift_ppm=drift_ppm)
    interface.push(np.column_stack([x, x]))
    interface.push(np.zeros((1000, 2)))
    recorded = interface.pull(frames - 1000)[:, 0]
    k = np.arange(frames)
    for n in (3000, 100001, 150000, 198000):
        t = n / (1 + drift_ppm * 1e-6) - latency
        assert recorded[n] == pytest.approx(np.sum(x * np.sinc(t - k)), abs=2e-3 * np.max(x))


def test_interface_pulls_do_not_depend_on_block_sizes() -> None:
    x = band_limited_noise(30000)
    played = np.column_stack([x, -x])

    def run(push_sizes: list[int], pull_sizes: list[int]) -> np.ndarray:
        interface = VirtualInterface(FS, 183.37, noise_dbfs=-80.0, drift_ppm=50.0, seed=9)
        pushed, out = 0, []
        for size in pull_sizes:
            while pushed < interface.needed(size):
                step = push_sizes[len(out) % len(push_sizes)]
                chunk = played[pushed : pushed + step]
                interface.push(np.vstack([chunk, np.zeros((step - len(chunk), 2))]))
                pushed += step
            out.append(interface.pull(size))
        return np.concatenate(out)

    one = run([40000], [30000])
    many = run([7, 1000, 333], [1, 999, 4096, 1024, 23880])
    np.testing.assert_allclose(many, one, atol=1e-12)


def test_engine_records_loopback_and_amp_with_the_latency() -> None:
    spectrum = np.fft.rfft(np.concatenate([np.zeros(2000), guitarish(0.5), np.zeros(4000)]))
    spectrum[np.fft.rfftfreq(2 * (len(spectrum) - 1)) > 0.4] = 0  # see band_limited_noise
    program = np.fft.irfft(spectrum).astype(np.float32)
    engine = VirtualEngine(latency_samples=183.37, noise_dbfs=-400.0, blocksize=1000)
    engine.set_knobs({"isf": 7.5})
    blocks: list[np.ndarray] = []
    result = engine.run_take(program, blocks.append)
    recorded = np.concatenate(blocks)
    assert result.frames == len(program) and not result.interrupted
    assert recorded.shape == (len(program), 2) and recorded.dtype == np.float32
    amp = VirtualAmp(FS)
    amp.set_knobs({"isf": 7.5})
    expected_device = ideal_delay(amp.process(program.astype(np.float64)), 183.37)
    expected_loopback = ideal_delay(program.astype(np.float64), 183.37)
    assert np.max(np.abs(recorded[:, 0] - expected_loopback)) < 2e-3
    assert np.max(np.abs(recorded[:, 1] - expected_device)) < 2e-3


def test_engine_is_deterministic_for_a_seed_and_block_size_free() -> None:
    program = guitarish(1.0).astype(np.float32)

    def take(seed: int, blocksize: int) -> np.ndarray:
        engine = VirtualEngine(seed=seed, blocksize=blocksize)
        engine.set_knobs({"isf": 2.5})
        blocks: list[np.ndarray] = []
        engine.run_take(program, blocks.append)
        return np.concatenate(blocks)

    first = take(0, 4096)
    assert np.array_equal(take(0, 4096), first)
    np.testing.assert_allclose(take(0, 333), first, atol=1e-6)
    assert not np.array_equal(take(1, 4096), first)


def test_engine_stops_when_asked() -> None:
    program = np.zeros(48000, dtype=np.float32)
    engine = VirtualEngine(blocksize=1000)
    frames: list[int] = []

    def progress(done: int, block: np.ndarray) -> None:
        frames.append(done)
        if done >= 5000:
            engine.stop()

    result = engine.run_take(program, lambda block: None, progress)
    assert result.interrupted and result.frames == 5000
    # The stop request is consumed: the next take runs to the end.
    assert engine.run_take(program, lambda block: None).frames == len(program)
