"""The models: the DAFx-19 recurrent model (LSTM or GRU + one linear neuron) and two baselines.

Every model maps ``x`` of shape ``(batch, time, input_size)``, float32, channels
``[audio, knob_1 ... knob_n]`` (knobs normalised to [0, 1]) to ``y`` of shape
``(batch, time, 1)``, and carries a state so that a long signal can be processed in chunks with
the same result as in one go: ``y, state = model(x, state)``; ``state=None`` is silence before
the first sample (zero recurrent state, zero input history).

- ``lstm`` / ``gru``: Wright, Damskägg & Välimäki, DAFx-19, eqs. (1)-(12): one recurrent layer
  (``rec``, batch first) and one linear neuron (``lin``) with no output activation. With
  ``skip`` the audio input is added to the output (the CoreAudioML/Proteus convention).
- ``wavenet``: the feed-forward WaveNet of Damskägg, Juvela & Välimäki (SMC-19) the paper
  compares against: a 1x1 input layer, dilated causal convolutions (kernel 3) with gated
  activations ``tanh(a) * sigmoid(b)`` and residual 1x1 convolutions, and a linear mixer of all
  layers' skip outputs. Its three published sizes are in
  :data:`ampcap.train.config.WAVENET_PRESETS`.
- ``mlp``: a windowed feed-forward baseline: the last ``window`` audio samples and the knobs
  feed ``num_layers`` tanh layers of ``hidden_size`` units and one linear neuron.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# The configuration lives in a torch-free module (the command line shows its defaults without
# loading torch); it is also reached from here, beside the models it builds.
from ampcap.train.config import ModelConfig, make_config

__all__ = [
    "ModelConfig",
    "RecurrentModel",
    "WaveNet",
    "WindowedMLP",
    "build_model",
    "detach_state",
    "make_config",
    "parameter_count",
]


class RecurrentModel(nn.Module):
    """One LSTM or GRU stack (``rec``) and one linear neuron (``lin``), DAFx-19 Fig. 1."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        unit = nn.LSTM if config.arch == "lstm" else nn.GRU
        self.rec = unit(config.input_size, config.hidden_size, config.num_layers, batch_first=True)
        self.lin = nn.Linear(config.hidden_size, 1)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """``x``: (batch, time, input_size) -> ``y``: (batch, time, 1) and the new state.

        The state is the unit's own: ``(h, c)`` for an LSTM, ``h`` for a GRU, each of shape
        (num_layers, batch, hidden_size).
        """
        hidden, state = self.rec(x, state)
        y = self.lin(hidden)
        if self.config.skip:
            y = y + x[..., :1]
        return y, state


class _HistoryModel(nn.Module):
    """A feed-forward model whose state is the last ``receptive_field - 1`` input frames."""

    config: ModelConfig

    def _with_history(self, x: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        keep = self.config.receptive_field - 1
        if state is None:
            state = x.new_zeros(x.shape[0], keep, x.shape[2])
        return torch.cat([state, x], dim=1)

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: (batch, time, input_size) -> ``y``: (batch, time, 1) and the input history.

        The state has shape (batch, receptive_field - 1, input_size): the frames before ``x``.
        """
        full = self._with_history(x, state)
        keep = self.config.receptive_field - 1
        y = self._valid(full.transpose(1, 2)).transpose(1, 2)
        if self.config.skip:
            y = y + x[..., :1]
        new_state = full[:, full.shape[1] - keep :, :] if keep else full[:, :0, :]
        return y, new_state

    def _valid(self, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class WaveNet(_HistoryModel):
    """Damskägg et al.'s feed-forward WaveNet for distortion circuits (SMC-19).

    Each layer: dilated causal convolution to ``2C`` channels, gate ``tanh(a) * sigmoid(b)``
    (C channels, also the layer's skip output), a 1x1 convolution back to C channels added to
    the layer's input (residual). The output is a 1x1 linear mixer of all layers' skip outputs.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.hidden_size
        self.inp = nn.Conv1d(config.input_size, channels, 1)
        self.dilated = nn.ModuleList(
            nn.Conv1d(channels, 2 * channels, config.kernel_size, dilation=d)
            for d in config.dilations
        )
        self.residual = nn.ModuleList(nn.Conv1d(channels, channels, 1) for _ in config.dilations)
        self.mix = nn.Conv1d(channels * config.num_layers, 1, 1)

    def _valid(self, frames: torch.Tensor) -> torch.Tensor:
        # frames: (batch, input_size, history + time); every layer trims what it consumed, so
        # the output is exactly `time` samples long and causal.
        out_len = frames.shape[2] - (self.config.receptive_field - 1)
        h = self.inp(frames)
        skips = []
        for conv, res in zip(self.dilated, self.residual, strict=True):
            a, b = conv(h).chunk(2, dim=1)
            gated = torch.tanh(a) * torch.sigmoid(b)
            h = h[:, :, h.shape[2] - gated.shape[2] :] + res(gated)
            skips.append(gated[:, :, gated.shape[2] - out_len :])
        return self.mix(torch.cat(skips, dim=1))


class WindowedMLP(_HistoryModel):
    """A feed-forward baseline: ``window`` audio samples + the knobs -> tanh layers -> 1."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        width = config.hidden_size
        # The first layer over the audio window is a convolution with the window as kernel:
        # one matrix product per output sample without materialising the windows.
        self.window_layer = nn.Conv1d(1, width, config.window)
        self.knob_layer = (
            nn.Conv1d(config.input_size - 1, width, 1, bias=False)
            if config.input_size > 1
            else None
        )
        self.hidden = nn.ModuleList(
            nn.Conv1d(width, width, 1) for _ in range(config.num_layers - 1)
        )
        self.lin = nn.Conv1d(width, 1, 1)

    def _valid(self, frames: torch.Tensor) -> torch.Tensor:
        h = self.window_layer(frames[:, :1, :])
        if self.knob_layer is not None:
            h = h + self.knob_layer(frames[:, 1:, frames.shape[2] - h.shape[2] :])
        h = torch.tanh(h)
        for layer in self.hidden:
            h = torch.tanh(layer(h))
        return self.lin(h)


def build_model(config: ModelConfig) -> nn.Module:
    """A freshly initialised model for ``config`` (seed torch first for a repeatable start)."""
    if config.recurrent:
        return RecurrentModel(config)
    if config.arch == "wavenet":
        return WaveNet(config)
    return WindowedMLP(config)


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def detach_state(state: Any) -> Any:
    """The same state cut from the autograd graph (truncated back-propagation through time)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()
