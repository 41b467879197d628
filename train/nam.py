"""Neural Amp Modeler ``.nam`` files: written from and read back into :class:`RecurrentWeights`.

Layout (``FORMATS.md``; LSTM only, no skip, audio the only input): per layer the matrix
``[W_ih | W_hh]`` (4H x (in + H), row-major), ``b_ih + b_hh``, the initial hidden and cell
states, then the head weight (H) and bias (1). Knob inputs are folded into the bias for one
setting (:func:`ampcap.train.weights.fold_knobs`). The start state, ``loudness`` and ``gain`` NAM
players read are computed in :mod:`ampcap.train.nam_metadata`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ampcap.errors import ModelFormatError, UsageError
from ampcap.schema.session import Knob
from ampcap.train.model_file import ExportedModel, ampcap_block, floats, knob_description, matrix
from ampcap.train.weights import LayerWeights, RecurrentWeights

# NAM's own exporter writes 0.7.0 (neural-amp-modeler 0.13.0). ampcap writes 0.5.4: the LSTM
# layout is the same in both, and the NAM plugin's latest release (v0.7.13) bundles
# NeuralAmpModelerCore v0.2.0, whose verify_config_version (NAM/get_dsp.cpp) refuses every version
# but 0.5.x. Cores from v0.5.0 on read 0.5.0 to 0.7.x.
NAM_VERSION = "0.5.4"
NAM_GEAR_TYPES = ("amp", "pedal", "pedal_amp", "amp_cab", "amp_pedal_cab", "preamp", "studio")
NAM_TONE_TYPES = ("clean", "overdrive", "crunch", "hi_gain", "fuzz")
_METADATA_FIELDS = ("name", "modeled_by", "gear_make", "gear_model", "gear_type", "tone_type")


@dataclass(frozen=True)
class NamMetadata:
    """What a ``.nam`` file says about the capture; every field optional (``None``: not written).

    ``gear_type`` is one of :data:`NAM_GEAR_TYPES`, ``tone_type`` one of :data:`NAM_TONE_TYPES`.
    """

    name: str | None = None
    modeled_by: str | None = None
    gear_make: str | None = None
    gear_model: str | None = None
    gear_type: str | None = None
    tone_type: str | None = None

    def __post_init__(self) -> None:
        for attribute, allowed in (("gear_type", NAM_GEAR_TYPES), ("tone_type", NAM_TONE_TYPES)):
            value = getattr(self, attribute)
            if value is not None and value not in allowed:
                raise UsageError(
                    f"{attribute} {value!r} is not one NAM players know; use one of "
                    f"{', '.join(allowed)}."
                )


def check_nam_compatible(weights: RecurrentWeights) -> None:
    """Refuse what ``.nam`` cannot hold: a GRU or a skip connection (the message says why).

    Raises
    ------
    ModelFormatError
    """
    if weights.unit != "lstm":
        raise ModelFormatError(
            f"A {weights.unit.upper()} cannot be written as .nam: NAM players load LSTM recurrent "
            "models only. Export it with --format aidax or --format proteus, or train with "
            "--arch lstm."
        )
    if weights.skip:
        raise ModelFormatError(
            "A model with a skip connection cannot be written as .nam: NAM's LSTM has no path "
            "adding the input to the output, so the file would sound wrong. Export it with "
            "--format proteus or --format aidax (both support skip), or train without --skip."
        )


# ---------------------------------------------------------------------------------------------
# Writing


def nam_document(
    weights: RecurrentWeights,
    sample_rate_hz: int,
    metadata: NamMetadata | None = None,
    knobs: Sequence[Knob] = (),
    now: _dt.datetime | None = None,
) -> dict[str, Any]:
    """The ``.nam`` JSON document of an LSTM with every knob already folded in.

    As NAM's own exporter does, the file starts the model from the state it reaches after 48,000
    samples of silence and its metadata carries ``loudness`` (dB) and ``gain`` (0-1) for this
    knob setting (:mod:`ampcap.train.nam_metadata`).

    Raises
    ------
    ModelFormatError
        A GRU, a skip connection, or knob inputs left unfolded: NAM players feed audio only to an
        LSTM with no skip path. The message says which format to use instead.
    """
    check_nam_compatible(weights)
    if weights.knob_inputs:
        raise ModelFormatError(
            "NAM players feed audio only; choose a setting for "
            + ", ".join(weights.knob_inputs)
            + " (for example --knob NAME=VALUE) so it is folded into the bias."
        )
    # Imported here: it loads torch, which reading and checking .nam files does not need.
    from ampcap.train.nam_metadata import nam_playback

    playback = nam_playback(weights)
    meta_doc = _metadata_document(metadata or NamMetadata(), now)
    meta_doc["loudness"] = playback.loudness_db
    meta_doc["gain"] = playback.gain
    return {
        "version": NAM_VERSION,
        "architecture": "LSTM",
        "config": {
            "input_size": 1,
            "hidden_size": weights.hidden_size,
            "num_layers": weights.num_layers,
        },
        "weights": floats(_flat_weights(weights, playback.initial_state)),
        "sample_rate": int(sample_rate_hz),
        "metadata": meta_doc,
        "ampcap": ampcap_block(weights, knobs, sample_rate_hz),
    }


def _flat_weights(
    weights: RecurrentWeights, initial_state: tuple[tuple[np.ndarray, np.ndarray], ...]
) -> np.ndarray:
    """The ``weights`` list of a ``.nam`` LSTM, in NAM's order (see the module docstring)."""
    flat: list[np.ndarray] = []
    for layer, (hidden_state, cell_state) in zip(weights.layers, initial_state, strict=True):
        flat.append(np.concatenate([layer.weight_ih, layer.weight_hh], axis=1).reshape(-1))
        flat.append(layer.bias_ih + layer.bias_hh)
        flat.append(hidden_state)
        flat.append(cell_state)
    flat.append(weights.head_weight)
    flat.append(np.array([weights.head_bias]))
    return np.concatenate(flat)


