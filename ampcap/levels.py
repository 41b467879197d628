"""Decibels, one way for every stage.

Levels are amplitudes relative to full scale (1.0), so ``dbfs(1.0) == 0.0`` and a sine that
touches full scale has an RMS of -3.01 dBFS. Two conventions exist for silence, and each caller
picks one by name:

- on screen and in arithmetic, silence is ``-inf`` dB (:func:`dbfs` with the default floor);
- in files, which are JSON and cannot hold ``-inf``, silence is :data:`FLOOR_DB` (-200 dB), far
  below anything a 32-bit float recording can hold (:func:`dbfs` with ``floor=FLOOR_DB``).
"""

from __future__ import annotations

import math

#: The level written to files for silence: finite, so JSON can hold it.
FLOOR_DB = -200.0


def dbfs(amplitude: float, floor: float = -math.inf) -> float:
    """An amplitude (linear, full scale 1.0) in dB, never below ``floor``.

    Parameters
    ----------
    amplitude : float
        A peak or RMS value, 0 or more.
    floor : float, default -inf
        The value returned for silence and for anything quieter than the floor.
    """
    if not amplitude > 0:
        return floor
    return max(20.0 * math.log10(amplitude), floor)


def ratio_db(numerator: float, denominator: float, floor: float = -math.inf) -> float:
    """``20 log10(numerator / denominator)`` for two amplitudes; ``floor`` where it is undefined."""
    if not (numerator > 0 and denominator > 0):
        return floor
    return max(20.0 * math.log10(numerator / denominator), floor)


def power_db(power: float, floor: float = -math.inf) -> float:
    """A power (a mean square, or a ratio of powers) in dB: ``10 log10(power)``."""
    if not power > 0:
        return floor
    return max(10.0 * math.log10(power), floor)


def amplitude(db: float) -> float:
    """Inverse of :func:`dbfs`: the linear amplitude of ``db``."""
    return 10.0 ** (db / 20.0)
