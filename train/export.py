"""Model files the players load: Neural Amp Modeler ``.nam``, CoreAudioML/Proteus and AIDA-X JSON.

Every exporter goes through one neutral description of a recurrent model,
:class:`RecurrentWeights` (per layer ``W_ih``, ``W_hh``, ``b_ih``, ``b_hh`` in PyTorch's layout and
gate order, then the output neuron), so the three layouts differ only where the formats do.
Layouts are those of ``FORMATS.md``:

- ``.nam`` (LSTM only, no skip, audio is the only input): per layer the matrix ``[W_ih | W_hh]``
  (4H x (in + H), row-major), ``b_ih + b_hh``, the initial hidden and cell states, then the head
  weight (H) and bias (1). Knob inputs are folded into the bias for one setting, the ``b_cond``
  term of Wright et al. (DAFx-19), Algorithm 1: ``b + W_ih[:, knobs] @ knob_values``.
- CoreAudioML/Proteus: ``model_data`` + the PyTorch ``state_dict`` of ``rec`` and ``lin``.
- AIDA-X/RTNeural: Keras-style layers; an LSTM keeps PyTorch's i, f, g, o gate order, a GRU's
  gates go from PyTorch's r, z, n to RTNeural's z, r, h with the input and recurrent biases kept
  apart (RTNeural applies the reset gate to ``U_h h + b_hh``, as PyTorch does).

Every file also carries a top-level ``"ampcap"`` object (knob names, ranges, the folded setting,
the sample rate) that the players ignore and ``ampcap render`` reads back.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ampcap import __version__
from ampcap.errors import AmpcapError, ModelFormatError, UsageError
from ampcap.files import atomic_write_json, read_json
from ampcap.outputs import check_output_file
from ampcap.schema.session import Knob

FORMATS = ("nam", "proteus", "aidax")
# NAM's own exporter writes 0.7.0 (neural-amp-modeler 0.13.0). ampcap writes 0.5.4: the LSTM
# layout is the same in both, and the NAM plugin's latest release (v0.7.13) bundles
# NeuralAmpModelerCore v0.2.0, whose verify_config_version (NAM/get_dsp.cpp) refuses every version
# but 0.5.x. Cores from v0.5.0 on read 0.5.0 to 0.7.x.
NAM_VERSION = "0.5.4"
NAM_GEAR_TYPES = ("amp", "pedal", "pedal_amp", "amp_cab", "amp_pedal_cab", "preamp", "studio")
NAM_TONE_TYPES = ("clean", "overdrive", "crunch", "hi_gain", "fuzz")
# What the Proteus plugin does with a file (GuitarML/Proteus, src/PluginProcessor.cpp and
# src/RTNeuralLSTM.h): an LSTM of hidden size 40 with the input added to the output, run at
# 44.1 kHz whatever the host's rate, the input boosted 1.5x before a model with a knob input, and
# one knob wired (its three-input model is loaded but never played).
PROTEUS_HIDDEN_SIZE = 40
PROTEUS_RATE_HZ = 44100
PROTEUS_INPUT_BOOST = 1.5
PROTEUS_MAX_INPUTS = 2
# AIDA-X (AidaDSP/AIDA-X, src/aidadsp-plugin.cpp, src/model_variant.hpp): one recurrent layer of
# these sizes, audio + at most two knobs, run at the host's sample rate (metadata.samplerate is
# never read), 2048 samples of silence played through a model when it is loaded.
AIDAX_MAX_INPUTS = 3
AIDAX_HIDDEN_SIZES = (8, 12, 16, 20, 24, 32, 40, 64, 80)
AIDAX_WARMUP_SAMPLES = 2048
# The rate ampcap renders an AIDA-X file at when its metadata does not give one.
AIDAX_DEFAULT_RATE_HZ = 48000
EXPORTS_DIR = "exports"
INDEX_NAME = "index.json"
_GATES = {"lstm": 4, "gru": 3}


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


@dataclass(frozen=True)
class ExportResult:
    """One file written: its path, format, the knob setting folded in (dial values) and warnings."""

    path: Path
    format: str
    folded_knobs: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# From a torch model to arrays, and knob folding


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
    if arch not in _GATES:
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


def fold_knobs(weights: RecurrentWeights, values: Mapping[str, float]) -> RecurrentWeights:
    """Fold knob inputs into the first layer's bias for one setting (DAFx-19 ``b_cond``).

    A knob held at ``k`` contributes ``W_ih[:, j] * k`` to every step's pre-activation, which is
    the same as adding it to ``b_ih``; its input column is then dropped. Exact, not approximate.

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
                f"{name}={value:g} is outside the knob's range {knob.minimum:g}..{knob.maximum:g}; "
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


