"""Knob setters: prompts, commands, MIDI value mapping and the virtual amp's knob."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from ampcap.capture.knobs import QUIT, RECORD, REDO, KnobController, MidiSetter
from ampcap.capture.rig import KnobSettings, load_rig, loads_rig
from ampcap.capture.virtual import VirtualEngine
from ampcap.errors import CaptureError, UsageError


def audio_rig(knobs: str = "") -> object:
    text = f'name = "t"\nkind = "audio"\n[audio]\ndevice = "x"\nsample_rate_hz = 48000\n{knobs}'
    return loads_rig(text, "test")


class Answers:
    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.answers.pop(0)


def controller(
    rig: object,
    answers: Answers,
    lines: list[str],
    yes: bool = False,
    interactive: bool = True,
    engine: object = None,
) -> KnobController:
    return KnobController(
        rig, ["isf"], engine, assume_yes=yes, say=lines.append, ask=answers, interactive=interactive
    )


def test_prompt_shows_knob_value_step_and_change() -> None:
    lines: list[str] = []
    answers = Answers("", "", "q")
    knobs = controller(audio_rig(), answers, lines)
    assert knobs.apply({"isf": 0.0}, None, 1, 3) == RECORD
    assert "Take 1 of 3: isf=0" in lines[0] and "set isf to 0" in lines[1]
    assert knobs.apply({"isf": 5.0}, {"isf": 0.0}, 2, 3) == RECORD
    assert any("turn isf from 0 to 5" in line for line in lines)
    assert knobs.apply({"isf": 10.0}, {"isf": 5.0}, 3, 3) == QUIT


def test_prompt_redo_and_bad_answers() -> None:
    lines: list[str] = []
    knobs = controller(audio_rig(), Answers("x", "r"), lines)
    assert knobs.apply({"isf": 5.0}, {"isf": 0.0}, 2, 2) == REDO
    assert any("'x' is not an answer" in line for line in lines)


def test_redo_on_the_first_take_asks_again() -> None:
    lines: list[str] = []
    answers = Answers("r", "")
    assert controller(audio_rig(), answers, lines).apply({"isf": 0.0}, None, 1, 2) == RECORD
    assert len(answers.prompts) == 2
    assert any("no earlier take to redo" in line for line in lines)


def test_no_terminal_is_refused_unless_yes() -> None:
    lines: list[str] = []
    knobs = controller(audio_rig(), Answers(), lines, interactive=False)
    with pytest.raises(UsageError, match="turned by hand.*no terminal.*--yes"):
        knobs.check_ready()
    knobs = controller(audio_rig(), Answers(), lines, yes=True, interactive=False)
    knobs.check_ready()
    assert knobs.apply({"isf": 2.5}, None, 1, 1) == RECORD
    assert any("set isf to 2.5" in line for line in lines)


def test_unchanged_hand_knob_is_not_asked_again() -> None:
    lines: list[str] = []
    answers = Answers()
    knobs = controller(audio_rig(), answers, lines)
    assert knobs.apply({"isf": 5.0}, {"isf": 5.0}, 2, 2) == RECORD
    assert answers.prompts == []


def command_rig(tmp_path: Path, script: str) -> object:
    command = f"{shlex.quote(sys.executable)} {shlex.quote(script)} {{knob}} {{value}}"
    command = command.replace("\\", "\\\\").replace('"', '\\"')
    return audio_rig(f'[knobs.isf]\ncontrol = "command"\ncommand = "{command}"\n')


def test_command_setter_runs_with_the_value(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    script = tmp_path / "set_knob.py"
    script.write_text(
        f"import sys\nopen({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
    )
    lines: list[str] = []
    knobs = controller(command_rig(tmp_path, str(script)), Answers(), lines, interactive=False)
    knobs.check_ready()
    assert knobs.apply({"isf": 2.5}, None, 1, 2) == RECORD
    assert not log.exists()  # announced only; set right before the take is recorded
    knobs.set_automatic({"isf": 2.5})
    knobs.set_automatic({"isf": 10.0})
    assert log.read_text().splitlines() == ["isf 2.5", "isf 10"]
    assert lines == ["Take 1 of 2: isf=2.5 (set isf=2.5)"]


def test_a_python_command_runs_with_amp_caps_interpreter() -> None:
    rig = audio_rig(
        '[knobs.isf]\ncontrol = "command"\ncommand = "python -m some.module set {knob} {value}"\n'
    )
    knobs = controller(rig, Answers(), [], interactive=False)
    assert knobs.setters["isf"].command_line(2.5) == [
        sys.executable,
        "-m",
        "some.module",
        "set",
        "isf",
        "2.5",
    ]


def test_command_failure_names_the_command_and_its_stderr(tmp_path: Path) -> None:
    script = tmp_path / "fail.py"
    script.write_text("import sys\nsys.stderr.write('knob motor jammed')\nsys.exit(3)\n")
    knobs = controller(command_rig(tmp_path, str(script)), Answers(), [], interactive=False)
    with pytest.raises(
        CaptureError,
        match=r"fail\.py isf 7\.5` failed with exit status 3: knob "
        r"motor jammed\. Nothing was recorded at isf=7\.5",
    ):
        knobs.set_automatic({"isf": 7.5})


def test_missing_command_program_is_named() -> None:
    rig = audio_rig('[knobs.isf]\ncontrol = "command"\ncommand = "no-such-knob-tool {value}"\n')
    knobs = controller(rig, Answers(), [], interactive=False)
    with pytest.raises(CaptureError, match="'no-such-knob-tool' was not found"):
        knobs.set_automatic({"isf": 1.0})


@pytest.mark.parametrize(("value", "cc"), [(0.0, 0), (10.0, 127), (5.0, 64), (2.5, 32), (-1, 0)])
def test_midi_value_maps_the_dial_to_0_127(value: float, cc: int) -> None:
    settings = KnobSettings(name="isf", minimum=0.0, maximum=10.0, control="midi", midi_cc=20)
    assert MidiSetter.cc_value(value, settings) == cc


def test_midi_port_that_matches_nothing_lists_the_ports() -> None:
    pytest.importorskip("mido")
    pytest.importorskip("rtmidi")
    rig = audio_rig('[knobs.isf]\ncontrol = "midi"\nmidi_port = "no such port xyz"\nmidi_cc = 20\n')
    knobs = controller(rig, Answers(), [], interactive=False)
    with pytest.raises(CaptureError, match="(matches no MIDI output. Outputs:)|(Could not list)"):
        knobs.check_ready()


def test_virtual_knobs_set_the_engine() -> None:
    engine = VirtualEngine()
    lines: list[str] = []
    knobs = KnobController(
        load_rig("virtual"),
        ["isf", "gain"],
        engine,
        assume_yes=False,
        say=lines.append,
        interactive=False,
    )
    knobs.check_ready()  # nothing is set by hand: no terminal needed
    assert knobs.apply({"isf": 7.5, "gain": 2.0}, None, 1, 1) == RECORD
    knobs.set_automatic({"isf": 7.5, "gain": 2.0})
    assert engine.amp.knobs == {"isf": 7.5, "gain": 2.0}
    assert lines == ["Take 1 of 1: isf=7.5, gain=2 (set isf=7.5, gain=2)"]
