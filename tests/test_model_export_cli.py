"""``ampcap export`` on a run folder: default file names, JSON output and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from export_helpers import ISF, make_model, make_run, run_cli


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    return make_run(
        tmp_path / "runs" / "demo", make_model("lstm", hidden=8, knobs=1, scale=1.0), [ISF]
    )


def test_export_default_path_and_refusals(
    capsys: pytest.CaptureFixture[str], run_dir: Path
) -> None:
    code, _, stderr = run_cli(capsys, "export", run_dir, "--format", "nam", "--knob", "isf=3.3")
    assert code == 0, stderr
    assert (run_dir / "exports" / "demo-isf=3.3.nam").is_file()
    code, _, stderr = run_cli(capsys, "export", run_dir, "--format", "nam", "--knob", "isf=11")
    assert code == 2 and "outside the knob's range 0..10" in stderr and "Traceback" not in stderr
    code, _, stderr = run_cli(capsys, "export", run_dir, "--format", "nam", "--knob", "drive=1")
    assert code == 2 and "its knobs are: isf (0..10)" in stderr
    code, _, stderr = run_cli(capsys, "export", run_dir, "--format", "nam")
    assert code == 2 and "--knob isf=VALUE" in stderr
    code, _, stderr = run_cli(capsys, "export", run_dir, "--format", "nam", "--knob", "isf")
    assert code == 2 and "NAME=VALUE" in stderr
    code, _, stderr = run_cli(capsys, "export", run_dir, "--format", "nam", "--knob", "isf=loud")
    assert code == 2 and "'loud' is not a number" in stderr
    code, _, stderr = run_cli(
        capsys, "export", run_dir, "--format", "nam", "--knob", "isf=1", "--knob", "isf=2"
    )
    assert code == 2 and "given twice" in stderr
    code, _, stderr = run_cli(capsys, "export", run_dir, "--format", "proteus")
    assert code == 0 and "Proteus builds an LSTM of hidden size 40" in stderr


def test_export_json_and_nam_metadata(capsys: pytest.CaptureFixture[str], run_dir: Path) -> None:
    code, stdout, stderr = run_cli(
        capsys,
        "export",
        run_dir,
        "--format",
        "nam",
        "--knob",
        "isf=10",
        "--gear-type",
        "amp",
        "--tone-type",
        "hi_gain",
        "--modeled-by",
        "me",
        "--json",
    )
    assert code == 0, stderr
    doc = json.loads(stdout)
    assert doc["format"] == "nam" and doc["knobs"] == {"isf": 10.0} and doc["warnings"] == []
    meta = json.loads(Path(doc["path"]).read_text())["metadata"]
    assert meta["gear_type"] == "amp" and meta["tone_type"] == "hi_gain"
    assert meta["modeled_by"] == "me" and meta["name"] == "demo isf=10"


def test_export_a_gru_to_nam_exits_2_with_the_reason(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run = make_run(tmp_path / "g", make_model("gru", hidden=8, knobs=0), [])
    code, _, stderr = run_cli(capsys, "export", run, "--format", "nam")
    assert code == 2 and "NAM players load LSTM" in stderr and "Traceback" not in stderr
    code, _, stderr = run_cli(capsys, "export", tmp_path / "nothing", "--format", "aidax")
    assert code == 2 and "does not exist" in stderr
