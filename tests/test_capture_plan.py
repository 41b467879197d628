"""Knob plans: equally spaced steps, grids of several knobs, Latin hypercubes with corners."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ampcap.capture.plan import KnobRange, grid_plan, lhs_plan, make_plan, parse_range
from ampcap.errors import UsageError

ISF = KnobRange("isf", 0.0, 10.0)
GAIN = KnobRange("gain", 2.0, 8.0)


def test_five_steps_over_0_to_10() -> None:
    assert grid_plan([ISF], 5) == [{"isf": v} for v in (0.0, 2.5, 5.0, 7.5, 10.0)]


def test_three_steps_over_a_negative_range() -> None:
    assert grid_plan([KnobRange("trim", -6.0, 6.0)], 3) == [{"trim": v} for v in (-6.0, 0.0, 6.0)]


def test_two_knobs_make_a_grid_with_the_last_knob_fastest() -> None:
    plan = grid_plan([ISF, GAIN], 3)
    assert len(plan) == 9
    assert plan[:3] == [{"isf": 0.0, "gain": g} for g in (2.0, 5.0, 8.0)]
    assert {tuple(p.values()) for p in plan} == set(
        itertools.product((0.0, 5.0, 10.0), (2.0, 5.0, 8.0))
    )


def test_values_are_rounded_to_hundredths() -> None:
    assert grid_plan([ISF], 4) == [{"isf": v} for v in (0.0, 3.33, 6.67, 10.0)]


def test_single_value_range_and_ambiguous_single_step() -> None:
    assert grid_plan([KnobRange("isf", 5.0, 5.0)], 1) == [{"isf": 5.0}]
    with pytest.raises(UsageError, match="--steps 1 over isf's range 0:10 is ambiguous"):
        grid_plan([ISF], 1)
    with pytest.raises(UsageError, match="--steps 0 must be at least 1"):
        grid_plan([ISF], 0)


@pytest.mark.parametrize(("knobs", "takes"), [([ISF], 7), ([ISF, GAIN], 10), ([ISF, GAIN], 4)])
def test_lhs_includes_every_corner_and_is_latin(knobs: list[KnobRange], takes: int) -> None:
    plan = lhs_plan(knobs, takes, seed=0)
    assert len(plan) == takes
    corners = [
        dict(zip([k.name for k in knobs], c, strict=True))
        for c in itertools.product(*[(k.minimum, k.maximum) for k in knobs])
    ]
    for corner in corners:
        assert corner in plan
    inner = [p for p in plan if p not in corners]
    for knob in knobs:
        values = np.array([p[knob.name] for p in inner])
        assert np.all((values >= knob.minimum) & (values <= knob.maximum))
        # Latin: one value in each of the len(inner) equal strata of the range.
        strata = np.floor(
            (values - knob.minimum) / (knob.maximum - knob.minimum) * len(inner) - 1e-9
        ).astype(int)
        assert sorted(np.clip(strata, 0, len(inner) - 1)) == list(range(len(inner)))


def test_lhs_is_seeded() -> None:
    assert lhs_plan([ISF, GAIN], 9, seed=1) == lhs_plan([ISF, GAIN], 9, seed=1)
    assert lhs_plan([ISF, GAIN], 9, seed=1) != lhs_plan([ISF, GAIN], 9, seed=2)


def test_lhs_needs_room_for_the_corners() -> None:
    with pytest.raises(UsageError, match="--takes 3 is fewer than the 4 corners"):
        lhs_plan([ISF, GAIN], 3)


def test_make_plan_checks_its_options() -> None:
    assert len(make_plan([ISF], "grid", steps=None)) == 5
    with pytest.raises(UsageError, match="--plan lhs needs --takes"):
        make_plan([ISF], "lhs")
    with pytest.raises(UsageError, match="--takes goes with --plan lhs"):
        make_plan([ISF], "grid", takes=4)
    with pytest.raises(UsageError, match="--knob is repeated"):
        make_plan([ISF, ISF], "grid", steps=2)
    with pytest.raises(UsageError, match="No knob to record"):
        make_plan([], "grid", steps=2)


@pytest.mark.parametrize(("text", "expected"), [("0:10", (0.0, 10.0)), ("-3.5:2", (-3.5, 2.0))])
def test_parse_range(text: str, expected: tuple[float, float]) -> None:
    assert parse_range(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10", "not a range like 0:10"),
        ("a:b", "not a range like 0:10"),
        ("10:0", "minimum above its maximum"),
    ],
)
def test_parse_range_refuses(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_range(text)