# ---------------------------------------------------------------------------------------------
# The three layouts


def _floats(array: np.ndarray) -> list[Any]:
    return np.asarray(array, dtype=np.float64).tolist()


def _ampcap_block(
    weights: RecurrentWeights, knobs: Sequence[Knob], sample_rate_hz: int
) -> dict[str, Any]:
    by_name = {k.name: k for k in knobs}
    folded = dict(weights.folded)

    def entry(name: str) -> dict[str, Any]:
        knob = by_name.get(name, Knob(name, 0.0, 1.0))
        value = None
        if name in folded:
            value = knob.minimum + folded[name] * (knob.maximum - knob.minimum)
        return {"name": name, "minimum": knob.minimum, "maximum": knob.maximum, "value": value}

    return {
        "version": __version__,
        "sample_rate_hz": int(sample_rate_hz),
        "knob_inputs": [entry(n) for n in weights.knob_inputs],
        "folded_knobs": [entry(n) for n, _ in weights.folded],
    }


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
    from ampcap.train.nam_metadata import nam_playback

    playback = nam_playback(weights)
    flat: list[np.ndarray] = []
    for layer, (hidden_state, cell_state) in zip(
        weights.layers, playback.initial_state, strict=True
    ):
        flat.append(np.concatenate([layer.weight_ih, layer.weight_hh], axis=1).reshape(-1))
        flat.append(layer.bias_ih + layer.bias_hh)
        flat.append(hidden_state)
        flat.append(cell_state)
    flat.append(weights.head_weight)
    flat.append(np.array([weights.head_bias]))
    meta = metadata or NamMetadata()
    stamp = (now or _dt.datetime.now(_dt.timezone.utc)).astimezone(_dt.timezone.utc)
    meta_doc: dict[str, Any] = {
        key: getattr(meta, key)
        for key in ("name", "modeled_by", "gear_make", "gear_model", "gear_type", "tone_type")
        if getattr(meta, key) is not None
    }
    meta_doc["date"] = {
        "year": stamp.year,
        "month": stamp.month,
        "day": stamp.day,
        "hour": stamp.hour,
        "minute": stamp.minute,
        "second": stamp.second,
    }
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
        "weights": _floats(np.concatenate(flat)),
        "sample_rate": int(sample_rate_hz),
        "metadata": meta_doc,
        "ampcap": _ampcap_block(weights, knobs, sample_rate_hz),
    }


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
            f"({20 * math.log10(PROTEUS_INPUT_BOOST):+.1f} dB) before a model with a knob, so it "
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
    """The CoreAudioML/Proteus JSON document (``model_data`` + ``state_dict``)."""
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
            "rec.weight_ih_l0": _floats(layer.weight_ih),
            "rec.weight_hh_l0": _floats(layer.weight_hh),
            "rec.bias_ih_l0": _floats(layer.bias_ih),
            "rec.bias_hh_l0": _floats(layer.bias_hh),
            "lin.weight": _floats(weights.head_weight.reshape(1, -1)),
            "lin.bias": [float(weights.head_bias)],
        },
        "ampcap": _ampcap_block(weights, knobs, sample_rate_hz),
    }


def _torch_gru_to_rtneural(rows: np.ndarray, hidden: int) -> np.ndarray:
    """Reorder GRU gate blocks along axis 0 from PyTorch's (r, z, n) to RTNeural's (z, r, h)."""
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


