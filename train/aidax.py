"""AIDA-X / RTNeural JSON: written from and read back into :class:`RecurrentWeights`.

Layout (``FORMATS.md``): Keras-style ``layers``, recurrent ones then one ``dense``. An LSTM keeps
PyTorch's i, f, g, o gate order (Keras' i, f, c, o); a GRU's gates go from PyTorch's r, z, n to
RTNeural's z, r, h with the input and recurrent biases kept apart (RTNeural applies the reset
gate to ``U_h h + b_hh``, as PyTorch does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ampcap import __version__
from ampcap.errors import ModelFormatError
from ampcap.schema.session import Knob
from ampcap.train.model_file import ExportedModel, ampcap_block, floats, knob_description, matrix
from ampcap.train.weights import GATES, LayerWeights, RecurrentWeights

# AIDA-X (AidaDSP/AIDA-X, src/aidadsp-plugin.cpp, src/model_variant.hpp): one recurrent layer of
# these sizes, audio + at most two knobs, run at the host's sample rate (metadata.samplerate is
# never read), 2048 samples of silence played through a model when it is loaded.
AIDAX_MAX_INPUTS = 3
AIDAX_HIDDEN_SIZES = (8, 12, 16, 20, 24, 32, 40, 64, 80)
AIDAX_WARMUP_SAMPLES = 2048
# The rate ampcap renders an AIDA-X file at when its metadata does not give one.
AIDAX_DEFAULT_RATE_HZ = 48000


def _swap_gru_gates(rows: np.ndarray, hidden: int) -> np.ndarray:
    """Swap the first two GRU gate blocks along axis 0: PyTorch (r, z, n) <-> RTNeural (z, r, h).

    The swap is its own inverse, so it serves writing and reading.
    """
    r, z, n = rows[:hidden], rows[hidden : 2 * hidden], rows[2 * hidden :]
    return np.concatenate([z, r, n], axis=0)


def aidax_warnings(weights: RecurrentWeights, sample_rate_hz: int) -> list[str]:
    """What AIDA-X will do with this file that differs from ``ampcap render``, or not load.

    From its source (AidaDSP/AIDA-X, ``src/aidadsp-plugin.cpp``, ``src/model_variant.hpp``): one
    recurrent layer of hidden size 8, 12, 16, 20, 24, 32, 40, 64 or 80, audio + at most two knob
    inputs, run at the host's sample rate: the file's ``metadata.samplerate`` is never read.
    """
    notes = [
        f"AIDA-X runs the model at the host's sample rate and does not read the rate in the "
        f"file: set the host (or MOD device) to {sample_rate_hz} Hz, the rate it was trained at."
    ]
    if weights.hidden_size not in AIDAX_HIDDEN_SIZES:
        notes.append(
            f"AIDA-X players support hidden sizes {', '.join(map(str, AIDAX_HIDDEN_SIZES))}; "
            f"this model has {weights.hidden_size} and will not load. Train with one of those."
        )
    if weights.input_size > AIDAX_MAX_INPUTS:
        notes.append(
            f"The model has {weights.input_size} inputs; AIDA-X reads 1 to {AIDAX_MAX_INPUTS}. "
            "Fold some knobs with --knob NAME=VALUE."
        )
    if weights.num_layers > 1:
        notes.append(
            f"The model has {weights.num_layers} recurrent layers; AIDA-X plays models of one "
            "recurrent layer and a dense output (RTNeural itself reads the stack)."
        )
    return notes


# ---------------------------------------------------------------------------------------------
# Writing


def _recurrent_layer(unit: str, layer: LayerWeights, hidden: int) -> dict[str, Any]:
    """One recurrent layer as RTNeural reads it: kernel, recurrent kernel, bias."""
    if unit == "lstm":
        # Keras' LSTM gate order (i, f, c, o) is PyTorch's (i, f, g, o): transpose only.
        kernel = layer.weight_ih.T
        recurrent = layer.weight_hh.T
        bias: list[Any] = floats(layer.bias_ih + layer.bias_hh)
    else:
        kernel = _swap_gru_gates(layer.weight_ih, hidden).T
        recurrent = _swap_gru_gates(layer.weight_hh, hidden).T
        # Two rows: input bias, recurrent bias; they cannot be summed for the candidate gate
        # because the reset gate multiplies the recurrent part only.
        bias = [
            floats(_swap_gru_gates(layer.bias_ih, hidden)),
            floats(_swap_gru_gates(layer.bias_hh, hidden)),
        ]
    return {
        "type": unit,
        "activation": "",
        "shape": [None, None, hidden],
        "weights": [floats(kernel), floats(recurrent), bias],
    }


def aidax_document(
    weights: RecurrentWeights, sample_rate_hz: int, knobs: Sequence[Knob] = ()
) -> dict[str, Any]:
    """The AIDA-X/RTNeural JSON document (Keras-style ``layers``)."""
    layers = [
        _recurrent_layer(weights.unit, layer, weights.hidden_size) for layer in weights.layers
    ]
    layers.append(
        {
            "type": "dense",
            "activation": "",
            "shape": [None, None, 1],
            "weights": [floats(weights.head_weight.reshape(-1, 1)), [float(weights.head_bias)]],
        }
    )
    return {
        "in_shape": [None, None, weights.input_size],
        "in_skip": int(weights.skip),
        "layers": layers,
        "metadata": {"samplerate": int(sample_rate_hz), "source": f"ampcap {__version__}"},
        "ampcap": ampcap_block(weights, knobs, sample_rate_hz),
    }


# ---------------------------------------------------------------------------------------------
# Reading back


def _layer_kinds(raw_layers: list[Any], path: Path) -> str:
    """The recurrent unit of a layer list, after checking it is a stack of one kind + dense."""
    if len(raw_layers) < 2 or raw_layers[-1].get("type") != "dense":
        raise ModelFormatError(
            f"{path}: expected recurrent layers followed by one dense layer; got "
            f"{[layer.get('type') for layer in raw_layers]}."
        )
    units = {layer.get("type") for layer in raw_layers[:-1]}
    if len(units) != 1 or not units <= set(GATES):
        raise ModelFormatError(
            f"{path}: ampcap runs stacks of one kind of lstm or gru layer; got {sorted(units)}."
        )
    if any(layer.get("activation") for layer in raw_layers):
        raise ModelFormatError(f"{path}: layers with activations are not an ampcap model.")
    return units.pop()


def _read_layer(
    raw: Mapping[str, Any], unit: str, width: int, hidden: int, k: int, path: Path
) -> LayerWeights:
    """Recurrent layer ``k`` (``width`` inputs) back in PyTorch's layout and gate order."""
    rows = GATES[unit] * hidden
    kernel = matrix(raw["weights"][0], (width, rows), f"layer {k} kernel", path).T
    recurrent = matrix(raw["weights"][1], (hidden, rows), f"layer {k} recurrent", path).T
    if unit == "lstm":
        bias = matrix(raw["weights"][2], (rows,), f"layer {k} bias", path)
        return LayerWeights(kernel, recurrent, bias, np.zeros(rows))
    bias = matrix(raw["weights"][2], (2, rows), f"layer {k} bias", path)
    return LayerWeights(
        _swap_gru_gates(kernel, hidden),
        _swap_gru_gates(recurrent, hidden),
        _swap_gru_gates(bias[0], hidden),
        _swap_gru_gates(bias[1], hidden),
    )


