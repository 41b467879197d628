"""Where to turn the knob next: the settings worth recording after those a session holds.

A knob-conditioned model plays the settings between the recorded ones by interpolation, and it
interpolates well where the device's sound changes little from one recorded setting to the
next. So the gap to fill is the one across which the device's output changes most. Every take
of a session plays the same DI, so the change is measured directly on the aligned takes:

    step(a, b) = sum((y_b - y_a)^2) / (sum(y_a^2) + sum(y_b^2)) * 2

an error-to-signal ratio (ESR) between the device's outputs at neighbouring settings ``a`` and
``b``, over the DI sources only, after the first-order pre-emphasis the trainer's loss uses
(``y[n] - 0.85 y[n-1]``), so the step weighs frequencies the way training will.

The gaps are filled greedily: the largest step gets a setting at its middle, and each half is
then expected to hold a quarter of the step. For a change that grows smoothly with the knob the
output difference is proportional to the distance moved, so its energy to the distance squared.
Each recorded setting between two others also gets its *bend*: the ESR between its output and
the best straight mix of its neighbours' outputs (the least-squares blend). A large bend means
the device's response to the knob is not linear there, and a model that blends its neighbours
would miss it; it is printed with the suggestion as the reason to trust it.

With several knobs, the neighbours of a setting are along one knob with the others held.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from ampcap.errors import DatasetError
from ampcap.labels import knob_label
from ampcap.schema.session import Knob
from ampcap.settings import runs_along_knobs

from .split_inputs import SessionInput, load_session_input

#: The trainer's pre-emphasis coefficient, so steps weigh frequencies as the loss does.
PRE_EMPHASIS = 0.85
#: Each half of a split gap is expected to hold this share of the gap's step (distance squared).
HALF_GAP_SHARE = 0.25
#: Settings closer than this share of the knob's range are not worth another take.
MIN_SPACING = 0.01


@dataclass(frozen=True)
class Step:
    """How much the device's output changes between two neighbouring recorded settings."""

    knob: str
    low: dict[str, float]
    high: dict[str, float]
    esr: float


@dataclass(frozen=True)
class Suggestion:
    """One setting worth recording, and why.

    ``expected_step_esr`` is the step the gap would hold on each side after this take (a
    quarter of the gap's step for each halving so far).
    """

    knobs: dict[str, float]
    knob: str
    between: tuple[dict[str, float], dict[str, float]]
    gap_step_esr: float
    expected_step_esr: float
    reason: str


@dataclass(frozen=True)
class Plan:
    """What a session holds and the settings suggested next."""

    session: Path
    knobs: tuple[Knob, ...]
    recorded: tuple[dict[str, float], ...]
    steps: tuple[Step, ...]
    bends: tuple[tuple[dict[str, float], float], ...]
    suggestions: tuple[Suggestion, ...]

    def to_dict(self) -> dict:
        """The plan as ``ampcap plan --json`` prints it and ``ampcap record --plan-file`` reads."""
        return {
            "session": str(self.session),
            "knobs": [
                {"name": k.name, "minimum": k.minimum, "maximum": k.maximum} for k in self.knobs
            ],
            "recorded": [dict(k) for k in self.recorded],
            "steps": [
                {"knob": s.knob, "low": s.low, "high": s.high, "esr": s.esr} for s in self.steps
            ],
            "bends": [{"knobs": k, "esr": e} for k, e in self.bends],
            "add": [
                {
                    "knobs": s.knobs,
                    "label": knob_label(s.knobs),
                    "between": [s.between[0], s.between[1]],
                    "gap_step_esr": s.gap_step_esr,
                    "expected_step_esr": s.expected_step_esr,
                    "reason": s.reason,
                }
                for s in self.suggestions
            ],
        }


def pre_emphasis(x: np.ndarray, coefficient: float = PRE_EMPHASIS) -> np.ndarray:
    """``y[n] = x[n] - coefficient * x[n-1]`` (first sample kept), float64."""
    x = np.asarray(x, dtype=np.float64)
    y = x.copy()
    y[1:] -= coefficient * x[:-1]
    return y


def step_esr(a: np.ndarray, b: np.ndarray) -> float:
    """ESR between two outputs, normalised by their mean energy so it is symmetric."""
    energy = 0.5 * (float(np.dot(a, a)) + float(np.dot(b, b)))
    if energy <= 0:
        return 0.0
    difference = b - a
    return float(np.dot(difference, difference)) / energy


def bend_esr(low: np.ndarray, middle: np.ndarray, high: np.ndarray) -> float:
    """How far ``middle`` is from the best straight mix ``(1 - t) low + t high`` (ESR)."""
    direction = high - low
    norm = float(np.dot(direction, direction))
    t = float(np.dot(middle - low, direction)) / norm if norm > 0 else 0.0
    residual = middle - (low + min(max(t, 0.0), 1.0) * direction)
    energy = float(np.dot(middle, middle))
    return float(np.dot(residual, residual)) / energy if energy > 0 else 0.0


def device_outputs(session: SessionInput) -> list[np.ndarray]:
    """Each take's device output over the DI sources, pre-emphasised, float64."""
    outputs = []
    for take in session.takes:
        parts = []
        with sf.SoundFile(take.path) as f:
            for source in session.sources:
                f.seek(source.start)
                pair = f.read(source.length, dtype="float32", always_2d=True)
                parts.append(pre_emphasis(pair[:, 1]))
        outputs.append(np.concatenate(parts))
    return outputs