def aidax_document(
    weights: RecurrentWeights, sample_rate_hz: int, knobs: Sequence[Knob] = ()
) -> dict[str, Any]:
    """The AIDA-X/RTNeural JSON document (Keras-style ``layers``)."""
    hidden = weights.hidden_size
    layers = []
    for layer in weights.layers:
        if weights.unit == "lstm":
            # Keras' LSTM gate order (i, f, c, o) is PyTorch's (i, f, g, o): transpose only.
            kernel = layer.weight_ih.T
            recurrent = layer.weight_hh.T
            bias: list[Any] = _floats(layer.bias_ih + layer.bias_hh)
        else:
            kernel = _torch_gru_to_rtneural(layer.weight_ih, hidden).T
            recurrent = _torch_gru_to_rtneural(layer.weight_hh, hidden).T
            # Two rows: input bias, recurrent bias; they cannot be summed for the candidate gate
            # because the reset gate multiplies the recurrent part only.
            bias = [
                _floats(_torch_gru_to_rtneural(layer.bias_ih, hidden)),
                _floats(_torch_gru_to_rtneural(layer.bias_hh, hidden)),
            ]
        layers.append(
            {
                "type": weights.unit,
                "activation": "",
                "shape": [None, None, hidden],
                "weights": [_floats(kernel), _floats(recurrent), bias],
            }
        )
    layers.append(
        {
            "type": "dense",
            "activation": "",
            "shape": [None, None, 1],
            "weights": [_floats(weights.head_weight.reshape(-1, 1)), [float(weights.head_bias)]],
        }
    )
    return {
        "in_shape": [None, None, weights.input_size],
        "in_skip": int(weights.skip),
        "layers": layers,
        "metadata": {"samplerate": int(sample_rate_hz), "source": f"ampcap {__version__}"},
        "ampcap": _ampcap_block(weights, knobs, sample_rate_hz),
    }


# ---------------------------------------------------------------------------------------------
# Reading exported files back (for `ampcap render` and the tests)


@dataclass(frozen=True)
class ExportedModel:
    """A model file read back: its weights, format, rate and knob description.

    ``sample_rate_hz`` is ``None`` when the file does not say (a CoreAudioML file from elsewhere).
    ``knobs`` describes ``weights.knob_inputs`` (unnamed inputs of foreign files become
    ``knob1``... with range 0..1); ``folded_knobs`` the dial values folded in at export.
    """

    weights: RecurrentWeights
    format: str
    sample_rate_hz: int | None
    knobs: tuple[Knob, ...]
    folded_knobs: dict[str, float]


def _matrix(value: Any, shape: tuple[int, ...], what: str, path: Path) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: {what} is not a numeric array ({exc}).") from exc
    if array.shape != shape:
        raise ModelFormatError(
            f"{path}: {what} has shape {array.shape}, expected {shape}; the file is damaged or "
            "not of the format it claims."
        )
    if not np.isfinite(array).all():
        raise ModelFormatError(f"{path}: {what} holds NaN or infinite values.")
    return array


def _knob_description(
    document: Mapping[str, Any], inputs: int
) -> tuple[tuple[str, ...], tuple[Knob, ...], dict[str, float], int | None]:
    block = document.get("ampcap")
    if isinstance(block, Mapping) and len(block.get("knob_inputs", ())) == inputs:
        knobs = tuple(
            Knob(str(k["name"]), float(k["minimum"]), float(k["maximum"]))
            for k in block["knob_inputs"]
        )
        folded = {str(k["name"]): float(k["value"]) for k in block.get("folded_knobs", ())}
        rate = block.get("sample_rate_hz")
        return tuple(k.name for k in knobs), knobs, folded, int(rate) if rate else None
    knobs = tuple(Knob(f"knob{i + 1}", 0.0, 1.0) for i in range(inputs))
    return tuple(k.name for k in knobs), knobs, {}, None


