"""Losses and evaluation metrics.

Training minimises the DAFx-19 loss (Wright, Damskägg & Välimäki, eqs. (13)-(16)): the
error-to-signal ratio of pre-emphasised output and target, ``H(z) = 1 - 0.85 z^-1``, plus a DC
term. Evaluation reports the plain ESR (no pre-emphasis), a multi-resolution STFT distance
(auraloss) and the difference in integrated loudness (ITU-R BS.1770, pyloudnorm).
"""

from __future__ import annotations

import numpy as np
import torch

PRE_EMPHASIS = 0.85
# Keeps the ratios finite on an all-silent target; far below any audible signal energy.
EPS = 1e-10


def pre_emphasis(x: torch.Tensor, coefficient: float = PRE_EMPHASIS, dim: int = 1) -> torch.Tensor:
    """First-order high-pass ``y[n] = x[n] - coefficient * x[n - 1]`` (DAFx-19 eq. (14)).

    Only the samples with a known predecessor are returned, so the result along ``dim`` is one
    sample shorter than ``x`` and does not depend on what came before the segment.

    Parameters
    ----------
    x : torch.Tensor
        Signal, time along ``dim`` (shape (batch, time, 1) with the default ``dim=1``).
    coefficient : float, default 0.85
    dim : int, default 1

    Returns
    -------
    torch.Tensor
        Same shape as ``x`` except ``time - 1`` along ``dim``.
    """
    n = x.shape[dim]
    return x.narrow(dim, 1, n - 1) - coefficient * x.narrow(dim, 0, n - 1)


def esr_dc_loss(
    output: torch.Tensor,
    target: torch.Tensor,
    coefficient: float = PRE_EMPHASIS,
    energy: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training loss: pre-emphasised ESR + DC term (DAFx-19 eqs. (13), (15), (16)).

    Without ``energy``, as in DAFx-19: ESR is pooled over the whole batch, the squared error
    summed over every segment and sample divided by the summed energy of the target; the DC
    term is each segment's squared mean error, averaged over segments, divided by the target's
    mean energy. A quiet knob setting then hardly counts: its segments add little energy and
    little error to the sums.

    With ``energy``, each segment's errors are divided by the mean energy of its own knob
    setting (measured over the training split): every setting weighs the same whatever its
    level, and the loss is the mean over segments of a per-setting ESR.

    Parameters
    ----------
    output, target : torch.Tensor, shape (batch, time, 1)
        Model output and device output for the same samples.
    coefficient : float, default 0.85
        Pre-emphasis coefficient.
    energy : torch.Tensor, shape (batch, 2), optional
        Per segment, its setting's mean energy per sample: of the pre-emphasised target
        (column 0, for the ESR) and of the plain target (column 1, for the DC term).

    Returns
    -------
    torch.Tensor
        Scalar loss (dimensionless).
    """
    out_p = pre_emphasis(output, coefficient)
    tgt_p = pre_emphasis(target, coefficient)
    if energy is None:
        esr = (tgt_p - out_p).pow(2).sum() / (tgt_p.pow(2).sum() + EPS)
        dc = (target - output).mean(dim=1).pow(2).mean() / (target.pow(2).mean() + EPS)
        return esr + dc
    esr = ((tgt_p - out_p).pow(2).mean(dim=(1, 2)) / (energy[:, 0] + EPS)).mean()
    dc = ((target - output).mean(dim=(1, 2)).pow(2) / (energy[:, 1] + EPS)).mean()
    return esr + dc


def esr(target: np.ndarray, output: np.ndarray) -> float:
    """Plain error-to-signal ratio ``sum((y - ŷ)²) / sum(y²)`` (DAFx-19 eq. (13), no filter).

    Parameters
    ----------
    target, output : numpy.ndarray, same shape
        Device output ``y`` and model output ``ŷ``.

    Returns
    -------
    float
        ESR as a fraction (0.01 is 1 %).
    """
    target = np.asarray(target, dtype=np.float64)
    output = np.asarray(output, dtype=np.float64)
    return float(np.sum((target - output) ** 2) / (np.sum(target**2) + EPS))


def mr_stft_distance(target: np.ndarray, output: np.ndarray) -> float:
    """Multi-resolution STFT distance (auraloss defaults: FFT sizes 1024, 2048, 512).

    Spectral convergence plus log-magnitude distance averaged over the resolutions; 0 for
    identical signals. ``target``/``output`` are 1-D float arrays of the same length.
    """
    import auraloss

    loss = auraloss.freq.MultiResolutionSTFTLoss()
    with torch.no_grad():
        value = loss(
            torch.as_tensor(np.asarray(output, dtype=np.float32)).view(1, 1, -1),
            torch.as_tensor(np.asarray(target, dtype=np.float32)).view(1, 1, -1),
        )
    return float(value)


def loudness_difference_db(
    target: np.ndarray, output: np.ndarray, sample_rate_hz: int
) -> float | None:
    """Integrated loudness of ``output`` minus that of ``target`` in dB (LU), ITU-R BS.1770-4.

    Returns None when the signals are shorter than one 400 ms gating block or are gated out
    entirely (silence), where BS.1770 loudness is undefined.
    """
    import pyloudnorm

    if len(target) < int(0.4 * sample_rate_hz) + 1:
        return None
    meter = pyloudnorm.Meter(sample_rate_hz)
    with np.errstate(divide="ignore"):
        reference = meter.integrated_loudness(np.asarray(target, dtype=np.float64))
        measured = meter.integrated_loudness(np.asarray(output, dtype=np.float64))
    if not (np.isfinite(reference) and np.isfinite(measured)):
        return None
    return float(measured - reference)
