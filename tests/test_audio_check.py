"""The rig check's analysis, on signals with known answers and on the virtual rig."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ampcap.capture.check import (
    analyse_check,
    find_loopback_delay,
    make_test_signal,
    run_check,
)
from ampcap.capture.rig import load_rig, parse_rig

FS = 48000
RIG = parse_rig(
    {
        "name": "bench",
        "kind": "audio",
        "audio": {
            "device": "x",
            "sample_rate_hz": FS,
            "output_device": 1,
            "output_loopback": 2,
            "input_device": 3,
            "input_loopback": 4,
        },
    }
)


def _fractional_delay(x: np.ndarray, delay: float) -> np.ndarray:
    """``x`` delayed by ``delay`` samples (band-limited, by a linear phase shift in frequency)."""
    n = len(x)
    spectrum = np.fft.rfft(x, 2 * n)
    shift = np.exp(-2j * np.pi * np.fft.rfftfreq(2 * n) * delay)
    return np.fft.irfft(spectrum * shift, 2 * n)[:n]


def _record(
    test,
    latency: float,
    device_gain: float = 0.5,
    swap: bool = False,
    loop_on: bool = True,
    dev_on: bool = True,
    noise_dbfs: float = -90.0,
) -> np.ndarray:
    rng = np.random.default_rng(0)
    loop = _fractional_delay(test.to_loopback.astype(np.float64), latency) * loop_on
    # A soft-clipping "device" with gain: not a copy of what was played.
    dev = np.tanh(3 * _fractional_delay(test.to_device.astype(np.float64), latency + 7)) * (
        device_gain * dev_on
    )
    recorded = np.column_stack([dev, loop] if swap else [loop, dev])
    recorded += 10 ** (noise_dbfs / 20) * rng.standard_normal(recorded.shape)
    return recorded.astype(np.float32)


@pytest.mark.parametrize("delay", [0.0, 17.0, 183.37, 2048.5, 4000.25])
def test_find_loopback_delay_finds_fractional_delays_of_the_test_sweep(delay: float) -> None:
    test = make_test_signal(FS)
    recorded = _fractional_delay(test.to_loopback.astype(np.float64), delay)
    found, correlation = find_loopback_delay(test.to_loopback, recorded, round(0.5 * FS))
    # The interpolation grid is 1/100 sample; band-limited interpolation of a clean peak lands
    # on the nearest grid point.
    assert found == pytest.approx(delay, abs=0.011)
    assert correlation > 0.9


def test_correct_wiring_reports_latency_levels_and_no_advice() -> None:
    test = make_test_signal(FS)
    check = analyse_check(_record(test, 183.37), test, FS, RIG, "[0] x")
    assert check.wiring == "ok"
    assert check.ok
    assert check.advice == ()
    assert check.latency_samples == pytest.approx(183.37, abs=0.011)
    assert check.latency_ms == pytest.approx(183.37 / 48, abs=0.001)
    assert check.device_delay_samples == pytest.approx(190.37, abs=0.5)
    assert check.loopback_gain_db == pytest.approx(0.0, abs=0.1)
    assert check.loopback_noise_dbfs == pytest.approx(-90.0, abs=0.5)
    assert check.loopback_clipped_samples == 0


def test_swapped_channels_are_named_with_the_rig_channel_numbers() -> None:
    test = make_test_signal(FS)
    check = analyse_check(_record(test, 300.0, swap=True), test, FS, RIG, "[0] x")
    assert check.wiring == "swapped"
    assert not check.ok
    assert check.loopback_hears_device and check.device_hears_loopback
    assert "input 4 hears the device and input 3 hears the loopback" in check.advice[0]
    # The round trip is still measured, on the input that hears the loopback output.
    assert check.latency_samples == pytest.approx(300.0, abs=0.011)


def test_unpatched_loopback_and_silent_device_are_told_apart() -> None:
    test = make_test_signal(FS)
    loop_off = analyse_check(_record(test, 100.0, loop_on=False), test, FS, RIG, "[0] x")
    assert loop_off.wiring == "loopback silent"
    assert "connect output 2 straight to input 4" in loop_off.advice[0]
    assert loop_off.latency_samples is None
    dev_off = analyse_check(_record(test, 100.0, dev_on=False), test, FS, RIG, "[0] x")
    assert dev_off.wiring == "device silent"
    assert "Input 3 heard nothing from the device" in dev_off.advice[0]
    both = analyse_check(_record(test, 100.0, loop_on=False, dev_on=False), test, FS, RIG, "x")
    assert both.wiring == "both silent"


def test_clipping_and_loopback_gain_and_noise_get_advice() -> None:
    test = make_test_signal(FS)
    recorded = _record(test, 50.0, device_gain=2.0, noise_dbfs=-50.0)
    recorded[:, 0] *= 0.5  # loopback input 6 dB low
    recorded = np.clip(recorded, -1.0, 1.0)
    check = analyse_check(recorded, test, FS, RIG, "[0] x", underflows=2)
    assert check.wiring == "ok"
    assert not check.ok
    assert check.device_clipped_samples > 0
    text = "\n".join(check.advice)
    assert "The device input (3) clipped" in text
    assert "The loopback comes back at -6.0 dB" in text
    assert "noise floor of -50.0 dBFS" in text
    assert "2 underflow(s)" in text


def test_crosstalk_is_reported() -> None:
    test = make_test_signal(FS)
    recorded = _record(test, 64.0)
    recorded[:, 1] += recorded[:, 0]  # the device input also hears the loopback output
    check = analyse_check(recorded, test, FS, RIG, "[0] x")
    assert check.wiring == "crosstalk"
    assert "input 3 (device) hears output 2 (loopback)" in check.advice[0]


def test_test_signal_respects_the_level_and_separates_the_paths() -> None:
    test = make_test_signal(44100, -20.0)
    assert 20 * math.log10(np.max(np.abs(test.to_device))) == pytest.approx(-20.0, abs=1e-4)
    assert 20 * math.log10(np.max(np.abs(test.to_loopback))) == pytest.approx(-20.0, abs=1e-4)
    assert not np.any(test.to_device[slice(*test.loopback_sweep)])
    assert not np.any(test.to_loopback[slice(*test.device_sweep)])
    # Gaps are longer than the longest latency searched, so the windows never overlap.
    assert test.device_sweep[0] - test.loopback_sweep[1] > 0.5 * 44100


def test_virtual_rig_check_measures_its_fractional_latency() -> None:
    rig = load_rig("virtual")
    check = run_check(rig)
    assert check.wiring == "ok"
    assert check.ok
    assert check.latency_samples == pytest.approx(rig.virtual.latency_samples, abs=0.011)
    assert check.loopback_noise_dbfs == pytest.approx(rig.virtual.noise_dbfs, abs=0.5)
    document = check.to_dict()
    json.dumps(document, allow_nan=False)
    assert document["wiring"] == "ok"
    assert any("wiring: ok" in line for line in check.lines())
