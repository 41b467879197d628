"""Knob plans: which knob settings a session records, in which order.

* ``grid``: ``steps`` equally spaced values over each knob's range (5 steps over 0..10 give
  0, 2.5, 5, 7.5, 10); several knobs make the full grid, the last knob changing fastest.
* ``lhs``: a Latin hypercube of ``takes`` settings over all knobs (each knob's range cut into
  strata, one value per stratum) that always includes every corner of the box, so a model
  never has to extrapolate; seeded.

Values are rounded to 0.01 of a dial number, the finest anyone sets a dial to.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ampcap.errors import UsageError

PLANS = ("grid", "lhs")
_DECIMALS = 2


@dataclass(frozen=True)
class KnobRange:
    """A knob and the dial range a plan covers, ``minimum <= maximum``."""

    name: str
    minimum: float
    maximum: float


def parse_range(text: str) -> tuple[float, float]:
    """``"0:10"`` -> (0.0, 10.0); raises :class:`UsageError` naming the bad text."""
    low, sep, high = text.partition(":")
    try:
        if not sep:
            raise ValueError
        values = float(low), float(high)
        if not all(math.isfinite(v) for v in values):
            raise ValueError
    except ValueError:
        raise UsageError(f"--range {text!r} is not a range like 0:10 (minimum:maximum).") from None
    if not values[0] <= values[1]:
        raise UsageError(
            f"--range {text!r} has its minimum above its maximum; write it as {high}:{low}."
        )
    return values


def _round(value: float) -> float:
    return float(round(value, _DECIMALS)) + 0.0  # + 0.0 turns -0.0 into 0.0


def grid_plan(knobs: list[KnobRange], steps: int) -> list[dict[str, float]]:
    """Every combination of ``steps`` equally spaced values per knob.

    A knob whose range is a single value contributes that value once.

    Raises
    ------
    UsageError
        ``steps`` below 1, or 1 for a knob with a range (ambiguous: which end?).
    """
    if steps < 1:
        raise UsageError(f"--steps {steps} must be at least 1.")
    axes = []
    for knob in knobs:
        if knob.minimum == knob.maximum:
            axes.append([_round(knob.minimum)])
        elif steps == 1:
            raise UsageError(
                f"--steps 1 over {knob.name}'s range {knob.minimum:g}:"
                f"{knob.maximum:g} is ambiguous; give --range {knob.minimum:g}:"
                f"{knob.minimum:g} for one setting, or 2 or more steps."
            )
        else:
            axes.append([_round(v) for v in np.linspace(knob.minimum, knob.maximum, steps)])
    return [
        dict(zip([k.name for k in knobs], values, strict=True))
        for values in itertools.product(*axes)
    ]


def lhs_plan(knobs: list[KnobRange], takes: int, seed: int = 0) -> list[dict[str, float]]:
    """A Latin hypercube of ``takes`` settings that includes all ``2**len(knobs)`` corners.

    The corners come first; the remaining ``takes - 2**k`` settings form a Latin hypercube over
    the box (each knob's range cut into that many equal strata, one point per stratum, at a
    random place inside it, strata paired at random across knobs).

    Raises
    ------
    UsageError
        Fewer takes than corners.
    """
    corners = [
        dict(zip([k.name for k in knobs], c, strict=True))
        for c in itertools.product(*[(_round(k.minimum), _round(k.maximum)) for k in knobs])
    ]
    unique_corners = list({tuple(c.items()): c for c in corners}.values())
    if takes < len(unique_corners):
        raise UsageError(
            f"--takes {takes} is fewer than the {len(unique_corners)} corners of "
            f"{len(knobs)} knob(s); a Latin-hypercube plan always records the "
            f"corners. Give --takes {len(unique_corners)} or more."
        )
    rng = np.random.default_rng(seed)
    inner = takes - len(unique_corners)
    points = []
    if inner:
        columns = []
        for knob in knobs:
            strata = rng.permutation(inner)
            u = (strata + rng.uniform(0.0, 1.0, inner)) / inner
            columns.append([_round(knob.minimum + v * (knob.maximum - knob.minimum)) for v in u])
        points = [
            dict(zip([k.name for k in knobs], values, strict=True))
            for values in zip(*columns, strict=True)
        ]
    plan = unique_corners + points
    seen = {tuple(p.items()) for p in plan}
    if len(seen) < len(plan):
        raise UsageError(
            f"--takes {takes} over these ranges gives repeated settings at 0.01 "
            "resolution; give fewer takes or wider ranges."
        )
    return plan


def make_plan(
    knobs: list[KnobRange],
    plan: str = "grid",
    steps: int | None = None,
    takes: int | None = None,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Dispatch to :func:`grid_plan` (needs ``steps``) or :func:`lhs_plan` (needs ``takes``)."""
    if not knobs:
        raise UsageError("No knob to record: give --knob NAME (for example --knob isf).")
    names = [k.name for k in knobs]
    if len(set(names)) < len(names):
        raise UsageError(f"--knob is repeated: {', '.join(names)}. Name each knob once.")
    if plan == "grid":
        if takes is not None:
            raise UsageError("--takes goes with --plan lhs; a grid plan uses --steps.")
        return grid_plan(knobs, 5 if steps is None else steps)
    if plan == "lhs":
        if steps is not None:
            raise UsageError("--steps goes with --plan grid; a Latin-hypercube plan uses --takes.")
        if takes is None:
            raise UsageError("--plan lhs needs --takes N (how many settings to record).")
        return lhs_plan(knobs, takes, seed)
    raise UsageError(f"--plan {plan!r} is not one of {', '.join(PLANS)}.")


def knob_ranges(rig: Any, knobs: tuple[str, ...], ranges: tuple[str, ...]) -> list[KnobRange]:
    """The range each knob's plan covers: ``ranges`` holds ``"MIN:MAX"`` per knob in order or
    ``"NAME=MIN:MAX"``; a knob without one gets its dial range in the rig (or 0..10).

    Raises
    ------
    UsageError
        A range naming a knob that is not planned, more ranges than knobs, or a bad range.
    """
    from ampcap.capture.knobs import knob_settings

    named: dict[str, tuple[float, float]] = {}
    ordered: list[tuple[float, float]] = []
    for text in ranges:
        name, sep, span = text.partition("=")
        if sep:
            if name not in knobs:
                raise UsageError(
                    f"--range {text!r} names knob {name!r}, which is not among the "
                    f"--knob options ({', '.join(knobs)})."
                )
            named[name] = parse_range(span)
        else:
            ordered.append(parse_range(text))
    if len(ordered) + len(named) > len(knobs):
        raise UsageError(
            f"{len(ranges)} --range options for {len(knobs)} --knob option(s); give "
            "one --range per knob, in the same order (or as NAME=MIN:MAX)."
        )
    result = []
    unnamed = iter(ordered)
    for name in knobs:
        if name in named:
            low, high = named[name]
        else:
            settings = knob_settings(rig, name)
            low, high = next(unnamed, (settings.minimum, settings.maximum))
        result.append(KnobRange(name, low, high))
    return result
