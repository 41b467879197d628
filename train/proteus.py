"""CoreAudioML / GuitarML Proteus JSON: written from and read back into :class:`RecurrentWeights`.

Layout (``FORMATS.md``): ``model_data`` (unit, sizes, skip) and the PyTorch ``state_dict`` of
``rec`` (one recurrent layer) and ``lin``, in PyTorch's own gate order; knob inputs stay inputs
unless folded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ampcap.errors import ModelFormatError
from ampcap.levels import ratio_db
from ampcap.schema.session import Knob
from ampcap.train.model_file import ExportedModel, ampcap_block, floats, knob_description, matrix
from ampcap.train.weights import GATES, LayerWeights, RecurrentWeights

# What the Proteus plugin does with a file (GuitarML/Proteus, src/PluginProcessor.cpp and
# src/RTNeuralLSTM.h): an LSTM of hidden size 40 with the input added to the output, run at
# 44.1 kHz whatever the host's rate, the input boosted 1.5x before a model with a knob input, and
# one knob wired (its three-input model is loaded but never played).
PROTEUS_HIDDEN_SIZE = 40
PROTEUS_RATE_HZ = 44100
PROTEUS_INPUT_BOOST = 1.5
PROTEUS_MAX_INPUTS = 2


def proteus_warnings(weights: RecurrentWeights, sample_rate_hz: int) -> list[str]:
    """What the Proteus plugin will do with this file that differs from ``ampcap render``.

    From its source (GuitarML/Proteus, ``src/PluginProcessor.cpp``, ``src/RTNeuralLSTM.*``): it
    builds an LSTM of hidden size 40 and adds the input to the output whatever the file says,
    runs the model at 44.1 kHz (it resamples the host's audio there and back), boosts the input
    1.5x before a model with a knob input, and wires one knob: a file with two knob inputs loads,
    but Proteus plays its one-knob model, whose weights were never loaded.
    """
    notes = []
    if weights.hidden_size != PROTEUS_HIDDEN_SIZE or not weights.skip:
        notes.append(
            f"Proteus builds an LSTM of hidden size {PROTEUS_HIDDEN_SIZE} and always adds the "
            f"input to the output; this model has hidden size {weights.hidden_size} and "
            f"{'a' if weights.skip else 'no'} skip, so Proteus will not play it correctly "
            "(other CoreAudioML players read the sizes from the file). Train with --hidden 40 "
            "--skip for Proteus."
        )
    if weights.unit != "lstm":
        notes.append(
            "The Proteus player runs LSTM models; this GRU needs another CoreAudioML player."
        )
    if int(sample_rate_hz) != PROTEUS_RATE_HZ:
        notes.append(
            f"Proteus runs every model at {PROTEUS_RATE_HZ} Hz (it resamples the host's audio); "
            f"this model was trained at {sample_rate_hz} Hz, so in Proteus its filters and "
            f"time constants move by a factor {PROTEUS_RATE_HZ / sample_rate_hz:.3f}. Record "
            f"at {PROTEUS_RATE_HZ} Hz for Proteus."
        )
    if weights.input_size > 1:
        notes.append(
            f"Proteus boosts the input {PROTEUS_INPUT_BOOST:g}x "
            f"({ratio_db(PROTEUS_INPUT_BOOST, 1.0):+.1f} dB) before a model with a knob, so it "
            "plays this one hotter than `ampcap render`; lower the input level by that much to "
            "hear the capture."
        )
    if weights.input_size > PROTEUS_MAX_INPUTS:
        notes.append(
            f"The model has {weights.input_size - 1} knob inputs; Proteus wires one knob and "
            "plays a two-knob file through its one-knob model, which was never loaded (the "
            "wrong sound, not an error). Fold all knobs but one with --knob NAME=VALUE."
        )
    return notes


def proteus_document(
    weights: RecurrentWeights, sample_rate_hz: int, knobs: Sequence[Knob] = ()
) -> dict[str, Any]:
    """The CoreAudioML/Proteus JSON document (``model_data`` + ``state_dict``).

    Raises
    ------
    ModelFormatError
        More than one recurrent layer: the format holds one.
    """
    if weights.num_layers != 1:
        raise ModelFormatError(
            f"CoreAudioML/Proteus files hold one recurrent layer; this model has "
            f"{weights.num_layers}. Export it with --format nam (LSTM) or --format aidax."
        )
    layer = weights.layers[0]
    return {
        "model_data": {
            "model": "SimpleRNN",
            "input_size": weights.input_size,
            "skip": int(weights.skip),
            "output_size": 1,
            "unit_type": weights.unit.upper(),
            "num_layers": 1,
            "hidden_size": weights.hidden_size,
            "bias_fl": True,
        },
        "state_dict": {
            "rec.weight_ih_l0": floats(layer.weight_ih),
            "rec.weight_hh_l0": floats(layer.weight_hh),
            "rec.bias_ih_l0": floats(layer.bias_ih),
            "rec.bias_hh_l0": floats(layer.bias_hh),
            "lin.weight": floats(weights.head_weight.reshape(1, -1)),
            "lin.bias": [float(weights.head_bias)],
        },
        "ampcap": ampcap_block(weights, knobs, sample_rate_hz),
    }


def read_proteus(document: Mapping[str, Any], path: Path) -> ExportedModel:
    """A CoreAudioML document (already parsed from ``path``) as an :class:`ExportedModel`.

    Raises
    ------
    ModelFormatError
        Not one LSTM or GRU layer with one output, or arrays missing or of the wrong shape.
    """
    data, state = document.get("model_data", {}), document.get("state_dict", {})
    try:
        unit = str(data["unit_type"]).lower()
        inputs, hidden = int(data["input_size"]), int(data["hidden_size"])
        skip = bool(int(data.get("skip", 0)))
        layers_count = int(data.get("num_layers", 1))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: model_data lacks or garbles {exc}.") from exc
    if unit not in GATES or layers_count != 1 or int(data.get("output_size", 1)) != 1:
        raise ModelFormatError(
            f"{path} is a CoreAudioML model ampcap cannot run ({unit}, {layers_count} layer(s)); "
            "it reads one LSTM or GRU layer with one output."
        )
    rows = GATES[unit] * hidden
    try:
        layer = LayerWeights(
            matrix(state["rec.weight_ih_l0"], (rows, inputs), "rec.weight_ih_l0", path),
            matrix(state["rec.weight_hh_l0"], (rows, hidden), "rec.weight_hh_l0", path),
            matrix(state["rec.bias_ih_l0"], (rows,), "rec.bias_ih_l0", path),
            matrix(state["rec.bias_hh_l0"], (rows,), "rec.bias_hh_l0", path),
        )
        head = matrix(state["lin.weight"], (1, hidden), "lin.weight", path).reshape(-1)
        head_bias = float(matrix(state["lin.bias"], (1,), "lin.bias", path)[0])
    except KeyError as exc:
        raise ModelFormatError(f"{path}: state_dict lacks {exc}.") from exc
    names, knobs, folded, rate = knob_description(document, inputs - 1)
    weights = RecurrentWeights(unit, hidden, skip, (layer,), head, head_bias, names)
    return ExportedModel(weights, "proteus", rate, knobs, folded)
