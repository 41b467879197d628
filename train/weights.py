"""A recurrent model as plain arrays, the neutral form every player format is written from.

:class:`RecurrentWeights` holds, per layer, ``W_ih``, ``W_hh``, ``b_ih``, ``b_hh`` in PyTorch's
layout and gate order (LSTM i, f, g, o; GRU r, z, n), then the output neuron. Each player format
(:mod:`ampcap.train.nam`, :mod:`ampcap.train.proteus`, :mod:`ampcap.train.aidax`) converts to and
from it, so the three layouts differ only where the formats do. This module also moves weights
between a torch model and arrays, folds knob inputs into the bias for one setting, and reads the
knob ranges a checkpoint or file records.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ampcap.errors import ModelFormatError, UsageError
from ampcap.labels import knob_label
from ampcap.schema.session import Knob

#: Gate blocks per unit: rows of ``W_ih`` are ``GATES[unit] * hidden_size``.
GATES = {"lstm": 4, "gru": 3}


@dataclass(frozen=True)
class LayerWeights:
    """One recurrent layer in PyTorch's layout: rows are gates (LSTM i,f,g,o; GRU r,z,n) x H.

    Attributes
    ----------
    weight_ih : numpy.ndarray, float64, shape (gates * H, in)
    weight_hh : numpy.ndarray, float64, shape (gates * H, H)
    bias_ih, bias_hh : numpy.ndarray, float64, shape (gates * H,)
    """

    weight_ih: np.ndarray
    weight_hh: np.ndarray
    bias_ih: np.ndarray
    bias_hh: np.ndarray


@dataclass(frozen=True)
class RecurrentWeights:
    """A recurrent model (LSTM or GRU stack + one linear neuron) as plain arrays.

    Attributes
    ----------
    unit : {"lstm", "gru"}
    hidden_size : int
    skip : bool
        The audio input is added to the output.
    layers : tuple of LayerWeights
        First layer input columns: audio, then one per name in ``knob_inputs``.
    head_weight : numpy.ndarray, float64, shape (H,)
    head_bias : float
    knob_inputs : tuple of str
        Knobs still fed as inputs, in input-channel order after the audio.
    folded : tuple of (str, float)
        Knobs folded into the first layer's input bias, with the normalised value used.
    initial_state : tuple of (numpy.ndarray, numpy.ndarray)
        Per layer, the state (LSTM: hidden, cell; float64, shape (H,)) before the first sample;
        empty for a zero state (silence from the start).
    """

    unit: str
    hidden_size: int
    skip: bool
    layers: tuple[LayerWeights, ...]
    head_weight: np.ndarray
    head_bias: float
    knob_inputs: tuple[str, ...] = ()
    folded: tuple[tuple[str, float], ...] = ()
    initial_state: tuple[tuple[np.ndarray, np.ndarray], ...] = ()

    @property
    def input_size(self) -> int:
        return 1 + len(self.knob_inputs)

    @property
    def num_layers(self) -> int:
        return len(self.layers)


def knobs_from_entries(entries: Iterable[Mapping[str, Any]]) -> tuple[Knob, ...]:
    """Knobs from their recorded form, ``[{"name", "minimum", "maximum"}, ...]``.

    Checkpoints and the ``"ampcap"`` block of exported files record knobs this way.
    """
    return tuple(Knob(str(k["name"]), float(k["minimum"]), float(k["maximum"])) for k in entries)


def checkpoint_knobs(checkpoint: Mapping[str, Any]) -> tuple[Knob, ...]:
    """The knob inputs of a checkpoint (``checkpoint["knobs"]``), in input order; () for none."""
    return knobs_from_entries(checkpoint.get("knobs", ()))


# ---------------------------------------------------------------------------------------------
# Between a torch model and arrays


def weights_from_model(model: Any, knob_names: Sequence[str] = ()) -> RecurrentWeights:
    """Copy a trained recurrent model's parameters into a :class:`RecurrentWeights`.

    Parameters
    ----------
    model : torch.nn.Module
        An ampcap recurrent model: ``config`` (arch, skip), ``rec`` (``nn.LSTM``/``nn.GRU``,
        batch first) and ``lin`` (``nn.Linear(H, 1)``).
    knob_names : sequence of str
        Names of the input channels after the audio, in order (``input_size - 1`` of them).

    Raises
    ------
    ModelFormatError
        The model is not an LSTM or GRU (WaveNet and MLP have no player format), or the knob
        names do not match its input size.
    """
    config = getattr(model, "config", None)
    arch = getattr(config, "arch", None)
    if arch not in GATES:
        raise ModelFormatError(
            f"A {arch or type(model).__name__} model cannot be exported: the players load LSTM "
            "and GRU models only. Train with --arch lstm (or gru), or render this model with "
            "`ampcap render`."
        )
    rec, lin = model.rec, model.lin
    if rec.input_size != 1 + len(knob_names):
        raise ModelFormatError(
            f"The model has {rec.input_size} input(s) but {len(knob_names)} knob name(s) were "
            f"given ({', '.join(knob_names) or 'none'}); expected audio + one input per knob."
        )

    def array(name: str) -> np.ndarray:
        return getattr(rec, name).detach().cpu().numpy().astype(np.float64)

    layers = tuple(
        LayerWeights(
            array(f"weight_ih_l{k}"),
            array(f"weight_hh_l{k}"),
            array(f"bias_ih_l{k}"),
            array(f"bias_hh_l{k}"),
        )
        for k in range(rec.num_layers)
    )
    return RecurrentWeights(
        unit=arch,
        hidden_size=int(rec.hidden_size),
        skip=bool(config.skip),
        layers=layers,
        head_weight=lin.weight.detach().cpu().numpy().astype(np.float64).reshape(-1),
        head_bias=float(lin.bias.detach().cpu().numpy().reshape(-1)[0]),
        knob_inputs=tuple(knob_names),
    )


def model_from_weights(weights: RecurrentWeights) -> Any:
    """Build the equivalent ampcap torch model (eval mode, CPU) of a :class:`RecurrentWeights`."""
    import torch

    from ampcap.train.model import ModelConfig, build_model

    config = ModelConfig(
        weights.unit, weights.input_size, weights.hidden_size, weights.num_layers, weights.skip
    )
    model = build_model(config)
    with torch.no_grad():
        for k, layer in enumerate(weights.layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(model.rec, f"{name}_l{k}").copy_(torch.from_numpy(getattr(layer, name)))
        model.lin.weight.copy_(torch.from_numpy(weights.head_weight.reshape(1, -1)))
        model.lin.bias.fill_(weights.head_bias)
    model.eval()
    return model


# ---------------------------------------------------------------------------------------------
# Knob settings


def fold_knobs(weights: RecurrentWeights, values: Mapping[str, float]) -> RecurrentWeights:
    """Fold knob inputs into the first layer's bias for one setting (DAFx-19 ``b_cond``).

    A knob held at ``k`` contributes ``W_ih[:, j] * k`` to every step's pre-activation, which is
    the same as adding it to ``b_ih`` (Wright et al., DAFx-19, Algorithm 1:
    ``b + W_ih[:, knobs] @ knob_values``); its input column is then dropped. Exact, not
    approximate.

    Parameters
    ----------
    weights : RecurrentWeights
    values : mapping of str to float
        Knob name -> value normalised to [0, 1] (the model's input scale). Knobs not named stay
        inputs.

    Raises
    ------
    ModelFormatError
        A name that is not one of ``weights.knob_inputs``.
    """
    unknown = sorted(set(values) - set(weights.knob_inputs))
    if unknown:
        raise ModelFormatError(
            f"Cannot fold knob(s) {', '.join(unknown)}: the model's knob inputs are "
            f"{', '.join(weights.knob_inputs) or 'none'}."
        )
    if not values:
        return weights
    first = weights.layers[0]
    keep = [0] + [1 + i for i, name in enumerate(weights.knob_inputs) if name not in values]
    folded_cols = [1 + weights.knob_inputs.index(name) for name in values]
    setting = np.array([float(values[name]) for name in values], dtype=np.float64)
    b_cond = first.weight_ih[:, folded_cols] @ setting
    layer = LayerWeights(
        first.weight_ih[:, keep], first.weight_hh, first.bias_ih + b_cond, first.bias_hh
    )
    return replace(
        weights,
        layers=(layer, *weights.layers[1:]),
        knob_inputs=tuple(n for n in weights.knob_inputs if n not in values),
        folded=weights.folded + tuple((n, float(values[n])) for n in values),
    )


def normalised_setting(
    knobs: Sequence[Knob], values: Mapping[str, float], *, require_all: bool
) -> dict[str, float]:
    """Check dial values against the knobs' ranges; return them normalised to [0, 1].

    Raises
    ------
    UsageError
        An unknown knob name (the known ones are listed), a value outside the knob's range
        (the range is named), or, with ``require_all``, a knob without a value.
    """
    by_name = {k.name: k for k in knobs}
    for name, value in values.items():
        knob = by_name.get(name)
        if knob is None:
            known = ", ".join(f"{k.name} ({k.minimum:g}..{k.maximum:g})" for k in knobs)
            raise UsageError(f"The model has no knob {name!r}; its knobs are: {known or 'none'}.")
        low, high = min(knob.minimum, knob.maximum), max(knob.minimum, knob.maximum)
        if not (math.isfinite(value) and low <= value <= high):
            raise UsageError(
                f"{knob_label({name: value})} is outside the knob's range "
                f"{knob.minimum:g}..{knob.maximum:g}; "
                "the model was trained on that range only."
            )
    missing = [k for k in knobs if k.name not in values]
    if require_all and missing:
        raise UsageError(
            "Give a value for every knob: "
            + ", ".join(f"--knob {k.name}=VALUE ({k.minimum:g}..{k.maximum:g})" for k in missing)
            + "."
        )
    return {name: by_name[name].normalise(value) for name, value in values.items()}
