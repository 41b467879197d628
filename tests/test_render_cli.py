"""``ampcap render`` and ``ampcap export`` on real files in a temporary folder.

The commands run in-process through ``ampcap.cli.main`` (the same entry point as the console
script: user errors become exit status 2 and one message), with stdout/stderr captured.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from export_helpers import (
    ISF,
    RATE_HZ,
    guitar_audio,
    make_model,
    make_run,
    torch_output,
    write_wav,
)

TOLERANCE = 1e-4


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    return make_run(
        tmp_path / "runs" / "demo", make_model("lstm", hidden=8, knobs=1, scale=1.0), [ISF]
    )


@pytest.fixture()
def di(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "di.wav", guitar_audio(RATE_HZ * 2, seed=3))


def read(path: Path) -> np.ndarray:
    data, rate = sf.read(path, dtype="float32")
    assert rate == RATE_HZ
    return data


def test_render_checkpoint_writes_what_the_model_plays(
    cli, run_dir: Path, di: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.wav"
    result = cli("render", run_dir / "model.pt", di, out, "--knob", "isf=3.3")
    assert result.code == 0, result.err
    assert "real time" in result.err and result.out == ""
    model = make_model("lstm", hidden=8, knobs=1, scale=1.0)
    # Like a NAM player, the model first plays half a second of silence.
    expected = torch_output(model, read(di), [0.33], silence=RATE_HZ // 2)
    got = read(out)
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) < TOLERANCE
    # --warmup 0 starts the input from the zero state, and the start sounds different.
    cold = tmp_path / "cold.wav"
    result = cli("render", run_dir, di, cold, "--knob", "isf=3.3", "--warmup", "0")
    assert result.code == 0, result.err
    expected_cold = torch_output(model, read(di), [0.33])
    assert np.max(np.abs(read(cold) - expected_cold)) < TOLERANCE
    assert np.max(np.abs(expected_cold - expected)) > 1e-2
    result = cli("render", run_dir, di, cold, "--warmup", "-1")
    assert result.code == 2 and "-1" in result.err


def test_render_json_reports_the_speed(cli, run_dir: Path, di: Path, tmp_path: Path) -> None:
    result = cli("render", run_dir, di, tmp_path / "o.wav", "--knob", "isf=7", "--json")
    assert result.code == 0
    doc = json.loads(result.out)
    assert doc["model_format"] == "checkpoint" and doc["knobs"] == {"isf": 7.0}
    assert doc["frames"] == RATE_HZ * 2 and doc["real_time_factor"] > 0
    assert doc["seam_error"] <= TOLERANCE


@pytest.mark.parametrize("fmt", ["nam", "proteus", "aidax"])
def test_exported_file_renders_like_the_checkpoint(
    cli, run_dir: Path, di: Path, tmp_path: Path, fmt: str
) -> None:
    exported = tmp_path / ("m.nam" if fmt == "nam" else "m.json")
    knob_args = ["--knob", "isf=6.5"] if fmt == "nam" else []
    result = cli("export", run_dir, "--format", fmt, "--out", exported, *knob_args, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["path"] == str(exported)
    from_checkpoint, from_file = tmp_path / "a.wav", tmp_path / "b.wav"
    assert cli("render", run_dir, di, from_checkpoint, "--knob", "isf=6.5").code == 0
    # A .nam has the knob folded in: giving the same value again is accepted.
    assert cli("render", exported, di, from_file, "--knob", "isf=6.5").code == 0
    assert np.max(np.abs(read(from_file) - read(from_checkpoint))) < TOLERANCE


def test_render_refuses_a_folded_knob_at_another_setting(
    cli, run_dir: Path, di: Path, tmp_path: Path
) -> None:
    nam = tmp_path / "m.nam"
    assert cli("export", run_dir, "--format", "nam", "--knob", "isf=2", "--out", nam).code == 0
    result = cli("render", nam, di, tmp_path / "o.wav", "--knob", "isf=8")
    assert result.code == 2 and "exported with isf=2 folded" in result.err


def test_render_input_problems(cli, run_dir: Path, di: Path, tmp_path: Path) -> None:
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.zeros((100, 2), dtype=np.float32) + 0.1, RATE_HZ, subtype="FLOAT")
    result = cli("render", run_dir, stereo, tmp_path / "o.wav", "--knob", "isf=1")
    assert result.code == 2 and "2 channels" in result.err and "remix 1" in result.err
    nan = tmp_path / "nan.wav"
    audio = guitar_audio(500)
    audio[7] = np.nan
    sf.write(nan, audio, RATE_HZ, subtype="FLOAT")
    result = cli("render", run_dir, nan, tmp_path / "o.wav", "--knob", "isf=1")
    assert result.code == 2 and "NaN" in result.err
    result = cli("render", run_dir, di, di, "--knob", "isf=1")
    assert result.code == 2 and "an input of this command" in result.err
    result = cli("render", run_dir, di, tmp_path / "o.wav")
    assert result.code == 2 and "--knob isf=VALUE (0..10)" in result.err
    assert not (tmp_path / "o.wav").exists()


def test_render_resamples_a_file_at_another_rate(cli, run_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "di16k.wav"
    write_wav(src, guitar_audio(16000, seed=4), 16000)
    out = tmp_path / "o.wav"
    result = cli("render", run_dir, src, out, "--knob", "isf=5")
    assert result.code == 0, result.err
    assert "resampled to the model's 8000 Hz" in result.err
    data, rate = sf.read(out, dtype="float32")
    assert rate == 16000 and data.shape == (16000,)
    result = cli("render", run_dir, src, out, "--knob", "isf=5", "--no-resample")
    assert result.code == 2 and "16000 Hz but the model was trained at 8000 Hz" in result.err


def test_render_command_runs_as_a_program(
    ampcap_process, run_dir: Path, di: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o.wav"
    result = ampcap_process("render", run_dir, di, out, "--knob", "isf=1")
    assert result.code == 0, result.err
    assert "x real time" in result.err and out.is_file()


def test_render_a_wavenet_checkpoint(tmp_path: Path, di: Path) -> None:
    import torch

    from ampcap.train.model import build_model, make_config
    from ampcap.train.render import render_file, render_sequential

    torch.manual_seed(0)
    model = build_model(make_config("wavenet", 2, hidden_size=4, num_layers=4)).eval()
    run = make_run(tmp_path / "wn", model, [ISF])
    result = render_file(run, di, tmp_path / "o.wav", {"isf": 4.0})
    expected = render_sequential(model, read(di), [0.4])
    assert result.model_format == "checkpoint" and result.stats.seam_error == 0.0
    assert np.max(np.abs(read(tmp_path / "o.wav") - expected)) < 1e-5
