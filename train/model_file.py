"""What the three player files (``.nam``, Proteus, AIDA-X) have in common, written and read.

Every file carries a top-level ``"ampcap"`` object (knob names, ranges, the folded setting, the
sample rate) that the players ignore and ``ampcap render`` reads back. Arrays are written as
float lists and, read back, checked for shape and finiteness before any model is built from them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ampcap import __version__
from ampcap.errors import ModelFormatError
from ampcap.schema.session import Knob
from ampcap.train.weights import RecurrentWeights, knobs_from_entries


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


def floats(array: np.ndarray) -> list[Any]:
    """An array as (nested) lists of Python floats, as JSON writes them."""
    return np.asarray(array, dtype=np.float64).tolist()


def ampcap_block(
    weights: RecurrentWeights, knobs: Sequence[Knob], sample_rate_hz: int
) -> dict[str, Any]:
    """The ``"ampcap"`` object: version, rate, open knob inputs and folded knobs (dial values)."""
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


def matrix(value: Any, shape: tuple[int, ...], what: str, path: Path) -> np.ndarray:
    """``value`` as a float64 array of exactly ``shape``, finite.

    Raises
    ------
    ModelFormatError
        Not numeric, another shape (both shapes named) or NaN/infinite values.
    """
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


def knob_description(
    document: Mapping[str, Any], inputs: int
) -> tuple[tuple[str, ...], tuple[Knob, ...], dict[str, float], int | None]:
    """Knob input names, knobs, folded dial values and rate from a file's ``"ampcap"`` object.

    A file without one (or one that does not match its ``inputs`` knob inputs) gets knobs named
    ``knob1``... of range 0..1, nothing folded and no rate.
    """
    block = document.get("ampcap")
    if isinstance(block, Mapping) and len(block.get("knob_inputs", ())) == inputs:
        knobs = knobs_from_entries(block["knob_inputs"])
        folded = {str(k["name"]): float(k["value"]) for k in block.get("folded_knobs", ())}
        rate = block.get("sample_rate_hz")
        return tuple(k.name for k in knobs), knobs, folded, int(rate) if rate else None
    knobs = tuple(Knob(f"knob{i + 1}", 0.0, 1.0) for i in range(inputs))
    return tuple(k.name for k in knobs), knobs, {}, None
