"""Levels, noise floor, SNR, clipping, DC and ESR against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ampcap.dataset.quality import (
    channel_quality,
    clipped_runs,
    esr,
    repeatability_esr,
    rms,
)
from ampcap.levels import FLOOR_DB, dbfs


def test_digital_silence_reports_the_floor_so_json_stays_finite() -> None:
    quality = channel_quality(np.zeros(1000), slice(0, 500), slice(500, 1000))
    assert quality.peak_dbfs == FLOOR_DB
    assert quality.noise_floor_dbfs == FLOOR_DB
    assert quality.signal_rms_dbfs == FLOOR_DB
    assert quality.snr_db == 0.0
    # Far below anything a recording holds, yet above the floor: a level, not silence.
    tiny = channel_quality(np.full(1000, 1e-9), slice(0, 500), slice(500, 1000))
    assert tiny.peak_dbfs == pytest.approx(-180.0)


def test_a_single_touch_of_full_scale_is_not_clipping() -> None:
    x = np.zeros(1000)
    x[10] = 1.0  # peak normalisation
    x[500:502] = -1.0  # two samples: still a touch
    runs = clipped_runs(x)
    assert (runs.runs, runs.samples, runs.longest_samples) == (0, 0, 2)


def test_clipped_runs_counts_runs_of_three_or_more() -> None:
    x = np.zeros(1000)
    x[100:103] = 1.0
    x[200:210] = -0.9995
    x[300:302] = 1.0
    x[998:] = 1.0  # a run cut by the end of the take is still short
    runs = clipped_runs(x)
    assert runs.runs == 2
    assert runs.samples == 13
    assert runs.longest_samples == 10


def test_channel_quality_known_values() -> None:
    rng = np.random.default_rng(0)
    noise = 10 ** (-80 / 20) * rng.standard_normal(48000)
    tone = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(48000) / 48000)
    x = np.concatenate([noise, tone + noise]) + 0.002
    quality = channel_quality(x, slice(0, 48000), slice(48000, 96000))
    # Noise floor: -80 dBFS of noise plus the 0.002 DC (-54 dBFS) the RMS includes.
    assert quality.noise_floor_dbfs == pytest.approx(dbfs(math.hypot(1e-4, 0.002)), abs=0.05)
    assert quality.signal_rms_dbfs == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.01)
    assert quality.snr_db == pytest.approx(quality.signal_rms_dbfs - quality.noise_floor_dbfs)
    assert quality.dc_offset == pytest.approx(0.002 + 0.0, abs=2e-5)
    assert quality.peak_dbfs == pytest.approx(dbfs(0.502), abs=0.01)
    assert quality.clipping.runs == 0


def test_esr_hand_computed() -> None:
    target = np.array([1.0, -1.0, 2.0])
    estimate = np.array([1.0, 0.0, 1.0])
    assert esr(target, estimate) == pytest.approx(2.0 / 6.0)
    assert esr(target, target) == 0.0
    assert esr(np.zeros(3), np.zeros(3)) == 0.0
    assert math.isinf(esr(np.zeros(3), np.ones(3)))


def test_repeatability_of_a_device_that_changed() -> None:
    rng = np.random.default_rng(1)
    first = rng.standard_normal(10000)
    assert repeatability_esr(first, first + 0.01 * rng.standard_normal(10000)) < 1e-3
    # A noise gate that closed on the second pass: half of it missing.
    gated = first.copy()
    gated[5000:] = 0
    assert repeatability_esr(first, gated) == pytest.approx(0.5, abs=0.05)
    # Different lengths compare over the common part.
    assert repeatability_esr(first, first[:9000]) == 0.0


def test_rms_of_empty_and_sine() -> None:
    assert rms(np.zeros(0)) == 0.0
    assert rms(np.sin(2 * np.pi * np.arange(4800) / 48)) == pytest.approx(1 / math.sqrt(2))
