"""``ampcap record``, ``ampcap rigs`` and ``ampcap rig check`` through the real CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from capture_helpers import record_args

from ampcap.schema.session import load_session


def test_record_virtual_session(tmp_path: Path, cli) -> None:
    out = tmp_path / "demo"
    result = cli(*record_args(out), "--json")
    assert result.code == 0, result.err_flat
    summary = json.loads(result.out)
    assert summary["complete"] and summary["rig"] == "virtual"
    assert [t["file"] for t in summary["takes"]] == [
        "takes/isf=0.wav",
        "takes/isf=5.wav",
        "takes/isf=10.wav",
    ]
    assert "All 3 take(s) complete. Next: ampcap align" in result.err_flat
    manifest = load_session(out)
    assert all(t.status == "complete" for t in manifest.takes)
    assert sorted(p.name for p in (out / "takes").iterdir()) == [
        "isf=0.wav",
        "isf=10.wav",
        "isf=5.wav",
    ]


def test_record_again_resumes_and_retake_rerecords(tmp_path: Path, cli) -> None:
    out = tmp_path / "demo"
    assert cli(*record_args(out)).code == 0
    result = cli(*record_args(out), "--json")
    assert result.code == 0 and "Resuming the session" in result.err_flat
    assert json.loads(result.out)["recorded"] == []
    result = cli(*record_args(out), "--retake", "--json")
    assert result.code == 0 and len(json.loads(result.out)["recorded"]) == 3


def test_grid_of_two_knobs_and_lhs_plan(tmp_path: Path, cli) -> None:
    result = cli(
        "record",
        "--rig",
        "virtual",
        "--knob",
        "isf",
        "--knob",
        "gain",
        "--plan",
        "lhs",
        "--takes",
        "5",
        "--range",
        "gain=4:6",
        "--out",
        str(tmp_path / "lhs"),
        "--di-seconds",
        "2",
        "--yes",
        "--json",
    )
    assert result.code == 0, result.err_flat
    takes = [t["knobs"] for t in json.loads(result.out)["takes"]]
    assert len(takes) == 5
    for corner in ({"isf": 0.0, "gain": 4.0}, {"isf": 10.0, "gain": 6.0}):
        assert corner in takes
    assert (tmp_path / "lhs/takes/isf=0,gain=4.wav").exists()


def test_user_di_files_are_played(tmp_path: Path, cli) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(3 * 44100) / 44100
    guitar = 0.3 * np.sin(2 * np.pi * 196 * t) * np.exp(-t) + 0.01 * rng.standard_normal(len(t))
    sf.write(str(tmp_path / "lead.wav"), guitar, 44100, subtype="FLOAT")
    sf.write(str(tmp_path / "my_bass.flac"), 0.5 * guitar, 44100)
    out = tmp_path / "s"
    result = cli(
        "record",
        "--rig",
        "virtual",
        "--knob",
        "isf",
        "--steps",
        "2",
        "--out",
        str(out),
        "--di",
        str(tmp_path / "lead.wav"),
        "--di",
        str(tmp_path / "my_bass.flac"),
        "--yes",
    )
    assert result.code == 0, result.err_flat
    assert "44100 Hz; resampled to the rig's 48000 Hz" in result.err_flat
    sources = load_session(out).program.sources
    assert [(s.name, s.kind, s.length) for s in sources] == [
        ("lead", "guitar", 144000),
        ("my_bass", "bass", 144000),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["record", "--knob", "isf", "--out", "x"],
            "Missing --rig.*Shipped rigs: jack, jack-virtual, motu, usb2x2, virtual",
        ),
        (["record", "--rig", "nowhere", "--out", "x"], "no shipped rig called 'nowhere'"),
        (
            ["record", "--rig", "virtual", "--knob", "isf", "--out", "x", "--di", "absent.wav"],
            "absent.wav does not exist",
        ),
        (["record", "--rig", "virtual", "--knob", "tone", "--out", "x", "--yes"], "no knob 'tone'"),
        (
            ["record", "--rig", "virtual", "--knob", "isf", "--range", "0:12", "--out", "x"],
            "outside its dial 0:10",
        ),
        (["record", "--rig", "virtual", "--out", "x"], "Missing --knob NAME.*isf, gain"),
        (["record", "--rig", "virtual", "--knob", "isf"], "Missing --out DIR"),
        (
            ["record", "--rig", "virtual", "--knob", "isf", "--out", "x", "--device", "hw"],
            "virtual and has no audio device",
        ),
    ],
)
def test_bad_input_is_exit_2_with_a_message(
    tmp_path: Path,
    cli,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli(*args)
    assert result.code == 2
    assert re.search(message, result.err_flat), result.err_flat
    assert "Traceback" not in result.err_flat and result.out == ""
    assert not (tmp_path / "x").exists()


def test_non_audio_di_is_exit_2(tmp_path: Path, cli) -> None:
    fake = tmp_path / "di.wav"
    fake.write_text("this is not audio")
    result = cli(*record_args(tmp_path / "s"), "--di", str(fake))
    assert result.code == 2 and "is not an audio file" in result.err_flat
    assert not (tmp_path / "s").exists()


def test_different_session_in_out_is_exit_2(tmp_path: Path, cli) -> None:
    out = tmp_path / "s"
    assert cli(*record_args(out)).code == 0
    manifest = (out / "session.json").read_bytes()
    result = cli(*record_args(out, seconds="4"))
    assert result.code == 2 and "already holds a different session" in result.err_flat
    assert (out / "session.json").read_bytes() == manifest


def test_prompted_knob_without_a_terminal_needs_yes(tmp_path: Path, cli) -> None:
    # Refused before any device is opened: this runs on machines without the JACK device.
    args = [
        "record",
        "--rig",
        "jack",
        "--knob",
        "isf",
        "--steps",
        "2",
        "--out",
        str(tmp_path / "s"),
        "--di-seconds",
        "2",
    ]
    result = cli(*args)
    assert result.code == 2 and "no terminal to ask on" in result.err_flat
    assert not (tmp_path / "s").exists()


def test_rigs_list_and_show(cli) -> None:
    result = cli("rigs", "--json")
    assert result.code == 0
    rigs = {r["name"]: r for r in json.loads(result.out)["rigs"]}
    assert set(rigs) == {"jack", "jack-virtual", "motu", "usb2x2", "virtual"}
    assert rigs["motu"]["sample_rate_hz"] == 44100 and rigs["motu"]["device"] == "UltraLite"
    result = cli("rigs", "show", "jack", "--json")
    assert result.code == 0 and json.loads(result.out)["audio"]["host_api"] == "JACK"
    result = cli("rigs")
    assert result.code == 0 and "usb2x2" in result.err_flat and "UltraLite" in result.err_flat
    result = cli("rigs", "show", "nope")
    assert result.code == 2 and "Shipped rigs" in result.err_flat


def test_rig_check_on_the_virtual_rig(cli) -> None:
    result = cli("rig", "check", "--rig", "virtual", "--json")
    assert result.code == 0, result.err_flat
    check = json.loads(result.out)
    assert check["wiring"] == "ok"
    assert check["latency_samples"] == pytest.approx(183.37, abs=0.05)
    result = cli("rig", "check", "--rig", "virtual")
    assert result.code == 0 and "Ready to record" in result.err_flat


def test_record_help_has_examples_and_loads_no_torch() -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ampcap", "record", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "ampcap record --rig virtual --knob isf --steps 5" in result.stdout
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
    assert "torch" not in imported and "sounddevice" not in imported


def test_take_names_are_never_cut_in_an_80_column_terminal(tmp_path: Path, ampcap_process) -> None:
    """With two knobs the take names are the only way to tell the takes apart."""
    result = ampcap_process(
        *("record", "--rig", "virtual"),
        *("--knob", "isf", "--knob", "gain", "--steps", "2", "--range", "gain=2.5:7.5"),
        *("--out", tmp_path / "s", "--di-seconds", "2", "--yes"),
        env={"COLUMNS": "80"},
    )
    assert result.code == 0, result.err
    lines = result.err.splitlines()
    assert max(len(line) for line in lines if "complete" in line) <= 80
    for name in ("isf=0,gain=2.5", "isf=0,gain=7.5", "isf=10,gain=2.5", "isf=10,gain=7.5"):
        assert any(line.lstrip().startswith(f"{name} ") for line in lines), result.err
