"""The three player formats side by side: write a document in any of them, read any of them back.

A format is chosen by name when writing (``nam``, ``proteus``, ``aidax``) and recognised by its
top-level keys when reading. Each format's layout lives in its own module:
:mod:`ampcap.train.nam`, :mod:`ampcap.train.proteus`, :mod:`ampcap.train.aidax`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ampcap.errors import AmpcapError, ModelFormatError
from ampcap.files import read_json
from ampcap.schema.session import Knob
from ampcap.train.aidax import aidax_document, aidax_warnings, read_aidax
from ampcap.train.model_file import ExportedModel
from ampcap.train.nam import NamMetadata, nam_document, read_nam
from ampcap.train.proteus import proteus_document, proteus_warnings, read_proteus
from ampcap.train.weights import RecurrentWeights

FORMATS = ("nam", "proteus", "aidax")
# Each layout's top-level keys, and its reader; a file is read by the first whose keys it has.
_READERS = (
    (("architecture", "weights"), read_nam),
    (("model_data", "state_dict"), read_proteus),
    (("in_shape", "layers"), read_aidax),
)


def player_document(
    fmt: str,
    weights: RecurrentWeights,
    sample_rate_hz: int,
    knobs: Sequence[Knob],
    metadata: NamMetadata | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The JSON document of ``weights`` in format ``fmt`` and what its players will do otherwise.

    Parameters
    ----------
    fmt : {"nam", "proteus", "aidax"}
    weights : RecurrentWeights
        Knobs to fold already folded (``.nam``: all of them).
    sample_rate_hz : int
        The rate the model was trained at.
    knobs : sequence of Knob
        The checkpoint's knobs (their ranges are written in the ``"ampcap"`` object).
    metadata : NamMetadata, optional
        ``.nam`` only.

    Returns
    -------
    (dict, list of str)
        The document and the warnings (``.nam`` has none).
    """
    if fmt == "nam":
        return nam_document(weights, sample_rate_hz, metadata, knobs), []
    if fmt == "proteus":
        document = proteus_document(weights, sample_rate_hz, knobs)
        return document, proteus_warnings(weights, sample_rate_hz)
    document = aidax_document(weights, sample_rate_hz, knobs)
    return document, aidax_warnings(weights, sample_rate_hz)


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
    for keys, reader in _READERS:
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
