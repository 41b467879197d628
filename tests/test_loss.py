"""The training loss and the evaluation metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_helpers import one_thread  # noqa: F401 (autouse fixture)

from ampcap.train.loss import (
    esr,
    esr_dc_loss,
    loudness_difference_db,
    mr_stft_distance,
    pre_emphasis,
)


def test_pre_emphasis_is_a_first_order_difference_not_a_gain():
    # y[n] = x[n] - 0.85 x[n-1]: [1, 2, 3, 5] -> [2 - 0.85, 3 - 1.7, 5 - 2.55].
    x = torch.tensor([1.0, 2.0, 3.0, 5.0]).view(1, 4, 1)
    y = pre_emphasis(x)
    assert y.shape == (1, 3, 1)
    np.testing.assert_allclose(y.flatten().numpy(), [1.15, 1.3, 2.45], rtol=1e-6)


def test_pre_emphasis_frequency_response_matches_h_of_z():
    # |H(e^jw)| = |1 - 0.85 e^-jw|: 0.15 at DC, 1.85 at Nyquist, sqrt(1 + 0.85^2) at fs/4.
    n = np.arange(4096)
    for omega, expected in ((0.0, 0.15), (np.pi, 1.85), (np.pi / 2, np.sqrt(1 + 0.85**2))):
        x = torch.tensor(np.cos(omega * n), dtype=torch.float64).view(1, -1, 1)
        y = pre_emphasis(x)[0, 100:, 0].numpy()
        amplitude = np.sqrt(2 * np.mean(y**2)) if omega not in (0.0, np.pi) else np.abs(y).max()
        assert amplitude == pytest.approx(expected, rel=1e-3)


def test_esr_dc_loss_hand_computed():
    # target y = [1, 0, -1, 0], output ŷ = [0, 0, 0, 0] in one segment:
    #   y_p = [0 - 0.85, -1 - 0, 0 + 0.85] = [-0.85, -1, 0.85]; ŷ_p = 0
    #   ESR = sum(y_p²) / sum(y_p²) = 1
    #   DC = mean(y - ŷ)² / mean(y²) = 0² / 0.5 = 0          -> loss 1
    y = torch.tensor([1.0, 0.0, -1.0, 0.0]).view(1, 4, 1)
    assert float(esr_dc_loss(torch.zeros_like(y), y)) == pytest.approx(1.0, rel=1e-6)
    # output ŷ = [1, 0, -1, 0] + 0.5 (a DC offset):
    #   ŷ_p = y_p + 0.5 (1 - 0.85) = y_p + 0.075 -> error energy 3 x 0.075² = 0.016875
    #   sum(y_p²) = 0.7225 + 1 + 0.7225 = 2.445 -> ESR = 0.016875 / 2.445
    #   DC = 0.5² / 0.5 = 0.5
    expected = 0.016875 / 2.445 + 0.5
    assert float(esr_dc_loss(y + 0.5, y)) == pytest.approx(expected, rel=1e-5)


def test_esr_dc_loss_pools_energy_over_the_batch_and_dc_per_segment():
    # Two segments: a loud one predicted exactly, a quiet one predicted as silence.
    #   loud:  y = 2*[1, 0, -1, 0] -> y_p energy 4 * 2.445 = 9.78, error 0
    #   quiet: y = [1, 0, -1, 0]  -> y_p energy 2.445, error 2.445
    #   ESR (pooled) = 2.445 / (9.78 + 2.445) = 0.2; DC terms are zero (zero-mean errors).
    base = torch.tensor([1.0, 0.0, -1.0, 0.0]).view(1, 4, 1)
    target = torch.cat([2 * base, base])
    output = torch.cat([2 * base, torch.zeros_like(base)])
    assert float(esr_dc_loss(output, target)) == pytest.approx(0.2, rel=1e-5)


def test_setting_weighted_loss_counts_a_quiet_setting_like_a_loud_one():
    # The same two segments, each divided by its own setting's mean energy per sample:
    #   loud:  error 0                    -> 0
    #   quiet: error 2.445 / 3 samples    -> 0.815 per sample, over its energy 0.815 -> 1
    #   loss = mean(0, 1) = 0.5, where the pooled loss above gave the quiet miss 0.2.
    base = torch.tensor([1.0, 0.0, -1.0, 0.0]).view(1, 4, 1)
    target = torch.cat([2 * base, base])
    output = torch.cat([2 * base, torch.zeros_like(base)])
    energy = torch.tensor([[4 * 2.445 / 3, 2.0], [2.445 / 3, 0.5]])
    assert float(esr_dc_loss(output, target, energy=energy)) == pytest.approx(0.5, rel=1e-5)
    # Swap the misses: the loud setting wrong, the quiet one right. Same loss, where the pooled
    # loss would say 0.8: no setting counts more for being louder.
    output = torch.cat([torch.zeros_like(base), base])
    assert float(esr_dc_loss(output, target, energy=energy)) == pytest.approx(0.5, rel=1e-5)
    assert float(esr_dc_loss(output, target)) == pytest.approx(0.8, rel=1e-5)


def test_plain_esr_hand_computed_and_perfect_model_is_zero():
    # sum((y - ŷ)²) / sum(y²) = (0.5² + 0.5²) / (1 + 1) = 0.25
    assert esr(np.array([1.0, -1.0]), np.array([0.5, -0.5])) == pytest.approx(0.25)
    signal = np.random.default_rng(0).normal(size=1000)
    assert esr(signal, signal) == 0.0


def test_loudness_difference_of_half_amplitude_is_minus_6_db():
    rng = np.random.default_rng(0)
    rate = 48000
    target = 0.3 * rng.normal(size=3 * rate)
    # 20 log10(0.5) = -6.02 dB; BS.1770 loudness is linear in power, so the gated measure
    # shifts by exactly that (the gate thresholds move with the signal).
    assert loudness_difference_db(target, 0.5 * target, rate) == pytest.approx(-6.0206, abs=0.01)
    assert loudness_difference_db(target[:1000], target[:1000], rate) is None


def test_mr_stft_is_zero_for_identical_signals_and_grows_with_error():
    rng = np.random.default_rng(1)
    target = rng.normal(size=16384).astype(np.float32)
    assert mr_stft_distance(target, target) == pytest.approx(0.0, abs=1e-4)
    small = mr_stft_distance(target, target + 0.01 * rng.normal(size=target.size))
    large = mr_stft_distance(target, target + 0.5 * rng.normal(size=target.size))
    assert 0 < small < large
