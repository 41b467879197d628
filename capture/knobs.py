"""Knob setters: how each take's knob setting reaches the device.

Per knob, the rig's ``[knobs.<name>]`` table says how (``control``):

* ``prompt``: a person turns the dial. Before a take that needs it, ampcap shows the knob, the
  value to set, step k of n and what changed since the last take; Enter records, ``r`` redoes
  the last take, ``q`` stops and keeps what is done. Without a terminal this is refused unless
  ``--yes`` is given (then the instruction is printed and the take starts at once).
* ``command``: a command line with ``{value}`` (and ``{knob}``) filled in is run (no shell);
  a non-zero exit stops the session naming the command and its stderr.
* ``midi``: a MIDI control change on a port matched by substring; the dial range maps to
  0..127 (needs the optional ``mido`` and ``python-rtmidi`` packages).
* ``virtual``: the virtual amp's knob is set directly.

A knob without a table is ``virtual`` on the virtual rig and ``prompt`` on an audio rig.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ampcap.capture.rig import KnobSettings, Rig
from ampcap.errors import CaptureError, UsageError
from ampcap.labels import describe

RECORD = "record"
REDO = "redo"
QUIT = "quit"
COMMAND_TIMEOUT_S = 60.0


class Setter(Protocol):
    """Something that sets one knob to a dial value."""

    def set(self, value: float) -> None: ...


def knob_settings(rig: Rig, name: str) -> KnobSettings:
    """The rig's table for knob ``name``, or the default (virtual on the virtual rig, else
    prompt, range 0..10)."""
    if name in rig.knobs:
        return rig.knobs[name]
    return KnobSettings(name=name, control="virtual" if rig.kind == "virtual" else "prompt")


@dataclass
class VirtualSetter:
    """Sets a knob of the virtual amp through the engine's ``set_knobs`` (see
    :meth:`KnobController.bind`)."""

    name: str
    engine: Any = None

    def set(self, value: float) -> None:
        if self.engine is None:
            raise RuntimeError("VirtualSetter used before KnobController.bind(engine)")
        self.engine.set_knobs({self.name: value})


@dataclass
class CommandSetter:
    """Runs ``template`` with ``{value}`` (``%g``) and ``{knob}`` filled in, without a shell.

    A first word ``python`` or ``python3`` runs the interpreter running ampcap
    (``sys.executable``), so ``python -m ...`` works from a virtual environment that is not on
    PATH.
    """

    name: str
    template: str

    def command_line(self, value: float) -> list[str]:
        args = shlex.split(self.template.format(value=f"{value:g}", knob=self.name))
        if args and args[0] in ("python", "python3"):
            args[0] = sys.executable
        return args

    def set(self, value: float) -> None:
        args = self.command_line(value)
        shown = shlex.join(args)
        try:
            done = subprocess.run(
                args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
            )
        except FileNotFoundError as exc:
            raise CaptureError(
                f"The knob command `{shown}` could not run: {args[0]!r} was not found. Fix "
                f"command in the rig's [knobs.{self.name}] table, or put the program on PATH."
            ) from exc
        except OSError as exc:
            raise CaptureError(
                f"The knob command `{shown}` could not run: {exc.strerror or exc}. Check the "
                f"program is executable, or fix command in the rig's [knobs.{self.name}] table."
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise CaptureError(
                f"The knob command `{shown}` did not finish within {COMMAND_TIMEOUT_S:g} s; "
                f"nothing was recorded at {describe({self.name: value})}."
            ) from exc
        if done.returncode != 0:
            stderr = (done.stderr or "").strip()[-500:] or "(no output on stderr)"
            raise CaptureError(
                f"The knob command `{shown}` failed with exit status {done.returncode}: "
                f"{stderr}. Nothing was recorded at {describe({self.name: value})}; fix the "
                "command and run again to resume."
            )


class MidiSetter:
    """Sends a MIDI control change; the knob's range maps linearly to 0..127.

    The port is opened on first use, by a case-insensitive substring of its name.
    """

    def __init__(self, settings: KnobSettings) -> None:
        self.settings = settings
        self._port: Any = None

    @staticmethod
    def cc_value(value: float, settings: KnobSettings) -> int:
        """Dial value -> 0..127 over ``settings``' range (rounded, clipped)."""
        span = settings.maximum - settings.minimum
        return int(min(max(round((value - settings.minimum) / span * 127), 0), 127))

    def open(self) -> None:
        if self._port is not None:
            return
        try:
            import mido
        except ImportError as exc:
            raise CaptureError(
                f"Knob {self.settings.name} is set over MIDI, which needs the optional packages "
                "mido and python-rtmidi: `pip install 'ampcap[midi]'`."
            ) from exc
        try:
            names = list(mido.get_output_names())
        except Exception as exc:  # rtmidi raises its own types when no backend is present
            raise CaptureError(
                f"Could not list MIDI outputs ({exc}). Is python-rtmidi "
                "installed and a MIDI backend (ALSA) available?"
            ) from exc
        wanted = self.settings.midi_port or ""
        matches = [n for n in names if wanted.lower() in n.lower()]
        listing = "; ".join(f"[{i}] {n}" for i, n in enumerate(names)) or "none"
        if len(matches) != 1:
            what = "matches no" if not matches else f"matches {len(matches)}"
            raise CaptureError(
                f"midi_port {wanted!r} for knob {self.settings.name} {what} MIDI "
                f"output. Outputs: {listing}. Set midi_port in the rig to a "
                "substring of exactly one."
            )
        try:
            self._port = mido.open_output(matches[0])
        except Exception as exc:
            raise CaptureError(f"Could not open MIDI output {matches[0]!r}: {exc}.") from exc

    def set(self, value: float) -> None:
        import mido

        self.open()
        self._port.send(
            mido.Message(
                "control_change",
                channel=self.settings.midi_channel - 1,
                control=self.settings.midi_cc,
                value=self.cc_value(value, self.settings),
            )
        )

    def close(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None


class KnobController:
    """Sets every knob of a take and, for hand-set knobs, asks the person at the dial.

    Parameters
    ----------
    rig : Rig
    names : list of str
        The session's knobs, in plan order.
    engine : object, optional
        The audio engine, used by ``virtual`` knobs (its ``set_knobs``); may be given later
        with :meth:`bind`, so knobs can be checked before a device is opened.
    assume_yes : bool
        ``--yes``: never wait for a person; print what to set and go on.
    say : callable
        Prints one line to the user (the console on stderr).
    ask : callable, optional
        Reads one answer after printing a prompt; default reads the terminal.
    interactive : bool, optional
        Whether a person can answer; default: standard input is a terminal.
    """

    def __init__(
        self,
        rig: Rig,
        names: list[str],
        engine: Any = None,
        *,
        assume_yes: bool,
        say: Callable[[str], None],
        ask: Callable[[str], str] | None = None,
        interactive: bool | None = None,
    ) -> None:
        self.say = say
        self.ask = ask or _ask_terminal
        self.assume_yes = assume_yes
        self.interactive = sys.stdin.isatty() if interactive is None else interactive
        self.settings = {name: knob_settings(rig, name) for name in names}
        self.setters: dict[str, Setter] = {}
        self.manual: list[str] = []
        for name, settings in self.settings.items():
            if settings.control == "virtual":
                if rig.kind != "virtual":
                    raise UsageError(
                        f'Knob {name} has control = "virtual" but rig {rig.name} is not virtual.'
                    )
                self.setters[name] = VirtualSetter(name, engine)
            elif settings.control == "command":
                self.setters[name] = CommandSetter(name, settings.command or "")
            elif settings.control == "midi":
                self.setters[name] = MidiSetter(settings)
            else:
                self.manual.append(name)

    def bind(self, engine: Any) -> None:
        """Give ``virtual`` knobs the engine whose amp they turn."""
        for setter in self.setters.values():
            if isinstance(setter, VirtualSetter):
                setter.engine = engine

    def check_ready(self) -> None:
        """Refuse before anything plays when a person must turn a knob and none can answer;
        open MIDI ports so a missing port is found now, not after the first take."""
        if self.manual and not self.interactive and not self.assume_yes:
            raise UsageError(
                f'Knob(s) {", ".join(self.manual)} are turned by hand (control = "prompt") and '
                "there is no terminal to ask on. Run ampcap in a terminal, pass --yes to record "
                "without waiting (set the knob yourself before each take), or give the knob a "
                "command or midi control in the rig."
            )
        for setter in self.setters.values():
            if isinstance(setter, MidiSetter):
                setter.open()

    def apply(
        self,
        target: dict[str, float],
        previous: dict[str, float] | None,
        step: int,
        total: int,
        redo: bool = False,
    ) -> str:
        """Set the knobs for take ``step`` of ``total``; returns RECORD, REDO or QUIT.

        Hand-set knobs get a prompt when one of them must change, on the first take, and on a
        redo. Automatic knobs are only announced here: the caller sets them with
        :meth:`set_automatic` right before every recording attempt. REDO means: record the
        previous take again (the caller sets it up).
        """
        changed = {n: v for n, v in target.items() if previous is None or previous.get(n) != v}
        auto = describe({n: target[n] for n in self.setters if n in changed})
        need_person = bool(self.manual) and (
            previous is None or redo or any(n in changed for n in self.manual)
        )
        head = f"Take {step} of {total}{' (again)' if redo else ''}: {describe(target)}"
        if not need_person:
            self.say(head + (f" (set {auto})" if auto else ""))
            return RECORD
        lines = [head]
        for name in self.manual:
            value = target[name]
            if previous is None:
                lines.append(f"  set {name} to {value:g}")
            elif previous.get(name) != value:
                lines.append(f"  turn {name} from {previous[name]:g} to {value:g}")
            else:
                lines.append(f"  leave {name} at {value:g}")
        if auto:
            lines.append(f"  ampcap set {auto}")
        for line in lines:
            self.say(line)
        if self.assume_yes:
            self.say("  --yes: recording now")
            return RECORD
        while True:
            answer = self.ask("  Enter records, r redoes the last take, q stops: ").strip().lower()
            if answer == "":
                return RECORD
            if answer == "q":
                return QUIT
            if answer == "r":
                if step <= 1:
                    self.say("  There is no earlier take to redo.")
                    continue
                return REDO
            self.say(f"  {answer!r} is not an answer: press Enter, r or q.")

    def set_automatic(self, target: dict[str, float]) -> None:
        """Set every knob ampcap turns itself (command, midi, virtual) to ``target``.

        Called before every attempt at a take, changed or not: a device may have been touched,
        and a command may reset the device's state as well as set the knob.
        """
        for name, setter in self.setters.items():
            setter.set(target[name])

    def close(self) -> None:
        for setter in self.setters.values():
            if isinstance(setter, MidiSetter):
                setter.close()


def _ask_terminal(prompt: str) -> str:
    from ampcap.console import err

    try:
        return err.input(prompt)
    except EOFError:
        return "q"