def _metadata_document(metadata: NamMetadata, now: _dt.datetime | None) -> dict[str, Any]:
    """The given metadata fields and the export date (UTC, ``now`` or the clock's)."""
    stamp = (now or _dt.datetime.now(_dt.timezone.utc)).astimezone(_dt.timezone.utc)
    document: dict[str, Any] = {
        key: getattr(metadata, key)
        for key in _METADATA_FIELDS
        if getattr(metadata, key) is not None
    }
    document["date"] = {
        "year": stamp.year,
        "month": stamp.month,
        "day": stamp.day,
        "hour": stamp.hour,
        "minute": stamp.minute,
        "second": stamp.second,
    }
    return document


# ---------------------------------------------------------------------------------------------
# Reading back


def _nam_shape(document: Mapping[str, Any], path: Path) -> tuple[int, int, int]:
    """(inputs, hidden, layers) of a ``.nam`` LSTM, after checking architecture and version."""
    if document.get("architecture") != "LSTM":
        raise ModelFormatError(
            f"{path} is a .nam file of architecture {document.get('architecture')!r}; ampcap "
            "reads LSTM .nam files (the ones it writes)."
        )
    version = str(document.get("version", ""))
    if not version.startswith("0."):
        raise ModelFormatError(f"{path} has .nam version {version!r}; ampcap reads 0.x files.")
    config = document.get("config", {})
    try:
        return (
            int(config["input_size"]),
            int(config["hidden_size"]),
            int(config["num_layers"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: the .nam config lacks {exc}.") from exc


def _nam_weights(raw: Any, inputs: int, hidden: int, count: int, path: Path) -> np.ndarray:
    """The flat ``weights`` list, checked to be numbers, finite and as many as the shape needs."""
    if not isinstance(raw, list):
        raise ModelFormatError(f"{path}: 'weights' is not a list of numbers.")
    flat = matrix(raw, (len(raw),), "weights", path)
    expected = (
        sum(
            4 * hidden * ((inputs if k == 0 else hidden) + hidden) + 4 * hidden + 2 * hidden
            for k in range(count)
        )
        + hidden
        + 1
    )
    if flat.size != expected:
        raise ModelFormatError(
            f"{path} holds {flat.size} weights; an LSTM with input {inputs}, hidden {hidden} and "
            f"{count} layer(s) needs {expected}."
        )
    return flat


def read_nam(document: Mapping[str, Any], path: Path) -> ExportedModel:
    """A ``.nam`` LSTM document (already parsed from ``path``) as an :class:`ExportedModel`.

    Raises
    ------
    ModelFormatError
        Not an LSTM, not version 0.x, or weights of the wrong count or not finite.
    """
    inputs, hidden, count = _nam_shape(document, path)
    flat = _nam_weights(document.get("weights"), inputs, hidden, count, path)
    at = 0

    def take(n: int) -> np.ndarray:
        nonlocal at
        at += n
        return flat[at - n : at]

    layers = []
    states: list[tuple[np.ndarray, np.ndarray]] = []
    for k in range(count):
        width = inputs if k == 0 else hidden
        weights = take(4 * hidden * (width + hidden)).reshape(4 * hidden, width + hidden)
        bias = take(4 * hidden)
        states.append((take(hidden).copy(), take(hidden).copy()))
        layers.append(
            LayerWeights(weights[:, :width], weights[:, width:], bias, np.zeros(4 * hidden))
        )
    head_weight = take(hidden)
    head_bias = float(take(1)[0])
    names, knobs, folded, rate = knob_description(document, inputs - 1)
    initial = tuple(states) if any(np.any(h) or np.any(c) for h, c in states) else ()
    model = RecurrentWeights(
        "lstm", hidden, False, tuple(layers), head_weight, head_bias, names, initial_state=initial
    )
    file_rate = document.get("sample_rate")
    return ExportedModel(model, "nam", int(file_rate) if file_rate else rate, knobs, folded)
