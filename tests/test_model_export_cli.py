"""``ampcap export`` on a run folder: default file names, JSON output and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from export_helpers import ISF, make_model, make_run


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    return make_run(
        tmp_path / "runs" / "demo", make_model("lstm", hidden=8, knobs=1, scale=1.0), [ISF]
    )


def test_export_default_path_and_refusals(cli, run_dir: Path) -> None:
    result = cli("export", run_dir, "--format", "nam", "--knob", "isf=3.3")
    assert result.code == 0, result.err
    assert (run_dir / "exports" / "demo-isf=3.3.nam").is_file()
    result = cli("export", run_dir, "--format", "nam", "--knob", "isf=11")
    assert (
        result.code == 2
        and "outside the knob's range 0..10" in result.err
        and "Traceback" not in result.err
    )
    result = cli("export", run_dir, "--format", "nam", "--knob", "drive=1")
    assert result.code == 2 and "its knobs are: isf (0..10)" in result.err
    result = cli("export", run_dir, "--format", "nam")
    assert result.code == 2 and "--knob isf=VALUE" in result.err
    result = cli("export", run_dir, "--format", "nam", "--knob", "isf")
    assert result.code == 2 and "NAME=VALUE" in result.err
    result = cli("export", run_dir, "--format", "nam", "--knob", "isf=loud")
    assert result.code == 2 and "'loud' is not a number" in result.err
    result = cli("export", run_dir, "--format", "nam", "--knob", "isf=1", "--knob", "isf=2")
    assert result.code == 2 and "given twice" in result.err
    result = cli("export", run_dir, "--format", "proteus")
    assert result.code == 0 and "Proteus builds an LSTM of hidden size 40" in result.err


def test_export_json_and_nam_metadata(cli, run_dir: Path) -> None:
    result = cli(
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
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["format"] == "nam" and doc["knobs"] == {"isf": 10.0} and doc["warnings"] == []
    meta = json.loads(Path(doc["path"]).read_text())["metadata"]
    assert meta["gear_type"] == "amp" and meta["tone_type"] == "hi_gain"
    assert meta["modeled_by"] == "me" and meta["name"] == "demo isf=10"


def test_export_a_gru_to_nam_exits_2_with_the_reason(cli, tmp_path: Path) -> None:
    run = make_run(tmp_path / "g", make_model("gru", hidden=8, knobs=0), [])
    result = cli("export", run, "--format", "nam")
    assert (
        result.code == 2 and "NAM players load LSTM" in result.err and "Traceback" not in result.err
    )
    result = cli("export", tmp_path / "nothing", "--format", "aidax")
    assert result.code == 2 and "does not exist" in result.err