def read_aidax(document: Mapping[str, Any], path: Path) -> ExportedModel:
    """An RTNeural document (already parsed from ``path``) as an :class:`ExportedModel`.

    Raises
    ------
    ModelFormatError
        A header lacking ``in_shape`` or ``layers``, layers that are not one kind of recurrent
        stack and a dense output, or arrays of the wrong shape.
    """
    try:
        inputs = int(document["in_shape"][-1])
        skip = bool(int(document.get("in_skip", 0)))
        raw_layers = list(document["layers"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelFormatError(f"{path}: the RTNeural header lacks or garbles {exc}.") from exc
    unit = _layer_kinds(raw_layers, path)
    hidden = int(raw_layers[0]["shape"][-1])
    layers = tuple(
        _read_layer(raw, unit, inputs if k == 0 else hidden, hidden, k, path)
        for k, raw in enumerate(raw_layers[:-1])
    )
    dense = raw_layers[-1]
    head = matrix(dense["weights"][0], (hidden, 1), "dense kernel", path).reshape(-1)
    head_bias = float(matrix(dense["weights"][1], (1,), "dense bias", path)[0])
    names, knobs, folded, _ = knob_description(document, inputs - 1)
    metadata = document.get("metadata") or {}
    file_rate = metadata.get("samplerate") if isinstance(metadata, Mapping) else None
    weights = RecurrentWeights(unit, hidden, skip, layers, head, head_bias, names)
    return ExportedModel(
        weights, "aidax", int(file_rate) if file_rate else AIDAX_DEFAULT_RATE_HZ, knobs, folded
    )
