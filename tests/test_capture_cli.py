"""``ampcap record``, ``ampcap rigs`` and ``ampcap rig check`` through the real CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from capture_helpers import record_args, run_cli

from ampcap.schema.session import load_session


def test_record_virtual_session(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    code, stdout, stderr = run_cli(capsys, *record_args(out), "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["complete"] and summary["rig"] == "virtual"
    assert [t["file"] for t in summary["takes"]] == [
        "takes/isf=0.wav",
        "takes/isf=5.wav",
        "takes/isf=10.wav",
    ]
    assert "All 3 take(s) complete. Next: ampcap align" in stderr
    manifest = load_session(out)
    assert all(t.status == "complete" for t in manifest.takes)
    assert sorted(p.name for p in (out / "takes").iterdir()) == [
        "isf=0.wav",
        "isf=10.wav",
        "isf=5.wav",
    ]


def test_record_again_resumes_and_retake_rerecords(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert run_cli(capsys, *record_args(out))[0] == 0
    code, stdout, stderr = run_cli(capsys, *record_args(out), "--json")
    assert code == 0 and "Resuming the session" in stderr
    assert json.loads(stdout)["recorded"] == []
    code, stdout, _ = run_cli(capsys, *record_args(out), "--retake", "--json")
    assert code == 0 and len(json.loads(stdout)["recorded"]) == 3


def test_grid_of_two_knobs_and_lhs_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = run_cli(
        capsys,
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
    assert code == 0, stderr
    takes = [t["knobs"] for t in json.loads(stdout)["takes"]]
    assert len(takes) == 5
    for corner in ({"isf": 0.0, "gain": 4.0}, {"isf": 10.0, "gain": 6.0}):
        assert corner in takes
    assert (tmp_path / "lhs/takes/isf=0,gain=4.wav").exists()


def test_user_di_files_are_played(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(3 * 44100) / 44100
    guitar = 0.3 * np.sin(2 * np.pi * 196 * t) * np.exp(-t) + 0.01 * rng.standard_normal(len(t))
    sf.write(str(tmp_path / "lead.wav"), guitar, 44100, subtype="FLOAT")
    sf.write(str(tmp_path / "my_bass.flac"), 0.5 * guitar, 44100)
    out = tmp_path / "s"
    code, _, stderr = run_cli(
        capsys,
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
    assert code == 0, stderr
    assert "44100 Hz; resampled to the rig's 48000 Hz" in stderr
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
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli(capsys, *args)
    assert code == 2
    assert re.search(message, stderr), stderr
    assert "Traceback" not in stderr and stdout == ""
    assert not (tmp_path / "x").exists()


def test_non_audio_di_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "di.wav"
    fake.write_text("this is not audio")
    code, _, stderr = run_cli(capsys, *record_args(tmp_path / "s"), "--di", str(fake))
    assert code == 2 and "is not an audio file" in stderr
    assert not (tmp_path / "s").exists()


def test_different_session_in_out_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s"
    assert run_cli(capsys, *record_args(out))[0] == 0
    manifest = (out / "session.json").read_bytes()
    code, _, stderr = run_cli(capsys, *record_args(out, seconds="4"))
    assert code == 2 and "already holds a different session" in stderr
    assert (out / "session.json").read_bytes() == manifest


def test_prompted_knob_without_a_terminal_needs_yes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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
    code, _, stderr = run_cli(capsys, *args)
    assert code == 2 and "no terminal to ask on" in stderr
    assert not (tmp_path / "s").exists()


def test_rigs_list_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run_cli(capsys, "rigs", "--json")
    assert code == 0
    rigs = {r["name"]: r for r in json.loads(stdout)["rigs"]}
    assert set(rigs) == {"jack", "jack-virtual", "motu", "usb2x2", "virtual"}
    assert rigs["motu"]["sample_rate_hz"] == 44100 and rigs["motu"]["device"] == "UltraLite"
    code, stdout, _ = run_cli(capsys, "rigs", "show", "jack", "--json")
    assert code == 0 and json.loads(stdout)["audio"]["host_api"] == "JACK"
    code, _, stderr = run_cli(capsys, "rigs")
    assert code == 0 and "usb2x2" in stderr and "UltraLite" in stderr
    code, _, stderr = run_cli(capsys, "rigs", "show", "nope")
    assert code == 2 and "Shipped rigs" in stderr


def test_rig_check_on_the_virtual_rig(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = run_cli(capsys, "rig", "check", "--rig", "virtual", "--json")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["wiring"] == "ok"
    assert result["latency_samples"] == pytest.approx(183.37, abs=0.05)
    code, _, stderr = run_cli(capsys, "rig", "check", "--rig", "virtual")
    assert code == 0 and "Ready to record" in stderr


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


def test_take_names_are_never_cut_in_an_80_column_terminal(tmp_path: Path) -> None:
    """With two knobs the take names are the only way to tell the takes apart."""
    result = subprocess.run(
        [sys.executable, "-m", "ampcap", "record", "--rig", "virtual"]
        + ["--knob", "isf", "--knob", "gain", "--steps", "2", "--range", "gain=2.5:7.5"]
        + ["--out", str(tmp_path / "s"), "--di-seconds", "2", "--yes"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert max(len(line) for line in lines if "complete" in line) <= 80
    for name in ("isf=0,gain=2.5", "isf=0,gain=7.5", "isf=10,gain=2.5", "isf=10,gain=7.5"):
        assert any(line.lstrip().startswith(f"{name} ") for line in lines), result.stderr
