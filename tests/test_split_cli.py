"""``ampcap split`` through the real CLI, in a temporary folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from split_helpers import SourceSpec, make_session

from ampcap.schema.dataset import load_dataset

RATE = 1000
SOURCES = (SourceSpec("gtr.wav", "guitar", 12_000), SourceSpec("bass.wav", "bass", 8_000))


@pytest.fixture
def cap(tmp_path: Path) -> Path:
    return make_session(tmp_path / "captures" / "demo", rate=RATE, sources=SOURCES)


def test_split_prints_the_summary_and_writes_the_dataset(cli, cap, tmp_path):
    out = tmp_path / "data" / "demo"
    result = cli(
        *("split", cap, "--out", out, "--block-seconds", "1"),
        *("--holdout", "isf=5", "--export", "coreaudioml"),
    )
    assert result.code == 0, result.out + result.err
    assert result.out == ""  # tables and progress go to stderr
    assert "Dataset demo: minutes of audio" in result.err
    assert "held out: test only" in result.err
    assert "20 blocks of 1 s (train / val / test: 14 / 3 / 3" in result.err
    assert f"coreaudioml export: {out / 'Data'}" in result.err
    manifest = load_dataset(out)
    assert manifest.heldout == ({"isf": 5.0},)
    assert (out / "Data" / "val" / "demo-target.wav").exists()


def test_json_prints_one_document_on_stdout(cli, cap, tmp_path):
    out = tmp_path / "data" / "demo"
    result = cli("split", cap, "-o", out, "--block-seconds", "1", "--seed", "7", "--json")
    assert result.code == 0, result.out + result.err
    document = json.loads(result.out)
    assert document["dataset"] == str(out)
    assert document["settings"] == ["isf=0", "isf=5", "isf=10"]
    assert document["blocks"] == {"train": 14, "val": 3, "test": 3}
    assert document["frames"]["train"] == load_dataset(out).splits["train"].frames
    assert load_dataset(out).seed == 7


def test_help_has_examples_and_loads_no_torch():
    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from ampcap.cli import cli\n"
        "result = CliRunner().invoke(cli, ['split', '--help'])\n"
        "print(result.exit_code, 'torch' in sys.modules)\n"
        "print(result.output)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    first, _, help_text = run.stdout.partition("\n")
    assert first == "0 False"
    assert "ampcap split captures/demo --out data/demo" in help_text
    assert "--holdout KNOB=VALUE" in help_text


def test_user_errors_exit_2_with_a_message_and_no_traceback(ampcap_process, tmp_path):
    cap = make_session(tmp_path / "cap", rate=RATE, sources=SOURCES)
    (cap / "aligned" / "alignment.json").unlink()
    out = tmp_path / "data" / "x"
    run = ampcap_process("split", cap, "--out", out, cwd=tmp_path)
    assert run.code == 2
    assert "ampcap align" in run.err and "Traceback" not in run.err
    assert not out.exists()
    bad = ampcap_process("split", cap, "--out", out, "--holdout", "isf", cwd=tmp_path)
    assert bad.code == 2
    assert "--holdout 'isf' is not KNOB=VALUE" in bad.err
