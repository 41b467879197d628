"""Options shared by several commands, defined once, and the one type for numeric options."""

from __future__ import annotations

import math
from typing import Any

import click


class Number(click.ParamType):
    """A finite number within bounds; anything else is refused at parse time, naming the option.

    ``nan``, ``inf`` and ``-inf`` are never accepted (``float()`` would take them), nor a value
    below ``minimum`` (or equal to it with ``above=True``) or above ``maximum`` (or equal to it
    with ``below=True``). click's message then reads "Invalid value for '--minutes': ...", and
    the exit status is 2.

    Parameters
    ----------
    minimum, maximum : float, optional
        The bounds, in the option's own unit.
    above, below : bool, default False
        Exclude the bound itself.
    integer : bool, default False
        Whole numbers only; the value is an ``int``.
    """

    def __init__(
        self,
        minimum: float | None = None,
        maximum: float | None = None,
        *,
        above: bool = False,
        below: bool = False,
        integer: bool = False,
    ) -> None:
        self.minimum, self.maximum = minimum, maximum
        self.above, self.below, self.integer = above, below, integer
        self.name = "integer" if integer else "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value).strip()
        try:
            number = int(text) if self.integer else float(text)
        except ValueError:
            kind = "a whole number" if self.integer else "a number"
            self.fail(f"{text!r} is not {kind}.", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{text!r} is not a finite number.", param, ctx)
        low, high = self.minimum, self.maximum
        if low is not None and (number < low or (self.above and number == low)):
            self.fail(
                f"must be {'above' if self.above else 'at least'} {low:g}, not {text}.", param, ctx
            )
        if high is not None and (number > high or (self.below and number == high)):
            self.fail(
                f"must be {'below' if self.below else 'at most'} {high:g}, not {text}.", param, ctx
            )
        return number


def positive() -> Number:
    """A number above 0 (a duration, a rate)."""
    return Number(0, above=True)


def count(minimum: int = 1, maximum: int | None = None) -> Number:
    """A whole number of things, at least ``minimum`` (default 1)."""
    return Number(minimum, maximum, integer=True)


json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document with the results on stdout (progress stays on stderr).",
)
seed_option = click.option(
    "--seed",
    type=count(0, 2**32 - 1),
    default=0,
    show_default=True,
    help="Random seed; same seed, same result.",
)
