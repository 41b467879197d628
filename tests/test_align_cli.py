"""``ampcap align`` through the real command: what a user sees and what lands on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from align_helpers import (
    Rig,
    amp_output,
    make_program,
    make_session,
    plucks,
    record,
    write_session,
)

from ampcap.dataset.coherence import track_coherent
from ampcap.files import read_audio, sha256_file, write_audio

TERMINAL = {"COLUMNS": "100"}  # the width the tables and messages are checked at


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "captures" / "demo"
    make_session(
        folder, values=(0.0, 10.0), rig=Rig(latency_samples=300.25, seed=1), di_seconds=1.5
    )
    return folder


def test_align_session_json_and_table(ampcap_process, session: Path) -> None:
    before = {p.name: sha256_file(p) for p in (session / "takes").iterdir()}
    result = ampcap_process(
        "align", "captures/demo", "--json", cwd=session.parents[1], env=TERMINAL
    )
    assert result.code == 0, result.err
    document = json.loads(result.out)  # stdout holds exactly one JSON document
    assert document["alignment"] == "captures/demo/aligned/alignment.json"
    assert [t["verdict"] for t in document["takes"]] == ["ok", "ok"]
    for take in document["takes"]:
        assert take["loopback_latency_samples"] == pytest.approx(300.25, abs=0.02)
        assert take["polarity"] == 1
        assert take["file"].startswith("aligned/")
        pair, _ = read_audio(session / take["file"])
        assert pair.shape[1] == 2
    # The table and the pointer to the report go to stderr.
    assert "isf=10" in result.err and "ok" in result.err
    assert "ampcap report captures/demo" in result.err_flat
    assert {p.name: sha256_file(p) for p in (session / "takes").iterdir()} == before


def test_align_files_json(ampcap_process, tmp_path: Path) -> None:
    rate = 48000
    di = np.concatenate(
        [np.zeros(500), plucks(4 * rate, rate, np.random.default_rng(1)), np.zeros(rate // 4)]
    )
    device = amp_output(di, rate, {"isf": 2.0})
    take = record(di, device, Rig(latency_samples=64.5, polarity=-1, seed=2), rate)
    # The amp's own delay, as the marker-free estimator reads it on its clean output.
    own = track_coherent(
        di, device, rate, min_latency_samples=-64, max_latency_samples=64, drift=False
    )
    write_audio(tmp_path / "di.wav", di, rate)
    write_audio(tmp_path / "amp.wav", take[:, 1], rate)
    result = ampcap_process(
        "align",
        "--input",
        "di.wav",
        "--output",
        "amp.wav",
        "--out",
        "pair.wav",
        "--json",
        cwd=tmp_path,
        env=TERMINAL,
    )
    assert result.code == 0, result.err
    document = json.loads(result.out)
    # Four seconds of DI through a distorting amp: a quarter of a sample.
    assert document["latency_samples"] == pytest.approx(64.5 + own.latency_samples, abs=0.25)
    assert document["polarity"] == -1
    assert isinstance(document["drift_ppm"], float)
    assert document["drift_error_ppm"] > 0 and "ppm" in result.err and "±" in result.err
    assert document["confidence"]["value"] > document["confidence"]["trusted_from"]
    assert (tmp_path / "pair.wav").exists()
    assert "latency" in result.err and "pair.wav" in result.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("align",), "Give a session folder"),
        (("align", "--input", "di.wav"), "needs both --input"),
        (("align", "nowhere"), "not a capture session"),
        (("align", "x", "--input", "a.wav", "--output", "b.wav"), "not both"),
        (("align", "--input", "missing.wav", "--output", "b.wav"), "missing.wav does not exist"),
        (("align", "x", "--max-latency", "0"), "'--max-latency': must be above 0"),
    ],
)
def test_align_user_errors_exit_2_with_a_message(
    ampcap_process, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = ampcap_process(*args, cwd=tmp_path, env=TERMINAL)
    assert result.code == 2
    assert message in result.err_flat
    assert "Traceback" not in result.err
    assert result.out == ""


def test_a_session_with_no_usable_take_exits_2(ampcap_process, tmp_path: Path) -> None:
    program = make_program(48000, di_seconds=1.0)
    take = record(program.audio, amp_output(program.audio, 48000, {"isf": 5.0}), Rig(), 48000)
    take[:, 1] = 0.0
    write_session(tmp_path / "s", program, {5.0: take, 7.0: None}, statuses={7.0: "pending"})
    result = ampcap_process("align", "s", "--json", cwd=tmp_path, env=TERMINAL)
    assert result.code == 2
    document = json.loads(result.out)
    assert [t["verdict"] for t in document["takes"]] == ["failed", "failed"]
    text = result.err_flat
    assert "No take of s could be aligned" in text
    assert "device channel is silent" in text
    assert "pending" in text


def test_align_files_refusal_names_the_file(ampcap_process, tmp_path: Path) -> None:
    rate = 44100
    write_audio(tmp_path / "di.wav", 0.1 * np.random.default_rng(0).standard_normal(rate), rate)
    write_audio(tmp_path / "amp.wav", 0.1 * np.random.default_rng(1).standard_normal(rate), 48000)
    result = ampcap_process(
        "align", "--input", "di.wav", "--output", "amp.wav", cwd=tmp_path, env=TERMINAL
    )
    assert result.code == 2
    text = result.err_flat
    assert "amp.wav is at 48000 Hz but the input di.wav is at 44100 Hz" in text
