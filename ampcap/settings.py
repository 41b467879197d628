"""Knob settings compared and ordered, one way for every stage.

A setting maps knob names to dial values, ``{"isf": 2.5}``. Two settings are the same when they
name the same knobs with values equal to within 1e-9 (dial values come from text and JSON, where
2.5 may arrive as 2.4999999999). Neighbours are settings that differ in one knob only: the gaps
a model interpolates across.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

#: Dial values closer than this are the same setting.
SAME_SETTING_TOLERANCE = 1e-9


def same_setting(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    """True when ``a`` and ``b`` name the same knobs at the same values (within 1e-9)."""
    return a.keys() == b.keys() and all(
        math.isclose(a[k], b[k], abs_tol=SAME_SETTING_TOLERANCE) for k in a
    )


def runs_along_knobs(
    settings: Sequence[Mapping[str, float]], names: Sequence[str]
) -> list[tuple[str, list[int]]]:
    """Runs of settings along one knob with every other knob held.

    Returns
    -------
    list of (knob name, indices into ``settings`` sorted by that knob's value)
        One entry per knob and combination of the other knobs' values that has two or more
        settings; neighbouring indices in a run are the gaps along that knob.
    """
    runs = []
    for name in names:
        groups: dict[tuple, list[int]] = {}
        for index, setting in enumerate(settings):
            held = tuple((other, setting[other]) for other in names if other != name)
            groups.setdefault(held, []).append(index)
        for indices in groups.values():
            if len(indices) > 1:
                runs.append((name, sorted(indices, key=lambda i: settings[i][name])))
    return runs