def plan_session(
    folder: str | Path,
    add: int,
    *,
    on_take: Callable[[int, int], None] | None = None,
) -> Plan:
    """Suggest ``add`` knob settings to record next in the session at ``folder``.

    Parameters
    ----------
    folder : str or Path
        An aligned capture session (``ampcap record`` then ``ampcap align``).
    add : int
        How many settings to suggest, 1 or more.
    on_take : callable, optional
        Called as ``on_take(done, total)`` after each take is read.

    Raises
    ------
    DatasetError
        The session is not aligned, has fewer than two usable settings along any knob, or its
        recorded settings leave no gap wide enough to split.
    """
    if add < 1:
        raise DatasetError(f"The number of settings to suggest must be 1 or more, not {add}.")
    session, _ = load_session_input(folder, 0, allow_warnings=True)
    # A take whose alignment failed may not line up with the others: its changes would be
    # the misalignment's, not the device's.
    session = replace(session, takes=tuple(t for t in session.takes if t.verdict != "failed"))
    settings = [dict(t.knobs) for t in session.takes]
    runs = runs_along_knobs(settings, [k.name for k in session.knobs])
    if not runs:
        raise DatasetError(
            f"{folder} holds {len(settings)} usable setting(s), and no two of them differ in one "
            "knob only, so there is no gap between recorded settings to measure. Record at "
            "least the two ends of the knob first (`ampcap record --steps 2`)."
        )
    outputs = []
    for done, output in enumerate(device_outputs(session), start=1):
        outputs.append(output)
        if on_take:
            on_take(done, len(session.takes))
    steps: list[Step] = []
    bends: list[tuple[dict[str, float], float]] = []
    for knob, order in runs:
        for i, j in zip(order, order[1:], strict=False):
            steps.append(Step(knob, settings[i], settings[j], step_esr(outputs[i], outputs[j])))
        for h, i, j in zip(order, order[1:], order[2:], strict=False):
            bends.append((settings[i], bend_esr(outputs[h], outputs[i], outputs[j])))
    bend_of: dict[str, float] = {}
    for setting, esr in bends:
        bend_of[knob_label(setting)] = max(esr, bend_of.get(knob_label(setting), 0.0))
    suggestions = _fill_gaps(steps, {k.name: k for k in session.knobs}, bend_of, add)
    if len(suggestions) < add:
        raise DatasetError(
            f"Only {len(suggestions)} of the {add} settings asked for fit between the recorded "
            f"settings of {folder} at least {MIN_SPACING:.0%} of the knob's range apart. Ask for "
            "fewer."
        )
    return Plan(
        session=Path(folder),
        knobs=session.knobs,
        recorded=tuple(settings),
        steps=tuple(steps),
        bends=tuple(bends),
        suggestions=tuple(suggestions),
    )


def _fill_gaps(
    steps: Sequence[Step],
    knobs: dict[str, Knob],
    bend_of: dict[str, float],
    add: int,
) -> list[Suggestion]:
    """Split the gap with the largest expected step, ``add`` times (see the module's text)."""
    gaps = [(s.esr, s.esr, s.knob, s.low, s.high) for s in steps]
    chosen: list[Suggestion] = []
    while len(chosen) < add and gaps:
        gaps.sort(key=lambda g: -g[0])
        expected, original, knob, low, high = gaps.pop(0)
        span = knobs[knob].maximum - knobs[knob].minimum
        if span > 0 and (high[knob] - low[knob]) / span < 2 * MIN_SPACING:
            continue
        middle = {**low, knob: _round_dial((low[knob] + high[knob]) / 2, span)}
        halves = expected * HALF_GAP_SHARE
        chosen.append(
            Suggestion(
                knobs=middle,
                knob=knob,
                between=(low, high),
                gap_step_esr=original,
                expected_step_esr=halves,
                reason=_reason(knob, low, high, expected, original, bend_of),
            )
        )
        gaps += [(halves, original, knob, low, middle), (halves, original, knob, middle, high)]
    return chosen


def _round_dial(value: float, span: float) -> float:
    """A dial value rounded to a thousandth of the knob's range, so labels stay short."""
    if span <= 0:
        return value
    digits = max(0, 3 - int(np.floor(np.log10(span))))
    return round(value, digits)


def _reason(
    knob: str,
    low: dict[str, float],
    high: dict[str, float],
    expected: float,
    original: float,
    bend_of: dict[str, float],
) -> str:
    """One line: how much the output changes across the gap, and the bend at its ends."""
    lo, hi = f"{knob}={low[knob]:g}", f"{knob}={high[knob]:g}"
    if expected == original:
        text = f"the output changes {original:.2%} (ESR) between {lo} and {hi}"
    else:
        text = f"splits {lo}..{hi}, about {expected:.2%} after the takes suggested before"
    bent = [(bend_of[knob_label(s)], s[knob]) for s in (low, high) if knob_label(s) in bend_of]
    if bent:
        worst, where = max(bent)
        text += f"; at {knob}={where:g} the output is {worst:.2%} from a mix of its neighbours"
    return text