def _read_nam(document: Mapping[str, Any], path: Path) -> ExportedModel:
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
        inputs, hidden, count = (
            int(config["input_size"]),
            int(config["hidden_size"]),
            int(config["num_layers"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: the .nam config lacks {exc}.") from exc
    raw = document.get("weights")
    if not isinstance(raw, list):
        raise ModelFormatError(f"{path}: 'weights' is not a list of numbers.")
    flat = _matrix(raw, (len(raw),), "weights", path)
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
    at = 0

    def take(n: int) -> np.ndarray:
        nonlocal at
        at += n
        return flat[at - n : at]

    layers = []
    states: list[tuple[np.ndarray, np.ndarray]] = []
    for k in range(count):
        width = inputs if k == 0 else hidden
        matrix = take(4 * hidden * (width + hidden)).reshape(4 * hidden, width + hidden)
        bias = take(4 * hidden)
        states.append((take(hidden).copy(), take(hidden).copy()))
        layers.append(
            LayerWeights(matrix[:, :width], matrix[:, width:], bias, np.zeros(4 * hidden))
        )
    head_weight = take(hidden)
    head_bias = float(take(1)[0])
    names, knobs, folded, rate = _knob_description(document, inputs - 1)
    initial = tuple(states) if any(np.any(h) or np.any(c) for h, c in states) else ()
    weights = RecurrentWeights(
        "lstm", hidden, False, tuple(layers), head_weight, head_bias, names, initial_state=initial
    )
    file_rate = document.get("sample_rate")
    return ExportedModel(weights, "nam", int(file_rate) if file_rate else rate, knobs, folded)


def _read_proteus(document: Mapping[str, Any], path: Path) -> ExportedModel:
    data, state = document.get("model_data", {}), document.get("state_dict", {})
    try:
        unit = str(data["unit_type"]).lower()
        inputs, hidden = int(data["input_size"]), int(data["hidden_size"])
        skip = bool(int(data.get("skip", 0)))
        layers_count = int(data.get("num_layers", 1))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: model_data lacks or garbles {exc}.") from exc
    if unit not in _GATES or layers_count != 1 or int(data.get("output_size", 1)) != 1:
        raise ModelFormatError(
            f"{path} is a CoreAudioML model ampcap cannot run ({unit}, {layers_count} layer(s)); "
            "it reads one LSTM or GRU layer with one output."
        )
    rows = _GATES[unit] * hidden
    try:
        layer = LayerWeights(
            _matrix(state["rec.weight_ih_l0"], (rows, inputs), "rec.weight_ih_l0", path),
            _matrix(state["rec.weight_hh_l0"], (rows, hidden), "rec.weight_hh_l0", path),
            _matrix(state["rec.bias_ih_l0"], (rows,), "rec.bias_ih_l0", path),
            _matrix(state["rec.bias_hh_l0"], (rows,), "rec.bias_hh_l0", path),
        )
        head = _matrix(state["lin.weight"], (1, hidden), "lin.weight", path).reshape(-1)
        head_bias = float(_matrix(state["lin.bias"], (1,), "lin.bias", path)[0])
    except KeyError as exc:
        raise ModelFormatError(f"{path}: state_dict lacks {exc}.") from exc
    names, knobs, folded, rate = _knob_description(document, inputs - 1)
    weights = RecurrentWeights(unit, hidden, skip, (layer,), head, head_bias, names)
    return ExportedModel(weights, "proteus", rate, knobs, folded)


def _read_aidax(document: Mapping[str, Any], path: Path) -> ExportedModel:
    try:
        inputs = int(document["in_shape"][-1])
        skip = bool(int(document.get("in_skip", 0)))
        raw_layers = list(document["layers"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelFormatError(f"{path}: the RTNeural header lacks or garbles {exc}.") from exc
    if len(raw_layers) < 2 or raw_layers[-1].get("type") != "dense":
        raise ModelFormatError(
            f"{path}: expected recurrent layers followed by one dense layer; got "
            f"{[layer.get('type') for layer in raw_layers]}."
        )
    units = {layer.get("type") for layer in raw_layers[:-1]}
    if len(units) != 1 or not units <= set(_GATES):
        raise ModelFormatError(
            f"{path}: ampcap runs stacks of one kind of lstm or gru layer; got {sorted(units)}."
        )
    unit = units.pop()
    if any(layer.get("activation") for layer in raw_layers):
        raise ModelFormatError(f"{path}: layers with activations are not an ampcap model.")
    hidden = int(raw_layers[0]["shape"][-1])
    rows = _GATES[unit] * hidden
    layers = []
    width = inputs
    for k, raw in enumerate(raw_layers[:-1]):
        kernel = _matrix(raw["weights"][0], (width, rows), f"layer {k} kernel", path).T
        recurrent = _matrix(raw["weights"][1], (hidden, rows), f"layer {k} recurrent", path).T
        if unit == "lstm":
            bias = _matrix(raw["weights"][2], (rows,), f"layer {k} bias", path)
            layers.append(LayerWeights(kernel, recurrent, bias, np.zeros(rows)))
        else:
            bias = _matrix(raw["weights"][2], (2, rows), f"layer {k} bias", path)
            # RTNeural (z, r, h) back to PyTorch (r, z, n): swapping the first two blocks again.
            layers.append(
                LayerWeights(
                    _torch_gru_to_rtneural(kernel, hidden),
                    _torch_gru_to_rtneural(recurrent, hidden),
                    _torch_gru_to_rtneural(bias[0], hidden),
                    _torch_gru_to_rtneural(bias[1], hidden),
                )
            )
        width = hidden
    dense = raw_layers[-1]
    head = _matrix(dense["weights"][0], (hidden, 1), "dense kernel", path).reshape(-1)
    head_bias = float(_matrix(dense["weights"][1], (1,), "dense bias", path)[0])
    names, knobs, folded, rate = _knob_description(document, inputs - 1)
    metadata = document.get("metadata") or {}
    file_rate = metadata.get("samplerate") if isinstance(metadata, Mapping) else None
    weights = RecurrentWeights(unit, hidden, skip, tuple(layers), head, head_bias, names)
    return ExportedModel(
        weights, "aidax", int(file_rate) if file_rate else AIDAX_DEFAULT_RATE_HZ, knobs, folded
    )


def _what_failed(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"the entry {exc.args[0]!r} is missing"
    if isinstance(exc, IndexError):
        return "a list is shorter than the format needs"
    if isinstance(exc, (TypeError, AttributeError)):
        return (
            "an entry holds the wrong kind of value (a list, text or number where another is due)"
        )
    return f"a value cannot be read ({exc})"


def _checked(model: ExportedModel, path: Path) -> ExportedModel:
    """Refuse what a file says that no model can be: a rate, knob range or size out of reach."""
    rate = model.sample_rate_hz
    if rate is not None and not 1000 <= rate <= 1_000_000:
        raise ModelFormatError(f"{path} says its sample rate is {rate} Hz; the file is damaged.")
    if model.weights.hidden_size < 1:
        raise ModelFormatError(f"{path} has hidden size {model.weights.hidden_size}; damaged.")
    for knob in model.knobs:
        if not (math.isfinite(knob.minimum) and math.isfinite(knob.maximum)):
            raise ModelFormatError(f"{path}: knob {knob.name!r} has a range that is not finite.")
    if not all(math.isfinite(v) for v in model.folded_knobs.values()):
        raise ModelFormatError(f"{path}: a folded knob value is not finite.")
    return model


def read_exported(path: str | Path) -> ExportedModel:
    """Read a ``.nam``, CoreAudioML/Proteus or AIDA-X/RTNeural JSON file (told apart by its keys).

    Raises
    ------
    ModelFormatError
        Not JSON, none of the three layouts, or arrays of the wrong shape (the message names
        the array and both shapes).
    """
    path = Path(path)
    try:
        document = read_json(path, "a .nam, Proteus or AIDA-X model file")
    except ModelFormatError:
        raise
    except AmpcapError as exc:
        raise ModelFormatError(str(exc)) from exc
    if not isinstance(document, Mapping):
        raise ModelFormatError(f"{path} is JSON but not a model file (no object at the top).")
    readers = (
        (("architecture", "weights"), _read_nam),
        (("model_data", "state_dict"), _read_proteus),
        (("in_shape", "layers"), _read_aidax),
    )
    for keys, reader in readers:
        if all(key in document for key in keys):
            try:
                return _checked(reader(document, path), path)
            except ModelFormatError:
                raise
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
                # A file damaged where the reader does not look twice: say what, not where.
                raise ModelFormatError(
                    f"{path} is damaged: {_what_failed(exc)}. Export it again from its run."
                ) from exc
    raise ModelFormatError(
        f"{path} is none of the model layouts ampcap reads: a .nam file (architecture, weights), "
        "a CoreAudioML/Proteus file (model_data, state_dict) or an AIDA-X/RTNeural file "
        "(in_shape, layers)."
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
# Writing files


def format_setting(values: Mapping[str, float]) -> str:
    """``{"isf": 3.3}`` -> ``"isf=3.3"`` (file names and messages); empty for no knobs."""
    return ",".join(f"{name}={value:g}" for name, value in values.items())


def default_file_name(stem: str, fmt: str, setting: Mapping[str, float]) -> str:
    """``demo-isf=3.3.nam``, ``demo-proteus.json``, ``demo-aidax.json``..."""
    label = f"-{format_setting(setting)}" if setting else ""
    return f"{stem}{label}.nam" if fmt == "nam" else f"{stem}{label}-{fmt}.json"


def export_model(
    model: Any,
    checkpoint: Mapping[str, Any],
    fmt: str,
    path: str | Path,
    setting: Mapping[str, float] | None = None,
    metadata: NamMetadata | None = None,
) -> ExportResult:
    """Write one model file.

    Parameters
    ----------
    model : torch.nn.Module
        The trained model (from :func:`ampcap.train.checkpoint.load_model`).
    checkpoint : mapping
        Its checkpoint: ``knobs`` (name, minimum, maximum) and ``sample_rate_hz`` are used.
    fmt : {"nam", "proteus", "aidax"}
    path : path-like
        The file to write (replaced atomically).
    setting : mapping of str to float, optional
        Dial values of knobs to fold into the bias. ``.nam`` needs every knob; Proteus and AIDA-X
        keep unnamed knobs as inputs (the player's own knobs).
    metadata : NamMetadata, optional
        ``.nam`` only.

    Raises
    ------
    UsageError
        Unknown format, unknown knob, value outside the knob's range, a missing knob for ``.nam``,
        or a ``path`` ampcap must keep (a checkpoint, a manifest: see
        :func:`ampcap.outputs.check_output_file`).
    ModelFormatError
        The model cannot be written in this format (GRU or skip to ``.nam``, WaveNet...).
    """
    if fmt not in FORMATS:
        raise UsageError(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")
    path = Path(path)
    check_output_file(path, option="--out", models_ok=True)
    knobs = tuple(
        Knob(str(k["name"]), float(k["minimum"]), float(k["maximum"]))
        for k in checkpoint.get("knobs", ())
    )
    sample_rate_hz = int(checkpoint["sample_rate_hz"])
    setting = dict(setting or {})
    weights = weights_from_model(model, [k.name for k in knobs])
    if fmt == "nam":
        # Refuse what .nam cannot hold before asking for knob values that would not help.
        check_nam_compatible(weights)
    normalised = normalised_setting(knobs, setting, require_all=fmt == "nam")
    folded = fold_knobs(weights, normalised)
    if fmt == "nam":
        document = nam_document(folded, sample_rate_hz, metadata, knobs)
        notes: list[str] = []
    elif fmt == "proteus":
        document = proteus_document(folded, sample_rate_hz, knobs)
        notes = proteus_warnings(folded, sample_rate_hz)
    else:
        document = aidax_document(folded, sample_rate_hz, knobs)
        notes = aidax_warnings(folded, sample_rate_hz)
    atomic_write_json(path, document)
    return ExportResult(path, fmt, setting, tuple(notes))


def _dataset_settings(
    run_dir: Path, checkpoint: Mapping[str, Any], knobs: Sequence[Knob]
) -> list[dict[str, float]]:
    """The knob settings the model was trained on, read from its dataset; [] if unreadable."""
    from ampcap.schema.dataset import load_dataset

    dataset = checkpoint.get("dataset")
    folder = dataset.get("path") if isinstance(dataset, Mapping) else None
    if not folder and (run_dir / "run.json").is_file():
        try:
            document = read_json(run_dir / "run.json", "a run manifest")
            folder = document.get("dataset_path") if isinstance(document, dict) else None
        except AmpcapError:
            folder = None
    if not folder or not isinstance(folder, str):
        return []
    try:
        manifest = load_dataset(folder)
    except AmpcapError:
        return []
    names = {k.name for k in knobs}
    settings = [dict(s) for s in (*manifest.settings, *manifest.heldout) if set(s) == names]
    unique = {tuple(sorted(s.items())): s for s in settings}
    return [unique[key] for key in sorted(unique)]


def write_exports(
    run_dir: str | Path,
    knobs: dict[str, float] | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write every player format the run's model allows into ``runs/<name>/exports/``.

    A knob-conditioned model gives one ``.nam`` per knob setting (the knobs folded into the
    bias): the setting in ``knobs`` when given, otherwise each setting of the run's dataset
    (held-out ones included), or the centre of each knob's range when the dataset is gone.
    Proteus and AIDA-X files keep the knobs as inputs (the player's own knobs) unless ``knobs``
    is given, in which case that setting is folded in as for ``.nam``. A model without knobs
    gives one file per format. WaveNet and MLP models have no player format: nothing is written.

    ``exports/index.json`` lists the files, formats, settings and warnings.

    Parameters
    ----------
    run_dir : path-like
        The run folder holding ``model.pt``.
    knobs : dict of str to float, optional
        Dial values (each knob's own range), e.g. ``{"isf": 3.3}``.
    warn : callable, optional
        Receives each warning (e.g. Proteus needs hidden size 40 with skip).

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    from ampcap.train.checkpoint import load_model

    run_dir = Path(run_dir)
    model, checkpoint = load_model(run_dir / "model.pt")
    out_dir = run_dir / EXPORTS_DIR
    stem = run_dir.resolve().name
    knob_specs = [
        Knob(str(k["name"]), float(k["minimum"]), float(k["maximum"]))
        for k in checkpoint.get("knobs", ())
    ]
    index: dict[str, Any] = {"model": "model.pt", "files": [], "skipped": []}
    results: list[ExportResult] = []
    if not getattr(model.config, "recurrent", False):
        index["skipped"].append(
            {"format": "all", "reason": f"{model.config.arch} models have no player format"}
        )
    else:
        if knobs is not None:
            nam_settings = [dict(knobs)]
        elif knob_specs:
            nam_settings = _dataset_settings(run_dir, checkpoint, knob_specs) or [
                {k.name: (k.minimum + k.maximum) / 2 for k in knob_specs}
            ]
        else:
            nam_settings = [{}]
        try:
            for setting in nam_settings:
                path = out_dir / default_file_name(stem, "nam", setting)
                results.append(
                    export_model(
                        model,
                        checkpoint,
                        "nam",
                        path,
                        setting,
                        NamMetadata(name=f"{stem} {format_setting(setting)}".strip()),
                    )
                )
        except ModelFormatError as exc:
            index["skipped"].append({"format": "nam", "reason": str(exc)})
        player_setting = dict(knobs or {})
        for fmt in ("proteus", "aidax"):
            path = out_dir / default_file_name(stem, fmt, player_setting)
            try:
                results.append(export_model(model, checkpoint, fmt, path, player_setting))
            except ModelFormatError as exc:
                index["skipped"].append({"format": fmt, "reason": str(exc)})
    for result in results:
        index["files"].append(
            {
                "file": result.path.name,
                "format": result.format,
                "knobs": result.folded_knobs,
                "warnings": list(result.warnings),
            }
        )
        for note in result.warnings:
            if warn is not None:
                warn(f"{result.path.name}: {note}")
    atomic_write_json(out_dir / INDEX_NAME, index)
    return [r.path for r in results]
