"""Rig files: shipped rigs load, and every kind of mistake is refused with a message naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from capture_helpers import write_rig

from ampcap.capture.rig import list_rigs, load_rig
from ampcap.errors import RigError

AUDIO_RIG = """
name = "mine"
kind = "audio"
[audio]
device = "Scarlett"
sample_rate_hz = 48000
"""


def test_shipped_rigs() -> None:
    assert list_rigs() == ["jack", "jack-virtual", "motu", "usb2x2", "virtual"]


@pytest.mark.parametrize("name", ["jack", "jack-virtual", "motu", "usb2x2", "virtual"])
def test_each_shipped_rig_loads_and_serialises(name: str) -> None:
    rig = load_rig(name)
    assert rig.name == name
    data = rig.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["source"] == f"shipped:{name}"


def test_motu_is_the_papers_interface_at_44k1() -> None:
    rig = load_rig("motu")
    assert rig.audio is not None
    assert (rig.audio.device, rig.sample_rate_hz) == ("UltraLite", 44100)
    assert (rig.audio.output_device, rig.audio.output_loopback) == (1, 2)
    assert (rig.audio.input_device, rig.audio.input_loopback) == (1, 2)
    assert rig.knobs["isf"].control == "prompt"


def test_virtual_rig_has_a_fractional_latency() -> None:
    rig = load_rig("virtual")
    assert rig.virtual is not None
    assert rig.virtual.latency_samples % 1 != 0
    assert rig.knobs["isf"].control == "virtual"


def test_defaults_fill_in(tmp_path: Path) -> None:
    rig = load_rig(write_rig(tmp_path / "mine.toml", AUDIO_RIG))
    assert rig.audio is not None
    assert rig.audio.blocksize == 1024 and rig.audio.latency == "high"
    assert rig.safety.max_output_dbfs == -6.0
    assert rig.source == str(tmp_path / "mine.toml")


def test_unknown_name_lists_shipped_rigs() -> None:
    with pytest.raises(
        RigError, match="no shipped rig called 'nope'.*jack, jack-virtual, motu, usb2x2, virtual"
    ):
        load_rig("nope")


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RigError, match="does not exist"):
        load_rig(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[safety]\nmax_output = -6\n", r"unknown key 'max_output' in \[safety\].*max_output_dbfs"),
        (
            '[knobs.isf]\ncontrol = "prompt"\nmidi = 3\n',
            r"unknown key 'midi' in \[knobs\.isf\].*midi_cc",
        ),
    ],
)
def test_unknown_keys_are_named_with_their_table(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(RigError, match=message):
        load_rig(write_rig(tmp_path / "r.toml", AUDIO_RIG + extra))


def test_unknown_top_level_key(tmp_path: Path) -> None:
    with pytest.raises(
        RigError,
        match=r"unknown key 'colour' at the top level\. Allowed keys "
        r"there: name, description, kind",
    ):
        load_rig(write_rig(tmp_path / "r.toml", "colour = 1\n" + AUDIO_RIG))


def test_unknown_key_inside_audio(tmp_path: Path) -> None:
    text = AUDIO_RIG.replace("sample_rate_hz = 48000", "sample_rate_hz = 48000\nsamplerate = 1")
    with pytest.raises(RigError, match=r"unknown key 'samplerate' in \[audio\]"):
        load_rig(write_rig(tmp_path / "r.toml", text))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('device = "Scarlett"\n', "", r"required key 'device' is missing in \[audio\]"),
        (
            "sample_rate_hz = 48000",
            'sample_rate_hz = "48k"',
            r"sample_rate_hz = '48k' in \[audio\] should be an integer",
        ),
        ("sample_rate_hz = 48000", "sample_rate_hz = 300", "not an audio rate"),
        (
            "sample_rate_hz = 48000",
            "sample_rate_hz = 48000\ninput_device = 2",
            "input_device and input_loopback are both 2",
        ),
        (
            "sample_rate_hz = 48000",
            "sample_rate_hz = 48000\noutput_loopback = 0",
            "channels count from 1",
        ),
        (
            "sample_rate_hz = 48000",
            'sample_rate_hz = 48000\nlatency = "medium"',
            'should be "low", "high" or seconds',
        ),
        ('kind = "audio"', 'kind = "usb"', 'kind = \'usb\' should be "audio" or "virtual"'),
        ('kind = "audio"', 'kind = "virtual"', r"an \[audio\] table only belongs"),
    ],
)
def test_bad_values_are_refused(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(RigError, match=message):
        load_rig(write_rig(tmp_path / "r.toml", AUDIO_RIG.replace(old, new)))


@pytest.mark.parametrize(
    ("knob", "message"),
    [
        ("minimum = 10.0\nmaximum = 0.0\n", "minimum = 10 is not below maximum = 0"),
        ('control = "command"\n', "no command with {value}"),
        ('control = "midi"\n', "needs midi_cc"),
        ('control = "virtual"\n', "only works on the virtual rig"),
        ('control = "knob"\n', "should be one of prompt, command, midi, virtual"),
        ("maximum = true\n", "should be a number"),
    ],
)
def test_bad_knob_tables_are_refused(tmp_path: Path, knob: str, message: str) -> None:
    with pytest.raises(RigError, match=message):
        load_rig(write_rig(tmp_path / "r.toml", AUDIO_RIG + "[knobs.isf]\n" + knob))


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    with pytest.raises(RigError, match="not valid TOML"):
        load_rig(write_rig(tmp_path / "r.toml", "name = \n"))


def test_device_override_applies_to_audio_rigs_only() -> None:
    rig = load_rig("jack").with_device("ampcap")
    assert rig.audio is not None and rig.audio.device == "ampcap"
    with pytest.raises(RigError, match="virtual and has no audio device"):
        load_rig("virtual").with_device("x")


def test_command_with_an_unknown_placeholder_is_refused(tmp_path: Path) -> None:
    knob = '[knobs.isf]\ncontrol = "command"\ncommand = "set {value} {channel}"\n'
    with pytest.raises(RigError, match=r"placeholder other than \{value\} and \{knob\}"):
        load_rig(write_rig(tmp_path / "r.toml", AUDIO_RIG + knob))
