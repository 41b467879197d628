"""What NAM players read from a ``.nam`` file besides the weights: loudness, gain, start state.

These follow the definitions of the neural-amp-modeler package (version 0.13.0,
``nam/models/base.py`` and ``nam/models/recurrent.py``), computed here independently:

- **Initial state.** NAM's exporter writes, as each LSTM layer's initial hidden and cell state,
  the state the model reaches after :data:`NAM_SILENCE_SAMPLES` (48,000) samples of silence
  from a zero state. NAM's Python loader starts from that state; NeuralAmpModelerCore starts
  from it too and then runs half a second of silence (its "prewarm") before the first sample.
- **loudness**, in dB: ``20 log10(rms(y))`` where ``y`` is the model's output, from its initial
  state, for NAM's standard loudness input. NAM players scale their output by it so that every
  model in a library plays at the same level.
- **gain**, in [0, 1]: how much the model compresses. With ``r_k`` the output RMS (linear) for
  the standard input scaled by ``g_k = k / 10``, ``k = 0 .. 10``, and ``S = sum_k r_k``:
  ``gain = clip((S - 5.5 r_10) / (5.5 r_10), 0, 1)``. A linear model (``r_k`` proportional to
  ``g_k``) sums to 5.5 ``r_10`` and scores 0; a limiter at full output for any input scores 1.

NAM's standard loudness input is a file shipped in its package
(``nam/models/_resources/loudness_input.wav``): one second of pink noise at 48 kHz, 24 bit,
RMS 0.17848 (-14.97 dBFS) and mean -0.03972 (the slow drift of a pink-noise draw), peak 0.712.
It is fed to the model sample by sample whatever the model's sample rate. ampcap does not ship
that file; it makes its own (:func:`loudness_input`): one second of pink noise with exactly 1/f
power in every frequency bin, seeded phases, and the same RMS and mean. On trained amp models
the two give loudness values within 0.03 dB of each other; matching the mean matters, because a
model's output level moves with the DC it is fed (without it the difference was up to 0.3 dB).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ampcap.train.weights import RecurrentWeights, model_from_weights

NAM_SILENCE_SAMPLES = 48_000
LOUDNESS_INPUT_RATE_HZ = 48_000
LOUDNESS_INPUT_RMS = 0.1784838  # NAM's standard loudness input, measured (see module docstring)
LOUDNESS_INPUT_MEAN = -0.0397182
LOUDNESS_INPUT_SEED = 0
GAIN_STEPS = 11  # input scaled by 0, 0.1, ..., 1.0


@dataclass(frozen=True)
class NamPlayback:
    """The metadata NAM players use, for one LSTM (knobs folded in).

    Attributes
    ----------
    initial_state : tuple of (numpy.ndarray, numpy.ndarray)
        Per layer, the hidden and cell state (float64, shape (H,)) after
        :data:`NAM_SILENCE_SAMPLES` samples of silence from zero.
    loudness_db : float
        Output RMS in dB on the standard loudness input, from ``initial_state``.
    gain : float
        NAM's compression estimate, in [0, 1].
    """

    initial_state: tuple[tuple[np.ndarray, np.ndarray], ...]
    loudness_db: float
    gain: float


def loudness_input() -> np.ndarray:
    """ampcap's standard loudness input: 1 s of pink noise at 48 kHz (float32, shape (48000,)).

    Every frequency bin ``k = 1 .. 24000`` has power proportional to ``1 / k`` and a phase drawn
    from ``numpy.random.default_rng(LOUDNESS_INPUT_SEED)``; the signal is then scaled and offset
    to NAM's RMS and mean (:data:`LOUDNESS_INPUT_RMS`, :data:`LOUDNESS_INPUT_MEAN`).
    """
    frames = LOUDNESS_INPUT_RATE_HZ
    bins = np.arange(frames // 2 + 1, dtype=np.float64)
    magnitude = np.zeros_like(bins)
    magnitude[1:] = 1.0 / np.sqrt(bins[1:])
    phase = np.random.default_rng(LOUDNESS_INPUT_SEED).uniform(0.0, 2.0 * np.pi, bins.size)
    noise = np.fft.irfft(magnitude * np.exp(1j * phase), frames)
    noise -= noise.mean()
    alternating = np.sqrt(LOUDNESS_INPUT_RMS**2 - LOUDNESS_INPUT_MEAN**2)
    signal = noise * (alternating / np.sqrt(np.mean(noise**2))) + LOUDNESS_INPUT_MEAN
    return signal.astype(np.float32)


def _state_tensors(
    state: tuple[tuple[np.ndarray, np.ndarray], ...], batch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer (h, c) arrays -> nn.LSTM's (h0, c0), shape (layers, batch, H) each."""
    h = torch.tensor(np.stack([layer[0] for layer in state]), dtype=torch.float32)
    c = torch.tensor(np.stack([layer[1] for layer in state]), dtype=torch.float32)
    return (
        h[:, None, :].expand(-1, batch, -1).contiguous(),
        c[:, None, :].expand(-1, batch, -1).contiguous(),
    )


def nam_playback(weights: RecurrentWeights) -> NamPlayback:
    """Initial state, loudness and gain of an LSTM as NAM's exporter computes them.

    Parameters
    ----------
    weights : RecurrentWeights
        An LSTM with audio as its only input (every knob folded in), no skip.

    Returns
    -------
    NamPlayback
    """
    if weights.unit != "lstm" or weights.input_size != 1 or weights.skip:
        raise ValueError("Internal: NAM metadata is for an audio-only LSTM without skip.")
    model = model_from_weights(weights)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small recurrent steps: a second thread only adds waiting
    try:
        with torch.inference_mode():
            _, (h, c) = model.rec(torch.zeros(1, NAM_SILENCE_SAMPLES, 1))
            state = tuple(
                (h[k, 0].double().numpy(), c[k, 0].double().numpy()) for k in range(h.shape[0])
            )
            gains = torch.linspace(0.0, 1.0, GAIN_STEPS)
            x = gains[:, None] * torch.from_numpy(loudness_input())[None, :]
            features, _ = model.rec(x[:, :, None], _state_tensors(state, GAIN_STEPS))
            y = model.lin(features)[:, :, 0].double()
            rms = torch.sqrt(torch.mean(y**2, dim=1)).numpy()
    finally:
        torch.set_num_threads(threads)
    # numpy's log10, not ampcap.levels (the math library's): the two differ in the last bit on
    # some CPUs, and this value is written into every .nam file.
    loudness_db = float(20.0 * np.log10(max(rms[-1], 1e-30)))
    full = rms[-1] * GAIN_STEPS  # every step at full output: 100 % compression
    linear = 0.5 * full  # output proportional to input: no compression
    gain = float(np.clip((rms.sum() - linear) / (full - linear), 0.0, 1.0)) if full > 0 else 0.0
    return NamPlayback(state, loudness_db, gain)
