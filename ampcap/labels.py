"""Knob settings as text, one way for every stage.

A setting is a mapping from knob name to position, ``{"isf": 2.5, "gain": 5.0}``. Its *label*
is ``"isf=2.5,gain=5"``: knobs in the order given, joined by commas, values with ``:g``. Labels
name take files (``takes/isf=2.5.wav``), dataset rows and export files, so the format is part of
ampcap's file formats and must not change. Prose uses :func:`describe`, which puts a space after
each comma.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: A knob name: a letter or underscore, then letters, digits, ``_`` or ``-``.
KNOB_NAME = r"[A-Za-z_][\w-]*"
#: A knob position as written on the command line or in a label (``5``, ``-2.5``, ``1e-3``).
KNOB_VALUE = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_ASSIGNMENT = re.compile(rf"\s*({KNOB_NAME})\s*=\s*({KNOB_VALUE})\s*")


def knob_label(knobs: Mapping[str, float]) -> str:
    """``{"isf": 2.5, "gain": 5.0}`` -> ``"isf=2.5,gain=5"`` (file names, manifests, tables)."""
    return ",".join(f"{name}={value:g}" for name, value in knobs.items())


def describe(knobs: Mapping[str, float]) -> str:
    """``{"isf": 2.5, "gain": 5.0}`` -> ``"isf=2.5, gain=5"`` (sentences)."""
    return ", ".join(f"{name}={value:g}" for name, value in knobs.items())


def parse_assignment(text: str) -> tuple[str, float] | None:
    """``"isf=5"`` or ``" isf = 5 "`` -> ``("isf", 5.0)``; ``None`` when it is not KNOB=VALUE."""
    match = _ASSIGNMENT.fullmatch(text)
    return (match.group(1), float(match.group(2))) if match else None


def parse_label(text: str) -> dict[str, float] | None:
    """Inverse of :func:`knob_label`: ``"isf=2.5,gain=5"`` -> ``{"isf": 2.5, "gain": 5.0}``.

    Returns ``None`` when any comma-separated part is not KNOB=VALUE; callers raise the error
    their stage speaks.
    """
    knobs: dict[str, float] = {}
    for part in text.split(","):
        parsed = parse_assignment(part)
        if parsed is None:
            return None
        knobs[parsed[0]] = parsed[1]
    return knobs
